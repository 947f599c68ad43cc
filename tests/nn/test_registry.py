"""Every registered block (built-in, other engineers', user ones imported so far) built from its
example arguments through the builder's own contract logic: forward and backward on square and
non-square maps, in float32 and under bfloat16 autocast.

Float32 runs at 64x64, 64x96 and 96x64. bfloat16 autocast is about 10x slower than float32 on this
CPU (and the PSA attention is quadratic in the map size), so the autocast runs use 16x16, 16x24 and
24x16: still square and non-square, and the full-model tests cover the large sizes.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from yolo11_lightning.nn.builder import build_layer
from yolo11_lightning.nn.registry import ScaleContext, register_block, registered_blocks

SIZES = [(64, 64), (64, 96), (96, 64)]
AUTOCAST_SIZES = [(16, 16), (16, 24), (24, 16)]
CHANNELS = 64
# Two images: a block may normalise over the batch of pooled (B, C, 1, 1) maps (timm's selective
# kernel) or reach a 1x1 map at a 16x16 input (a stride-32 backbone), as in training with batch > 1.
BATCH = 2
CONTEXT = ScaleContext(scale="", depth=1.0, width=1.0, max_channels=math.inf, nc=3)


def _inputs(contract: str, height: int, width: int) -> tuple[list[int], object]:
    """Input channel counts and tensors for a block of the given contract."""
    if contract == "concat":
        channels = [CHANNELS, CHANNELS // 2]
        return channels, [torch.randn(BATCH, c, height, width, requires_grad=True) for c in channels]
    if contract == "index":  # the outputs of a layer with several outputs
        channels = (CHANNELS, CHANNELS // 2)
        return [channels], [torch.randn(BATCH, c, height, width, requires_grad=True) for c in channels]
    if contract == "head":  # three pyramid levels, as the builder feeds Detect
        channels = [CHANNELS // 2, CHANNELS, CHANNELS * 2]
        maps = [
            torch.randn(BATCH, c, height // 2**i, width // 2**i, requires_grad=True) for i, c in enumerate(channels)
        ]
        return channels, maps
    return [CHANNELS], torch.randn(BATCH, CHANNELS, height, width, requires_grad=True)


def _tensors(output: object) -> list[torch.Tensor]:
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, (list, tuple)):
        return [t for item in output for t in _tensors(item)]
    raise TypeError(f"unexpected block output {type(output).__name__}")


def _leaves(inputs: object) -> list[torch.Tensor]:
    return inputs if isinstance(inputs, list) else [inputs]


@pytest.mark.parametrize("name", sorted(registered_blocks()))
def test_every_registered_block_forward_backward(name: str) -> None:
    spec = registered_blocks()[name]
    channels, _ = _inputs(spec.channels, 64, 64)
    block, _, out_channels = build_layer(spec, spec.example_row_args(), channels, 1, CONTEXT)
    if spec.channels == "head":
        block.stride = torch.tensor([8.0, 16.0, 32.0])
    runs = [(size, False) for size in SIZES] + [(size, True) for size in AUTOCAST_SIZES]
    for (height, width), autocast in runs:
        where = (name, height, width, "bf16 autocast" if autocast else "float32")
        _, inputs = _inputs(spec.channels, height, width)
        block.train()
        block.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            outputs = _tensors(block(inputs))
        assert all(torch.isfinite(t).all() for t in outputs), where
        if spec.channels in ("scaled", "same", "none", "concat", "index"):
            assert outputs[0].shape[1] == out_channels, (*where, outputs[0].shape)
        if spec.channels == "features":
            assert tuple(t.shape[1] for t in outputs) == out_channels, (*where, [t.shape for t in outputs])
        sum(t.float().square().mean() for t in outputs).backward()
        selected = _leaves(inputs)[:1] if spec.channels == "index" else _leaves(inputs)  # Index reads output 0
        for leaf in selected:
            assert leaf.grad is not None and torch.isfinite(leaf.grad).all(), where
        for param_name, param in block.named_parameters():
            if param.requires_grad:
                assert param.grad is not None and torch.isfinite(param.grad).all(), (*where, param_name)
        if not autocast:
            block.eval()
            with torch.no_grad():
                _, inputs = _inputs(spec.channels, height, width)
                assert all(torch.isfinite(t).all() for t in _tensors(block(inputs))), (*where, "eval")


def test_builtin_blocks_are_registered_with_their_contracts() -> None:
    blocks = registered_blocks()
    expected = {
        "Conv": "scaled",
        "DWConv": "scaled",
        "C3k2": "scaled",
        "SPPF": "scaled",
        "C2PSA": "scaled",
        "Concat": "concat",
        "nn.Upsample": "none",
        "Detect": "head",
    }
    assert {name: blocks[name].channels for name in expected} == expected
    assert blocks["C3k2"].repeats and blocks["C2PSA"].repeats and not blocks["SPPF"].repeats


def test_duplicate_names_are_refused_and_contracts_checked() -> None:
    with pytest.raises(ValueError, match="already registered"):

        @register_block("C3k2", channels="scaled")
        class Impostor(nn.Module):
            pass

    with pytest.raises(ValueError, match="unknown channel contract"):
        register_block("Whatever", channels="wide")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="repeats=True"):
        register_block("Whatever", channels="same", repeats=True)


def test_repeats_stack_blocks_that_do_not_take_a_count() -> None:
    """A stack of copies of a block without a repeat count: each copy maps c_out -> c_out, and it runs."""
    spec = registered_blocks()["Conv"]
    module, args, out_channels = build_layer(spec, [32, 3], [32], 3, CONTEXT)
    assert isinstance(module, nn.Sequential) and len(module) == 3
    assert args == [32, 32, 3] and out_channels == 32
    assert module(torch.randn(1, 32, 8, 8)).shape == (1, 32, 8, 8)


def test_an_impossible_stack_fails_at_build_time() -> None:
    """Conv(16 -> 32) repeated 3 times cannot run (the second copy would get 32 channels, not 16).

    Each copy is Conv(c_in, c_out, ...) (the reference stacks the same way), so the build refuses it.
    """
    spec = registered_blocks()["Conv"]
    with pytest.raises(ValueError, match="3 stacked copies of 'Conv' from 16 to 32 channels cannot run"):
        build_layer(spec, [32, 3], [16], 3, CONTEXT)
