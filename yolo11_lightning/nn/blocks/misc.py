"""Channel-free layers used by the model configs: Concat and nearest upsampling."""

from __future__ import annotations

import torch
import torch.nn as nn

from yolo11_lightning.nn.registry import register_block


@register_block("Concat", channels="concat")
class Concat(nn.Module):
    """Concatenate the row's inputs along ``dim`` (channels for ``dim=1``).

    Args:
        dim: Concatenation dimension.
    """

    def __init__(self, dim: int = 1) -> None:
        super().__init__()
        self.d = dim

    def forward(self, x: list[torch.Tensor]) -> torch.Tensor:
        """List of (B, C_i, H, W) -> (B, sum C_i, H, W)."""
        return torch.cat(x, dim=self.d)


# Configs name it ``nn.Upsample`` as in the reference's files; rows pass ``[None, 2, "nearest"]``.
register_block("nn.Upsample", channels="none", example_args=(None, 2, "nearest"))(nn.Upsample)
