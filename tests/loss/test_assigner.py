"""Tests for yolo11_lightning/loss/assigner.py: reference parity (incl. ties) and hand-made cases."""

from __future__ import annotations

import pytest
import torch

from yolo11_lightning.boxes import make_anchors
from yolo11_lightning.loss.assigner import Assignment, TaskAlignedAssigner

STRIDES = (8, 16, 32)


def anchors_for(imgsz: int) -> torch.Tensor:
    """(A, 2) anchor centres in input pixels for a square input."""
    points, strides = make_anchors([(imgsz // s, imgsz // s) for s in STRIDES], STRIDES)
    return points * strides


def padded_gt(counts: list[int], nc: int, imgsz: int, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Random boxes per image, padded to (B, M): labels, xyxy boxes, mask."""
    batch, max_boxes = len(counts), max(counts)
    labels = torch.zeros(batch, max_boxes)
    boxes = torch.zeros(batch, max_boxes, 4)
    mask = torch.zeros(batch, max_boxes, dtype=torch.bool)
    for image, count in enumerate(counts):
        centre = torch.rand(count, 2, generator=gen) * imgsz
        size = torch.rand(count, 2, generator=gen) * imgsz / 3 + 2
        boxes[image, :count] = torch.cat((centre - size / 2, centre + size / 2), 1).clamp(0, imgsz)
        labels[image, :count] = torch.randint(0, nc, (count,), generator=gen).float()
        mask[image, :count] = True
    return labels, boxes, mask


def random_predictions(batch: int, anchors: torch.Tensor, nc: int, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Class probabilities (B, A, nc) and xyxy boxes (B, A, 4) around the anchors."""
    scores = torch.rand(batch, anchors.shape[0], nc, generator=gen)
    dist = torch.rand(batch, anchors.shape[0], 4, generator=gen) * 80
    return scores, torch.cat((anchors - dist[..., :2], anchors + dist[..., 2:]), -1)


def assert_same_as_reference(
    nc: int,
    scores: torch.Tensor,
    pred_boxes: torch.Tensor,
    anchors: torch.Tensor,
    labels: torch.Tensor,
    boxes: torch.Tensor,
    mask: torch.Tensor,
) -> Assignment:
    from ultralytics.utils.tal import TaskAlignedAssigner as RefAssigner

    ref_labels, ref_boxes, ref_scores, ref_fg, ref_idx = RefAssigner(topk=10, num_classes=nc, alpha=0.5, beta=6.0)(
        scores, pred_boxes, anchors, labels[..., None], boxes, mask[..., None].float()
    )
    ours = TaskAlignedAssigner(nc)(scores, pred_boxes, anchors, labels, boxes, mask)
    assert ref_fg.sum() > 0
    assert torch.equal(ours.fg_mask, ref_fg)
    assert torch.equal(ours.target_gt_idx, ref_idx)
    assert torch.equal(ours.target_labels, ref_labels)
    assert torch.equal(ours.target_boxes, ref_boxes)
    torch.testing.assert_close(ours.target_scores, ref_scores, rtol=1e-6, atol=1e-9)
    return ours


@pytest.mark.reference
def test_parity_random_with_empty_and_crowded_images() -> None:
    gen = torch.Generator().manual_seed(1)
    nc, imgsz = 20, 320
    anchors = anchors_for(imgsz)
    labels, boxes, mask = padded_gt([0, 3, 210, 25], nc, imgsz, gen)
    scores, pred_boxes = random_predictions(4, anchors, nc, gen)
    ours = assert_same_as_reference(nc, scores, pred_boxes, anchors, labels, boxes, mask)
    assert not ours.fg_mask[0].any() and ours.fg_mask[2].sum() > 200


@pytest.mark.reference
def test_parity_with_ties() -> None:
    """Duplicate and nested boxes (anchors claimed twice, equal overlaps), tiny boxes whose in-box
    anchors have zero metric (top-k ties among zeros) and constant scores (metric ties)."""
    gen = torch.Generator().manual_seed(2)
    nc, imgsz = 5, 256
    anchors = anchors_for(imgsz)
    boxes = torch.tensor(
        [
            [
                [20.0, 20.0, 120.0, 100.0],
                [20.0, 20.0, 120.0, 100.0],  # duplicate of box 0, other class
                [40.0, 30.0, 80.0, 70.0],  # nested in box 0
                [1.0, 1.0, 13.0, 9.0],  # tiny: two anchors, the first of the row
                [150.0, 10.0, 250.0, 60.0],
            ],
            [
                [0.0, 0.0, 256.0, 256.0],  # whole image
                [100.0, 100.0, 140.0, 140.0],
                [101.0, 99.0, 141.0, 139.0],  # near-duplicate
                [0.0, 0.0, 0.0, 0.0],
                [0.0, 0.0, 0.0, 0.0],
            ],
        ]
    )
    labels = torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 3.0, 0.0, 0.0]])
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    scores = torch.full((2, anchors.shape[0], nc), 0.5)
    scores[1] = torch.rand(anchors.shape[0], nc, generator=gen).round(decimals=1)  # many equal values
    # Predictions: exact copies of box 0 for some anchors (equal IoU), far away for the tiny box's area.
    pred_boxes = torch.cat((anchors - 12.0, anchors + 12.0), -1).expand(2, -1, -1).clone()
    near_box0 = (anchors[:, 0] < 120) & (anchors[:, 1] < 100)
    pred_boxes[0, near_box0] = boxes[0, 0]
    near_tiny = (anchors[:, 0] < 16) & (anchors[:, 1] < 16)
    pred_boxes[0, near_tiny] = torch.tensor([200.0, 200.0, 205.0, 205.0])  # no overlap: CIoU clamps to 0
    ours = assert_same_as_reference(nc, scores, pred_boxes, anchors, labels, boxes, mask)
    assigned = ours.target_gt_idx[0][ours.fg_mask[0]]
    assert (assigned == 0).any() and not (assigned == 1).any()  # the duplicate loses every equal-overlap tie
    tiny = ours.fg_mask[0] & (ours.target_gt_idx[0] == 3)
    assert tiny.any() and (ours.target_weights[0][tiny] == 0).all()  # picked among zero-metric ties


def test_chunked_per_axis_and_logit_variants_equal_dense() -> None:
    gen = torch.Generator().manual_seed(3)
    nc, imgsz = 7, 256
    anchors = anchors_for(imgsz)
    labels, boxes, mask = padded_gt([12, 0, 150, 4, 40], nc, imgsz, gen)
    scores, pred_boxes = random_predictions(5, anchors, nc, gen)
    dense = TaskAlignedAssigner(nc)(scores, pred_boxes, anchors, labels, boxes, mask)
    pairs_per_image = boxes.shape[1] * anchors.shape[0]
    chunked = TaskAlignedAssigner(nc, max_pair_elements=2 * pairs_per_image)(
        scores, pred_boxes, anchors, labels, boxes, mask
    )
    shapes = [(imgsz // s, imgsz // s) for s in STRIDES]
    per_axis = TaskAlignedAssigner(nc)(scores, pred_boxes, anchors, labels, boxes, mask, grid_shapes=shapes)
    from_logits = TaskAlignedAssigner(nc)(
        scores.logit(), pred_boxes, anchors, labels, boxes, mask, grid_shapes=shapes, scores_are_logits=True
    )
    assert dense.fg_mask.sum() > 100 and not dense.fg_mask[1].any()
    for field in ("fg_mask", "target_gt_idx", "target_labels", "target_boxes", "target_weights"):
        assert torch.equal(getattr(dense, field), getattr(chunked, field)), field
        assert torch.equal(getattr(dense, field), getattr(per_axis, field)), field
    assert torch.equal(dense.fg_mask, from_logits.fg_mask)
    torch.testing.assert_close(dense.target_weights, from_logits.target_weights, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="grid_shapes"):
        TaskAlignedAssigner(nc)(scores, pred_boxes, anchors, labels, boxes, mask, grid_shapes=shapes[:2])


def test_no_boxes_is_all_background() -> None:
    anchors = anchors_for(64)
    scores, pred_boxes = torch.rand(2, anchors.shape[0], 3), torch.rand(2, anchors.shape[0], 4)
    no_boxes = (torch.zeros(2, 0), torch.zeros(2, 0, 4), torch.zeros(2, 0))
    out = TaskAlignedAssigner(3)(scores, pred_boxes, anchors, *no_boxes)
    assert not out.fg_mask.any() and out.target_weights.abs().sum() == 0
    assert out.target_scores.shape == (2, anchors.shape[0], 3) and out.target_scores.abs().sum() == 0


def test_perfect_prediction_hand_made() -> None:
    """One box, every anchor predicts it exactly: the 10 best-scoring in-box anchors win, and the
    best of them gets target score = IoU = 1."""
    anchors = anchors_for(128)
    box = torch.tensor([16.0, 16.0, 80.0, 64.0])
    inside = (anchors[:, 0] > 16) & (anchors[:, 0] < 80) & (anchors[:, 1] > 16) & (anchors[:, 1] < 64)
    scores = torch.zeros(1, anchors.shape[0], 2)
    scores[0, :, 1] = torch.linspace(0.1, 0.9, anchors.shape[0])  # distinct, increasing with anchor index
    pred_boxes = box.expand(1, anchors.shape[0], 4)
    out = TaskAlignedAssigner(2)(scores, pred_boxes, anchors, torch.ones(1, 1), box.view(1, 1, 4), torch.ones(1, 1))
    expected = torch.zeros(anchors.shape[0], dtype=torch.bool)
    expected[inside.nonzero().squeeze(1)[-10:]] = True  # highest scores = last in-box anchors
    assert inside.sum() > 10
    assert torch.equal(out.fg_mask[0], expected)
    assert (out.target_labels[0][expected] == 1).all()
    assert out.target_weights.max().item() == pytest.approx(1.0, abs=1e-5)
    assert (out.target_scores[0, :, 0] == 0).all()


def test_bad_inputs_raise() -> None:
    anchors = anchors_for(64)
    scores, pred_boxes = torch.rand(1, anchors.shape[0], 3), torch.rand(1, anchors.shape[0], 4)
    boxes = torch.tensor([[[1.0, 1.0, 30.0, 30.0]]])
    with pytest.raises(ValueError, match="class labels"):
        TaskAlignedAssigner(3)(scores, pred_boxes, anchors, torch.tensor([[3.0]]), boxes, torch.ones(1, 1))
    with pytest.raises(ValueError, match="gt_mask"):
        TaskAlignedAssigner(3)(scores, pred_boxes, anchors, torch.tensor([[0.0]]), boxes, torch.ones(1, 2))
    with pytest.raises(ValueError, match="classes"):
        TaskAlignedAssigner(4)(scores, pred_boxes, anchors, torch.tensor([[0.0]]), boxes, torch.ones(1, 1))


def test_bf16_inputs_under_autocast_are_assigned_in_float32() -> None:
    """Under bf16 autocast the assignment equals the float32 one of the same (bf16-rounded) inputs."""
    gen = torch.Generator().manual_seed(11)
    nc, imgsz = 5, 128
    anchors = anchors_for(imgsz)
    labels, boxes, mask = padded_gt([6, 3], nc, imgsz, gen)
    scores, pred_boxes = random_predictions(2, anchors, nc, gen)
    scores, pred_boxes = scores.bfloat16(), pred_boxes.bfloat16()
    expected = TaskAlignedAssigner(nc)(scores.float(), pred_boxes.float(), anchors, labels, boxes, mask)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        result = TaskAlignedAssigner(nc)(scores, pred_boxes, anchors, labels, boxes, mask)
    assert result.target_boxes.dtype == torch.float32 and result.target_weights.dtype == torch.float32
    assert expected.fg_mask.sum() > 10
    for field in ("fg_mask", "target_gt_idx", "target_labels", "target_boxes", "target_weights"):
        assert torch.equal(getattr(expected, field), getattr(result, field)), field
