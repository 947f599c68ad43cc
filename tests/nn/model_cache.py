"""Models built once per test session (building the large scales takes seconds on 2 cores).

``cached_model`` hands out a deep copy of the session's build, so a test that changes the mode,
the weights or the gradients of its model cannot leak that state into another test.
"""

from __future__ import annotations

import copy
import functools

from yolo11_lightning.nn.builder import build_model
from yolo11_lightning.nn.model import DetectionModel


@functools.cache
def _built_model(config: str, nc: int | None = None) -> DetectionModel:
    """The one build per ``(config, nc)``: never handed out, only copied."""
    return build_model(config, nc=nc)


def cached_model(config: str, nc: int | None = None) -> DetectionModel:
    """A private copy of the model built for ``config`` (train mode, no gradients)."""
    return copy.deepcopy(_built_model(config, nc))
