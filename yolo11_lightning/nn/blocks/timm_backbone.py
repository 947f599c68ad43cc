"""TimmBackbone: any timm model as a feature backbone with several outputs (e.g. P3, P4, P5).

A row ``[-1, 1, TimmBackbone, [resnet18]]`` builds ``timm.create_model("resnet18",
features_only=True, out_indices=(2, 3, 4), pretrained=False)``; its outputs are selected by
``Index`` rows (``[0, 1, Index, [0]]`` is the stride-8 map). The block takes images in [0, 1] as the
detector does and normalises them itself with the model's ``mean`` and ``std`` (its timm
pretrained config; ImageNet's when it has none), so pretrained weights see the input they expect.

Weights: never downloaded. ``weights: path/to/file`` (``.pth``, ``.bin`` or ``.safetensors``, the
full timm model's state dict as timm saves it) loads local pretrained weights through timm's
``pretrained_cfg_overlay={"file": path}``; the default is random initialisation.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from yolo11_lightning.nn.registry import register_block

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


@register_block("TimmBackbone", channels="features", example_args=("resnet10t",))
class TimmBackbone(nn.Module):
    """A timm model's feature maps at the selected levels, from images in [0, 1].

    Args:
        in_channels: Image channels (passed to timm as ``in_chans``).
        name: timm model name (``timm.list_models()``), e.g. ``"resnet18"``.
        out_indices: Feature levels to return; for most timm models ``(2, 3, 4)`` are the maps at
            strides 8, 16 and 32.
        weights: Local file of pretrained weights for the full timm model; ``None``: random init.
        **options: Further keyword arguments of ``timm.create_model`` (e.g. ``drop_path_rate``).

    Attributes:
        out_channels: Channels of each output, in order (read by the model builder).
        reductions: Stride of each output relative to the input.
    """

    def __init__(
        self,
        in_channels: int,
        name: str,
        out_indices: Sequence[int] = (2, 3, 4),
        weights: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__()
        import timm

        if weights is not None:
            path = Path(weights).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"TimmBackbone {name!r}: weights file not found: {path}")
            options["pretrained_cfg_overlay"] = {**options.get("pretrained_cfg_overlay", {}), "file": str(path)}
        try:
            self.body = timm.create_model(
                name,
                features_only=True,
                out_indices=tuple(out_indices),
                pretrained=weights is not None,
                in_chans=in_channels,
                **options,
            )
        except RuntimeError as error:
            if "Unknown model" in str(error):
                raise ValueError(f"unknown timm model {name!r}; see timm.list_models()") from None
            raise
        self.name = name
        self.out_channels: list[int] = list(self.body.feature_info.channels())
        self.reductions: list[int] = list(self.body.feature_info.reduction())
        config = getattr(self.body, "pretrained_cfg", None) or {}
        mean = _per_channel(config.get("mean", _IMAGENET_MEAN), in_channels)
        std = _per_channel(config.get("std", _IMAGENET_STD), in_channels)
        # Not in the state dict: they follow from the timm model, and weight files stay plain.
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, C, H, W) images in [0, 1] -> ``[(B, out_channels[i], H / reductions[i], W / reductions[i])]``."""
        return list(self.body((x - self.mean.to(x.dtype)) / self.std.to(x.dtype)))

    def extra_repr(self) -> str:
        return f"name={self.name!r}, out_channels={self.out_channels}, reductions={self.reductions}"


def _per_channel(values: Sequence[float], channels: int) -> list[float]:
    """Normalisation constants for ``channels`` channels (their mean repeated when counts differ)."""
    values = [float(v) for v in values]
    if len(values) == channels:
        return values
    return [sum(values) / len(values)] * channels
