"""MLLAttention: the linear attention of MLLA (Mamba-Like Linear Attention) with RoPE and LePE.

For a map ``x`` of shape (B, C, H, W) with ``N = H * W`` tokens and heads of ``d = C / heads``
channels, per head::

    q, k   = ELU(W_qk x + b) + 1                      (C channels each, per token)
    v      = x
    z      = 1 / (q . mean_tokens(k) + eps)            (normaliser, from q and k *before* RoPE)
    kv     = (rope(k) / sqrt(N))^T (v / sqrt(N))       (d x d)
    out    = (rope(q) kv) * z + lepe(v)                (lepe: depthwise 3x3 conv)

``rope`` is the 2-D rotary encoding of :mod:`yolo11_lightning.nn.blocks.rope` (row index on the
first half of the channel pairs, column index on the second half), applied over all ``C`` channels
before the split into heads, as the official MLLA code does.

Implementation notes (the result equals the formula above; the state dict keeps the usual layout):

- Tokens are channel-first, ``x.view(B, C, H * W)`` in row-major order: no permutes.
- Inside a head, q and k channels are read in the order (even channels, odd channels): a fixed
  permutation of the rows of ``qk.weight``, the same for q and k, so every dot product over a
  head's channels is unchanged, and a rotated pair ``(x[2p], x[2p + 1])`` becomes two contiguous
  halves ``(a, b) -> (a cos - b sin, a sin + b cos)`` that need no interleaving copies.
- Attention arithmetic and LePE run in float32, also under autocast (only the q/k projection
  follows autocast); the result is cast back to the input dtype.
- Without autograd (inference), q and k are activated in place, rotated one after the other into a
  single scratch buffer, and the output is accumulated into the LePE buffer: besides the
  projection and LePE outputs, one temporary of ``B x C x N`` floats.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from yolo11_lightning.nn.blocks.rope import DEFAULT_ROPE_BASE, RotaryTableCache, check_rope_channels, is_tracing
from yolo11_lightning.nn.registry import register_block


@register_block("MLLAttention", channels="same")
class MLLAttention(nn.Module):
    """Linear attention with 2-D RoPE and a locally-enhanced positional encoding (LePE).

    Accepts any ``H x W`` (square or not); rotary tables are cached per (H, W, device).
    Parameters: ``2 C^2 + 12 C`` (``qk``: C -> 2C linear with bias; ``lepe``: depthwise 3x3 with bias).

    Args:
        in_channels: Input and output channels ``C``; divisible by 4 and by ``2 * num_heads``.
        num_heads: Number of heads.
        qkv_bias: Bias on the query/key projection.
        rope_base: Frequency base of the rotary encoding.
        eps: Added to the normaliser's denominator.
    """

    def __init__(
        self,
        in_channels: int,
        num_heads: int = 4,
        qkv_bias: bool = True,
        rope_base: float = DEFAULT_ROPE_BASE,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        check_rope_channels(in_channels)
        if num_heads <= 0 or in_channels % (2 * num_heads):
            raise ValueError(
                f"MLLAttention: in_channels={in_channels} must be divisible by 2 * num_heads "
                f"(num_heads={num_heads}) so that rotary channel pairs stay within a head"
            )
        self.in_channels = in_channels
        self.num_heads = num_heads
        self.head_dim = in_channels // num_heads
        self.eps = eps
        self.qk = nn.Linear(in_channels, 2 * in_channels, bias=qkv_bias)
        self.lepe = nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels)
        self.rope_tables = RotaryTableCache(in_channels, num_heads, rope_base)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"MLLAttention expects (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        batch, channels, height, width = x.shape
        tokens = height * width
        heads, head_dim, half = self.num_heads, self.head_dim, self.head_dim // 2
        groups = batch * heads  # attention runs per (image, head)
        inplace = not torch.is_grad_enabled() and not is_tracing()

        qk = self._project(x)  # (B, 2C, N), rows ordered (head, q/k, even/odd, pair)

        with _float32_region(x.device.type):
            x32 = _float32(x)
            # LePE in float32 too (a low-precision depthwise conv is also very slow on CPUs).
            lepe = F.conv2d(x32, _float32(self.lepe.weight), _float32(self.lepe.bias), padding=1, groups=channels)
            cos, sin = self.rope_tables.get(height, width, x.device).unbind(0)  # (heads, d/2, N) each
            qk = _float32(qk).view(batch, heads, 2, 2, half, tokens)  # (B, heads, q/k, even/odd, d/2, N)
            q, k = qk.unbind(2)  # (B, heads, even/odd, d/2, N) each
            if inplace:
                scratch = _elu_plus_one_(k)
                _elu_plus_one_(q, scratch)
            else:
                q, k, scratch = F.elu(q) + 1.0, F.elu(k) + 1.0, None

            # Normaliser from the unrotated q and k, with kv's 1/N folded in:
            # z / N = 1 / (q . sum(k) + N eps), (B * heads, 1, N).
            z = torch.bmm(k.sum(dim=-1).view(groups, 1, head_dim), q.reshape(groups, head_dim, tokens))
            z = z.add_(tokens * self.eps).reciprocal_() if inplace else 1.0 / (z + tokens * self.eps)

            v = x32.reshape(groups, head_dim, tokens)  # v channels keep their original order
            k_rot = _rotate_halves(k, cos, sin, out=scratch).reshape(groups, head_dim, tokens)
            kv = torch.bmm(k_rot, v.transpose(1, 2))  # (B * heads, d, d): rows k channel, cols v channel
            q_rot = _rotate_halves(q, cos, sin, out=scratch).reshape(groups, head_dim, tokens)  # reuses scratch
            # out = kv^T (rope(q) * z / N) + lepe, accumulated into the LePE buffer when possible.
            lepe = lepe.reshape(groups, head_dim, tokens)  # a copy only for channels_last input
            if inplace:
                out = lepe.baddbmm_(kv.transpose(1, 2), q_rot.mul_(z))
            else:
                out = torch.baddbmm(lepe, kv.transpose(1, 2), q_rot * z)
        out = out.view(batch, channels, height, width)
        return out if out.dtype == x.dtype else out.to(x.dtype)

    def _project(self, x: torch.Tensor) -> torch.Tensor:
        """``qk`` linear on channel-first tokens, rows permuted to (head, q/k, even/odd, pair)."""
        batch, channels = x.shape[:2]
        heads, half = self.num_heads, self.head_dim // 2
        # Rows of qk.weight are (q/k, head, pair, even/odd) in the usual layout.
        weight = self.qk.weight.view(2, heads, half, 2, channels).permute(1, 0, 3, 2, 4).reshape(2 * channels, channels)
        tokens = x.reshape(batch, channels, -1)
        if self.qk.bias is None:
            return torch.matmul(weight, tokens)
        bias = self.qk.bias.view(2, heads, half, 2).permute(1, 0, 3, 2).reshape(1, 2 * channels, 1)
        return torch.baddbmm(bias, weight.expand(batch, -1, -1), tokens)

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, num_heads={self.num_heads}"


def _elu_plus_one_(t: torch.Tensor, scratch: torch.Tensor | None = None) -> torch.Tensor:
    """``t <- elu(t) + 1 = max(t, 0) + exp(min(t, 0))`` in place (no autograd).

    Args:
        t: Tensor to update.
        scratch: Optional contiguous buffer of ``t.numel()`` elements for ``exp(min(t, 0))``.

    Returns:
        The scratch buffer (allocated when not given), free for reuse afterwards.
    """
    if scratch is None:
        scratch = t.clamp(max=0.0)
    else:
        scratch = torch.clamp(t, max=0.0, out=scratch.view(t.shape))
    t.clamp_(min=0.0).add_(scratch.exp_())
    return scratch


def _rotate_halves(
    t: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Rotate (a, b) halves: ``(a cos - b sin, a sin + b cos)``.

    Args:
        t: (B, heads, 2, d/2, N); dim 2 selects a (even channels) or b (odd channels).
        cos: (heads, d/2, N) cosines.
        sin: (heads, d/2, N) sines.
        out: Optional contiguous buffer of ``t.numel()`` elements to write into (no autograd).

    Returns:
        The rotated tensor, shaped like ``t`` and contiguous.
    """
    a, b = t.unbind(2)
    if out is None:
        return torch.stack([a * cos - b * sin, a * sin + b * cos], dim=2)
    out = out.view(t.shape)
    rot_a, rot_b = out.unbind(2)
    torch.mul(a, cos, out=rot_a).addcmul_(b, sin, value=-1.0)
    torch.mul(a, sin, out=rot_b).addcmul_(b, cos)
    return out


def _float32(tensor: torch.Tensor | None) -> torch.Tensor | None:
    """``tensor`` as float32 (no op when it already is; ``None`` stays ``None``)."""
    return tensor if tensor is None or tensor.dtype == torch.float32 else tensor.float()


class _float32_region:
    """Disable autocast for ``device_type`` inside the block (a no-op when autocast is off)."""

    def __init__(self, device_type: str) -> None:
        self.device_type = device_type
        self._context: torch.autocast | None = None

    def __enter__(self) -> None:
        # Devices without autocast (e.g. "meta", used for FLOP counting) need nothing.
        if torch.amp.is_autocast_available(self.device_type) and torch.is_autocast_enabled(self.device_type):
            self._context = torch.autocast(device_type=self.device_type, enabled=False)
            self._context.__enter__()

    def __exit__(self, *exc_info: object) -> None:
        if self._context is not None:
            self._context.__exit__(*exc_info)
            self._context = None
