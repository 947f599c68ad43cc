"""yolo11_lightning: a Lightning-native reimplementation of the YOLO11 detector.

Public surface:
    build_model, load_weights: the network (plain PyTorch, ``yolo11_lightning.nn``).
    DetectionLoss: the training loss.
    Detector: a trained model on images, folders, videos, arrays (``Detector.from_checkpoint``).
    YOLODataModule, YOLOModule: the Lightning side (imported lazily, so the network, the loss and
        the data utilities stay usable without importing Lightning).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "build_model": "yolo11_lightning.nn.builder",
    "load_weights": "yolo11_lightning.nn.weights",
    "DetectionLoss": "yolo11_lightning.loss.detection",
    "Detector": "yolo11_lightning.inference.detector",
    "YOLODataModule": "yolo11_lightning.data.datamodule",
    "YOLOModule": "yolo11_lightning.training.module",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'yolo11_lightning' has no attribute {name!r}")
