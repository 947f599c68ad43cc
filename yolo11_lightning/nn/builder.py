"""Model configs (YAML or dict) -> :class:`DetectionModel`, driven only by the block registry.

A config has ``nc``, optional ``scales`` (``letter: [depth, width, max_channels]``), optional
``imports`` (modules to import so their ``@register_block`` decorators run), and ``backbone`` +
``head`` lists of rows ``[from, repeats, block_name, args]``. How a row's arguments become
constructor arguments is the block's channel contract (see :mod:`yolo11_lightning.nn.registry`).
"""

from __future__ import annotations

import ast
import copy
import importlib.resources
import logging
import math
import re
from pathlib import Path
from typing import Any

import torch.nn as nn
import yaml

from yolo11_lightning.nn.model import DetectionModel, LayerInfo
from yolo11_lightning.nn.registry import BlockSpec, ScaleContext, get_block, import_block_modules

logger = logging.getLogger(__name__)

# "yolo11n-mlla" -> base "yolo11" + scale "n" + suffix "-mlla".
_SCALED_NAME = re.compile(r"^(?P<base>.*\d)(?P<scale>[nslmx])(?P<suffix>[-_].+)?$")


def build_model(config: str | Path | dict[str, Any], nc: int | None = None) -> DetectionModel:
    """Build a detection model from a config.

    Args:
        config: A path to a model YAML; the file name of a bundled config, where a scale letter
            after the version selects the scale (``"yolo11n.yaml"`` builds ``yolo11.yaml`` at scale
            n, ``"yolo11s-mlla.yaml"`` builds ``yolo11-mlla.yaml`` at scale s); or a config dict
            (scale from its ``scale`` key).
        nc: Number of classes, overriding the config's ``nc``.

    Returns:
        The model, in train mode, with strides measured and head biases initialised.

    Raises:
        FileNotFoundError: If the config cannot be found (the message lists the bundled ones).
        KeyError: If a row names an unknown block (the message lists the known ones).
        ValueError: If the config is malformed (the message names the row).
    """
    cfg = load_model_config(config)
    if nc is not None and nc != cfg.get("nc"):
        logger.info("overriding the config's nc=%s with nc=%s", cfg.get("nc"), nc)
        cfg["nc"] = nc
    import_block_modules(list(cfg.get("imports") or []))
    input_channels = int(cfg.get("channels", 3))
    layers, infos = parse_layers(cfg, input_channels)
    return DetectionModel(layers, infos, cfg, input_channels)


def bundled_configs() -> list[str]:
    """File names of the model configs shipped with the package."""
    return sorted(entry.name for entry in _bundled_folder().iterdir() if entry.name.endswith((".yaml", ".yml")))


def _bundled_folder() -> Any:
    """The package folder of the bundled model configs (an ``importlib.resources`` traversable)."""
    return importlib.resources.files("yolo11_lightning") / "nn" / "cfg" / "models"


def load_model_config(config: str | Path | dict[str, Any]) -> dict[str, Any]:
    """Resolve a config argument to a dict with its ``scale`` selected (see :func:`build_model`)."""
    if isinstance(config, dict):
        cfg = copy.deepcopy(config)
        scale = cfg.get("scale") or ""
    else:
        path = Path(config)
        match = _SCALED_NAME.match(path.stem)
        scale = match["scale"] if match else ""
        unscaled = path.with_name(f"{match['base']}{match['suffix'] or ''}{path.suffix}") if match else path
        text = _read_config_text(path, unscaled)
        try:
            cfg = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ValueError(f"model config {str(config)!r} is not valid YAML: {error}") from error
        if not isinstance(cfg, dict):
            raise ValueError(f"model config {str(config)!r} must be a mapping, got {type(cfg).__name__}")
        scale = scale or cfg.get("scale") or ""
        cfg["yaml_file"] = str(config)
    for key in ("backbone", "head"):
        if not isinstance(cfg.get(key), list):
            raise ValueError(f"model config needs a '{key}' list of [from, repeats, module, args] rows")
    if "nc" not in cfg:
        raise ValueError("model config needs 'nc' (number of classes)")
    scales = cfg.get("scales")
    if scales:
        if not scale:
            scale = next(iter(scales))
            logger.warning("no model scale given (e.g. 'yolo11n.yaml'); using scale %r", scale)
        if scale not in scales:
            raise ValueError(f"scale {scale!r} is not in the config's scales {sorted(scales)}")
    cfg["scale"] = scale
    return cfg


def _read_config_text(path: Path, unscaled: Path) -> str:
    """Text of the first existing file among: the path, its unscaled name, the bundled ones."""
    for candidate in (path, unscaled):
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8")
    folder = _bundled_folder()
    for name in (path.name, unscaled.name):
        resource = folder / name
        if resource.is_file():
            return resource.read_text(encoding="utf-8")
    raise FileNotFoundError(
        f"model config {str(path)!r} not found (also tried {str(unscaled)!r}). "
        f"Bundled configs: {', '.join(bundled_configs())}; a scale letter may follow the version "
        "(e.g. 'yolo11n.yaml')."
    )


def parse_layers(cfg: dict[str, Any], input_channels: int = 3) -> tuple[list[nn.Module], list[LayerInfo]]:
    """Build every row of ``backbone + head``.

    Args:
        cfg: Resolved config (see :func:`load_model_config`).
        input_channels: Image channels.

    Returns:
        The layers and their :class:`LayerInfo`.
    """
    nc = int(cfg["nc"])
    scale = cfg.get("scale") or ""
    depth, width, max_channels = (1.0, 1.0, math.inf)
    if cfg.get("scales"):
        depth, width, max_channels = cfg["scales"][scale]
    depth = float(cfg.get("depth_multiple", depth))
    width = float(cfg.get("width_multiple", width))
    context = ScaleContext(scale, depth, width, max_channels, nc)

    rows = list(cfg["backbone"]) + list(cfg["head"])
    layers: list[nn.Module] = []
    infos: list[LayerInfo] = []
    channels: list[int] = []  # output channels of each built layer
    for index, row in enumerate(rows):
        if not (isinstance(row, (list, tuple)) and len(row) == 4):
            raise ValueError(f"model config row {index} must be [from, repeats, module, args], got {row!r}")
        source, repeats, name, args = row
        sources = [source] if isinstance(source, int) else list(source)
        if not sources or not all(isinstance(j, int) and (j == -1 or -index <= j < index) for j in sources):
            raise ValueError(f"model config row {index} ({name}): invalid 'from' {source!r}")
        in_channels = [input_channels if (index == 0 and j == -1) else channels[j] for j in sources]
        spec = get_block(str(name))
        args = [_resolve_arg(a, nc) for a in (args or [])]
        repeats = max(round(repeats * depth), 1) if repeats > 1 else int(repeats)
        try:
            module, ctor_args, out_channels = build_layer(spec, args, in_channels, repeats, context)
        except Exception as error:
            raise ValueError(f"model config row {index} ({name}, args {args}): {error}") from error
        if spec.channels == "head" and index != len(rows) - 1:
            raise ValueError(f"model config row {index}: head block {name!r} must be the last row")
        layers.append(module)
        infos.append(LayerInfo(index, source, repeats, str(name), ctor_args, out_channels))
        channels.append(out_channels)
    if get_block(str(rows[-1][2])).channels != "head":
        raise ValueError("the last row of a model config must be a head block (e.g. Detect)")
    return layers, infos


def build_layer(
    spec: BlockSpec, args: list, in_channels: list[int], repeats: int, context: ScaleContext
) -> tuple[nn.Module, list, int]:
    """Build one row's module following the block's channel contract.

    Args:
        spec: The registered block.
        args: The row's arguments (strings already resolved).
        in_channels: Channel count of each of the row's inputs.
        repeats: Depth-scaled repeat count.
        context: Scale of the model being built.

    Returns:
        ``(module, constructor args, output channels)``; the module is an ``nn.Sequential`` of
        ``repeats`` copies when the block does not take the repeat count itself.
    """
    contract = spec.channels
    if contract in ("scaled", "same", "none") and len(in_channels) != 1:
        raise ValueError(f"block {spec.name!r} ({contract!r} contract) takes one input, got {len(in_channels)}")
    kwargs: dict[str, Any] = {}
    if contract == "scaled":
        if not args:
            raise ValueError(f"block {spec.name!r} needs its output channels as the first argument")
        out_channels = make_divisible(min(args[0], context.max_channels) * context.width, 8)
        ctor_args = [in_channels[0], out_channels, *args[1:]]
        if spec.repeats:
            ctor_args.insert(2, repeats)
            repeats = 1
    elif contract == "same":
        out_channels = in_channels[0]
        ctor_args = [in_channels[0], *args]
    elif contract == "concat":
        out_channels = sum(in_channels)
        ctor_args = list(args)
    elif contract == "none":
        out_channels = in_channels[0]
        ctor_args = list(args)
    else:  # "head"
        out_channels = 0
        ctor_args = list(args)
        kwargs["in_channels"] = list(in_channels)
    if spec.adapt_args is not None:
        ctor_args = list(spec.adapt_args(ctor_args, context))
    if repeats > 1:
        module: nn.Module = nn.Sequential(*(spec.cls(*ctor_args, **kwargs) for _ in range(repeats)))
    else:
        module = spec.cls(*ctor_args, **kwargs)
    return module, ctor_args, out_channels


def make_divisible(value: float, divisor: int) -> int:
    """Smallest multiple of ``divisor`` that is >= ``value``."""
    return int(math.ceil(value / divisor) * divisor)


def _resolve_arg(value: Any, nc: int) -> Any:
    """Config strings: ``"nc"`` -> the class count; Python literals (``"None"``) -> values."""
    if not isinstance(value, str):
        return value
    if value == "nc":
        return nc
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value
