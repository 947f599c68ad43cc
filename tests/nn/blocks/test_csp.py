"""Bottleneck, C3k, C3k2: structure, parameter counts and parity with the reference modules."""

from __future__ import annotations

import pytest
import torch

from yolo11_lightning.nn.blocks.csp import Bottleneck, C3k, C3k2


def test_bottleneck_residual_only_when_shapes_allow() -> None:
    assert Bottleneck(32, 32).add and not Bottleneck(32, 64).add and not Bottleneck(32, 32, shortcut=False).add
    block = Bottleneck(16, 16).eval()
    x = torch.randn(1, 16, 8, 8)
    with torch.no_grad():
        assert torch.allclose(block(x), x + block.cv2(block.cv1(x)))


@pytest.mark.parametrize("c3k", [False, True])
def test_c3k2_shapes_and_stages(c3k: bool) -> None:
    block = C3k2(32, 48, n=2, c3k=c3k, e=0.25)
    assert block.hidden_channels == 12
    assert all(isinstance(m, C3k if c3k else Bottleneck) for m in block.m)
    assert block.cv2.conv.in_channels == (2 + 2) * 12  # every stage is concatenated
    assert block(torch.randn(2, 32, 16, 24)).shape == (2, 48, 16, 24)


@pytest.mark.reference
@pytest.mark.parametrize(
    ("n", "c3k", "e", "shortcut"), [(1, False, 0.25, True), (2, True, 0.5, True), (1, True, 0.5, False)]
)
def test_c3k2_matches_the_reference(n: int, c3k: bool, e: float, shortcut: bool, as_in_reference_models) -> None:
    block_module = pytest.importorskip("ultralytics.nn.modules.block")
    reference = as_in_reference_models(block_module.C3k2(32, 64, n, c3k, e, 1, shortcut)).eval()
    ours = C3k2(32, 64, n, c3k, e, 1, shortcut).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 32, 16, 24)
    with torch.no_grad():
        assert (ours(x) - reference(x)).abs().max().item() < 1e-5


@pytest.mark.reference
def test_c3k_matches_the_reference(as_in_reference_models) -> None:
    block_module = pytest.importorskip("ultralytics.nn.modules.block")
    reference = as_in_reference_models(block_module.C3k(24, 24, 2, True, 1, 0.5, 3)).eval()
    ours = C3k(24, 24, 2, True, 1, 0.5, 3).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(1, 24, 12, 8)
    with torch.no_grad():
        assert (ours(x) - reference(x)).abs().max().item() < 1e-5
