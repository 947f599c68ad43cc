"""Tests for yolo11_lightning/boxes.py: hand-checked values, round trips and reference parity."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision

from yolo11_lightning.boxes import (
    bbox2dist,
    bbox_iou,
    box_iou_matrix,
    clip_boxes,
    dist2bbox,
    make_anchors,
    scale_boxes_to_input,
    scale_boxes_to_original,
    xywh_to_xyxy,
    xyxy_to_xywh,
)


def random_xyxy(*shape: int, scale: float = 100.0) -> torch.Tensor:
    top_left = torch.rand(*shape, 2) * scale
    size = torch.rand(*shape, 2) * scale / 2 + 0.5
    return torch.cat((top_left, top_left + size), -1)


def test_make_anchors_values_and_order() -> None:
    points, strides = make_anchors([(2, 3), (1, 2)], [8, 16])
    assert points.shape == (8, 2) and strides.shape == (8, 1)
    # Level 0 row-major: (x, y) = (0.5, 0.5), (1.5, 0.5), (2.5, 0.5), (0.5, 1.5), ...
    assert points[:6].tolist() == [[0.5, 0.5], [1.5, 0.5], [2.5, 0.5], [0.5, 1.5], [1.5, 1.5], [2.5, 1.5]]
    assert points[6:].tolist() == [[0.5, 0.5], [1.5, 0.5]]
    assert strides.flatten().tolist() == [8.0] * 6 + [16.0] * 2
    with pytest.raises(ValueError, match="strides"):
        make_anchors([(2, 2)], [8, 16])


def test_xywh_xyxy_known_values_and_round_trip() -> None:
    xywh = torch.tensor([[10.0, 20.0, 4.0, 6.0]])
    assert xywh_to_xyxy(xywh).tolist() == [[8.0, 17.0, 12.0, 23.0]]
    boxes = random_xyxy(3, 5)
    torch.testing.assert_close(xywh_to_xyxy(xyxy_to_xywh(boxes)), boxes)
    with pytest.raises(ValueError, match="last dimension of 4"):
        xywh_to_xyxy(torch.zeros(3, 5))


def test_dist2bbox_bbox2dist_round_trip_and_clamp() -> None:
    anchors = torch.tensor([[5.5, 5.5], [2.5, 7.5]])
    dist = torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.5, 0.25, 2.0, 1.0]])
    boxes = dist2bbox(dist, anchors)
    assert boxes[0].tolist() == [4.5, 3.5, 8.5, 9.5]
    torch.testing.assert_close(bbox2dist(anchors, boxes, 15.0), dist)
    assert dist2bbox(dist, anchors, xywh=True)[0].tolist() == [6.5, 6.5, 4.0, 6.0]
    # An anchor outside the box: negative distances clamp to 0, large ones to the maximum.
    far = bbox2dist(torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 1.0, 40.0, 2.0]]), 14.99)
    torch.testing.assert_close(far, torch.tensor([[0.0, 0.0, 14.99, 2.0]]))


def test_iou_family_hand_values() -> None:
    a = torch.tensor([0.0, 0.0, 2.0, 2.0])
    b = torch.tensor([1.0, 0.0, 3.0, 2.0])  # half overlap: IoU 2 / 6
    assert bbox_iou(a, b).item() == pytest.approx(1 / 3, abs=1e-6)
    assert bbox_iou(a, a, kind="ciou").item() == pytest.approx(1.0, abs=1e-6)
    far = torch.tensor([10.0, 10.0, 12.0, 12.0])
    assert bbox_iou(a, far).item() == 0.0
    assert bbox_iou(a, far, kind="giou").item() < -0.9
    assert bbox_iou(a, far, kind="diou").item() < 0.0
    # DIoU penalty: squared centre distance 1 over enclosing diagonal 3^2 + 2^2.
    assert bbox_iou(a, b, kind="diou").item() == pytest.approx(1 / 3 - 1 / 13, abs=1e-6)
    with pytest.raises(ValueError, match="unknown IoU kind"):
        bbox_iou(a, b, kind="siou")


def test_iou_broadcasts() -> None:
    box1 = random_xyxy(4, 1)
    box2 = random_xyxy(1, 7)
    out = bbox_iou(box1, box2, kind="ciou")
    assert out.shape == (4, 7)
    torch.testing.assert_close(out[2, 5], bbox_iou(box1[2, 0], box2[0, 5], kind="ciou"))


def test_box_iou_matrix_matches_torchvision() -> None:
    boxes1, boxes2 = random_xyxy(6), random_xyxy(9)
    expected = torchvision.ops.box_iou(boxes1, boxes2)
    torch.testing.assert_close(box_iou_matrix(boxes1, boxes2), expected, atol=1e-6, rtol=1e-5)
    assert box_iou_matrix(random_xyxy(2, 3), random_xyxy(2, 4)).shape == (2, 3, 4)


def test_clip_boxes_single_and_batched() -> None:
    boxes = torch.tensor([[-5.0, 3.0, 50.0, 90.0]])
    assert clip_boxes(boxes, (60, 40)).tolist() == [[0.0, 3.0, 40.0, 60.0]]
    batched = boxes.expand(2, 1, 4)
    out = clip_boxes(batched, torch.tensor([[60, 40], [100, 100]]))
    assert out[0].tolist() == [[0.0, 3.0, 40.0, 60.0]] and out[1].tolist() == [[0.0, 3.0, 50.0, 90.0]]
    assert boxes.tolist() == [[-5.0, 3.0, 50.0, 90.0]]  # not modified in place


def test_scale_boxes_round_trip_batched() -> None:
    # Two images letterboxed to 640: 1280x720 (gain 0.5, pad y 140) and 480x640 (gain 1, pad x 80).
    ratio_pad = torch.tensor([[0.5, 0.5, 0.0, 140.0], [1.0, 1.0, 80.0, 0.0]])
    orig_shapes = torch.tensor([[720, 1280], [640, 480]])
    original = torch.tensor([[[100.0, 50.0, 300.0, 700.0]], [[10.0, 20.0, 470.0, 600.0]]])
    network = scale_boxes_to_input(original, ratio_pad)
    assert network[0].tolist() == [[50.0, 165.0, 150.0, 490.0]]
    assert network[1].tolist() == [[90.0, 20.0, 550.0, 600.0]]
    torch.testing.assert_close(scale_boxes_to_original(network, ratio_pad, orig_shapes), original)
    # Boxes reaching into the padding are clipped to the original image.
    padded = torch.tensor([[0.0, 100.0, 640.0, 600.0]])
    assert scale_boxes_to_original(padded, ratio_pad[0], orig_shapes[0]).tolist() == [[0.0, 0.0, 1280.0, 720.0]]
    with pytest.raises(ValueError, match="do not match"):
        scale_boxes_to_original(network, ratio_pad[:1], orig_shapes)


@pytest.mark.reference
def test_make_anchors_match_reference() -> None:
    from ultralytics.utils.tal import make_anchors as ref_make_anchors

    feats = [torch.zeros(1, 1, h, w) for h, w in ((8, 12), (4, 6), (2, 3))]
    ref_points, ref_strides = ref_make_anchors(feats, torch.tensor([8.0, 16.0, 32.0]), 0.5)
    points, strides = make_anchors([(8, 12), (4, 6), (2, 3)], [8, 16, 32])
    assert torch.equal(points, ref_points) and torch.equal(strides, ref_strides)


@pytest.mark.reference
@pytest.mark.parametrize("kind", ["iou", "giou", "diou", "ciou"])
def test_iou_matches_reference_values_and_gradients(kind: str) -> None:
    from ultralytics.utils.metrics import bbox_iou as ref_bbox_iou

    flags = {"GIoU": kind == "giou", "DIoU": kind == "diou", "CIoU": kind == "ciou"}
    box1, box2 = random_xyxy(50), random_xyxy(50)
    box1[:5] = box2[:5]  # identical pairs
    box2[5:10, 2:] = box2[5:10, :2]  # degenerate (zero-size) boxes
    ours_in = [box1.clone().requires_grad_(), box2.clone().requires_grad_()]
    ref_in = [box1.clone().requires_grad_(), box2.clone().requires_grad_()]
    ours = bbox_iou(*ours_in, kind=kind)
    ref = ref_bbox_iou(*ref_in, xywh=False, **flags).squeeze(-1)
    assert torch.equal(ours, ref)
    ours.sum().backward()
    ref.sum().backward()
    for mine, theirs in zip(ours_in, ref_in):
        assert torch.isfinite(mine.grad).all()
        torch.testing.assert_close(mine.grad, theirs.grad, rtol=1e-5, atol=1e-7)


@pytest.mark.reference
def test_scale_boxes_to_original_matches_reference() -> None:
    from ultralytics.utils.ops import scale_boxes

    boxes = random_xyxy(20, scale=640.0)
    gain, pad_x, pad_y = 640 / 1000, 0.0, 80.0  # 1000x750 letterboxed to 640x640
    ref = scale_boxes((640, 640), boxes.clone(), (750, 1000), ratio_pad=((gain, gain), (pad_x, pad_y)))
    ours = scale_boxes_to_original(boxes, torch.tensor([gain, gain, pad_x, pad_y]), (750, 1000))
    torch.testing.assert_close(ours, ref)
    assert math.isclose(float(ours.max()), float(ref.max()))
