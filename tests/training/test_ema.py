"""ModelEMA: the decay ramp and the update rule."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from yolo11_lightning.training.ema import ModelEMA, ema_decay


def test_decay_formula() -> None:
    for updates in (1, 10, 2000, 20000):
        assert ema_decay(updates) == pytest.approx(0.9999 * (1 - math.exp(-updates / 2000)), rel=1e-12)
    assert ema_decay(0) == 0.0


def test_update_averages_floats_only() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    ema = ModelEMA(model, decay=0.9, tau=10.0)
    initial = {k: v.clone() for k, v in ema.state_dict().items()}
    assert not any(p.requires_grad for p in ema.module.parameters())
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)
    model(torch.rand(2, 3, 4, 4))  # train-mode BN: running stats and num_batches_tracked change
    for step in (1, 2):
        before = {k: v.clone() for k, v in ema.state_dict().items()}
        ema.update(model)
        d = 0.9 * (1 - math.exp(-step / 10.0))
        for key, value in ema.state_dict().items():
            if value.dtype.is_floating_point:
                torch.testing.assert_close(value, d * before[key] + (1 - d) * model.state_dict()[key])
    assert ema.updates == 2
    assert ema.state_dict()["1.num_batches_tracked"] == initial["1.num_batches_tracked"]


def test_update_reaches_tensors_replaced_after_the_first_update() -> None:
    """Moving either model (``.to()``/``_apply`` replace the tensors) must not leave the average on stale copies."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))
    ema = ModelEMA(model, decay=0.9, tau=10.0)
    ema.update(model)
    ema.module.to(torch.float64)  # new parameter data and new buffer objects
    model.to(memory_format=torch.channels_last)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)
    model(torch.rand(2, 3, 6, 6))
    before = {k: v.clone() for k, v in ema.state_dict().items()}
    ema.update(model)
    d = 0.9 * (1 - math.exp(-2 / 10.0))
    for key, value in ema.state_dict().items():
        if value.dtype.is_floating_point:
            assert value.dtype == torch.float64
            expected = d * before[key] + (1 - d) * model.state_dict()[key].double()
            torch.testing.assert_close(value, expected)
    other = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))  # a new tracked model
    before = {k: v.clone() for k, v in ema.state_dict().items()}
    ema.update(other)
    d = 0.9 * (1 - math.exp(-3 / 10.0))
    expected = d * before["2.weight"] + (1 - d) * other[2].weight.double()
    torch.testing.assert_close(ema.state_dict()["2.weight"], expected)
