"""FocalModulation (FocalNets), channel-first, as a drop-in replacement for SPPF.

For a map ``x`` (B, C, H, W) with ``L = focal_level`` levels::

    q, ctx_0, gates = split(f_linear(x), (C, C, L + 1))        (1x1 conv)
    ctx_{l+1}       = GELU(dwconv_l(ctx_l)),  l = 0 .. L-1     (kernel focal_window + focal_factor * l)
    ctx_all         = sum_{l=0..L-1} ctx_{l+1} * gates[l] + GELU(mean_HW(ctx_L)) * gates[L]
    out             = proj(q * h(ctx_all))                      (h, proj: 1x1 convs)

so level 0 uses ``focal_window`` itself: ``kernel_sizes`` is ``[3, 5]`` for the defaults (window 3,
2 levels, factor 2) and ``[9, 11, 13]`` for window 9 with 3 levels.

Optionally ``ctx_all`` is divided by ``L + 1`` (``normalize_modulator``) and the modulated map
goes through a LayerNorm over channels (``use_postln_in_modulation``; the seed names this option
but never creates the layer, see ``docs/seed-deviations.md``).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from yolo11_lightning.nn.registry import register_block


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel dimension of a (B, C, H, W) map, per position.

    Args:
        channels: Number of channels ``C``.
        eps: Added to the variance.
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        mean = x.mean(dim=1, keepdim=True)
        var = (x - mean).pow(2).mean(dim=1, keepdim=True)
        x = (x - mean) * torch.rsqrt(var + self.eps)
        return x * self.weight[:, None, None] + self.bias[:, None, None]


@register_block("FocalModulation", channels="same")
class FocalModulation(nn.Module):
    """Focal modulation: hierarchical depthwise context, gated aggregation, query modulation.

    Args:
        in_channels: Input and output channels ``C``.
        focal_window: Kernel size of the first focal level.
        focal_level: Number of focal levels ``L``.
        focal_factor: Kernel size increment per level.
        bias: Bias on the input projection and ``h``.
        proj_drop: Dropout after the output projection.
        use_postln_in_modulation: LayerNorm over channels after the modulation (adds ``2 C``
            parameters).
        normalize_modulator: Divide the aggregated context by ``L + 1``.
    """

    def __init__(
        self,
        in_channels: int,
        focal_window: int = 3,
        focal_level: int = 2,
        focal_factor: int = 2,
        bias: bool = True,
        proj_drop: float = 0.0,
        use_postln_in_modulation: bool = False,
        normalize_modulator: bool = False,
    ) -> None:
        super().__init__()
        if focal_level < 1:
            raise ValueError(f"FocalModulation: focal_level must be at least 1, got {focal_level}")
        self.in_channels = in_channels
        self.focal_level = focal_level
        self.normalize_modulator = normalize_modulator
        self.f_linear = nn.Conv2d(in_channels, 2 * in_channels + focal_level + 1, 1, bias=bias)
        self.kernel_sizes = [focal_factor * level + focal_window for level in range(focal_level)]
        self.focal_layers = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(in_channels, in_channels, k, padding=k // 2, groups=in_channels, bias=False),
                nn.GELU(),
            )
            for k in self.kernel_sizes
        )
        self.h = nn.Conv2d(in_channels, in_channels, 1, bias=bias)
        self.act = nn.GELU()
        self.ln = ChannelLayerNorm(in_channels) if use_postln_in_modulation else nn.Identity()
        self.proj = nn.Conv2d(in_channels, in_channels, 1)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        channels = self.in_channels
        q, ctx, gates = torch.split(self.f_linear(x), (channels, channels, self.focal_level + 1), dim=1)
        ctx_all: torch.Tensor | float = 0.0
        for level, layer in enumerate(self.focal_layers):
            ctx = layer(ctx)  # (B, C, H, W), receptive field growing with the level
            ctx_all = ctx_all + ctx * gates[:, level : level + 1]
        ctx_global = self.act(ctx.mean(dim=(2, 3), keepdim=True))  # (B, C, 1, 1)
        ctx_all = ctx_all + ctx_global * gates[:, self.focal_level :]
        if self.normalize_modulator:
            ctx_all = ctx_all / (self.focal_level + 1)
        out = self.ln(q * self.h(ctx_all))
        return self.proj_drop(self.proj(out))

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, focal_level={self.focal_level}, kernel_sizes={self.kernel_sizes}"
