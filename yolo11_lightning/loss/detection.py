"""The YOLO11 detection loss: BCE class loss, CIoU box loss and Distribution Focal Loss.

Per batch: the raw head maps are flattened to (B, 4 * reg_max + nc, A); boxes are decoded from the
DFL bins; targets (normalised ``cx, cy, w, h`` per image) become padded per-image ``xyxy`` lists in
input pixels; the task-aligned assigner picks foreground anchors and soft class targets; then

- class loss: BCE-with-logits against the soft targets, summed over all anchors and classes,
- box loss: ``1 - CIoU`` over foreground anchors, weighted by the anchor's target score,
- DFL: cross-entropy against the two bins around each target distance, linearly weighted,

each divided by the total target score (at least 1), multiplied by its gain. The optimiser sees
the sum times the batch size (as the reference); the components come back detached for logging.
Everything runs in float32, also under autocast; work after assignment touches only the foreground
anchors (the class loss uses ``BCE(x, t) = softplus(x) - t * x`` with ``t`` non-zero only there).

Differences from the reference, by design: padded box rows are marked by an explicit mask (the
reference treats any box with ``x1 + y1 + x2 + y2 <= 0`` as padding, which also ignores real boxes
lying mostly at negative coordinates), and zero-size boxes are dropped before assignment (they
could never get an anchor there either, since no anchor centre is strictly inside them).
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple, Protocol

import torch
import torch.nn.functional as F

from yolo11_lightning.boxes import bbox2dist, bbox_iou, dist2bbox, make_anchors, xywh_to_xyxy
from yolo11_lightning.loss.assigner import Assignment, TaskAlignedAssigner

__all__ = ["DetectionLoss", "LossComponents"]


class LossComponents(NamedTuple):
    """The detached loss terms of a batch, each already multiplied by its gain (what is logged).

    Attributes:
        box: ``1 - CIoU`` box loss, scalar float32.
        cls: BCE class loss, scalar float32.
        dfl: distribution focal loss, scalar float32.
    """

    box: torch.Tensor
    cls: torch.Tensor
    dfl: torch.Tensor

    def total(self) -> torch.Tensor:
        """Sum of the three terms (the per-image loss the reference logs as ``loss``)."""
        return self.box + self.cls + self.dfl

    def as_tensor(self) -> torch.Tensor:
        """``float32 (3,)`` tensor ``(box, cls, dfl)``."""
        return torch.stack(tuple(self))


class _DetectorLike(Protocol):
    nc: int
    reg_max: int
    stride: Any


class DetectionLoss:
    """Loss of the anchor-free YOLO11 detector.

    Args:
        model: Anything with ``nc`` (classes), ``reg_max`` (DFL bins) and ``stride`` (per level,
            e.g. ``tensor([8., 16., 32.])``), read once here.
        box: Gain of the CIoU box loss.
        cls: Gain of the class loss.
        dfl: Gain of the distribution focal loss.
        topk: Positives per box in the assigner.
        alpha: Class-score exponent of the alignment metric.
        beta: IoU exponent of the alignment metric.
        max_pair_elements: Memory budget of the assigner, see :class:`TaskAlignedAssigner`.

    Attributes:
        dropped_targets: Running count of targets dropped for zero or negative width/height.
    """

    def __init__(
        self,
        model: _DetectorLike,
        box: float = 7.5,
        cls: float = 0.5,
        dfl: float = 1.5,
        topk: int = 10,
        alpha: float = 0.5,
        beta: float = 6.0,
        max_pair_elements: int = 2**24,
    ) -> None:
        self.nc = int(model.nc)
        self.reg_max = int(model.reg_max)
        self.strides = tuple(float(s) for s in torch.as_tensor(model.stride).flatten().tolist())
        if not self.strides or min(self.strides) <= 0:
            raise ValueError(f"model.stride must hold positive strides, got {model.stride!r}")
        self.gains = (float(box), float(cls), float(dfl))
        self.assigner = TaskAlignedAssigner(
            self.nc, topk=topk, alpha=alpha, beta=beta, eps=1e-9, max_pair_elements=max_pair_elements
        )
        self.dropped_targets = 0
        self._anchor_cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, preds: list[torch.Tensor] | tuple, targets: torch.Tensor) -> tuple[torch.Tensor, LossComponents]:
        """Compute the loss.

        Args:
            preds: The train-mode head outputs, one (B, 4 * reg_max + nc, H_i, W_i) map per level
                (an eval-mode ``(decoded, maps)`` tuple is accepted too).
            targets: (N, 6) rows ``(image_index, class, cx, cy, w, h)``, boxes normalised to [0, 1]
                by the network input size.

        Returns:
            ``total``: scalar, ``components.total() * batch_size`` with gradient; ``components``:
            the detached box, cls and dfl losses, each already multiplied by its gain.
        """
        maps = self._check_preds(preds)
        with torch.autocast(device_type=maps[0].device.type, enabled=False):
            return self._compute([m.float() for m in maps], targets)

    def _compute(self, maps: list[torch.Tensor], targets: torch.Tensor) -> tuple[torch.Tensor, LossComponents]:
        batch = maps[0].shape[0]
        device = maps[0].device
        shapes = [tuple(m.shape[2:]) for m in maps]
        flat = torch.cat([m.flatten(2) for m in maps], dim=2)  # (B, 4 * reg_max + nc, A)
        pred_dist, pred_logits = flat.split((4 * self.reg_max, self.nc), dim=1)  # (B, 64, A), (B, nc, A)
        anchor_points, stride_tensor = self._anchors(shapes, device)  # (A, 2) cells, (A, 1)

        input_h, input_w = shapes[0][0] * self.strides[0], shapes[0][1] * self.strides[0]
        gt_labels, gt_boxes, gt_mask = self._prepare_targets(targets.to(device), batch, input_h, input_w)

        with torch.no_grad():
            pred_boxes = self._decode(pred_dist.detach().transpose(1, 2), anchor_points)  # (B, A, 4) xyxy, cells
            assignment = self.assigner(
                pred_logits.detach().transpose(1, 2),
                pred_boxes * stride_tensor,
                anchor_points * stride_tensor,
                gt_labels,
                gt_boxes,
                gt_mask,
                grid_shapes=shapes,
                scores_are_logits=True,
            )
        return self._losses(pred_dist, pred_logits, anchor_points, stride_tensor, assignment, batch)

    def _losses(
        self,
        pred_dist: torch.Tensor,
        pred_logits: torch.Tensor,
        anchor_points: torch.Tensor,
        stride_tensor: torch.Tensor,
        assignment: Assignment,
        batch: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The three gained loss terms from the assignment (sparse over foreground anchors)."""
        fg_image, fg_anchor = assignment.fg_mask.nonzero(as_tuple=True)
        fg_weight = assignment.target_weights[fg_image, fg_anchor]  # (n_fg,)
        fg_label = assignment.target_labels[fg_image, fg_anchor]
        score_sum = assignment.target_weights.sum().clamp(min=1)

        # BCE(x, t) summed = sum softplus(x) - sum t * x; t is non-zero only at (fg anchor, its class).
        fg_logit = pred_logits[fg_image, fg_label, fg_anchor]
        cls_loss = (F.softplus(pred_logits).sum() - (fg_logit * fg_weight).sum()) / score_sum

        if fg_image.numel():
            fg_logits = pred_dist[fg_image, :, fg_anchor].reshape(-1, 4, self.reg_max)  # (n_fg, 4, reg_max)
            fg_points = anchor_points[fg_anchor]
            fg_pred = self._decode(fg_logits.view(-1, 4 * self.reg_max), fg_points)  # cells
            fg_target = assignment.target_boxes[fg_image, fg_anchor] / stride_tensor[fg_anchor]  # cells
            ciou = bbox_iou(fg_pred, fg_target, kind="ciou")
            box_loss = ((1.0 - ciou) * fg_weight).sum() / score_sum

            target_dist = bbox2dist(fg_points, fg_target, self.reg_max - 1 - 0.01)  # (n_fg, 4)
            left_bin = target_dist.long()
            left_weight = (left_bin + 1) - target_dist
            log_probs = fg_logits.log_softmax(-1)
            dfl = -(
                log_probs.gather(-1, left_bin.unsqueeze(-1)).squeeze(-1) * left_weight
                + log_probs.gather(-1, (left_bin + 1).unsqueeze(-1)).squeeze(-1) * (1 - left_weight)
            ).mean(-1)
            dfl_loss = (dfl * fg_weight).sum() / score_sum
        else:
            box_loss = dfl_loss = torch.zeros((), device=pred_dist.device)

        components = torch.stack((box_loss * self.gains[0], cls_loss * self.gains[1], dfl_loss * self.gains[2]))
        return components.sum() * batch, LossComponents(*components.detach().unbind())

    def _decode(self, dist_logits: torch.Tensor, anchor_points: torch.Tensor) -> torch.Tensor:
        """(..., 4 * reg_max) bin logits -> (..., 4) ``xyxy`` boxes around ``anchor_points``."""
        bins = dist_logits.reshape(*dist_logits.shape[:-1], 4, self.reg_max).softmax(-1)
        project = torch.arange(self.reg_max, dtype=bins.dtype, device=bins.device)
        return dist2bbox(bins.matmul(project), anchor_points)

    def _anchors(self, shapes: list[tuple[int, ...]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        key = (tuple(shapes), str(device))
        if key not in self._anchor_cache:
            self._anchor_cache[key] = make_anchors(shapes, self.strides, 0.5, torch.float32, device)
        return self._anchor_cache[key]

    def _prepare_targets(
        self, targets: torch.Tensor, batch: int, input_h: float, input_w: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(N, 6) normalised targets -> padded per-image labels (B, M), ``xyxy`` pixels (B, M, 4), mask (B, M).

        Zero- or negative-size boxes are dropped (counted in :attr:`dropped_targets`, warned once);
        invalid image indices, classes or non-finite values raise ``ValueError``.
        """
        device = targets.device
        if targets.dim() != 2 or targets.shape[1] != 6:
            raise ValueError(
                f"targets must be (N, 6) rows (image_index, class, cx, cy, w, h), got shape {tuple(targets.shape)}"
            )
        targets = targets.float()
        if not torch.isfinite(targets).all():
            raise ValueError("targets contain NaN or infinite values")
        image_index, classes = targets[:, 0].long(), targets[:, 1].long()
        if targets.shape[0]:
            if (image_index < 0).any() or (image_index >= batch).any() or (targets[:, 0] != image_index).any():
                raise ValueError(f"target image indices must be integers in [0, {batch}), got {targets[:, 0].unique()}")
            if (classes < 0).any() or (classes >= self.nc).any() or (targets[:, 1] != classes).any():
                raise ValueError(f"target classes must be integers in [0, {self.nc}), got {targets[:, 1].unique()}")

        scale = torch.tensor([input_w, input_h, input_w, input_h], device=device)
        boxes = targets[:, 2:6] * scale  # xywh pixels
        keep = (boxes[:, 2] > 0) & (boxes[:, 3] > 0)
        dropped = int(keep.numel() - keep.sum())
        if dropped:
            if self.dropped_targets == 0:
                warnings.warn(
                    f"DetectionLoss dropped {dropped} target(s) with zero or negative width/height; "
                    "the running count is in DetectionLoss.dropped_targets",
                    stacklevel=3,
                )
            self.dropped_targets += dropped
            image_index, classes, boxes = image_index[keep], classes[keep], boxes[keep]

        counts = torch.bincount(image_index, minlength=batch)
        max_boxes = int(counts.max()) if image_index.numel() else 0
        order = torch.sort(image_index, stable=True).indices
        sorted_image = image_index[order]
        first_of_image = counts.cumsum(0) - counts
        slot = torch.arange(order.numel(), device=device) - first_of_image[sorted_image]

        gt_labels = torch.zeros(batch, max_boxes, dtype=torch.long, device=device)
        gt_boxes = torch.zeros(batch, max_boxes, 4, device=device)
        gt_mask = torch.zeros(batch, max_boxes, dtype=torch.bool, device=device)
        gt_labels[sorted_image, slot] = classes[order]
        gt_boxes[sorted_image, slot] = xywh_to_xyxy(boxes[order])
        gt_mask[sorted_image, slot] = True
        return gt_labels, gt_boxes, gt_mask

    def _check_preds(self, preds: list[torch.Tensor] | tuple) -> list[torch.Tensor]:
        """Validate the head maps and return them as a list."""
        if isinstance(preds, tuple) and len(preds) == 2 and isinstance(preds[1], (list, tuple)):
            preds = preds[1]  # eval-mode (decoded, maps)
        maps = list(preds)
        if len(maps) != len(self.strides):
            raise ValueError(f"expected {len(self.strides)} prediction maps (one per stride), got {len(maps)}")
        channels = 4 * self.reg_max + self.nc
        for level, m in enumerate(maps):
            if m.dim() != 4 or m.shape[1] != channels or m.shape[0] != maps[0].shape[0]:
                raise ValueError(
                    f"prediction map {level} has shape {tuple(m.shape)}, expected (B, {channels}, H, W) "
                    f"with 4 * reg_max + nc = 4 * {self.reg_max} + {self.nc}"
                )
        return maps
