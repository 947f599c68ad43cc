"""The shared fixtures of ``tests/conftest.py``: a test that pins torch's thread count does not leak it."""

from __future__ import annotations

import torch

_BEFORE: list[int] = []  # the count when the pinning test started (earlier files may have changed it)


def test_a_test_that_pins_one_thread() -> None:
    _BEFORE.append(torch.get_num_threads())
    torch.set_num_threads(1 if _BEFORE[0] > 1 else 2)
    assert torch.get_num_threads() != _BEFORE[0]


def test_the_next_test_gets_the_thread_count_back() -> None:
    """Runs after the test above (file order): the autouse fixture restored the count."""
    assert _BEFORE and torch.get_num_threads() == _BEFORE[0]
