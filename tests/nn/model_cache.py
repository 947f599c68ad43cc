"""Models built once per test session (building the large scales takes seconds on 2 cores).

Tests that change a model's weights or structure must build their own instead.
"""

from __future__ import annotations

import functools

from yolo11_lightning.nn.builder import build_model
from yolo11_lightning.nn.model import DetectionModel


@functools.lru_cache(maxsize=None)
def cached_model(config: str, nc: int | None = None) -> DetectionModel:
    """A freshly built model for ``config``; shared, so treat it as read-only."""
    return build_model(config, nc=nc)
