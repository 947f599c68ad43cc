"""Cross-stage-partial blocks of YOLO11: Bottleneck, C3k and C3k2.

Attribute names (``cv1``, ``cv2``, ``cv3``, ``m``) follow the reference so that its state-dict keys
load unchanged.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from yolo11_lightning.nn.blocks.conv import Conv
from yolo11_lightning.nn.registry import ScaleContext, register_block


class Bottleneck(nn.Module):
    """Two convolutions with an optional residual connection.

    Args:
        in_channels: Input channels.
        out_channels: Output channels (the residual is used only when equal to ``in_channels``).
        shortcut: Add the input to the output.
        groups: Groups of the second convolution.
        kernel_sizes: Kernel sizes of the two convolutions.
        expansion: Hidden width relative to ``out_channels``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        shortcut: bool = True,
        groups: int = 1,
        kernel_sizes: tuple[int, int] = (3, 3),
        expansion: float = 0.5,
    ) -> None:
        super().__init__()
        hidden_channels = int(out_channels * expansion)
        self.cv1 = Conv(in_channels, hidden_channels, kernel_sizes[0], 1)
        self.cv2 = Conv(hidden_channels, out_channels, kernel_sizes[1], 1, groups=groups)
        self.add = shortcut and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) -> (B, out_channels, H, W)."""
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C3k(nn.Module):
    """CSP block with three convolutions around a stack of ``k x k`` bottlenecks.

    One half of the hidden channels goes through the bottlenecks, the other half is a 1x1
    projection of the input; both are concatenated and projected to ``out_channels``.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        num_blocks: Number of bottlenecks.
        shortcut: Residual connections in the bottlenecks.
        groups: Groups of the bottlenecks' second convolution.
        expansion: Hidden width relative to ``out_channels``.
        kernel_size: Kernel size of both bottleneck convolutions.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_blocks: int = 1,
        shortcut: bool = True,
        groups: int = 1,
        expansion: float = 0.5,
        kernel_size: int = 3,
    ) -> None:
        super().__init__()
        hidden_channels = int(out_channels * expansion)
        self.cv1 = Conv(in_channels, hidden_channels, 1, 1)
        self.cv2 = Conv(in_channels, hidden_channels, 1, 1)
        self.cv3 = Conv(2 * hidden_channels, out_channels, 1)
        self.m = nn.Sequential(
            *(
                Bottleneck(hidden_channels, hidden_channels, shortcut, groups, (kernel_size, kernel_size), 1.0)
                for _ in range(num_blocks)
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) -> (B, out_channels, H, W)."""
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), dim=1))


def _c3k_for_large_scales(args: list, context: ScaleContext) -> list:
    """The reference turns ``c3k`` on for every C3k2 of the m, l and x scales.

    ``args`` are the derived constructor arguments ``[c_in, c_out, n, c3k, ...]``.
    """
    if context.scale and context.scale in "mlx":
        args = list(args)
        if len(args) > 3:
            args[3] = True
        else:
            args.append(True)
    return args


@register_block("C3k2", channels="scaled", repeats=True, adapt_args=_c3k_for_large_scales)
class C3k2(nn.Module):
    """YOLO11's main CSP block: split in two, chain ``n`` inner blocks, concatenate every stage.

    The input is projected to ``2 * hidden`` channels and split; each inner block (a
    :class:`Bottleneck`, or a :class:`C3k` of two bottlenecks when ``c3k``) consumes the previous
    stage, and all ``2 + n`` stages are concatenated and projected to ``c2``.

    Args:
        c1: Input channels.
        c2: Output channels.
        n: Number of inner blocks.
        c3k: Use :class:`C3k` inner blocks instead of bottlenecks.
        e: Hidden width relative to ``c2``.
        g: Groups of the inner convolutions.
        shortcut: Residual connections in the inner blocks.
    """

    def __init__(
        self, c1: int, c2: int, n: int = 1, c3k: bool = False, e: float = 0.5, g: int = 1, shortcut: bool = True
    ) -> None:
        super().__init__()
        self.hidden_channels = int(c2 * e)
        hidden = self.hidden_channels
        self.cv1 = Conv(c1, 2 * hidden, 1, 1)
        self.cv2 = Conv((2 + n) * hidden, c2, 1)
        self.m = nn.ModuleList(
            C3k(hidden, hidden, 2, shortcut, g) if c3k else Bottleneck(hidden, hidden, shortcut, g) for _ in range(n)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, c1, H, W) -> (B, c2, H, W)."""
        stages = list(self.cv1(x).split((self.hidden_channels, self.hidden_channels), dim=1))
        for block in self.m:
            stages.append(block(stages[-1]))
        return self.cv2(torch.cat(stages, dim=1))
