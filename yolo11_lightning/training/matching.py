"""Matching predictions to ground truth: true positives for P/R and the confusion matrix.

Both follow the reference validator's rules (facts, re-implemented):

* **True positives** (:func:`match_at_iou`), per IoU threshold: candidate pairs (ground truth,
  prediction) of the same class with IoU >= threshold are ordered by IoU, highest first; each
  prediction keeps its first pair; of what is left, listed by prediction index, each ground truth
  keeps its first pair. Predictions come in NMS order (decreasing confidence), so a ground truth
  goes to the most confident of the predictions whose best ground truth it is, not to the one with
  the highest IoU.
* **Confusion matrix** (:func:`confusion_matrix`), at one operating point (confidence > 0.25, IoU >
  0.45), class-agnostic pairs: ordered by IoU, unique per prediction, ordered by IoU again, unique
  per ground truth. A matched pair counts at ``[predicted class, true class]``; an unmatched
  ground truth in the background row, an unmatched prediction in the background column.
"""

from __future__ import annotations

import numpy as np
import torch

from yolo11_lightning.boxes import box_iou_matrix

# The IoU thresholds of COCO mAP50-95 (0.50, 0.55, ..., 0.95).
IOU_THRESHOLDS = tuple(round(0.5 + 0.05 * k, 2) for k in range(10))


def _by_iou_descending(values: np.ndarray) -> np.ndarray:
    """Indices ordering ``values`` highest first; ties in the reversed order of NumPy's default sort."""
    return np.argsort(values)[::-1]


def _first_per(keys: np.ndarray) -> np.ndarray:
    """Indices of the first occurrence of each distinct key, listed by increasing key."""
    return np.unique(keys, return_index=True)[1]


def match_at_iou(
    pred_boxes: torch.Tensor,
    pred_labels: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_labels: torch.Tensor,
    iou_thresholds: float | tuple[float, ...] = 0.5,
) -> torch.Tensor:
    """True positives: predictions matched one-to-one to a same-class ground truth (module docstring).

    Args:
        pred_boxes: (n, 4) xyxy, in NMS order (decreasing confidence).
        pred_labels: (n,) class ids.
        gt_boxes: (m, 4) xyxy.
        gt_labels: (m,) class ids.
        iou_thresholds: one IoU threshold, or several.

    Returns:
        (n,) bool for one threshold, (n, T) bool for a tuple of T thresholds.
    """
    thresholds = (iou_thresholds,) if isinstance(iou_thresholds, (int, float)) else tuple(iou_thresholds)
    correct = np.zeros((len(pred_boxes), len(thresholds)), dtype=bool)
    if len(pred_boxes) and len(gt_boxes):
        iou = box_iou_matrix(gt_boxes, pred_boxes)  # (m, n)
        iou = (iou * (gt_labels[:, None] == pred_labels[None, :])).cpu().numpy()
        for column, threshold in enumerate(thresholds):
            gt_index, pred_index = np.nonzero(iou >= threshold)
            if len(gt_index) > 1:
                order = _by_iou_descending(iou[gt_index, pred_index])
                gt_index, pred_index = gt_index[order], pred_index[order]
                keep = _first_per(pred_index)  # now listed by prediction index
                gt_index, pred_index = gt_index[keep], pred_index[keep]
                keep = _first_per(gt_index)
                pred_index = pred_index[keep]
            correct[pred_index, column] = True
    result = torch.from_numpy(correct)
    return result[:, 0] if isinstance(iou_thresholds, (int, float)) else result


def confusion_matrix(
    records: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]],
    num_classes: int,
    conf: float = 0.25,
    iou_threshold: float = 0.45,
) -> np.ndarray:
    """Counts of (predicted class, true class) over all images, with a background row and column.

    Args:
        records: per image ``(pred boxes (n, 4), scores (n,), pred labels (n,), gt boxes (m, 4),
            gt labels (m,))``.
        num_classes: number of classes ``nc``.
        conf: predictions with a score above this take part.
        iou_threshold: a pair needs an IoU above this.

    Returns:
        ``int64 (nc + 1, nc + 1)``: rows predicted class (last row: background, i.e. missed ground
        truth), columns true class (last column: background, i.e. false detections).
    """
    background = num_classes
    matrix = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)
    for pred_boxes, scores, pred_labels, gt_boxes, gt_labels in records:
        keep = scores > conf
        pred_boxes, pred_labels = pred_boxes[keep], pred_labels[keep].numpy()
        gt_labels = gt_labels.numpy()
        pred_matched = np.full(len(pred_labels), False)
        gt_match = np.full(len(gt_labels), -1)
        if len(pred_labels) and len(gt_labels):
            iou = box_iou_matrix(gt_boxes, pred_boxes).cpu().numpy()  # (m, n)
            gt_index, pred_index = np.nonzero(iou > iou_threshold)
            if len(gt_index) > 1:
                order = _by_iou_descending(iou[gt_index, pred_index])
                gt_index, pred_index = gt_index[order], pred_index[order]
                keep = _first_per(pred_index)
                gt_index, pred_index = gt_index[keep], pred_index[keep]
                order = _by_iou_descending(iou[gt_index, pred_index])
                gt_index, pred_index = gt_index[order], pred_index[order]
                keep = _first_per(gt_index)
                gt_index, pred_index = gt_index[keep], pred_index[keep]
            gt_match[gt_index] = pred_index
            pred_matched[pred_index] = True
        matched = gt_match >= 0
        np.add.at(matrix, (pred_labels[gt_match[matched]], gt_labels[matched]), 1)
        np.add.at(matrix, (np.full((~matched).sum(), background), gt_labels[~matched]), 1)
        np.add.at(matrix, (pred_labels[~pred_matched], np.full((~pred_matched).sum(), background)), 1)
    return matrix
