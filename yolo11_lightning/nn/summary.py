"""Model summary: the layer table and the totals line (layers, parameters, gradients, GFLOPs)."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode


def count_flops(model: nn.Module, imgsz: int | tuple[int, int] = 640, input_channels: int = 3) -> int:
    """Floating-point operations of one eval forward pass of a batch-1 image.

    Counted by ``torch.utils.flop_counter`` (convolutions and matrix products, 2 per
    multiply-accumulate) on a copy of the model on the ``meta`` device, so nothing is computed;
    a model that cannot run on ``meta`` (e.g. it reads tensor values) is run for real on the CPU.

    Args:
        model: The model (left untouched).
        imgsz: Input size, ``640`` or ``(height, width)``.
        input_channels: Image channels.

    Returns:
        The FLOP count.
    """
    height, width = (imgsz, imgsz) if isinstance(imgsz, int) else imgsz
    for device in ("meta", "cpu"):
        probe = copy.deepcopy(model).to(device).eval()
        image = torch.zeros(1, input_channels, height, width, device=device)
        counter = FlopCounterMode(display=False)
        try:
            with counter, torch.no_grad():
                probe(image)
        except (RuntimeError, NotImplementedError):
            if device == "cpu":
                raise
            continue
        return int(counter.get_total_flops())
    raise AssertionError("unreachable")


def summary_totals(model: nn.Module, imgsz: int | tuple[int, int] = 640) -> dict[str, float]:
    """Totals as a dict: ``layers`` (leaf modules: 257 for YOLO11n), ``parameters``, ``gradients``, ``gflops``."""
    return {
        "layers": sum(1 for m in model.modules() if not m._modules),
        "parameters": sum(p.numel() for p in model.parameters()),
        "gradients": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "gflops": count_flops(model, imgsz, getattr(model, "input_channels", 3)) / 1e9,
    }


def model_summary(model: nn.Module, imgsz: int | tuple[int, int] = 640) -> str:
    """The layer table and totals line, as text.

    One row per config row: index, ``from``, repeats, parameters, module class and the
    constructor arguments the builder derived (keyword arguments as a trailing map). Then, e.g.
    ``YOLO11n summary: 257 layers, 2,624,080 parameters, 2,624,064 gradients, 6.6 GFLOPs``
    (GFLOPs of one ``imgsz`` image in eval mode; the frozen DFL weights are the difference
    between parameters and gradients).

    Args:
        model: A :class:`~yolo11_lightning.nn.model.DetectionModel`.
        imgsz: Image size for the GFLOPs figure.

    Returns:
        The summary text (also suitable for logging).
    """
    lines = [f"{'':>3}{'from':>20}{'n':>3}{'params':>10}  {'module':<45}{'arguments':<30}"]
    for info, layer in zip(getattr(model, "layer_infos", []), getattr(model, "model", [])):
        block = layer[0] if isinstance(layer, nn.Sequential) and info.repeats > 1 else layer
        module_name = f"{type(block).__module__}.{type(block).__qualname__}"
        params = sum(p.numel() for p in layer.parameters())
        arguments = [*info.args, info.kwargs] if getattr(info, "kwargs", None) else info.args
        lines.append(
            f"{info.index:>3}{info.source!s:>20}{info.repeats:>3}{params:>10}  {module_name:<45}{arguments!s:<30}"
        )
    totals = summary_totals(model, imgsz)
    config_file = (getattr(model, "yaml", None) or {}).get("yaml_file", "")
    name = Path(config_file).stem.replace("yolo", "YOLO") if config_file else "Model"
    lines.append(
        f"{name} summary: {totals['layers']:,} layers, {totals['parameters']:,} parameters, "
        f"{totals['gradients']:,} gradients, {totals['gflops']:.1f} GFLOPs"
    )
    return "\n".join(lines)
