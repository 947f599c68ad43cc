"""Task-aligned label assignment (TOOD): which anchors learn which ground-truth box, and how much.

For every valid ground-truth box the candidates are the anchor centres strictly inside it. Each
candidate gets the alignment metric ``score ** alpha * CIoU ** beta`` (``score``: the predicted
probability of the box's class at that anchor; CIoU clamped at 0). The ``topk`` anchors by metric
(ties broken by ``torch.topk`` on the full anchor row, as the reference does) that are also
candidates become positives. An anchor positive for several boxes keeps the box it overlaps most
(first one on ties). The target score of a positive anchor is its metric rescaled so that, per box,
the best anchor's score equals the best anchor IoU of that box.

The inside-box mask and the metric rows for top-k are dense (image, box, anchor) tensors of
``B * M * A`` elements, like the reference; when that exceeds ``max_pair_elements`` the batch is
processed in chunks of images, so memory stays bounded for images with hundreds of boxes. The IoU
and score are computed only for candidate pairs, and everything after the top-k selection works on
the sparse list of positive pairs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from yolo11_lightning.boxes import bbox_iou

__all__ = ["Assignment", "TaskAlignedAssigner"]


@dataclass
class Assignment:
    """The result of label assignment for a batch.

    Attributes:
        fg_mask: (B, A) bool, anchors that learn a box.
        target_gt_idx: (B, A) int64, index of the assigned box in the padded box list (0 for
            background anchors).
        target_labels: (B, A) int64, class of the assigned box (of box 0 for background anchors;
            ``num_classes`` everywhere when the batch has no boxes).
        target_boxes: (B, A, 4) float32, ``xyxy`` of the assigned box (of box 0 for background).
        target_weights: (B, A) float32, normalised alignment score of positives, 0 elsewhere.
        num_classes: Number of classes, for :attr:`target_scores`.
    """

    fg_mask: torch.Tensor
    target_gt_idx: torch.Tensor
    target_labels: torch.Tensor
    target_boxes: torch.Tensor
    target_weights: torch.Tensor
    num_classes: int

    @property
    def target_scores(self) -> torch.Tensor:
        """(B, A, num_classes) dense soft targets: ``target_weights`` at the assigned class."""
        scores = self.target_weights.new_zeros(*self.target_weights.shape, self.num_classes)
        labels = self.target_labels.clamp(0, self.num_classes - 1).unsqueeze(-1)
        return scores.scatter_(-1, labels, self.target_weights.unsqueeze(-1))


class TaskAlignedAssigner:
    """Task-aligned assigner.

    Args:
        num_classes: Number of classes.
        topk: Positives kept per box, at most.
        alpha: Exponent of the class score in the alignment metric.
        beta: Exponent of the IoU in the alignment metric.
        eps: Numerical guard (inside-box margin and score normalisation).
        max_pair_elements: Largest ``images * boxes * anchors`` processed at once; larger batches
            are split into chunks of images.
    """

    def __init__(
        self,
        num_classes: int,
        topk: int = 10,
        alpha: float = 0.5,
        beta: float = 6.0,
        eps: float = 1e-9,
        max_pair_elements: int = 2**24,
    ) -> None:
        if num_classes < 1 or topk < 1 or max_pair_elements < 1:
            raise ValueError("num_classes, topk and max_pair_elements must be positive")
        self.num_classes = num_classes
        self.topk = topk
        self.alpha = alpha
        self.beta = beta
        self.eps = eps
        self.max_pair_elements = max_pair_elements

    @torch.no_grad()
    def __call__(
        self,
        pred_scores: torch.Tensor,
        pred_boxes: torch.Tensor,
        anchor_points: torch.Tensor,
        gt_labels: torch.Tensor,
        gt_boxes: torch.Tensor,
        gt_mask: torch.Tensor,
        grid_shapes: Sequence[tuple[int, int]] | None = None,
        scores_are_logits: bool = False,
    ) -> Assignment:
        """Assign ground-truth boxes to anchors.

        Args:
            pred_scores: (B, A, C) predicted class probabilities (a strided view is fine).
            pred_boxes: (B, A, 4) predicted ``xyxy`` boxes, same unit as ``gt_boxes``.
            anchor_points: (A, 2) anchor centres, same unit as ``gt_boxes``.
            gt_labels: (B, M) class of each padded box (any numeric dtype).
            gt_boxes: (B, M, 4) ``xyxy`` boxes, zero rows for padding.
            gt_mask: (B, M) bool, True for real boxes.
            grid_shapes: Optional ``(height, width)`` per level when ``anchor_points`` are the
                concatenated row-major level grids (as :func:`~yolo11_lightning.boxes.make_anchors`
                builds them); the inside-box test is then done per axis, which is much cheaper.
                The result is the same.
            scores_are_logits: ``pred_scores`` are logits; the sigmoid is then applied only to
                the few (anchor, class) scores the metric needs.

        Returns:
            The :class:`Assignment`, all tensors on the input device, floats in float32.
        """
        batch, num_anchors, num_classes = pred_scores.shape
        num_boxes = gt_boxes.shape[1]
        self._check_inputs(pred_scores, pred_boxes, anchor_points, gt_labels, gt_boxes, gt_mask)
        if grid_shapes is not None and sum(h * w for h, w in grid_shapes) != num_anchors:
            raise ValueError(f"grid_shapes {list(grid_shapes)} do not add up to {num_anchors} anchors")
        pred_scores, pred_boxes = pred_scores.float(), pred_boxes.float()
        anchor_points, gt_boxes = anchor_points.float(), gt_boxes.float()
        gt_labels, gt_mask = gt_labels.long(), gt_mask.bool()

        if num_boxes == 0 or batch == 0:
            return self._background(batch, num_anchors, pred_scores.device)
        images_per_chunk = max(1, self.max_pair_elements // (num_boxes * num_anchors))
        if images_per_chunk >= batch:
            return self._assign(
                pred_scores, pred_boxes, anchor_points, gt_labels, gt_boxes, gt_mask, grid_shapes, scores_are_logits
            )
        parts = [
            self._assign(
                pred_scores[start : start + images_per_chunk],
                pred_boxes[start : start + images_per_chunk],
                anchor_points,
                gt_labels[start : start + images_per_chunk],
                gt_boxes[start : start + images_per_chunk],
                gt_mask[start : start + images_per_chunk],
                grid_shapes,
                scores_are_logits,
            )
            for start in range(0, batch, images_per_chunk)
        ]
        return Assignment(
            fg_mask=torch.cat([p.fg_mask for p in parts]),
            target_gt_idx=torch.cat([p.target_gt_idx for p in parts]),
            target_labels=torch.cat([p.target_labels for p in parts]),
            target_boxes=torch.cat([p.target_boxes for p in parts]),
            target_weights=torch.cat([p.target_weights for p in parts]),
            num_classes=self.num_classes,
        )

    def _assign(
        self,
        pred_scores: torch.Tensor,
        pred_boxes: torch.Tensor,
        anchor_points: torch.Tensor,
        gt_labels: torch.Tensor,
        gt_boxes: torch.Tensor,
        gt_mask: torch.Tensor,
        grid_shapes: Sequence[tuple[int, int]] | None,
        scores_are_logits: bool,
    ) -> Assignment:
        """Assign one chunk of images (the dense pair tensors fit the budget)."""
        batch, num_anchors = pred_boxes.shape[:2]
        num_boxes = gt_boxes.shape[1]
        device = pred_boxes.device

        in_box = self._inside_boxes(anchor_points, gt_boxes, gt_mask, grid_shapes)  # (b, M, A) bool

        # Alignment metric on the candidate pairs only, scattered into dense (b, M, A) rows.
        pair_flat = in_box.view(-1).nonzero().squeeze(1)  # row-major over (b, M, A)
        pair_anchor = pair_flat % num_anchors
        pair_box = pair_flat // num_anchors  # b * M + m
        pair_image = pair_box // num_boxes
        pair_labels = gt_labels.view(-1)[pair_box]
        pair_iou = bbox_iou(gt_boxes.view(-1, 4)[pair_box], pred_boxes[pair_image, pair_anchor], kind="ciou")
        pair_iou = pair_iou.clamp_(0)
        pair_score = pred_scores[pair_image, pair_anchor, pair_labels]
        if scores_are_logits:
            pair_score = pair_score.sigmoid()
        overlaps = torch.zeros(batch, num_boxes, num_anchors, device=device)
        overlaps.view(-1)[pair_flat] = pair_iou
        metric = torch.zeros(batch, num_boxes, num_anchors, device=device)
        metric.view(-1)[pair_flat] = pair_score.pow(self.alpha) * pair_iou.pow(self.beta)

        # Top-k anchors per box (on the full row, so ties resolve as in the reference), kept if candidates.
        topk_idx = metric.topk(min(self.topk, num_anchors), dim=-1).indices  # (b, M, k)
        is_positive = in_box.gather(-1, topk_idx)  # (b, M, k)
        pos_b, pos_m, pos_k = is_positive.nonzero(as_tuple=True)
        pos_anchor_flat = pos_b * num_anchors + topk_idx[pos_b, pos_m, pos_k]  # index into (b * A)

        # One box per anchor: an anchor claimed by several boxes keeps the highest overlap (first on ties).
        claims = torch.bincount(pos_anchor_flat, minlength=batch * num_anchors)  # boxes claiming each anchor
        target_gt_idx = torch.zeros(batch * num_anchors, dtype=torch.long, device=device)
        target_gt_idx[pos_anchor_flat] = pos_m
        contested = (claims > 1).nonzero().squeeze(1)
        if contested.numel():
            contested_image, contested_anchor = contested // num_anchors, contested % num_anchors
            target_gt_idx[contested] = overlaps[contested_image, :, contested_anchor].argmax(-1)
        fg_mask = claims > 0

        # Normalise: per box, scale the metric so its best anchor gets the box's best IoU.
        fg_flat = fg_mask.nonzero().squeeze(1)
        fg_image, fg_anchor = fg_flat // num_anchors, fg_flat % num_anchors
        fg_box = target_gt_idx[fg_flat]
        fg_metric = metric[fg_image, fg_box, fg_anchor]
        fg_overlap = overlaps[fg_image, fg_box, fg_anchor]
        fg_box_flat = fg_image * num_boxes + fg_box
        best_metric = torch.zeros(batch * num_boxes, device=device).scatter_reduce_(0, fg_box_flat, fg_metric, "amax")
        best_overlap = torch.zeros(batch * num_boxes, device=device).scatter_reduce_(0, fg_box_flat, fg_overlap, "amax")
        target_weights = torch.zeros(batch * num_anchors, device=device)
        target_weights[fg_flat] = fg_metric * best_overlap[fg_box_flat] / (best_metric[fg_box_flat] + self.eps)

        target_gt_idx = target_gt_idx.view(batch, num_anchors)
        target_labels = gt_labels.gather(1, target_gt_idx).clamp_(0)
        target_boxes = gt_boxes.gather(1, target_gt_idx.unsqueeze(-1).expand(-1, -1, 4))
        return Assignment(
            fg_mask=fg_mask.view(batch, num_anchors),
            target_gt_idx=target_gt_idx,
            target_labels=target_labels,
            target_boxes=target_boxes,
            target_weights=target_weights.view(batch, num_anchors),
            num_classes=self.num_classes,
        )

    def _inside_boxes(
        self,
        anchor_points: torch.Tensor,
        gt_boxes: torch.Tensor,
        gt_mask: torch.Tensor,
        grid_shapes: Sequence[tuple[int, int]] | None,
    ) -> torch.Tensor:
        """(b, M, A) bool: anchor centre inside a real box by more than eps on all four sides."""
        x1, y1, x2, y2 = gt_boxes.unsqueeze(-1).unbind(-2)  # each (b, M, 1)
        if grid_shapes is None:
            anchor_x, anchor_y = anchor_points.unbind(-1)  # each (A,)
            in_box = (anchor_x - x1) > self.eps
            in_box &= (anchor_y - y1) > self.eps
            in_box &= (x2 - anchor_x) > self.eps
            in_box &= (y2 - anchor_y) > self.eps
            return in_box.logical_and_(gt_mask.unsqueeze(-1))
        # Per level: inside = inside_rows (b, M, H) outer-and inside_columns (b, M, W).
        in_box = torch.empty(*gt_boxes.shape[:2], anchor_points.shape[0], dtype=torch.bool, device=gt_boxes.device)
        start = 0
        for height, width in grid_shapes:
            level = anchor_points[start : start + height * width]
            column_x, row_y = level[:width, 0], level[::width, 1]
            inside_columns = ((column_x - x1) > self.eps) & ((x2 - column_x) > self.eps)
            inside_rows = ((row_y - y1) > self.eps) & ((y2 - row_y) > self.eps) & gt_mask.unsqueeze(-1)
            out = in_box[..., start : start + height * width].unflatten(-1, (height, width))
            torch.logical_and(inside_rows.unsqueeze(-1), inside_columns.unsqueeze(-2), out=out)
            start += height * width
        return in_box

    def _background(self, batch: int, num_anchors: int, device: torch.device) -> Assignment:
        """Assignment for a batch without any box: every anchor is background."""
        return Assignment(
            fg_mask=torch.zeros(batch, num_anchors, dtype=torch.bool, device=device),
            target_gt_idx=torch.zeros(batch, num_anchors, dtype=torch.long, device=device),
            target_labels=torch.full((batch, num_anchors), self.num_classes, dtype=torch.long, device=device),
            target_boxes=torch.zeros(batch, num_anchors, 4, device=device),
            target_weights=torch.zeros(batch, num_anchors, device=device),
            num_classes=self.num_classes,
        )

    def _check_inputs(
        self,
        pred_scores: torch.Tensor,
        pred_boxes: torch.Tensor,
        anchor_points: torch.Tensor,
        gt_labels: torch.Tensor,
        gt_boxes: torch.Tensor,
        gt_mask: torch.Tensor,
    ) -> None:
        """Raise a clear error on inconsistent shapes or out-of-range classes."""
        batch, num_anchors, num_classes = pred_scores.shape
        num_boxes = gt_boxes.shape[1] if gt_boxes.dim() == 3 else -1
        expected = {
            "pred_boxes": (pred_boxes, (batch, num_anchors, 4)),
            "anchor_points": (anchor_points, (num_anchors, 2)),
            "gt_labels": (gt_labels, (batch, num_boxes)),
            "gt_boxes": (gt_boxes, (batch, num_boxes, 4)),
            "gt_mask": (gt_mask, (batch, num_boxes)),
        }
        for name, (tensor, shape) in expected.items():
            if tuple(tensor.shape) != shape:
                raise ValueError(f"{name} has shape {tuple(tensor.shape)}, expected {shape}")
        if num_classes != self.num_classes:
            raise ValueError(f"pred_scores has {num_classes} classes, the assigner {self.num_classes}")
        real_labels = gt_labels[gt_mask.bool()]
        if real_labels.numel() and (real_labels.min() < 0 or real_labels.max() >= num_classes):
            low, high = int(real_labels.min()), int(real_labels.max())
            raise ValueError(f"class labels must be in [0, {num_classes}), got {low}..{high}")
