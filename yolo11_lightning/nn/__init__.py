"""The YOLO11 network in plain PyTorch: blocks, registry, builder, weights. No Lightning import.

Importing this package registers the built-in blocks (``blocks``, ``head``, the timm wrappers).
"""

from yolo11_lightning.nn import blocks, head  # noqa: F401  (registers the built-in blocks)
from yolo11_lightning.nn.builder import build_model
from yolo11_lightning.nn.model import DetectionModel
from yolo11_lightning.nn.registry import BlockSpec, get_block, register_block, registered_blocks
from yolo11_lightning.nn.summary import model_summary
from yolo11_lightning.nn.weights import load_weights

__all__ = [
    "BlockSpec",
    "DetectionModel",
    "build_model",
    "get_block",
    "load_weights",
    "model_summary",
    "register_block",
    "registered_blocks",
]
