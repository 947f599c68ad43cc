"""Channel-free layers used by the model configs: Concat, Index and nearest upsampling."""

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


@register_block("Index", channels="index")
class Index(nn.Module):
    """Select one output of a layer with several outputs (e.g. one level of a backbone's features).

    Args:
        index: Position of the output in the layer's list of outputs.
    """

    def __init__(self, index: int = 0) -> None:
        super().__init__()
        self.index = index

    def forward(self, x: list[torch.Tensor]) -> torch.Tensor:
        """List of maps -> the map at ``index``."""
        return x[self.index]


# Configs name it ``nn.Upsample`` as in the reference's files; rows pass ``[None, 2, "nearest"]``.
register_block("nn.Upsample", channels="none", example_args=(None, 2, "nearest"))(nn.Upsample)
