"""Tests for yolo11_lightning/inference/nms.py: reference parity and hand-made NMS cases."""

from __future__ import annotations

import pytest
import torch

from yolo11_lightning.inference.nms import non_max_suppression


def decoded_from(boxes_xyxy: list[list[float]], scores: list[list[float]]) -> torch.Tensor:
    """(1, 4 + nc, n) decoded output from xyxy boxes and per-class scores."""
    xyxy = torch.tensor(boxes_xyxy)
    xywh = torch.cat(((xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]), 1)
    return torch.cat((xywh, torch.tensor(scores)), 1).T.unsqueeze(0)


def clustered_predictions(batch: int, anchors: int, nc: int, gen: torch.Generator) -> torch.Tensor:
    """(B, 4 + nc, A): boxes jittered around 40 cluster boxes (so suppression matters), random scores."""
    centres = torch.rand(batch, 40, 2, generator=gen) * 320
    sizes = torch.rand(batch, 40, 2, generator=gen) * 60 + 8
    member = torch.randint(0, 40, (batch, anchors), generator=gen)
    xy = centres.gather(1, member[..., None].expand(-1, -1, 2)) + torch.randn(batch, anchors, 2, generator=gen) * 3
    jitter = 1 + torch.randn(batch, anchors, 2, generator=gen) * 0.1
    wh = sizes.gather(1, member[..., None].expand(-1, -1, 2)) * jitter
    scores = torch.rand(batch, anchors, nc, generator=gen) ** 4
    return torch.cat((xy, wh, scores), -1).transpose(1, 2).contiguous()


def canonical(detections: torch.Tensor) -> list[tuple[float, ...]]:
    """Rows in a fixed order (score ties may be listed in any order)."""
    return sorted(map(tuple, detections.tolist()), key=lambda row: (-row[4], row))


@pytest.mark.reference
@pytest.mark.parametrize(
    "options",
    [
        {"conf_thres": 0.001, "iou_thres": 0.7, "multi_label": True},  # validation
        {"conf_thres": 0.25, "iou_thres": 0.7},  # prediction
        {"conf_thres": 0.25, "iou_thres": 0.5, "agnostic": True},
        {"conf_thres": 0.1, "iou_thres": 0.7, "classes": [1, 4, 7]},
        {"conf_thres": 0.001, "iou_thres": 0.7, "multi_label": True, "max_nms": 500, "max_det": 100},
    ],
)
def test_same_detections_as_reference(options: dict) -> None:
    from ultralytics.utils.nms import non_max_suppression as ref_nms

    decoded = clustered_predictions(3, 2100, 10, torch.Generator().manual_seed(0))
    ours = non_max_suppression(decoded.clone(), **options)
    # No time limit for the reference (it would silently drop the remaining images on a busy machine).
    ref = ref_nms(decoded.clone(), max_time_img=1e6, **options)
    for mine, theirs in zip(ours, ref):
        assert mine.shape[1] == 6 and len(mine) > 0
        assert canonical(mine) == canonical(theirs)
    total_candidates = int((decoded[:, 4:] > options["conf_thres"]).any(1).sum())
    assert sum(len(d) for d in ours) < total_candidates  # suppression did something


def test_class_aware_and_agnostic_suppression() -> None:
    boxes = [[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]]  # first two: IoU 9/11
    same_class = decoded_from(boxes, [[0.9, 0.0], [0.8, 0.0], [0.0, 0.7]])
    out = non_max_suppression(same_class, conf_thres=0.25, iou_thres=0.7)[0]
    assert out[:, 4].tolist() == pytest.approx([0.9, 0.7]) and out[:, 5].tolist() == [0.0, 1.0]
    assert out[0, :4].tolist() == [0.0, 0.0, 10.0, 10.0]
    other_class = decoded_from(boxes, [[0.9, 0.0], [0.0, 0.8], [0.0, 0.7]])
    assert len(non_max_suppression(other_class, conf_thres=0.25, iou_thres=0.7)[0]) == 3
    assert len(non_max_suppression(other_class, conf_thres=0.25, iou_thres=0.7, agnostic=True)[0]) == 2
    assert len(non_max_suppression(other_class, conf_thres=0.25, iou_thres=0.85)[0]) == 3  # IoU 0.82 kept


def test_multi_label_threshold_max_det_and_classes() -> None:
    decoded = decoded_from([[0, 0, 10, 10], [20, 20, 30, 30]], [[0.6, 0.5, 0.1], [0.25, 0.0, 0.3]])
    single = non_max_suppression(decoded, conf_thres=0.25)[0]
    assert single[:, 5].tolist() == [0.0, 2.0]  # best class per box
    multi = non_max_suppression(decoded, conf_thres=0.25, multi_label=True)[0]
    assert multi[:, 4].tolist() == pytest.approx([0.6, 0.5, 0.3])  # 0.25 is not above the threshold
    assert multi[:, 5].tolist() == [0.0, 1.0, 2.0]
    assert len(non_max_suppression(decoded, conf_thres=0.25, multi_label=True, max_det=2)[0]) == 2
    only_class_1 = non_max_suppression(decoded, conf_thres=0.25, multi_label=True, classes=[1])[0]
    assert only_class_1[:, 5].tolist() == [1.0]


def test_empty_results_batch_and_tuple_input() -> None:
    decoded = torch.cat((decoded_from([[0, 0, 10, 10]], [[0.9]]), decoded_from([[0, 0, 10, 10]], [[0.1]])))
    out = non_max_suppression((decoded, ["raw maps"]), conf_thres=0.25)
    assert len(out) == 2 and out[0].shape == (1, 6) and out[1].shape == (0, 6)
    with pytest.raises(ValueError, match="conf_thres"):
        non_max_suppression(decoded, conf_thres=1.5)
    with pytest.raises(ValueError, match="4 \\+ nc"):
        non_max_suppression(torch.zeros(1, 4, 10))


def test_max_nms_keeps_highest_scores() -> None:
    # Ten disjoint boxes; with max_nms=3 only the three best survive.
    boxes = [[20 * i, 0, 20 * i + 10, 10] for i in range(10)]
    decoded = decoded_from(boxes, [[0.3 + 0.05 * i] for i in range(10)])
    out = non_max_suppression(decoded, conf_thres=0.25, max_nms=3)[0]
    assert out[:, 4].tolist() == pytest.approx([0.75, 0.7, 0.65])
