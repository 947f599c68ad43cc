"""Post-processing shared by validation, predict, the Python API and exported models.

NMS on the decoded network output, then boxes mapped from network-input pixels back to the
original image's pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from yolo11_lightning.boxes import scale_boxes_to_original
from yolo11_lightning.inference.nms import non_max_suppression


@dataclass(frozen=True)
class NMSSettings:
    """How decoded predictions become detections.

    Attributes:
        conf: confidence threshold (0.001 for validation, 0.25 for predict).
        iou: NMS IoU threshold.
        max_det: maximal detections per image.
        classes: keep only these class ids (``None``: all).
        agnostic: suppress across classes.
        multi_label: one candidate per (box, class) pair above ``conf`` (validation, as the reference).
    """

    conf: float = 0.25
    iou: float = 0.7
    max_det: int = 300
    classes: Sequence[int] | None = None
    agnostic: bool = False
    multi_label: bool = False


def detect(
    decoded: torch.Tensor, ratio_pad: torch.Tensor, orig_shapes: torch.Tensor, settings: NMSSettings
) -> list[torch.Tensor]:
    """NMS on decoded outputs, boxes mapped back to original-image pixels.

    Args:
        decoded: ``(B, 4 + nc, A)`` eval-mode output (xywh input pixels, class probabilities).
        ratio_pad: ``(B, 4)`` ``(gain_x, gain_y, pad_x, pad_y)`` of each image's letterbox.
        orig_shapes: ``(B, 2)`` original ``(height, width)``.
        settings: thresholds and NMS options.

    Returns:
        B tensors ``(n, 6)``: ``x1, y1, x2, y2, score, class`` in original pixels, by decreasing score.
    """
    detections = non_max_suppression(
        decoded.float(),
        conf_thres=settings.conf,
        iou_thres=settings.iou,
        classes=settings.classes,
        agnostic=settings.agnostic,
        multi_label=settings.multi_label,
        max_det=settings.max_det,
    )
    ratio_pad = ratio_pad.to(decoded.device)
    orig_shapes = orig_shapes.to(decoded.device)
    mapped = []
    for index, detection in enumerate(detections):
        detection = detection.clone()
        detection[:, :4] = scale_boxes_to_original(detection[:, :4], ratio_pad[index], orig_shapes[index])
        mapped.append(detection)
    return mapped
