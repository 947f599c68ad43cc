"""Spatial pyramid pooling, fast form (SPPF)."""

from __future__ import annotations

import torch
import torch.nn as nn

from yolo11_lightning.nn.blocks.conv import Conv
from yolo11_lightning.nn.registry import register_block


@register_block("SPPF", channels="scaled")
class SPPF(nn.Module):
    """Pool the same map three times in a row and concatenate all four stages.

    Three chained ``k x k`` stride-1 max-pools see receptive fields ``k``, ``2k - 1`` and
    ``3k - 2`` (5, 9, 13 for ``k = 5``) at the cost of three small pools.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Max-pool kernel size (odd).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 5) -> None:
        super().__init__()
        hidden_channels = in_channels // 2
        self.cv1 = Conv(in_channels, hidden_channels, 1, 1)
        self.cv2 = Conv(4 * hidden_channels, out_channels, 1, 1)
        self.m = nn.MaxPool2d(kernel_size=kernel_size, stride=1, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) -> (B, out_channels, H, W)."""
        stages = [self.cv1(x)]
        for _ in range(3):
            stages.append(self.m(stages[-1]))
        return self.cv2(torch.cat(stages, dim=1))
