"""Concat and nearest upsampling as the configs name them."""

from __future__ import annotations

import torch

from yolo11_lightning.nn.blocks.misc import Concat
from yolo11_lightning.nn.registry import get_block


def test_concat_joins_along_channels() -> None:
    a, b = torch.randn(2, 3, 4, 5), torch.randn(2, 7, 4, 5)
    assert torch.equal(Concat(1)([a, b]), torch.cat([a, b], 1))
    assert get_block("Concat").channels == "concat"


def test_upsample_row_builds_nearest_2x() -> None:
    spec = get_block("nn.Upsample")
    upsample = spec.cls(*spec.example_row_args())  # the config row's [None, 2, "nearest"]
    x = torch.arange(4.0).view(1, 1, 2, 2)
    assert torch.equal(upsample(x), x.repeat_interleave(2, 2).repeat_interleave(2, 3))
    assert spec.channels == "none"
