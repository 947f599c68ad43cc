"""Box maths, batched: anchors, distance <-> box, format conversions, IoU family, clipping and
mapping between the letterboxed network input and the original image.

Conventions: ``xyxy`` is ``(x1, y1, x2, y2)``, ``xywh`` is ``(cx, cy, w, h)``; the box is always
the last dimension (size 4) and every leading dimension is a batch dimension that broadcasts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = [
    "bbox2dist",
    "bbox_iou",
    "box_iou_matrix",
    "clip_boxes",
    "dist2bbox",
    "make_anchors",
    "scale_boxes_to_input",
    "scale_boxes_to_original",
    "xywh_to_xyxy",
    "xyxy_to_xywh",
]

IOU_KINDS = ("iou", "giou", "diou", "ciou")


def make_anchors(
    feature_shapes: Sequence[tuple[int, int]],
    strides: Sequence[float] | torch.Tensor,
    offset: float = 0.5,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Anchor centres of every feature-map cell and the stride of their level.

    Args:
        feature_shapes: ``(height, width)`` of each level, in level order (P3, P4, P5).
        strides: Stride of each level in input pixels.
        offset: Position of the centre inside a cell (0.5: the cell centre).
        dtype: Output dtype.
        device: Output device.

    Returns:
        ``anchor_points`` (A, 2) as ``(x, y)`` in cells of their own level, row-major within a
        level, levels concatenated; ``stride_tensor`` (A, 1).
    """
    if len(feature_shapes) != len(strides):
        raise ValueError(f"got {len(feature_shapes)} feature shapes but {len(strides)} strides")
    points, level_strides = [], []
    for (height, width), stride in zip(feature_shapes, strides):
        xs = torch.arange(int(width), dtype=dtype, device=device) + offset
        ys = torch.arange(int(height), dtype=dtype, device=device) + offset
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack((grid_x, grid_y), dim=-1).view(-1, 2))
        level_strides.append(torch.full((int(height) * int(width), 1), float(stride), dtype=dtype, device=device))
    return torch.cat(points), torch.cat(level_strides)


def dist2bbox(distances: torch.Tensor, anchor_points: torch.Tensor, xywh: bool = False) -> torch.Tensor:
    """Decode ``(left, top, right, bottom)`` distances from anchor points into boxes.

    Args:
        distances: (..., 4) non-negative distances.
        anchor_points: (..., 2) anchor centres, broadcastable against ``distances``.
        xywh: Return ``xywh`` instead of ``xyxy``.

    Returns:
        (..., 4) boxes in the unit of the inputs.
    """
    left_top, right_bottom = distances.chunk(2, dim=-1)
    top_left = anchor_points - left_top
    bottom_right = anchor_points + right_bottom
    if xywh:
        return torch.cat(((top_left + bottom_right) / 2, bottom_right - top_left), dim=-1)
    return torch.cat((top_left, bottom_right), dim=-1)


def bbox2dist(anchor_points: torch.Tensor, boxes_xyxy: torch.Tensor, max_distance: float) -> torch.Tensor:
    """Encode boxes as ``(left, top, right, bottom)`` distances from anchor points, clamped.

    Args:
        anchor_points: (..., 2) anchor centres.
        boxes_xyxy: (..., 4) boxes, broadcastable against ``anchor_points``.
        max_distance: Upper clamp of every distance (the DFL loss uses ``reg_max - 1 - 0.01``).

    Returns:
        (..., 4) distances in ``[0, max_distance]``.
    """
    top_left, bottom_right = boxes_xyxy.chunk(2, dim=-1)
    return torch.cat((anchor_points - top_left, bottom_right - anchor_points), dim=-1).clamp_(0, max_distance)


def xywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """(..., 4) ``(cx, cy, w, h)`` -> (..., 4) ``(x1, y1, x2, y2)``."""
    _check_last_dim(boxes)
    centre, half_size = boxes[..., :2], boxes[..., 2:] / 2
    return torch.cat((centre - half_size, centre + half_size), dim=-1)


def xyxy_to_xywh(boxes: torch.Tensor) -> torch.Tensor:
    """(..., 4) ``(x1, y1, x2, y2)`` -> (..., 4) ``(cx, cy, w, h)``."""
    _check_last_dim(boxes)
    top_left, bottom_right = boxes[..., :2], boxes[..., 2:]
    return torch.cat(((top_left + bottom_right) / 2, bottom_right - top_left), dim=-1)


def bbox_iou(box1: torch.Tensor, box2: torch.Tensor, kind: str = "iou", eps: float = 1e-7) -> torch.Tensor:
    """Element-wise IoU (or GIoU, DIoU, CIoU) of two broadcastable sets of ``xyxy`` boxes.

    ``eps`` is added to both heights (so the CIoU aspect term never divides by zero), to the union,
    to the squared enclosing diagonal and to the enclosing area, the way the reference does it;
    the CIoU trade-off factor ``alpha`` is treated as a constant for the gradient.

    Args:
        box1: (..., 4) boxes.
        box2: (..., 4) boxes, broadcastable against ``box1``.
        kind: One of ``"iou"``, ``"giou"``, ``"diou"``, ``"ciou"``.
        eps: Numerical guard.

    Returns:
        (...) the broadcast shape of the leading dimensions.
    """
    if kind not in IOU_KINDS:
        raise ValueError(f"unknown IoU kind {kind!r}; expected one of {IOU_KINDS}")
    _check_last_dim(box1)
    _check_last_dim(box2)
    b1_x1, b1_y1, b1_x2, b1_y2 = box1.unbind(-1)
    b2_x1, b2_y1, b2_x2, b2_y2 = box2.unbind(-1)
    w1, h1 = b1_x2 - b1_x1, b1_y2 - b1_y1 + eps
    w2, h2 = b2_x2 - b2_x1, b2_y2 - b2_y1 + eps

    inter = (b1_x2.minimum(b2_x2) - b1_x1.maximum(b2_x1)).clamp(0) * (
        b1_y2.minimum(b2_y2) - b1_y1.maximum(b2_y1)
    ).clamp(0)
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
    if kind == "iou":
        return iou

    enclosing_w = b1_x2.maximum(b2_x2) - b1_x1.minimum(b2_x1)
    enclosing_h = b1_y2.maximum(b2_y2) - b1_y1.minimum(b2_y1)
    if kind == "giou":
        enclosing_area = enclosing_w * enclosing_h + eps
        return iou - (enclosing_area - union) / enclosing_area

    diagonal_sq = enclosing_w.pow(2) + enclosing_h.pow(2) + eps
    centre_dist_sq = ((b2_x1 + b2_x2 - b1_x1 - b1_x2).pow(2) + (b2_y1 + b2_y2 - b1_y1 - b1_y2).pow(2)) / 4
    if kind == "diou":
        return iou - centre_dist_sq / diagonal_sq

    aspect = (4 / math.pi**2) * ((w2 / h2).atan() - (w1 / h1).atan()).pow(2)
    with torch.no_grad():
        trade_off = aspect / (aspect - iou + (1 + eps))
    return iou - (centre_dist_sq / diagonal_sq + aspect * trade_off)


def box_iou_matrix(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Pairwise IoU of two sets of ``xyxy`` boxes.

    Args:
        boxes1: (..., N, 4).
        boxes2: (..., M, 4).
        eps: Guard added to the union.

    Returns:
        (..., N, M) IoU matrix (computed in float32 at least).
    """
    boxes1, boxes2 = boxes1.float(), boxes2.float()
    top_left = torch.maximum(boxes1[..., :, None, :2], boxes2[..., None, :, :2])
    bottom_right = torch.minimum(boxes1[..., :, None, 2:], boxes2[..., None, :, 2:])
    inter = (bottom_right - top_left).clamp(0).prod(-1)
    area1 = (boxes1[..., 2:] - boxes1[..., :2]).prod(-1)
    area2 = (boxes2[..., 2:] - boxes2[..., :2]).prod(-1)
    return inter / (area1[..., :, None] + area2[..., None, :] - inter + eps)


def clip_boxes(boxes_xyxy: torch.Tensor, shape: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """Clip ``xyxy`` boxes to ``[0, width] x [0, height]`` (out of place).

    Args:
        boxes_xyxy: (..., N, 4) or (N, 4) boxes.
        shape: ``(height, width)``; a tensor of shape (2,) or, for batched boxes (B, N, 4), (B, 2).

    Returns:
        Clipped boxes, same shape as ``boxes_xyxy``.
    """
    _check_last_dim(boxes_xyxy)
    size = _per_box(torch.as_tensor(shape, dtype=boxes_xyxy.dtype, device=boxes_xyxy.device), boxes_xyxy, 2)
    height, width = size[..., 0:1], size[..., 1:2]
    upper = torch.cat((width, height, width, height), dim=-1)
    return torch.minimum(boxes_xyxy.clamp(min=0), upper)


def scale_boxes_to_original(
    boxes_xyxy: torch.Tensor,
    ratio_pad: Sequence[float] | torch.Tensor,
    orig_shape: Sequence[int] | torch.Tensor,
    clip: bool = True,
) -> torch.Tensor:
    """Map ``xyxy`` boxes from letterboxed network-input pixels back to original-image pixels.

    ``input = original * gain + pad`` per axis, so ``original = (input - pad) / gain``.

    Args:
        boxes_xyxy: (N, 4) boxes of one image, or (B, N, 4) for a batch.
        ratio_pad: ``(gain_x, gain_y, pad_x, pad_y)``: (4,) or, for batched boxes, (B, 4).
        orig_shape: Original ``(height, width)``: (2,) or (B, 2).
        clip: Clip the result to the original image.

    Returns:
        Boxes in original-image pixels, same shape as ``boxes_xyxy``.
    """
    _check_last_dim(boxes_xyxy)
    rp = _per_box(torch.as_tensor(ratio_pad, dtype=boxes_xyxy.dtype, device=boxes_xyxy.device), boxes_xyxy, 4)
    gain = torch.cat((rp[..., 0:2], rp[..., 0:2]), dim=-1)  # gx, gy, gx, gy
    pad = torch.cat((rp[..., 2:4], rp[..., 2:4]), dim=-1)  # px, py, px, py
    boxes = (boxes_xyxy - pad) / gain
    return clip_boxes(boxes, orig_shape) if clip else boxes


def scale_boxes_to_input(boxes_xyxy: torch.Tensor, ratio_pad: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """Map ``xyxy`` boxes from original-image pixels to letterboxed network-input pixels.

    The inverse of :func:`scale_boxes_to_original` (without clipping): ``input = original * gain + pad``.

    Args:
        boxes_xyxy: (N, 4) or (B, N, 4) boxes in original pixels.
        ratio_pad: ``(gain_x, gain_y, pad_x, pad_y)``: (4,) or (B, 4).

    Returns:
        Boxes in network-input pixels, same shape as ``boxes_xyxy``.
    """
    _check_last_dim(boxes_xyxy)
    rp = _per_box(torch.as_tensor(ratio_pad, dtype=boxes_xyxy.dtype, device=boxes_xyxy.device), boxes_xyxy, 4)
    gain = torch.cat((rp[..., 0:2], rp[..., 0:2]), dim=-1)
    pad = torch.cat((rp[..., 2:4], rp[..., 2:4]), dim=-1)
    return boxes_xyxy * gain + pad


def _per_box(values: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Shape per-image ``values`` (size,) or (B, size) so they broadcast over (..., N, 4) boxes."""
    if values.shape[-1:] != (size,):
        raise ValueError(f"expected a last dimension of {size}, got shape {tuple(values.shape)}")
    if values.dim() == 1:
        return values
    if values.dim() != boxes.dim() - 1 or values.shape[:-1] != boxes.shape[:-2]:
        raise ValueError(
            f"per-image values of shape {tuple(values.shape)} do not match boxes of shape {tuple(boxes.shape)}; "
            f"expected {tuple(boxes.shape[:-2]) + (size,)}"
        )
    return values.unsqueeze(-2)


def _check_last_dim(boxes: torch.Tensor) -> None:
    if boxes.shape[-1:] != (4,):
        raise ValueError(f"boxes must have a last dimension of 4, got shape {tuple(boxes.shape)}")
