"""The YOLO11 network in plain PyTorch: blocks, registry, builder, weights. No Lightning import."""

from yolo11_lightning.nn.registry import BlockSpec, get_block, register_block, registered_blocks

__all__ = ["BlockSpec", "get_block", "register_block", "registered_blocks"]
