"""True-positive matching, P/R and the confusion matrix against hand counts and the reference's validator."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from test_metrics import NUM_CLASSES, _hand_built_set, _metrics

from yolo11_lightning.training.matching import IOU_THRESHOLDS, confusion_matrix, match_at_iou
from yolo11_lightning.training.metrics import DetectionMetrics


def _crowded_set(seed: int, images: int = 30) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The hand-built set plus a second, differently jittered detection of every box, in NMS order.

    Two candidates per ground truth make the matching order matter (the more confident one is
    often the worse fit); predictions are sorted by decreasing confidence as NMS returns them.
    """
    generator = torch.Generator().manual_seed(100 + seed)
    crowded = []
    for preds, boxes, labels in _hand_built_set(seed, images):
        size = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)
        second = boxes + (torch.rand(boxes.shape, generator=generator) - 0.5) * size * 0.3
        rows = torch.cat([second, torch.rand(len(boxes), 1, generator=generator), labels[:, None].float()], 1)
        preds = torch.cat([preds, rows]) if len(preds) else preds
        crowded.append((preds[preds[:, 4].argsort(descending=True)], boxes, labels))
    return crowded


def test_first_prediction_in_confidence_order_wins() -> None:
    # The minimal case: the more confident prediction has the lower IoU but still takes the box.
    gt, gt_labels = torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([0])
    preds, labels = torch.tensor([[0.0, 0, 10, 9], [0.0, 0, 10, 10]]), torch.tensor([0, 0])
    assert match_at_iou(preds, labels, gt, gt_labels).tolist() == [True, False]
    # Several thresholds at once: at IoU 0.95 only the exact box qualifies.
    both = match_at_iou(preds, labels, gt, gt_labels, (0.5, 0.95))
    assert both.tolist() == [[True, False], [False, True]]


def test_prediction_keeps_its_best_ground_truth() -> None:
    # Prediction 0 overlaps both boxes, 1 only the second: 0 takes its best (box 1) and leaves box 0 unmatched.
    gt = torch.tensor([[0.0, 0, 10, 10], [2.0, 0, 12, 10]])
    preds = torch.tensor([[1.5, 0, 11.5, 10], [2.0, 0, 12, 10]])
    correct = match_at_iou(preds, torch.tensor([0, 0]), gt, torch.tensor([0, 0]))
    assert correct.tolist() == [True, False]


def test_confusion_matrix_hand_counted() -> None:
    # Image 1: a right-class match, a wrong-class match, a missed box, a false detection and one below conf 0.25.
    # Image 2: no ground truth, one detection. Image 3: ground truth only.
    records = [
        (
            torch.tensor([[0.0, 0, 10, 10], [20.0, 20, 30, 30], [50.0, 50, 60, 60], [0.0, 0, 10, 10]]),
            torch.tensor([0.9, 0.8, 0.7, 0.2]),
            torch.tensor([0, 2, 1, 1]),
            torch.tensor([[0.0, 0, 10, 10], [20.0, 20, 30, 31], [80.0, 80, 90, 90]]),
            torch.tensor([0, 1, 2]),
        ),
        (
            torch.tensor([[0.0, 0, 5, 5]]),
            torch.tensor([0.5]),
            torch.tensor([2]),
            torch.zeros(0, 4),
            torch.zeros(0).long(),
        ),
        (torch.zeros(0, 4), torch.zeros(0), torch.zeros(0).long(), torch.tensor([[0.0, 0, 5, 5]]), torch.tensor([1])),
    ]
    expected = np.zeros((4, 4), dtype=np.int64)
    expected[0, 0] = 1  # right class
    expected[2, 1] = 1  # predicted 2, truly 1
    expected[3, 2] = 1  # box of class 2 missed (background row)
    expected[1, 3] = 1  # false detection of class 1 (background column)
    expected[2, 3] = 1  # image 2's detection
    expected[3, 1] = 1  # image 3's missed box
    assert confusion_matrix(records, 3).tolist() == expected.tolist()


def _reference_validator(names: dict[int, str]):
    from ultralytics.models.yolo.detect import DetectionValidator

    validator = DetectionValidator(args={"plots": False, "verbose": False})
    validator.data = {"val": ""}
    validator.init_metrics(SimpleNamespace(names=names))
    return validator


def _reference_batch(boxes: torch.Tensor, labels: torch.Tensor, size: int = 640) -> dict:
    """A one-image batch in the reference validator's layout (normalised xywh in a size x size input)."""
    xywh = torch.cat([(boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]], 1) / size
    return {
        "img": torch.zeros(1).expand(1, 3, size, size),
        "batch_idx": torch.zeros(len(labels)),
        "cls": labels.float()[:, None],
        "bboxes": xywh,
        "ori_shape": [(size, size)],
        "ratio_pad": [((1.0, 1.0), (0.0, 0.0))],
        "im_file": ["x.jpg"],
    }


@pytest.mark.reference
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_precision_recall_equal_reference_validator(seed: int) -> None:
    data = _crowded_set(seed)
    names = {0: "a", 1: "b", 2: "c"}
    validator = _reference_validator(names)
    for preds, boxes, labels in data:
        validator.update_metrics(
            [{"bboxes": preds[:, :4], "conf": preds[:, 4], "cls": preds[:, 5], "extra": preds[:, 6:]}],
            _reference_batch(boxes, labels),
        )
        # The true positives at every IoU threshold are the reference's, prediction by prediction.
        reference_tp = validator.metrics.stats["tp"][-1]
        ours = match_at_iou(preds[:, :4], preds[:, 5].long(), boxes, labels, IOU_THRESHOLDS).numpy()
        assert (ours == reference_tp).all()
    validator.get_stats()
    box = validator.metrics.box
    results = _metrics(data).compute()
    assert results.precision == pytest.approx(box.mp, abs=1e-6)
    assert results.recall == pytest.approx(box.mr, abs=1e-6)
    rows = {row.class_id: row for row in results.per_class}
    for index, class_id in enumerate(box.ap_class_index.tolist()):
        assert rows[class_id].precision == pytest.approx(box.p[index], abs=1e-6)
        assert rows[class_id].recall == pytest.approx(box.r[index], abs=1e-6)
    assert 0.05 < results.precision < 0.95 and 0.05 < results.recall < 0.95


@pytest.mark.reference
def test_minimal_case_equals_reference_validator() -> None:
    gt, gt_labels = torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([0])
    preds = torch.tensor([[0.0, 0, 10, 9, 0.9, 0], [0.0, 0, 10, 10, 0.8, 0]])
    validator = _reference_validator({0: "a"})
    validator.update_metrics(
        [{"bboxes": preds[:, :4], "conf": preds[:, 4], "cls": preds[:, 5], "extra": preds[:, 6:]}],
        _reference_batch(gt, gt_labels),
    )
    assert validator.metrics.stats["tp"][-1][:, 0].tolist() == [True, False]
    validator.get_stats()
    metrics = DetectionMetrics({0: "a"})
    metrics.update(torch.tensor([0]), [preds], [gt], [gt_labels])
    results = metrics.compute()
    assert results.precision == pytest.approx(validator.metrics.box.mp, abs=1e-6)
    assert results.recall == pytest.approx(validator.metrics.box.mr, abs=1e-6)


@pytest.mark.reference
def test_confusion_matrix_equals_reference() -> None:
    from ultralytics.utils.metrics import ConfusionMatrix

    data = _crowded_set(3)
    reference = ConfusionMatrix(names={c: str(c) for c in range(NUM_CLASSES)})
    records = []
    for preds, boxes, labels in data:
        reference.process_batch(
            {"bboxes": preds[:, :4], "conf": preds[:, 4], "cls": preds[:, 5]}, {"cls": labels.float(), "bboxes": boxes}
        )
        records.append((preds[:, :4], preds[:, 4], preds[:, 5].long(), boxes, labels))
    ours = confusion_matrix(records, NUM_CLASSES)
    assert ours.tolist() == reference.matrix.astype(np.int64).tolist()
    assert ours[:NUM_CLASSES, :NUM_CLASSES].trace() > 10  # not a degenerate matrix
