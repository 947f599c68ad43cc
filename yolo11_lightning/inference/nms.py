"""Post-processing: confidence filtering and non-maximum suppression of decoded predictions."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision.ops import batched_nms

from yolo11_lightning.boxes import xywh_to_xyxy

__all__ = ["non_max_suppression"]


def non_max_suppression(
    decoded: torch.Tensor | tuple | list,
    conf_thres: float = 0.25,
    iou_thres: float = 0.7,
    classes: Sequence[int] | None = None,
    agnostic: bool = False,
    multi_label: bool = False,
    max_det: int = 300,
    max_nms: int = 30000,
) -> list[torch.Tensor]:
    """Filter by confidence, then suppress overlapping boxes per image.

    The confidence filter, the best-class / multi-label expansion and the class filter are done
    for the whole batch at once; suppression runs per image with ``torchvision.ops.batched_nms``
    (one group per class, or a single group when ``agnostic``). Use ``conf_thres`` 0.001 and
    ``multi_label=True`` for validation, 0.25 for prediction.

    Args:
        decoded: (B, 4 + nc, A) eval-mode model output: rows 0-3 ``xywh`` in input pixels, then
            class probabilities. An eval-mode ``(decoded, maps)`` tuple is accepted too.
        conf_thres: Keep (box, class) pairs whose score is strictly above this.
        iou_thres: Suppress a box whose IoU with a higher-scoring kept box of the same group is
            above this.
        classes: Keep only these class indices (None: all).
        agnostic: Suppress across classes.
        multi_label: One candidate per (box, class) pair above ``conf_thres`` instead of one per
            box with its best class (ignored when there is a single class).
        max_det: Keep at most this many detections per image.
        max_nms: Before suppression keep at most this many highest-scoring candidates per image.

    Returns:
        One (n, 6) float tensor per image, rows ``(x1, y1, x2, y2, score, class)`` in input pixels,
        sorted by decreasing score.
    """
    if isinstance(decoded, (tuple, list)):
        decoded = decoded[0]
    if not 0.0 <= conf_thres <= 1.0:
        raise ValueError(f"conf_thres must be in [0, 1], got {conf_thres}")
    if not 0.0 <= iou_thres <= 1.0:
        raise ValueError(f"iou_thres must be in [0, 1], got {iou_thres}")
    if decoded.dim() != 3 or decoded.shape[1] < 5:
        raise ValueError(f"decoded must be (B, 4 + nc, A) with nc >= 1, got shape {tuple(decoded.shape)}")

    batch, channels, _ = decoded.shape
    num_classes = channels - 4
    preds = decoded.transpose(1, 2)  # (B, A, 4 + nc) view
    scores = preds[..., 4:]
    multi_label = multi_label and num_classes > 1

    # Candidates for the whole batch: (image, anchor, class, score).
    if multi_label:
        image, anchor, cls = (scores > conf_thres).nonzero(as_tuple=True)  # row-major: anchor, then class
        score = scores[image, anchor, cls]
    else:
        best_score, best_class = scores.max(-1)  # (B, A)
        image, anchor = (best_score > conf_thres).nonzero(as_tuple=True)
        score, cls = best_score[image, anchor], best_class[image, anchor]
    if classes is not None:
        wanted = torch.as_tensor(list(classes), device=decoded.device, dtype=cls.dtype)
        keep = torch.isin(cls, wanted)
        image, anchor, cls, score = image[keep], anchor[keep], cls[keep], score[keep]
    boxes = xywh_to_xyxy(preds[image, anchor, :4])

    output = []
    per_image = torch.bincount(image, minlength=batch).tolist()  # candidates are grouped by image
    for image_boxes, image_scores, image_classes in zip(
        boxes.split(per_image), score.split(per_image), cls.split(per_image)
    ):
        if image_scores.numel() > max_nms:
            top = image_scores.argsort(descending=True)[:max_nms]
            image_boxes, image_scores, image_classes = image_boxes[top], image_scores[top], image_classes[top]
        groups = torch.zeros_like(image_classes) if agnostic else image_classes
        keep = batched_nms(image_boxes, image_scores, groups, iou_thres)[:max_det]
        output.append(
            torch.cat(
                (image_boxes[keep], image_scores[keep, None], image_classes[keep, None].to(image_boxes.dtype)), dim=1
            )
        )
    return output
