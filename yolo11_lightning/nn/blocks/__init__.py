"""Built-in blocks. Importing this package registers every block with the registry."""

from yolo11_lightning.nn.blocks.conv import Conv, DWConv
from yolo11_lightning.nn.blocks.psa import C2PSA, Attention, PSABlock

__all__ = ["Attention", "C2PSA", "Conv", "DWConv", "PSABlock"]
