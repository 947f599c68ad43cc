"""Shared test configuration: the reference-package gate, a fixed seed and the thread count restored.

Tests that compare against the reference implementation are marked ``@pytest.mark.reference``;
they are skipped (with a reason) when ``ultralytics`` is not installed. Helpers cannot be imported
from ``tests.*``: the reference installs a top-level ``tests`` package that shadows ours, so shared
helpers live in plain modules next to the tests that use them.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

# The data test helpers (data_builders) are used by the inference tests too.
sys.path.insert(0, str(Path(__file__).parent / "data"))

HAS_REFERENCE = importlib.util.find_spec("ultralytics") is not None

# Quiet, offline reference package when it is installed.
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_VERBOSE", "False")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if HAS_REFERENCE:
        return
    skip = pytest.mark.skip(reason="reference package (ultralytics) not installed")
    for item in items:
        if "reference" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _restore_thread_count() -> Iterator[None]:
    """Give the next test torch's intra-op thread count as this one found it (some tests pin it to 1)."""
    threads = torch.get_num_threads()
    yield
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
