"""Two-dimensional rotary position encoding (RoPE) for feature maps, in real arithmetic.

The channels of a token are taken as adjacent pairs ``(x[2p], x[2p + 1])`` and each pair is rotated
by an angle that depends on the token's position. With ``C`` channels there are ``C / 2`` pairs:
the first ``C / 4`` pairs are rotated by the **row** index ``i``, the remaining ``C / 4`` by the
**column** index ``j``, each with the frequencies ``base ** (-k / (C / 4))``, ``k = 0 .. C/4 - 1``::

    angle[i, j, p] = i * base ** (-p / (C / 4))            for p <  C / 4
    angle[i, j, p] = j * base ** (-(p - C / 4) / (C / 4))  for p >= C / 4

    rotate(x)[2p]     = x[2p] * cos(angle) - x[2p + 1] * sin(angle)
    rotate(x)[2p + 1] = x[2p] * sin(angle) + x[2p + 1] * cos(angle)

This is the layout of the official MLLA code (pair rotation of a complex view of the channels), here
without complex tensors so that it exports to ONNX. Tables are always float32.

``rope_rotate_2d`` applies the rotation directly (the readable definition, used by tests).
:class:`RotaryTableCache` serves the per-head cosine/sine tables
:class:`~yolo11_lightning.nn.blocks.mlla.MLLAttention` uses, cached per (height, width, device).
"""

from __future__ import annotations

from collections import OrderedDict

import torch

DEFAULT_ROPE_BASE = 10000.0


def check_rope_channels(channels: int) -> None:
    """Raise a clear error unless ``channels`` splits into row and column pairs (a multiple of 4)."""
    if channels <= 0 or channels % 4:
        raise ValueError(f"2-D RoPE needs a channel count divisible by 4 (row and column pairs), got {channels}")


def check_rope_heads(channels: int, num_heads: int) -> None:
    """Raise a clear error unless ``channels`` split into ``num_heads`` groups of whole pairs."""
    if num_heads <= 0 or channels % (2 * num_heads):
        raise ValueError(f"RoPE pairs must not straddle heads: channels={channels}, num_heads={num_heads}")


def rope_angles_2d(
    height: int,
    width: int,
    channels: int,
    base: float = DEFAULT_ROPE_BASE,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Rotation angle of every channel pair at every position.

    Args:
        height: Number of rows ``H``.
        width: Number of columns ``W``.
        channels: Channel count ``C`` (divisible by 4).
        base: Frequency base.
        device: Device of the result.

    Returns:
        float32 tensor ``(H, W, C / 2)``: angle of pair ``p`` at row ``i``, column ``j``.
    """
    check_rope_channels(channels)
    quarter = channels // 4
    frequencies = base ** (-torch.arange(quarter, dtype=torch.float32, device=device) / quarter)  # (C/4,)
    rows = torch.arange(height, dtype=torch.float32, device=device)
    cols = torch.arange(width, dtype=torch.float32, device=device)
    row_angles = (rows[:, None] * frequencies).unsqueeze(1).expand(height, width, quarter)
    col_angles = (cols[:, None] * frequencies).unsqueeze(0).expand(height, width, quarter)
    return torch.cat([row_angles, col_angles], dim=-1)


def rope_rotate_2d(x: torch.Tensor, base: float = DEFAULT_ROPE_BASE) -> torch.Tensor:
    """Rotate the channel pairs of a channel-last map by their 2-D position (the direct definition).

    Args:
        x: ``(..., H, W, C)`` with ``C`` divisible by 4.
        base: Frequency base.

    Returns:
        The rotated tensor, same shape, float32.
    """
    height, width, channels = x.shape[-3:]
    angles = rope_angles_2d(height, width, channels, base, x.device)  # (H, W, C/2)
    cos, sin = angles.cos(), angles.sin()
    pairs = x.float().reshape(*x.shape[:-1], channels // 2, 2)
    even, odd = pairs[..., 0], pairs[..., 1]
    rotated = torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1)
    return rotated.reshape(x.shape)


def rope_cos_sin_per_head(
    height: int,
    width: int,
    channels: int,
    num_heads: int,
    base: float = DEFAULT_ROPE_BASE,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Cosine and sine of every pair's angle, grouped by head, for channel-first tokens.

    The ``C`` channels split into ``num_heads`` contiguous groups of ``d = C / num_heads`` (pairs
    never straddle two heads); pair ``j`` of head ``h`` is the global pair ``h * d / 2 + j``.

    Args:
        height: Number of rows ``H``.
        width: Number of columns ``W``.
        channels: Channel count ``C`` (divisible by 4 and by ``2 * num_heads``).
        num_heads: Number of heads.
        base: Frequency base.
        device: Device of the result.

    Returns:
        float32 tensor ``(2, num_heads, d / 2, H * W)``: ``[0]`` cosines, ``[1]`` sines, tokens in
        row-major order.
    """
    check_rope_heads(channels, num_heads)
    angles = rope_angles_2d(height, width, channels, base, device)  # (H, W, C/2)
    angles = angles.reshape(height * width, num_heads, channels // num_heads // 2).permute(1, 2, 0)
    return torch.stack([angles.cos(), angles.sin()], dim=0).contiguous()


class RotaryTableCache:
    """Bounded least-recently-used cache of :func:`rope_cos_sin_per_head` per (height, width, device).

    Not a module and not part of any state dict; pickling or deep-copying drops the cached tables.

    Args:
        channels: Channel count of the tokens.
        num_heads: Number of heads.
        base: Frequency base.
        max_entries: Number of (height, width, device) tables kept.
    """

    def __init__(self, channels: int, num_heads: int, base: float = DEFAULT_ROPE_BASE, max_entries: int = 8) -> None:
        check_rope_channels(channels)
        check_rope_heads(channels, num_heads)
        self.channels = channels
        self.num_heads = num_heads
        self.base = base
        self.max_entries = max_entries
        self._tables: OrderedDict[tuple[int, int, torch.device], torch.Tensor] = OrderedDict()

    def get(self, height: int, width: int, device: torch.device) -> torch.Tensor:
        """The (2, heads, d/2, H*W) table for a ``height x width`` map on ``device`` (made on first use)."""
        if is_tracing():
            # Export and compilation: compute in the graph, never touch Python-side state.
            return rope_cos_sin_per_head(height, width, self.channels, self.num_heads, self.base, device)
        key = (int(height), int(width), torch.device(device))
        table = self._tables.get(key)
        if table is None:
            # A table first made under inference_mode must stay usable by later autograd calls.
            with torch.inference_mode(False), torch.no_grad():
                table = rope_cos_sin_per_head(height, width, self.channels, self.num_heads, self.base, device)
            self._tables[key] = table
            while len(self._tables) > self.max_entries:
                self._tables.popitem(last=False)
        else:
            self._tables.move_to_end(key)
        return table

    def __len__(self) -> int:
        return len(self._tables)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_tables"] = OrderedDict()
        return state


def is_tracing() -> bool:
    """True while exporting to ONNX, tracing with TorchScript or compiling with torch.compile."""
    return bool(torch.onnx.is_in_onnx_export() or torch.jit.is_tracing() or torch.compiler.is_compiling())
