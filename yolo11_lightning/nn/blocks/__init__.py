"""Built-in blocks. Importing this package registers every block with the registry."""

from yolo11_lightning.nn.blocks.c2psa_mlla import C2PSAMLLA
from yolo11_lightning.nn.blocks.conv import Conv, DWConv
from yolo11_lightning.nn.blocks.csp import Bottleneck, C3k, C3k2
from yolo11_lightning.nn.blocks.focal import FocalModulation
from yolo11_lightning.nn.blocks.misc import Concat, Index
from yolo11_lightning.nn.blocks.mlla import MLLAttention
from yolo11_lightning.nn.blocks.psa import C2PSA, Attention, PSABlock
from yolo11_lightning.nn.blocks.sppf import SPPF
from yolo11_lightning.nn.blocks.timm_attention import TimmAttention
from yolo11_lightning.nn.blocks.timm_backbone import TimmBackbone

__all__ = [
    "C2PSA",
    "C2PSAMLLA",
    "SPPF",
    "Attention",
    "Bottleneck",
    "C3k",
    "C3k2",
    "Concat",
    "Conv",
    "DWConv",
    "FocalModulation",
    "Index",
    "MLLAttention",
    "PSABlock",
    "TimmAttention",
    "TimmBackbone",
]
