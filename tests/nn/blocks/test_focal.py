"""FocalModulation: parameters, formula, options, shapes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from yolo11_lightning.nn.blocks.focal import ChannelLayerNorm, FocalModulation
from yolo11_lightning.nn.registry import get_block


def reference_focal(module: FocalModulation, x: torch.Tensor, normalize: bool = False) -> torch.Tensor:
    """FocalNets' modulation written out: per-level depthwise context, gates, global context."""
    channels, levels = module.in_channels, module.focal_level
    projected = F.conv2d(x, module.f_linear.weight, module.f_linear.bias)
    q, ctx, gates = projected[:, :channels], projected[:, channels : 2 * channels], projected[:, 2 * channels :]
    aggregated = torch.zeros_like(q)
    for level in range(levels):
        conv = module.focal_layers[level][0]
        kernel = conv.weight.shape[-1]
        ctx = F.gelu(F.conv2d(ctx, conv.weight, padding=kernel // 2, groups=channels))
        aggregated += ctx * gates[:, level : level + 1]
    aggregated += F.gelu(ctx.mean(dim=(2, 3), keepdim=True)) * gates[:, levels : levels + 1]
    if normalize:
        aggregated = aggregated / (levels + 1)
    modulated = q * F.conv2d(aggregated, module.h.weight, module.h.bias)
    return F.conv2d(modulated, module.proj.weight, module.proj.bias)


def test_parameter_count_matches_the_seed() -> None:
    assert sum(p.numel() for p in FocalModulation(256).parameters()) == 272_643
    assert FocalModulation(256).kernel_sizes == [3, 5]
    spec = get_block("FocalModulation")
    assert spec.cls is FocalModulation and spec.channels == "same"


@pytest.mark.parametrize("normalize", [False, True])
def test_matches_the_written_out_formula(normalize: bool) -> None:
    module = FocalModulation(16, normalize_modulator=normalize).eval()
    x = torch.randn(2, 16, 6, 9)
    torch.testing.assert_close(module(x), reference_focal(module, x, normalize), atol=1e-5, rtol=1e-5)


def test_three_levels_use_growing_kernels() -> None:
    module = FocalModulation(8, focal_window=3, focal_level=3, focal_factor=2)
    assert module.kernel_sizes == [3, 5, 7] and module.f_linear.out_channels == 2 * 8 + 4
    x = torch.randn(1, 8, 7, 5)
    torch.testing.assert_close(module(x), reference_focal(module, x), atol=1e-5, rtol=1e-5)


def test_post_layernorm_option_works() -> None:
    plain, normed = FocalModulation(32), FocalModulation(32, use_postln_in_modulation=True)
    assert sum(p.numel() for p in normed.parameters()) - sum(p.numel() for p in plain.parameters()) == 64
    assert isinstance(normed.ln, ChannelLayerNorm)
    x = torch.randn(2, 32, 5, 7)
    out = normed(x)
    assert out.shape == x.shape and torch.isfinite(out).all()
    # The layer norms each position over channels, like nn.LayerNorm on channel-last tensors.
    norm = ChannelLayerNorm(32)
    torch.nn.init.normal_(norm.weight)
    torch.nn.init.normal_(norm.bias)
    expected = F.layer_norm(x.permute(0, 2, 3, 1), (32,), norm.weight, norm.bias, norm.eps).permute(0, 3, 1, 2)
    torch.testing.assert_close(norm(x), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("hw", [(8, 8), (8, 12), (12, 8)])
def test_forward_backward_finite_on_square_and_non_square_maps(
    hw: tuple[int, int], check_shape_preserving_backward
) -> None:
    module = FocalModulation(32, use_postln_in_modulation=True)
    check_shape_preserving_backward(module, torch.randn(2, 32, *hw, requires_grad=True))


def test_bf16_autocast_finite() -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = FocalModulation(32)(torch.randn(1, 32, 6, 10))
    assert torch.isfinite(out.float()).all()


def test_invalid_focal_level_raises() -> None:
    with pytest.raises(ValueError, match="focal_level"):
        FocalModulation(8, focal_level=0)
