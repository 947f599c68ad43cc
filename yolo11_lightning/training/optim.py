"""The YOLO11 optimisation recipe as pure functions: parameter groups, nominal batch, warmup, schedule.

Everything here is a function of its arguments (no hidden state), so the recipe can be unit-tested
against the formulas and a resumed run recomputes exactly the values of an uninterrupted one from
the loop counters alone.

Recipe (the reference's defaults):
    * SGD, momentum 0.937, Nesterov, three parameter groups: biases (no decay), conv/linear weights
      (decay), normalisation weights (no decay).
    * nominal batch 64: gradients are accumulated over ``accumulate = max(round(64 / batch), 1)``
      batches and the weight decay is scaled by ``batch * accumulate / 64``.
    * LR factor per epoch: linear ``(1 - e / E) * (1 - lrf) + lrf`` or cosine from 1 to ``lrf``.
    * warmup over ``max(round(warmup_epochs * batches_per_epoch), 100)`` iterations: the bias LR falls
      from ``warmup_bias_lr`` and the other LRs rise from 0 to ``lr0 * factor(epoch)``; momentum
      rises from ``warmup_momentum`` to ``momentum``; the accumulation count rises from 1 to its
      nominal value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

# Index of each parameter group in the optimizer (the bias group comes first, as in the reference,
# because the warmup treats group 0 specially).
BIAS_GROUP, DECAY_GROUP, NORM_GROUP = 0, 1, 2

ScheduleName = Literal["linear", "cosine"]


@dataclass(frozen=True)
class ParameterGroups:
    """Trainable parameters split the way the recipe applies weight decay.

    Attributes:
        biases: every parameter whose name contains ``bias`` (no weight decay).
        decay_weights: conv/linear (and other non-normalisation) weights (weight decay applied).
        norm_weights: weights of normalisation layers (no weight decay).
    """

    biases: list[nn.Parameter]
    decay_weights: list[nn.Parameter]
    norm_weights: list[nn.Parameter]


def split_parameters(model: nn.Module) -> ParameterGroups:
    """Split the trainable parameters of ``model`` into the three recipe groups.

    Frozen parameters (``requires_grad=False``, e.g. the DFL conv) are left out.

    Args:
        model: the network.

    Returns:
        The three groups; every trainable parameter appears in exactly one.
    """
    biases: list[nn.Parameter] = []
    decay_weights: list[nn.Parameter] = []
    norm_weights: list[nn.Parameter] = []
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        is_norm = isinstance(module, (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm))
        for param_name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            full_name = f"{module_name}.{param_name}" if module_name else param_name
            if "bias" in full_name:
                biases.append(param)
            elif is_norm:
                norm_weights.append(param)
            else:
                decay_weights.append(param)
    return ParameterGroups(biases, decay_weights, norm_weights)


def nominal_accumulate(batch_size: int, nominal_batch_size: int = 64) -> int:
    """Number of batches whose gradients are summed before one optimizer step.

    Args:
        batch_size: images per batch (per process, times the number of processes under DDP).
        nominal_batch_size: the batch size the recipe is tuned for.

    Returns:
        ``max(round(nominal_batch_size / batch_size), 1)``.
    """
    return max(round(nominal_batch_size / batch_size), 1)


def scaled_weight_decay(weight_decay: float, batch_size: int, nominal_batch_size: int = 64) -> float:
    """Weight decay scaled to the effective batch (``batch * accumulate / nominal``).

    Args:
        weight_decay: the nominal weight decay (5e-4 in the recipe).
        batch_size: images per batch.
        nominal_batch_size: the batch size the recipe is tuned for.

    Returns:
        The weight decay to give the optimizer's decay group.
    """
    accumulate = nominal_accumulate(batch_size, nominal_batch_size)
    return weight_decay * batch_size * accumulate / nominal_batch_size


def build_optimizer(
    model: nn.Module,
    lr0: float,
    momentum: float,
    weight_decay: float,
    optimizer: Literal["SGD", "AdamW"] = "SGD",
) -> torch.optim.Optimizer:
    """Build the optimizer with the three recipe groups (bias, decay weights, norm weights).

    Args:
        model: the network.
        lr0: initial learning rate (stored as each group's ``initial_lr``).
        momentum: SGD momentum (AdamW: beta1).
        weight_decay: weight decay of the decay group (already scaled by the nominal batch).
        optimizer: ``"SGD"`` (Nesterov, the recipe) or ``"AdamW"``.

    Returns:
        The optimizer; group 0 biases, group 1 decay weights, group 2 norm weights. Its step is the
        fused implementation when the model is on the CPU (the multi-tensor one elsewhere).
    """
    groups = split_parameters(model)
    param_groups = [
        {"params": groups.biases, "weight_decay": 0.0},
        {"params": groups.decay_weights, "weight_decay": weight_decay},
        {"params": groups.norm_weights, "weight_decay": 0.0},
    ]
    # On the CPU the fused step (one kernel per tensor) costs a third of the default multi-tensor
    # step's CPU time (yolo11n, 2 threads: 5.5 vs 16.4 ms); its results differ by float rounding only.
    fused = all(p.device.type == "cpu" for p in model.parameters())
    if optimizer == "SGD":
        built: torch.optim.Optimizer = torch.optim.SGD(
            param_groups, lr=lr0, momentum=momentum, nesterov=True, fused=fused
        )
    elif optimizer == "AdamW":
        built = torch.optim.AdamW(param_groups, lr=lr0, betas=(momentum, 0.999), fused=fused)
    else:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose 'SGD' or 'AdamW'")
    for group in built.param_groups:
        group["initial_lr"] = lr0
    return built


AUTO_SGD_ITERATIONS = 10_000
"""``optimizer: auto`` picks SGD for runs longer than this many iterations, AdamW otherwise."""


@dataclass(frozen=True)
class OptimizerChoice:
    """The optimizer a run uses, after resolving ``auto``.

    Attributes:
        name: ``"SGD"`` or ``"AdamW"``.
        lr0: initial learning rate.
        momentum: SGD momentum (AdamW: beta1).
        warmup_bias_lr: bias learning rate at the start of warmup.
    """

    name: Literal["SGD", "AdamW"]
    lr0: float
    momentum: float
    warmup_bias_lr: float


def training_iterations(num_images: int, batch_size: int, epochs: int, nominal_batch_size: int = 64) -> int:
    """Optimizer-step count of a run as ``optimizer: auto`` estimates it: ``ceil(N / max(batch, nbs)) * epochs``.

    Args:
        num_images: training images.
        batch_size: images per batch over all processes.
        epochs: planned epochs.
        nominal_batch_size: the batch size the recipe is tuned for.
    """
    return math.ceil(num_images / max(batch_size, nominal_batch_size)) * epochs


def auto_optimizer(iterations: int, num_classes: int) -> OptimizerChoice:
    """The reference's ``optimizer: auto`` rule.

    Long runs (more than :data:`AUTO_SGD_ITERATIONS` iterations) get SGD with lr 0.01 and momentum
    0.9; shorter ones AdamW with ``lr = round(0.002 * 5 / (4 + nc), 6)`` and beta1 0.9. Both start
    the bias warmup at 0 (no warmup bias boost).

    Args:
        iterations: from :func:`training_iterations`.
        num_classes: classes of the model.
    """
    if iterations > AUTO_SGD_ITERATIONS:
        return OptimizerChoice("SGD", 0.01, 0.9, 0.0)
    return OptimizerChoice("AdamW", round(0.002 * 5 / (4 + num_classes), 6), 0.9, 0.0)


def lr_factor(epoch: int, epochs: int, lrf: float, schedule: ScheduleName = "linear") -> float:
    """Learning-rate multiplier of an epoch.

    Args:
        epoch: zero-based epoch index.
        epochs: total number of epochs.
        lrf: final factor (the LR ends at ``lr0 * lrf``).
        schedule: ``"linear"``: ``max(1 - e / E, 0) * (1 - lrf) + lrf``; ``"cosine"``: half a cosine
            from 1 down to ``lrf``.

    Returns:
        The factor multiplying ``lr0`` in that epoch.
    """
    if schedule == "linear":
        return max(1.0 - epoch / epochs, 0.0) * (1.0 - lrf) + lrf
    if schedule == "cosine":
        return ((1.0 - math.cos(epoch * math.pi / epochs)) / 2.0) * (lrf - 1.0) + 1.0
    raise ValueError(f"unknown schedule {schedule!r}; choose 'linear' or 'cosine'")


def warmup_iterations(warmup_epochs: float, batches_per_epoch: int, minimum: int = 100) -> int:
    """Length of the warmup in iterations (batches); -1 when there is no warmup.

    Args:
        warmup_epochs: warmup length in epochs (0 disables warmup).
        batches_per_epoch: training batches per epoch.
        minimum: the shortest warmup in iterations.

    Returns:
        ``max(round(warmup_epochs * batches_per_epoch), minimum)``, or -1 if ``warmup_epochs <= 0``.
    """
    if warmup_epochs <= 0:
        return -1
    return max(round(warmup_epochs * batches_per_epoch), minimum)


def _interp(x: float, x1: float, y0: float, y1: float) -> float:
    """Linear interpolation on ``[0, x1]`` from ``y0`` to ``y1``, clamped like ``numpy.interp``."""
    if x1 <= 0:
        return y1
    t = min(max(x / x1, 0.0), 1.0)
    return y0 + t * (y1 - y0)


@dataclass(frozen=True)
class StepSettings:
    """Optimizer settings for one training iteration.

    Attributes:
        lrs: learning rate per parameter group (bias, decay weights, norm weights).
        momentum: SGD momentum (not applied to AdamW, whose beta1 stays constant).
        accumulate: batches to accumulate before the next optimizer step.
    """

    lrs: tuple[float, float, float]
    momentum: float
    accumulate: int


def settings_at(
    iteration: int,
    epoch: int,
    *,
    epochs: int,
    warmup_iters: int,
    lr0: float,
    lrf: float,
    schedule: ScheduleName,
    momentum: float,
    warmup_momentum: float,
    warmup_bias_lr: float,
    batch_size: int,
    nominal_batch_size: int = 64,
) -> StepSettings:
    """LRs, momentum and accumulation count at a global iteration.

    During warmup (``iteration <= warmup_iters``) the values are interpolated from their warmup
    start to their scheduled value; after it, every group gets ``lr0 * lr_factor(epoch)``, the full
    momentum and the nominal accumulation.

    Args:
        iteration: global batch index ``batch_in_epoch + batches_per_epoch * epoch``.
        epoch: zero-based epoch index.
        epochs: total epochs.
        warmup_iters: warmup length from :func:`warmup_iterations` (-1: none).
        lr0: initial learning rate.
        lrf: final LR factor.
        schedule: ``"linear"`` or ``"cosine"``.
        momentum: momentum after warmup.
        warmup_momentum: momentum at iteration 0.
        warmup_bias_lr: bias LR at iteration 0.
        batch_size: images per batch.
        nominal_batch_size: the batch size the recipe is tuned for.

    Returns:
        The settings to apply before this iteration's backward pass.
    """
    target_lr = lr0 * lr_factor(epoch, epochs, lrf, schedule)
    nominal = nominal_accumulate(batch_size, nominal_batch_size)
    if iteration > warmup_iters:
        return StepSettings((target_lr, target_lr, target_lr), momentum, nominal)
    bias_lr = _interp(iteration, warmup_iters, warmup_bias_lr, target_lr)
    weight_lr = _interp(iteration, warmup_iters, 0.0, target_lr)
    accumulate = max(1, round(_interp(iteration, warmup_iters, 1.0, nominal_batch_size / batch_size)))
    return StepSettings(
        (bias_lr, weight_lr, weight_lr),
        _interp(iteration, warmup_iters, warmup_momentum, momentum),
        accumulate,
    )


def apply_settings(optimizer: torch.optim.Optimizer, settings: StepSettings) -> None:
    """Write per-group LRs and (SGD) the momentum into ``optimizer``.

    Args:
        optimizer: an optimizer from :func:`build_optimizer`.
        settings: the values from :func:`settings_at`.
    """
    for group, lr in zip(optimizer.param_groups, settings.lrs):
        group["lr"] = lr
        if "momentum" in group:  # SGD; AdamW keeps its betas, as in the reference
            group["momentum"] = settings.momentum
