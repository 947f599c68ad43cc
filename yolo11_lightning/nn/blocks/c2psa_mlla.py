"""C2PSAMLLA: C2PSA whose position-sensitive blocks use MLLAttention instead of softmax attention."""

from __future__ import annotations

import torch.nn as nn

from yolo11_lightning.nn.blocks.mlla import MLLAttention
from yolo11_lightning.nn.blocks.psa import C2PSA
from yolo11_lightning.nn.registry import register_block


@register_block("C2PSAMLLA", channels="scaled", repeats=True)
class C2PSAMLLA(C2PSA):
    """C2PSA (split, ``num_blocks`` PSABlocks with 2x feed-forward and shortcuts, concatenate, project)
    with :class:`MLLAttention` in every PSABlock.

    As in the seed, each MLLAttention has 4 heads whatever the width (C2PSA uses one head per 64
    channels); the head count does not change the parameter count.

    Args:
        in_channels: Input channels.
        out_channels: Output channels; must equal ``in_channels``.
        num_blocks: Number of stacked PSABlocks.
        expansion: Hidden width relative to ``in_channels``.
    """

    attention_heads: int = 4

    def make_attention(self, channels: int) -> nn.Module:
        """An :class:`MLLAttention` over ``channels`` with :attr:`attention_heads` heads."""
        return MLLAttention(channels, num_heads=self.attention_heads)
