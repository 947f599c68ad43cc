"""Convolution blocks: Conv (conv + BatchNorm + SiLU) and its depthwise form."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from yolo11_lightning.nn.registry import register_block


def same_padding(kernel_size: int, dilation: int = 1) -> int:
    """Padding that keeps the spatial size for an odd ``kernel_size`` at stride 1."""
    effective = dilation * (kernel_size - 1) + 1
    return effective // 2


@register_block("Conv", channels="scaled")
class Conv(nn.Module):
    """Conv2d (no bias) -> BatchNorm2d -> activation.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Square kernel size.
        stride: Convolution stride.
        padding: Explicit padding; ``None`` keeps the size ("same" padding).
        groups: Convolution groups.
        dilation: Convolution dilation.
        act: ``True`` for SiLU, ``False`` for none, or an ``nn.Module`` to use.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        stride: int = 1,
        padding: int | None = None,
        groups: int = 1,
        dilation: int = 1,
        act: bool | nn.Module = True,
    ) -> None:
        super().__init__()
        if padding is None:
            padding = same_padding(kernel_size, dilation)
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, padding, groups=groups, dilation=dilation, bias=False
        )
        # Reference-compatible BatchNorm settings (eps 1e-3, momentum 0.03).
        self.bn: nn.Module = nn.BatchNorm2d(out_channels, eps=1e-3, momentum=0.03)
        # In place, as the reference: the BatchNorm output it overwrites is needed by nothing else.
        self.act = nn.SiLU(inplace=True) if act is True else act if isinstance(act, nn.Module) else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) -> (B, out_channels, H / stride, W / stride)."""
        return self.act(self.bn(self.conv(x)))

    @torch.no_grad()
    def fuse(self) -> None:
        """Fold the BatchNorm into the convolution (inference only); idempotent."""
        if not isinstance(self.bn, nn.BatchNorm2d):
            return
        self.conv = fuse_conv_and_bn(self.conv, self.bn)
        self.bn = nn.Identity()


@register_block("DWConv", channels="scaled")
class DWConv(Conv):
    """Depthwise convolution: a :class:`Conv` with ``groups = gcd(in_channels, out_channels)``.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Square kernel size.
        stride: Convolution stride.
        dilation: Convolution dilation.
        act: ``True`` for SiLU, ``False`` for none, or an ``nn.Module`` to use.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        stride: int = 1,
        dilation: int = 1,
        act: bool | nn.Module = True,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            groups=math.gcd(in_channels, out_channels),
            dilation=dilation,
            act=act,
        )


def fuse_conv_and_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """Return a new Conv2d (with bias) computing ``bn(conv(x))`` in eval mode.

    Args:
        conv: The convolution (with or without bias).
        bn: The BatchNorm that follows it.

    Returns:
        A Conv2d with the same geometry, on the same device and dtype, gradients disabled.
    """
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=True,
    ).to(device=conv.weight.device, dtype=conv.weight.dtype)
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (out_channels,)
    fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
    conv_bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.bias.copy_((conv_bias - bn.running_mean) * scale + bn.bias)
    fused.requires_grad_(False)
    return fused
