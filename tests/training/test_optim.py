"""The optimisation recipe against the formulas (reference-facts.md), computed independently here."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from yolo11_lightning.training.optim import (
    BIAS_GROUP,
    DECAY_GROUP,
    NORM_GROUP,
    apply_settings,
    build_optimizer,
    lr_factor,
    nominal_accumulate,
    scaled_weight_decay,
    settings_at,
    split_parameters,
    warmup_iterations,
)


def _tiny() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8), nn.Conv2d(8, 4, 1), nn.LayerNorm(4), nn.Linear(4, 2)
    )


def test_parameter_groups_split_and_freeze() -> None:
    model = _tiny()
    model[2].weight.requires_grad_(False)  # frozen parameters (the DFL conv) are left out
    groups = split_parameters(model)
    assert groups.biases == [model[1].bias, model[2].bias, model[3].bias, model[4].bias]
    assert groups.norm_weights == [model[1].weight, model[3].weight]
    assert groups.decay_weights == [model[0].weight, model[4].weight]


def test_parameter_groups_of_yolo11n() -> None:
    from yolo11_lightning.nn.builder import build_model

    model = build_model("yolo11n.yaml", nc=4)
    for parameter in model.head.dfl.parameters():
        parameter.requires_grad_(False)
    groups = split_parameters(model)
    named = {id(p): n for n, p in model.named_parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len(groups.biases) + len(groups.decay_weights) + len(groups.norm_weights) == len(trainable)
    assert all(named[id(p)].endswith("bias") for p in groups.biases)
    assert all(named[id(p)].endswith(".bn.weight") or ".bn" in named[id(p)] for p in groups.norm_weights)
    assert all(p.dim() > 1 for p in groups.decay_weights)  # conv/linear kernels only
    assert all(id(p) != id(model.head.dfl.conv.weight) for p in groups.decay_weights)


@pytest.mark.parametrize(
    ("batch", "accumulate", "decay"),
    [(16, 4, 5e-4), (64, 1, 5e-4), (8, 8, 5e-4), (24, 3, 5e-4 * 24 * 3 / 64), (100, 1, 5e-4 * 100 / 64)],
)
def test_nominal_batch_and_weight_decay(batch: int, accumulate: int, decay: float) -> None:
    assert nominal_accumulate(batch) == accumulate
    assert scaled_weight_decay(5e-4, batch) == pytest.approx(decay, rel=1e-12)


def test_optimizer_groups_and_settings() -> None:
    model = _tiny()
    optimizer = build_optimizer(model, lr0=0.01, momentum=0.937, weight_decay=7e-4)
    assert isinstance(optimizer, torch.optim.SGD)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.0, 7e-4, 0.0]
    assert all(g["nesterov"] and g["momentum"] == 0.937 for g in optimizer.param_groups)
    assert optimizer.param_groups[BIAS_GROUP]["params"] == split_parameters(model).biases
    assert optimizer.param_groups[NORM_GROUP]["params"] == split_parameters(model).norm_weights
    assert optimizer.param_groups[DECAY_GROUP]["params"] == split_parameters(model).decay_weights


@pytest.mark.parametrize("name", ["SGD", "AdamW"])
def test_cpu_optimizer_is_fused_and_steps_like_the_default_one(name: str) -> None:
    torch.manual_seed(0)
    fused_model, default_model = _tiny(), _tiny()
    default_model.load_state_dict(fused_model.state_dict())
    fused = build_optimizer(fused_model, lr0=0.01, momentum=0.937, weight_decay=5e-4, optimizer=name)
    assert all(group["fused"] for group in fused.param_groups)
    # The same groups and settings, stepped by the default (multi-tensor) implementation.
    default = type(fused)(
        [
            {**{k: v for k, v in group.items() if k not in ("params", "fused")}, "params": params}
            for group, params in zip(fused.param_groups, _same_groups(fused, fused_model, default_model))
        ]
    )
    for _ in range(3):
        gradients = [torch.randn_like(p) for p in fused_model.parameters()]
        for model, optimizer in ((fused_model, fused), (default_model, default)):
            for parameter, gradient in zip(model.parameters(), gradients):
                parameter.grad = gradient.clone()
            optimizer.step()
    for a, b in zip(fused_model.parameters(), default_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def _same_groups(optimizer: torch.optim.Optimizer, source: nn.Module, target: nn.Module) -> list[list]:
    """``optimizer``'s groups (over ``source``'s parameters) as lists of ``target``'s parameters."""
    index = {id(p): i for i, p in enumerate(source.parameters())}
    parameters = list(target.parameters())
    return [[parameters[index[id(p)]] for p in group["params"]] for group in optimizer.param_groups]


def _linear(e: int, epochs: int, lrf: float) -> float:
    return max(1 - e / epochs, 0) * (1.0 - lrf) + lrf


def _cosine(e: int, epochs: int, lrf: float) -> float:
    return ((1 - math.cos(e * math.pi / epochs)) / 2) * (lrf - 1) + 1


def test_lr_factor_formulas() -> None:
    for epoch in range(0, 11):
        assert lr_factor(epoch, 10, 0.01, "linear") == pytest.approx(_linear(epoch, 10, 0.01))
        assert lr_factor(epoch, 10, 0.01, "cosine") == pytest.approx(_cosine(epoch, 10, 0.01))
    assert lr_factor(10, 10, 0.01, "cosine") == pytest.approx(0.01)
    assert lr_factor(0, 10, 0.01, "linear") == 1.0


def test_warmup_length() -> None:
    assert warmup_iterations(3.0, 10) == 100  # at least 100 iterations
    assert warmup_iterations(3.0, 50) == 150
    assert warmup_iterations(0.0, 50) == -1


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("iteration", [0, 1, 37, 99, 150, 299, 300, 301, 450, 999])
def test_settings_at_iteration(schedule: str, iteration: int) -> None:
    batches, epochs, batch, lr0, lrf = 100, 10, 16, 0.01, 0.01
    warmup = max(round(3 * batches), 100)  # 300
    epoch = iteration // batches
    factor = (_linear if schedule == "linear" else _cosine)(epoch, epochs, lrf)
    settings = settings_at(
        iteration,
        epoch,
        epochs=epochs,
        warmup_iters=warmup,
        lr0=lr0,
        lrf=lrf,
        schedule=schedule,
        momentum=0.937,
        warmup_momentum=0.8,
        warmup_bias_lr=0.1,
        batch_size=batch,
    )
    if iteration <= warmup:
        xi = [0, warmup]
        expected_bias = np.interp(iteration, xi, [0.1, lr0 * factor])
        expected_weight = np.interp(iteration, xi, [0.0, lr0 * factor])
        expected_momentum = np.interp(iteration, xi, [0.8, 0.937])
        expected_accumulate = max(1, int(np.interp(iteration, xi, [1, 64 / batch]).round()))
    else:
        expected_bias = expected_weight = lr0 * factor
        expected_momentum, expected_accumulate = 0.937, 4
    assert settings.lrs[0] == pytest.approx(expected_bias, abs=1e-12)
    assert settings.lrs[1] == pytest.approx(expected_weight, abs=1e-12)
    assert settings.lrs[2] == pytest.approx(expected_weight, abs=1e-12)
    assert settings.momentum == pytest.approx(expected_momentum, abs=1e-12)
    assert settings.accumulate == expected_accumulate
    # Spot values written out by hand.
    if iteration == 0:
        assert settings.lrs == (0.1, 0.0, 0.0) and settings.momentum == 0.8 and settings.accumulate == 1
    if iteration == 150:  # halfway through warmup, epoch 1
        target = 0.01 * factor
        assert settings.lrs[0] == pytest.approx((0.1 + target) / 2)
        assert settings.lrs[1] == pytest.approx(target / 2)
        assert settings.momentum == pytest.approx((0.8 + 0.937) / 2)
        assert settings.accumulate == 2  # round(2.5) -> 2 (round half to even, as numpy)


def test_apply_settings_writes_groups() -> None:
    optimizer = build_optimizer(_tiny(), lr0=0.01, momentum=0.937, weight_decay=5e-4)
    settings = settings_at(
        10,
        0,
        epochs=5,
        warmup_iters=100,
        lr0=0.01,
        lrf=0.01,
        schedule="linear",
        momentum=0.937,
        warmup_momentum=0.8,
        warmup_bias_lr=0.1,
        batch_size=16,
    )
    apply_settings(optimizer, settings)
    assert [g["lr"] for g in optimizer.param_groups] == list(settings.lrs)
    assert all(g["momentum"] == settings.momentum for g in optimizer.param_groups)


def test_adamw_keeps_its_betas_through_warmup() -> None:
    optimizer = build_optimizer(_tiny(), lr0=0.002, momentum=0.9, weight_decay=5e-4, optimizer="AdamW")
    assert isinstance(optimizer, torch.optim.AdamW)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.0, 5e-4, 0.0]
    settings = settings_at(
        3,
        0,
        epochs=5,
        warmup_iters=100,
        lr0=0.002,
        lrf=0.01,
        schedule="linear",
        momentum=0.9,
        warmup_momentum=0.8,
        warmup_bias_lr=0.0,
        batch_size=16,
    )
    apply_settings(optimizer, settings)
    assert all(g["betas"] == (0.9, 0.999) for g in optimizer.param_groups)
    assert [g["lr"] for g in optimizer.param_groups] == list(settings.lrs)


def test_auto_optimizer_follows_the_reference_rule() -> None:
    from yolo11_lightning.training.optim import OptimizerChoice, auto_optimizer, training_iterations

    # shapes4 (64 images), batch 16, 100 epochs: ceil(64 / 64) * 100 = 100 iterations -> AdamW, lr fitted to nc.
    short = training_iterations(64, 16, 100)
    assert short == 100
    assert auto_optimizer(short, 4) == OptimizerChoice("AdamW", 0.00125, 0.9, 0.0)
    assert auto_optimizer(short, 80).lr0 == round(0.002 * 5 / 84, 6) == 0.000119
    # COCO-sized (118,287 images), batch 16, 100 epochs: 1,849 x 100 iterations -> SGD 0.01.
    long = training_iterations(118_287, 16, 100)
    assert long == 184_900
    assert auto_optimizer(long, 80) == OptimizerChoice("SGD", 0.01, 0.9, 0.0)
    # The boundary: more than 10,000 iterations.
    assert auto_optimizer(10_000, 4).name == "AdamW" and auto_optimizer(10_001, 4).name == "SGD"
    assert training_iterations(1000, 128, 10) == 80  # batches larger than the nominal 64 count as they are


def test_module_resolves_auto_from_the_training_set() -> None:
    from types import SimpleNamespace

    from yolo11_lightning.training.module import YOLOModule

    module = YOLOModule("yolo11n.yaml", num_classes=4, batch_size=16, optimizer="auto", lr0=0.5, momentum=0.5)

    def resolved(num_images: int, epochs: int) -> tuple[str, float, float]:
        datamodule = SimpleNamespace(datasets={"train": [None] * num_images})
        trainer = SimpleNamespace(datamodule=datamodule, max_epochs=epochs, world_size=1)
        object.__setattr__(module, "_trainer", trainer)
        choice = module.optimizer_choice()
        return choice.name, choice.lr0, choice.warmup_bias_lr

    assert resolved(64, 100) == ("AdamW", 0.00125, 0.0)
    assert resolved(64_000, 100) == ("SGD", 0.01, 0.0)
    explicit = YOLOModule("yolo11n.yaml", num_classes=4, batch_size=16, optimizer="SGD", lr0=0.02)
    assert explicit.optimizer_choice().lr0 == 0.02
