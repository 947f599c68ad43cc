"""SPPF: chained pools equal parallel pools of growing size; parity with the reference."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from yolo11_lightning.nn.blocks.sppf import SPPF


def test_chained_pools_equal_spp_5_9_13() -> None:
    block = SPPF(16, 16, kernel_size=5).eval()
    x = torch.randn(1, 16, 20, 28)
    with torch.no_grad():
        hidden = block.cv1(x)
        spp = torch.cat([hidden] + [F.max_pool2d(hidden, k, 1, k // 2) for k in (5, 9, 13)], dim=1)
        assert torch.equal(block(x), block.cv2(spp))


@pytest.mark.reference
def test_sppf_matches_the_reference(as_in_reference_models) -> None:
    block_module = pytest.importorskip("ultralytics.nn.modules.block")
    reference = as_in_reference_models(block_module.SPPF(64, 32, 5)).eval()
    ours = SPPF(64, 32, 5).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in reference.parameters())
    x = torch.randn(2, 64, 10, 14)
    with torch.no_grad():
        assert (ours(x) - reference(x)).abs().max().item() < 1e-5
