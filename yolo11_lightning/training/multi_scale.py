"""Multi-scale training: each batch resized to a random stride multiple in [0.5, 1.5] x imgsz.

As the reference: per batch a size is drawn uniformly from ``[0.5 * imgsz, 1.5 * imgsz + stride)``
and floored to a stride multiple; the (already letterboxed, square) batch is resized bilinearly so
that its longer side has that size, each side rounded up to a stride multiple. Boxes are normalised,
so the targets are unchanged. The size depends only on ``(seed, epoch, batch index)``, so a resumed
run draws the same sizes (exact resume stays bitwise).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def multi_scale_size(imgsz: int, stride: int, seed: int, epoch: int, batch_index: int) -> int:
    """The long side of a batch: a stride multiple drawn from ``[0.5 * imgsz, 1.5 * imgsz + stride)``.

    Args:
        imgsz: the nominal training size.
        stride: the largest network stride.
        seed: the run's seed.
        epoch: zero-based epoch.
        batch_index: batch index within the epoch.
    """
    rng = np.random.default_rng([seed, epoch, batch_index, 0x5CA1E])
    low, high = int(imgsz * 0.5), int(imgsz * 1.5 + stride)
    size = int(rng.integers(low, high)) // stride * stride
    return max(size, stride)


def resize_batch(images: torch.Tensor, size: int, stride: int) -> torch.Tensor:
    """Resize ``(B, 3, H, W)`` float images so the longer side is ``size`` (sides rounded up to ``stride``)."""
    height, width = images.shape[2:]
    scale = size / max(height, width)
    if scale == 1:
        return images
    shape = [math.ceil(side * scale / stride) * stride for side in (height, width)]
    return F.interpolate(images, size=shape, mode="bilinear", align_corners=False)
