"""Fixtures shared by the network tests (this folder and blocks/)."""

from __future__ import annotations

from typing import Callable

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
