"""Fixtures shared by the network tests (this folder and blocks/)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch


def _as_in_reference_models(module: torch.nn.Module) -> torch.nn.Module:
    """Set BatchNorm eps to 1e-3 as the reference's model builder does (its modules alone use 1e-5)."""
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eps = 1e-3
    return module


@pytest.fixture
def as_in_reference_models() -> Callable[[torch.nn.Module], torch.nn.Module]:
    """The function that gives a reference module our BatchNorm settings, for module-level parity."""
    return _as_in_reference_models


def _check_shape_preserving_backward(module: torch.nn.Module, x: torch.Tensor, nonzero_grads: bool = False) -> None:
    """Forward keeps the shape and is finite; backward gives finite gradients to the input and every parameter.

    Args:
        module: A block mapping (B, C, H, W) to the same shape.
        x: Input with ``requires_grad=True``.
        nonzero_grads: Also require every gradient to be non-zero somewhere.
    """
    out = module(x)
    assert out.shape == x.shape and torch.isfinite(out).all()
    out.square().mean().backward()
    assert torch.isfinite(x.grad).all() and (not nonzero_grads or x.grad.abs().sum() > 0)
    for name, param in module.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert not nonzero_grads or param.grad.abs().sum() > 0, name


@pytest.fixture
def check_shape_preserving_backward() -> Callable[..., None]:
    """The forward/backward finiteness check shared by the attention-block tests."""
    return _check_shape_preserving_backward
