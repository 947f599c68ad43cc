"""Position-sensitive attention: Attention, PSABlock and C2PSA.

``C2PSA`` builds its attention through :meth:`C2PSA.make_attention`, so a variant that swaps the
attention (see ``C2PSAMLLA``) overrides one method and keeps everything else, state-dict keys
included.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from yolo11_lightning.nn.blocks.conv import Conv
from yolo11_lightning.nn.registry import register_block


class Attention(nn.Module):
    """Multi-head self-attention over all positions, with a depthwise positional encoding.

    Queries and keys have ``key_dim = head_dim * attn_ratio`` channels per head, values
    ``head_dim``; the positional encoding is a depthwise 3x3 conv on the values.

    Args:
        channels: Input and output channels.
        num_heads: Number of heads; must divide ``channels``.
        attn_ratio: Query/key width relative to the head width.
    """

    def __init__(self, channels: int, num_heads: int = 8, attn_ratio: float = 0.5) -> None:
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"Attention: num_heads={num_heads} must divide channels={channels}")
        self.num_heads = num_heads
        self.head_dim = channels // num_heads
        self.key_dim = int(self.head_dim * attn_ratio)
        self.scale = self.key_dim**-0.5
        qkv_channels = channels + 2 * self.key_dim * num_heads
        self.qkv = Conv(channels, qkv_channels, 1, act=False)
        self.proj = Conv(channels, channels, 1, act=False)
        self.pe = Conv(channels, channels, 3, 1, groups=channels, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        batch, channels, height, width = x.shape
        tokens = height * width
        qkv = self.qkv(x).view(batch, self.num_heads, 2 * self.key_dim + self.head_dim, tokens)
        q, k, v = qkv.split([self.key_dim, self.key_dim, self.head_dim], dim=2)  # (B, heads, d, N)
        attn = ((q.transpose(-2, -1) @ k) * self.scale).softmax(dim=-1)  # (B, heads, N, N)
        out = (v @ attn.transpose(-2, -1)).view(batch, channels, height, width)
        out = out + self.pe(v.reshape(batch, channels, height, width))
        return self.proj(out)


class PSABlock(nn.Module):
    """Attention then a 2x feed-forward of 1x1 convs, each with an optional residual.

    Args:
        channels: Input and output channels.
        attention: The attention module (maps (B, C, H, W) to the same shape).
        shortcut: Add residual connections around attention and feed-forward.
    """

    def __init__(self, channels: int, attention: nn.Module, shortcut: bool = True) -> None:
        super().__init__()
        self.attn = attention
        self.ffn = nn.Sequential(Conv(channels, channels * 2, 1), Conv(channels * 2, channels, 1, act=False))
        self.add = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        x = x + self.attn(x) if self.add else self.attn(x)
        return x + self.ffn(x) if self.add else self.ffn(x)


@register_block("C2PSA", channels="scaled", repeats=True)
class C2PSA(nn.Module):
    """Split the channels in two halves, run ``num_blocks`` PSABlocks on one, concatenate, project.

    Args:
        in_channels: Input channels.
        out_channels: Output channels; must equal ``in_channels``.
        num_blocks: Number of stacked PSABlocks.
        expansion: Hidden width relative to ``in_channels``.
    """

    def __init__(self, in_channels: int, out_channels: int, num_blocks: int = 1, expansion: float = 0.5) -> None:
        super().__init__()
        if in_channels != out_channels:
            raise ValueError(f"{type(self).__name__} keeps the channel count: got {in_channels} -> {out_channels}")
        self.hidden_channels = int(in_channels * expansion)
        hidden = self.hidden_channels
        self.cv1 = Conv(in_channels, 2 * hidden, 1, 1)
        self.cv2 = Conv(2 * hidden, in_channels, 1)
        self.m = nn.Sequential(
            *(PSABlock(hidden, self.make_attention(hidden), shortcut=True) for _ in range(num_blocks))
        )

    def make_attention(self, channels: int) -> nn.Module:
        """The attention of each PSABlock (here: :class:`Attention`, one head per 64 channels)."""
        return Attention(channels, num_heads=max(channels // 64, 1), attn_ratio=0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        a, b = self.cv1(x).split((self.hidden_channels, self.hidden_channels), dim=1)
        return self.cv2(torch.cat((a, self.m(b)), dim=1))
