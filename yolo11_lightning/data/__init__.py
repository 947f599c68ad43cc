"""Data: ``data.yaml`` parsing, verification with a cache, augmentation, samplers, the DataModule.

``YOLODataModule`` (which imports Lightning) is loaded lazily; the rest is plain PyTorch/NumPy.
"""

from __future__ import annotations

import importlib
from typing import Any

from yolo11_lightning.data.augment import AugmentConfig
from yolo11_lightning.data.config import DataConfig, load_data_config
from yolo11_lightning.data.dataset import YOLODataset, collate
from yolo11_lightning.data.samplers import SampleRequest, TrainingSampler, ValidationSampler
from yolo11_lightning.data.scan import ImageRecord, ScanSummary, scan_split

__all__ = [
    "AugmentConfig",
    "DataConfig",
    "ImageRecord",
    "SampleRequest",
    "ScanSummary",
    "TrainingSampler",
    "ValidationSampler",
    "YOLODataModule",
    "YOLODataset",
    "collate",
    "load_data_config",
    "scan_split",
]


def __getattr__(name: str) -> Any:
    if name == "YOLODataModule":
        return importlib.import_module("yolo11_lightning.data.datamodule").YOLODataModule
    raise AttributeError(f"module 'yolo11_lightning.data' has no attribute {name!r}")
