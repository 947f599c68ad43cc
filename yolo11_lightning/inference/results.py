"""Per-image detection results, as returned by predict and the Python API."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class Detections:
    """The detections of one image, in its original pixels.

    Attributes:
        path: the image's path (``"<video>#<frame>"`` for a video frame; ``""`` for an in-memory image).
        image_id: index of the image in its source (input order).
        boxes: ``float32 (n, 4)`` ``x1, y1, x2, y2`` in original-image pixels, by decreasing score.
        scores: ``float32 (n,)`` confidences.
        class_ids: ``int64 (n,)`` class indices.
        orig_shape: original ``(height, width)``.
        names: class id -> name of the model that produced them.
    """

    path: str
    image_id: int
    boxes: torch.Tensor
    scores: torch.Tensor
    class_ids: torch.Tensor
    orig_shape: tuple[int, int]
    names: dict[int, str] = field(default_factory=dict)

    @classmethod
    def from_rows(
        cls, rows: torch.Tensor, path: str, image_id: int, orig_shape: tuple[int, int], names: dict[int, str]
    ) -> Detections:
        """From the ``(n, 6)`` rows ``x1, y1, x2, y2, score, class`` of :func:`~.postprocess.detect`."""
        rows = rows.detach().cpu()
        return cls(
            path=path,
            image_id=image_id,
            boxes=rows[:, :4].float(),
            scores=rows[:, 4].float(),
            class_ids=rows[:, 5].long(),
            orig_shape=(int(orig_shape[0]), int(orig_shape[1])),
            names=names,
        )

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @property
    def class_names(self) -> list[str]:
        """The name of each detection's class."""
        return [self.names.get(int(c), str(int(c))) for c in self.class_ids.tolist()]
