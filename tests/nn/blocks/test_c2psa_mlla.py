"""C2PSAMLLA: C2PSA with MLLAttention in its PSABlocks."""

from __future__ import annotations

import pytest
import torch

from yolo11_lightning.nn.blocks.c2psa_mlla import C2PSAMLLA
from yolo11_lightning.nn.blocks.mlla import MLLAttention
from yolo11_lightning.nn.blocks.psa import C2PSA, PSABlock
from yolo11_lightning.nn.registry import get_block


def test_parameter_count_matches_the_seed() -> None:
    assert sum(p.numel() for p in C2PSAMLLA(256, 256, 1).parameters()) == 232_704
    # C2PSA(256) minus its softmax attention (51,328) plus MLLAttention(128) (34,304).
    assert sum(p.numel() for p in C2PSA(256, 256, 1).parameters()) == 249_728


def test_structure_heads_and_registration() -> None:
    block = C2PSAMLLA(128, 128, 2)
    assert len(block.m) == 2
    for psa in block.m:
        assert isinstance(psa, PSABlock) and psa.add
        assert isinstance(psa.attn, MLLAttention)
        assert psa.attn.in_channels == 64 and psa.attn.num_heads == 4  # the seed's fixed 4 heads
        assert psa.ffn[0].conv.out_channels == 128  # 2x feed-forward
    spec = get_block("C2PSAMLLA")
    assert spec.cls is C2PSAMLLA and spec.channels == "scaled" and spec.repeats
    # Same keys as C2PSA outside the attention internals.
    outer = {k for k in C2PSA(128, 128, 2).state_dict() if ".attn." not in k}
    assert outer == {k for k in block.state_dict() if ".attn." not in k}
    with pytest.raises(ValueError):
        C2PSAMLLA(128, 64, 1)


@pytest.mark.parametrize("hw", [(8, 8), (8, 12), (12, 8)])
def test_forward_backward_finite_on_square_and_non_square_maps(
    hw: tuple[int, int], check_shape_preserving_backward
) -> None:
    """Every parameter, the attention's included, gets a finite, non-zero gradient."""
    check_shape_preserving_backward(
        C2PSAMLLA(64, 64, 1), torch.randn(2, 64, *hw, requires_grad=True), nonzero_grads=True
    )


def test_a_dead_attention_branch_is_caught(monkeypatch: pytest.MonkeyPatch, check_shape_preserving_backward) -> None:
    """An attention whose output is cut off (the residual alone carries the signal) fails the check above."""
    real_forward = MLLAttention.forward
    monkeypatch.setattr(MLLAttention, "forward", lambda self, x: real_forward(self, x) * 0.0)
    with pytest.raises(AssertionError, match="attn"):
        check_shape_preserving_backward(
            C2PSAMLLA(64, 64, 1), torch.randn(2, 64, 8, 8, requires_grad=True), nonzero_grads=True
        )


def test_bf16_autocast_finite() -> None:
    block = C2PSAMLLA(64, 64, 1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = block(torch.randn(1, 64, 6, 10))
    assert torch.isfinite(out.float()).all()


def test_psa_attention_matches_standalone_mllattention() -> None:
    block = C2PSAMLLA(64, 64, 1).eval()
    attn = block.m[0].attn
    standalone = MLLAttention(32)
    standalone.load_state_dict(attn.state_dict())
    x = torch.randn(1, 32, 5, 7)
    torch.testing.assert_close(attn(x), standalone(x))
