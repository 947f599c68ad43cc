"""Auto batch size (``--data.batch_size -1``): the largest batch that fits a fraction of the GPU memory.

Found by trial: batch sizes 1, 2, 4, ... are run (forward and backward of the training loss on
``imgsz`` images) and their peak memory measured, until one exceeds ``fraction`` of the device's
memory or runs out of memory; the largest one that fitted is used. On the CPU there is no memory
to fit, so asking for it is a user error with a clear message.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from yolo11_lightning.training.errors import UserError

AUTO_BATCH = -1
"""The ``batch_size`` value that asks for the auto batch size."""

DEFAULT_FRACTION = 0.6
"""Fraction of the GPU memory the chosen batch may use (the reference's default)."""


def largest_fitting_batch(
    peak_memory: Callable[[int], int],
    total_memory: int,
    fraction: float = DEFAULT_FRACTION,
    max_batch: int = 1024,
) -> int:
    """The largest power-of-two batch whose measured peak memory stays under ``fraction * total_memory``.

    Args:
        peak_memory: runs one training step at a batch size and returns its peak memory in bytes
            (raises ``torch.OutOfMemoryError`` when it does not fit).
        total_memory: the device's memory in bytes.
        fraction: the share of ``total_memory`` the batch may use.
        max_batch: the largest batch size tried.

    Returns:
        The batch size (at least 1).

    Raises:
        UserError: if even a batch of 1 does not fit.
    """
    limit = fraction * total_memory
    best = 0
    batch = 1
    while batch <= max_batch:
        try:
            used = peak_memory(batch)
        except torch.OutOfMemoryError:
            break
        if used > limit:
            break
        best = batch
        batch *= 2
    if best == 0:
        raise UserError(
            f"auto batch: even a batch of 1 needs more than {fraction:.0%} of the GPU memory ({limit / 2**30:.1f} GiB)",
            hint="use a smaller --data.imgsz or model",
        )
    return best


def cuda_peak_memory_probe(
    model: nn.Module, loss_fn: Callable[..., tuple[torch.Tensor, object]], imgsz: int, device: torch.device
) -> Callable[[int], int]:
    """A ``peak_memory`` function for :func:`largest_fitting_batch` that trains one step on ``device``.

    Args:
        model: the network (in train mode, on ``device``).
        loss_fn: the detection loss (maps, targets) -> (total, components).
        imgsz: square training image size.
        device: a CUDA device.
    """

    def probe(batch: int) -> int:
        model.zero_grad(set_to_none=True)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        images = torch.rand(batch, 3, imgsz, imgsz, device=device)
        targets = torch.tensor([[i, 0, 0.5, 0.5, 0.2, 0.2] for i in range(batch)], device=device)
        try:
            total, _ = loss_fn(model(images), targets)
            total.backward()
            torch.cuda.synchronize(device)
            return int(torch.cuda.max_memory_allocated(device))
        finally:
            model.zero_grad(set_to_none=True)
            del images, targets

    return probe


def cpu_auto_batch_error() -> UserError:
    """The error for ``--data.batch_size -1`` without a CUDA device."""
    return UserError(
        "--data.batch_size -1 (auto batch) needs a CUDA GPU to measure; this run is on the CPU",
        hint="give a batch size, e.g. --data.batch_size 16",
    )
