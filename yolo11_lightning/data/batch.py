"""The typed batch that travels from the data loaders to training, validation and predict."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch

from yolo11_lightning.boxes import scale_boxes_to_original, xywh_to_xyxy


@dataclass
class Batch:
    """One collated batch of images, their targets and the mapping back to original pixels.

    Lightning moves it to the device through :meth:`to`; a ``DataLoader`` with ``pin_memory`` pins
    it through :meth:`pin_memory`.

    Attributes:
        images: ``uint8 (B, 3, H, W)`` RGB network input (the module divides by 255).
        targets: ``float32 (N, 6)`` rows ``(image_index, class, cx, cy, w, h)``, boxes normalised by
            the network input's width and height (the padded letterbox canvas).
        image_ids: ``int64 (B,)`` index of each image in its split (unique; DDP de-duplication).
        orig_shapes: ``int64 (B, 2)`` original ``(height, width)``.
        ratio_pad: ``float32 (B, 4)`` ``(gain_x, gain_y, pad_x, pad_y)``: input pixel = original
            pixel * gain + pad; ``(1, 1, 0, 0)`` for augmented training samples.
        paths: the image path of each row (for a video: ``"<video path>#<frame index>"``).
        has_labels: whether ``targets`` are ground truth (``False`` for unlabelled predict sources,
            whose ``targets`` are empty).
        originals: predict only: the decoded original ``uint8 (h, w, 3)`` BGR image of each row, when
            the outputs need the pixels (annotated images, crops, video); otherwise ``None``.
        skipped: predict only: names of the source images of this batch that could not be decoded
            (left out of the batch).
    """

    images: torch.Tensor
    targets: torch.Tensor
    image_ids: torch.Tensor
    orig_shapes: torch.Tensor
    ratio_pad: torch.Tensor
    paths: list[str]
    has_labels: bool = True
    originals: list[Any] | None = None
    skipped: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def input_shape(self) -> tuple[int, int]:
        """Network input ``(height, width)``."""
        return int(self.images.shape[-2]), int(self.images.shape[-1])

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """A copy with every tensor on ``device``."""
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> Batch:
        """A copy with every tensor in pinned memory (``DataLoader(pin_memory=True)``)."""
        return self._map(lambda t: t.pin_memory())

    def _map(self, fn) -> Batch:  # noqa: ANN001 - a tensor -> tensor callable
        return replace(
            self,
            images=fn(self.images),
            targets=fn(self.targets),
            image_ids=fn(self.image_ids),
            orig_shapes=fn(self.orig_shapes),
            ratio_pad=fn(self.ratio_pad),
        )

    def ground_truth(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Ground-truth boxes per image in original pixels.

        Returns:
            ``(boxes, labels)``: B tensors ``(m, 4)`` xyxy original pixels and B tensors ``(m,)``
            class ids.
        """
        targets = self.targets
        height, width = self.input_shape
        scale = torch.tensor([width, height, width, height], dtype=targets.dtype, device=targets.device)
        boxes_input = xywh_to_xyxy(targets[:, 2:6] * scale)
        image_index = targets[:, 0].long()
        ratio_pad = self.ratio_pad.to(targets.device)
        orig_shapes = self.orig_shapes.to(targets.device)
        boxes, labels = [], []
        for index in range(len(self)):
            mine = image_index == index
            boxes.append(scale_boxes_to_original(boxes_input[mine], ratio_pad[index], orig_shapes[index]))
            labels.append(targets[mine, 1].long())
        return boxes, labels
