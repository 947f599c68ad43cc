"""timm's attention layers as blocks, by name: ``timm.se``, ``timm.cbam``, ``timm.sk`` ...

Each block wraps the layer ``timm.layers.get_attn(kind)`` builds for the row's input channels and
keeps the channel count (``"same"`` contract); a row's keyword arguments go to timm's constructor,
e.g. ``[-1, 1, timm.se, {rd_ratio: 0.25}]``. timm is imported when a block is built, not when this
module is imported.

Registered kinds (each maps (B, C, H, W) to the same shape at any H, W):

====== ====================================================================
se     squeeze-and-excitation (``SEModule``)
ese    effective SE, one 1x1 conv and a hard sigmoid (``EffectiveSEModule``)
eca    efficient channel attention, a 1-D conv over channels (``EcaModule``)
ecam   ECA with an MLP (``EcaModule(use_mlp=True)``)
ceca   circular-padding ECA (``CecaModule``)
ge     gather-excite with global extent and an MLP (``GatherExcite``)
gc     global context, scale fusion (``GlobalContext``)
gca    global context, additive fusion (``GlobalContext(fuse_add=True, fuse_scale=False)``)
cbam   channel + spatial attention (``CbamModule``)
lcbam  light CBAM (``LightCbamModule``)
coord  coordinate attention (``CoordAttn``)
scoord simple coordinate attention (``SimpleCoordAttn``)
ela    efficient local attention (``EfficientLocalAttn``)
strip  strip attention (``StripAttn``)
sk     selective kernel, 3x3 and 5x5 branches (``SelectiveKernel``)
splat  split attention of ResNeSt (``SplitAttn``)
====== ====================================================================

Left out: ``lambda``, ``halo`` and ``bottleneck`` (self-attention layers that need a fixed
feature size, or sizes divisible by their block size, given at construction: they cannot follow a
detector's input size), ``nl`` (non-local attention, quadratic in H x W: at P3 of a 640 image that
is a 6400 x 6400 matrix per image) and ``bat`` (fails to build with its defaults in timm 1.0).

``ge``: with its MLP, timm 1.0.31's ``GatherExcite`` constructor fails (it unpacks its
device/dtype dict positionally into ``ConvMlp``); the block builds it without the MLP and adds the
same ``ConvMlp(channels, rd_channels, act_layer)`` timm intends.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from yolo11_lightning.nn.registry import register_block

# kind -> one-line description (the class docstring of the block).
TIMM_ATTENTION_KINDS: dict[str, str] = {
    "se": "squeeze-and-excitation",
    "ese": "effective squeeze-and-excitation",
    "eca": "efficient channel attention",
    "ecam": "efficient channel attention with an MLP",
    "ceca": "circular efficient channel attention",
    "ge": "gather-excite (global extent, MLP)",
    "gc": "global context (scale fusion)",
    "gca": "global context (additive fusion)",
    "cbam": "convolutional block attention (channel + spatial)",
    "lcbam": "light convolutional block attention",
    "coord": "coordinate attention",
    "scoord": "simple coordinate attention",
    "ela": "efficient local attention",
    "strip": "strip attention",
    "sk": "selective kernel attention",
    "splat": "split attention (ResNeSt)",
}


def _gather_excite(channels: int, **options: Any) -> nn.Module:
    """timm's GatherExcite with its MLP added by hand (see the module docstring)."""
    from timm.layers import get_attn
    from timm.layers.helpers import make_divisible
    from timm.layers.mlp import ConvMlp

    use_mlp = options.pop("use_mlp", True)
    module = get_attn("ge")(channels, use_mlp=False, **options)
    if use_mlp:
        rd_channels = options.get("rd_channels") or make_divisible(
            channels * options.get("rd_ratio", 1.0 / 16), options.get("rd_divisor", 1), round_limit=0.0
        )
        module.mlp = ConvMlp(channels, rd_channels, act_layer=options.get("act_layer", nn.ReLU))
    return module


class TimmAttention(nn.Module):
    """Base of the timm attention blocks: ``self.attn`` is the timm layer for ``kind``.

    Args:
        channels: Input and output channels.
        **options: Keyword arguments of timm's constructor (e.g. ``rd_ratio`` for ``se``).
    """

    kind: str = ""

    def __init__(self, channels: int, **options: Any) -> None:
        super().__init__()
        self.channels = channels
        if self.kind == "ge":
            self.attn = _gather_excite(channels, **options)
        else:
            from timm.layers import get_attn

            self.attn = get_attn(self.kind)(channels, **options)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        return self.attn(x)


def _register_all() -> dict[str, type[TimmAttention]]:
    classes = {}
    for kind, description in TIMM_ATTENTION_KINDS.items():
        name = f"TimmAttention_{kind}"
        doc = f"timm's {description} (``get_attn({kind!r})``) as the block ``timm.{kind}``; see :class:`TimmAttention`."
        cls = type(name, (TimmAttention,), {"kind": kind, "__doc__": doc, "__module__": __name__})
        cls.__qualname__ = name
        classes[name] = register_block(f"timm.{kind}", channels="same")(cls)
    return classes


_CLASSES = _register_all()
globals().update(_CLASSES)  # module attributes, so the classes can be found (and pickled) by name
