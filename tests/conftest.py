"""Shared test fixtures and the reference-package gate."""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch

HAS_REFERENCE = importlib.util.find_spec("ultralytics") is not None

# Quiet, deterministic reference package when it is installed (no settings file chatter, no network).
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_VERBOSE", "False")

requires_reference = pytest.mark.skipif(not HAS_REFERENCE, reason="reference package (ultralytics) not installed")


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
