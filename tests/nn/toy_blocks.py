"""A user block living outside the package, registered by importing this module.

Model configs use it through ``imports: [toy_blocks]`` (pytest puts this folder on sys.path); nothing in
the package names it.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from yolo11_lightning.nn.registry import register_block


@register_block("ToySqueezeGate", channels="same")
class ToySqueezeGate(nn.Module):
    """Channel gate from the global mean: ``x * sigmoid(W mean(x))``; keeps the channel count."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        return x * self.fc(x.mean(dim=(2, 3), keepdim=True)).sigmoid()
