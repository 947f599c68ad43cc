"""Precision/recall curves of one evaluation, and P/R at the best mean F1.

Two kinds of curves, from the same stored predictions:

* **Confidence curves** (:func:`confidence_curves`): per class with ground truth, precision,
  recall and F1 as a function of the confidence threshold on a 1000-point grid, from the
  reference-style true positives at IoU 0.5 (:func:`~.matching.match_at_iou`). The reported P and
  R are read at the threshold maximising the (box-smoothed) mean F1 over classes, as the
  reference's validator does.
* **PR curves** (:class:`EvaluationCurves` ``pr_*``): COCOeval's interpolated precision at 101
  recall points at IoU 0.5, per class. The mean of a class's 101 points is its COCO AP50; the mean
  over classes of those is the logged mAP50.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

CONFIDENCE_POINTS = 1000
RECALL_POINTS = np.linspace(0.0, 1.0, 101)


def _smooth(values: np.ndarray, fraction: float = 0.1) -> np.ndarray:
    """Box-filter ``values`` over ``fraction`` of its length (edges padded with the end values)."""
    width = round(len(values) * fraction * 2) // 2 + 1
    pad = np.ones(width // 2)
    padded = np.concatenate((pad * values[0], values, pad * values[-1]))
    return np.convolve(padded, np.ones(width) / width, mode="valid")


@dataclass
class EvaluationCurves:
    """Everything the figures of one evaluation need (numbers only; names travel separately).

    Attributes:
        class_ids: (K,) classes with ground truth, rows of the confidence curves.
        confidence: (1000,) confidence grid from 0 to 1.
        precision: (K, 1000) precision per class at each confidence threshold.
        recall: (K, 1000) recall.
        f1: (K, 1000) F1.
        best_index: grid index of the best smoothed mean F1 (where P and R are reported).
        pr_class_ids: (K2,) classes with ground truth in the COCO evaluation, rows of ``pr_precision``.
        pr_precision: (K2, 101) COCOeval's precision at the recall points :data:`RECALL_POINTS`, IoU 0.5.
        confusion: ``(nc + 1, nc + 1)`` counts, rows predicted, columns true class, last row and
            column background (see :func:`~.matching.confusion_matrix`); empty when not computed.
    """

    class_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    confidence: np.ndarray = field(default_factory=lambda: np.linspace(0, 1, CONFIDENCE_POINTS))
    precision: np.ndarray = field(default_factory=lambda: np.zeros((0, CONFIDENCE_POINTS)))
    recall: np.ndarray = field(default_factory=lambda: np.zeros((0, CONFIDENCE_POINTS)))
    f1: np.ndarray = field(default_factory=lambda: np.zeros((0, CONFIDENCE_POINTS)))
    best_index: int = 0
    pr_class_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    pr_precision: np.ndarray = field(default_factory=lambda: np.zeros((0, len(RECALL_POINTS))))
    confusion: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.int64))

    @property
    def pr_ap50(self) -> np.ndarray:
        """(K2,) COCO AP50 per class: the mean of its 101 precision points."""
        return self.pr_precision.mean(1) if len(self.pr_precision) else np.zeros(0)


def confidence_curves(
    true_positive: np.ndarray,
    confidence: np.ndarray,
    pred_classes: np.ndarray,
    target_classes: np.ndarray,
) -> EvaluationCurves:
    """Precision, recall and F1 against the confidence threshold, per class with ground truth.

    Predictions are ranked by decreasing confidence; per class the cumulative true and false
    positives give recall ``tp / ground truth`` and precision ``tp / (tp + fp)``, read at each
    grid threshold by linear interpolation in (negated) confidence; above the highest confidence
    recall is 0 and precision 1. A class without predictions has all-zero curves.

    Args:
        true_positive: (N,) bool per prediction, matched at IoU 0.5.
        confidence: (N,) scores.
        pred_classes: (N,) predicted class ids.
        target_classes: (M,) class id of every ground-truth box.

    Returns:
        The confidence-curve fields of :class:`EvaluationCurves` (and ``best_index``).
    """
    classes, counts = np.unique(target_classes.astype(np.int64), return_counts=True)
    grid = np.linspace(0, 1, CONFIDENCE_POINTS)
    precision = np.zeros((len(classes), len(grid)))
    recall = np.zeros((len(classes), len(grid)))
    order = np.argsort(-confidence)
    true_positive, confidence, pred_classes = true_positive[order], confidence[order], pred_classes[order]
    for row, (class_id, count) in enumerate(zip(classes, counts)):
        selected = pred_classes == class_id
        if not selected.any():
            continue
        tp_cum = np.cumsum(true_positive[selected])
        fp_cum = np.cumsum(~true_positive[selected])
        recall[row] = np.interp(-grid, -confidence[selected], tp_cum / (count + 1e-16), left=0)
        precision[row] = np.interp(-grid, -confidence[selected], tp_cum / (tp_cum + fp_cum), left=1)
    f1 = 2 * precision * recall / (precision + recall + 1e-16)
    best = int(_smooth(f1.mean(0), 0.1).argmax()) if len(classes) else 0
    return EvaluationCurves(
        class_ids=classes, confidence=grid, precision=precision, recall=recall, f1=f1, best_index=best
    )
