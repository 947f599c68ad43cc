"""Batch-level detection helpers shared by validation, test and predict."""

from __future__ import annotations

from typing import Any

import torch

from yolo11_lightning.boxes import scale_boxes_to_original, xywh_to_xyxy
from yolo11_lightning.postprocess import non_max_suppression


def detect(
    decoded: torch.Tensor,
    batch: dict[str, Any],
    conf: float,
    iou: float,
    max_det: int,
    multi_label: bool = False,
) -> list[torch.Tensor]:
    """NMS on decoded outputs, boxes mapped back to original-image pixels.

    Args:
        decoded: (B, 4 + nc, A) eval-mode output (xywh input pixels, class probabilities).
        batch: the batch dict (``ratio_pad`` (B, 4), ``orig_shapes`` (B, 2)).
        conf: confidence threshold.
        iou: NMS IoU threshold.
        max_det: maximal detections per image.
        multi_label: allow several classes per box (validation, as the reference).

    Returns:
        B tensors (n, 6): ``x1, y1, x2, y2, score, class`` in original pixels.
    """
    detections = non_max_suppression(
        decoded.float(), conf_thres=conf, iou_thres=iou, multi_label=multi_label, max_det=max_det
    )
    ratio_pad = batch["ratio_pad"].to(decoded.device)
    orig_shapes = batch["orig_shapes"].to(decoded.device)
    mapped = []
    for index, detection in enumerate(detections):
        detection = detection.clone()
        detection[:, :4] = scale_boxes_to_original(detection[:, :4], ratio_pad[index], orig_shapes[index])
        mapped.append(detection)
    return mapped


def batch_ground_truth(
    batch: dict[str, Any], input_shape: tuple[int, int] | torch.Size
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Ground-truth boxes of a batch per image, in original pixels.

    Args:
        batch: the batch dict (``targets`` (N, 6) normalised cxcywh, ``ratio_pad``, ``orig_shapes``).
        input_shape: network input ``(height, width)``.

    Returns:
        (boxes, labels): B tensors (m, 4) xyxy original pixels and B tensors (m,) class ids.
    """
    targets = batch["targets"]
    height, width = int(input_shape[0]), int(input_shape[1])
    scale = torch.tensor([width, height, width, height], dtype=targets.dtype, device=targets.device)
    boxes_input = xywh_to_xyxy(targets[:, 2:6] * scale)
    image_index = targets[:, 0].long()
    boxes, labels = [], []
    for index in range(len(batch["image_ids"])):
        mine = image_index == index
        boxes.append(
            scale_boxes_to_original(
                boxes_input[mine], batch["ratio_pad"][index].to(targets.device), batch["orig_shapes"][index]
            )
        )
        labels.append(targets[mine, 1].long())
    return boxes, labels
