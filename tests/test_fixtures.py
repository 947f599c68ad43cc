"""The shared fixtures of ``tests/conftest.py``: a test that pins torch's thread count does not leak it."""

from __future__ import annotations

import torch

_THREADS_AT_IMPORT = torch.get_num_threads()


def test_a_test_that_pins_one_thread() -> None:
    torch.set_num_threads(1 if _THREADS_AT_IMPORT > 1 else 2)
    assert torch.get_num_threads() != _THREADS_AT_IMPORT


def test_the_next_test_gets_the_thread_count_back() -> None:
    """Runs after the test above (file order): the autouse fixture restored the count."""
    assert torch.get_num_threads() == _THREADS_AT_IMPORT
