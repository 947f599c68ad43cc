"""Epoch means of the training losses that survive a mid-epoch resume.

Lightning keeps ``on_epoch`` means in its result collection, which checkpoints do not carry: an
epoch resumed in the middle (a step or preemption checkpoint) would log the mean of its remaining
batches only. :class:`EpochLossMeans` keeps the image-weighted sums of the loss terms itself,
saves them in the checkpoint, and gives the mean over every image of the epoch (all processes).
"""

from __future__ import annotations

from typing import Any

import torch

NAMES = ("box", "cls", "dfl")


class EpochLossMeans:
    """Image-weighted sums ``(box, cls, dfl, images)`` of one training epoch (float64)."""

    def __init__(self) -> None:
        self.epoch = -1
        self.sums = torch.zeros(len(NAMES) + 1, dtype=torch.float64)

    def start(self, epoch: int) -> None:
        """Begin ``epoch``; sums restored from a checkpoint of the same epoch are kept."""
        if epoch != self.epoch:
            self.epoch = epoch
            self.sums.zero_()

    def update(self, components: torch.Tensor, images: int) -> None:
        """Add one batch: ``components`` ``(3,)`` per-batch loss terms, ``images`` in the batch."""
        batch = torch.cat([components.detach().double().cpu() * images, torch.tensor([images], dtype=torch.float64)])
        self.sums += batch

    def means(self, reduce_sum: Any = None) -> dict[str, torch.Tensor]:
        """``{"loss", "box_loss", "cls_loss", "dfl_loss"}`` means over the epoch's images.

        Args:
            reduce_sum: callable summing a tensor over processes (``None``: this process only).
        """
        sums = self.sums if reduce_sum is None else reduce_sum(self.sums.clone())
        if float(sums[-1]) <= 0:
            return {}
        means = (sums[:-1] / sums[-1]).float()
        result = {f"{name}_loss": value for name, value in zip(NAMES, means)}
        result["loss"] = means.sum()
        return result

    def state_dict(self) -> dict[str, Any]:
        """The epoch and its sums (saved in checkpoints)."""
        return {"epoch": self.epoch, "sums": self.sums.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output."""
        if state:
            self.epoch = int(state["epoch"])
            self.sums = state["sums"].to(torch.float64).clone()
