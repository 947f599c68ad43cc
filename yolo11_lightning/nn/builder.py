"""Model configs (YAML or dict) -> :class:`DetectionModel`, driven only by the block registry.

A config has ``nc``, optional ``scales`` (``letter: [depth, width, max_channels]``), optional
``imports`` (modules to import so their ``@register_block`` decorators run), and ``backbone`` +
``head`` lists of rows ``[from, repeats, block_name, args]``; ``args`` is a list, a map of keyword
arguments, or a list ending in such a map. How a row's arguments become constructor arguments is
the block's channel contract (see :mod:`yolo11_lightning.nn.registry`).
"""

from __future__ import annotations

import ast
import copy
import importlib.resources
import inspect
import logging
import math
import re
from pathlib import Path
from typing import Any

import torch.nn as nn
import yaml

from yolo11_lightning.nn.model import Channels, DetectionModel, LayerInfo
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
    config_file = cfg.get("yaml_file")
    base = Path(config_file).parent if config_file and Path(config_file).is_file() else None
    import_block_modules(list(cfg.get("imports") or []), base)
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
    channels: list[Channels] = []  # output channels of each built layer (a tuple for several outputs)
    for index, row in enumerate(rows):
        if not (isinstance(row, (list, tuple)) and len(row) == 4):
            raise ValueError(f"model config row {index} must be [from, repeats, module, args], got {row!r}")
        source, repeats, name, raw_args = row
        sources = [source] if isinstance(source, int) else list(source)
        if not sources or not all(isinstance(j, int) and (j == -1 or -index <= j < index) for j in sources):
            raise ValueError(f"model config row {index} ({name}): invalid 'from' {source!r}")
        in_channels = [input_channels if (index == 0 and j == -1) else channels[j] for j in sources]
        spec = get_block(str(name))
        try:
            args, kwargs = split_row_args(raw_args, nc)
        except (TypeError, ValueError) as error:
            raise ValueError(f"model config row {index} ({name}): {error}") from None
        repeats = max(round(repeats * depth), 1) if repeats > 1 else int(repeats)
        try:
            module, ctor_args, out_channels = build_layer(spec, args, in_channels, repeats, context, kwargs)
        except Exception as error:
            raise ValueError(f"model config row {index} ({name}, args {raw_args}): {error}") from error
        if spec.channels == "head" and index != len(rows) - 1:
            raise ValueError(f"model config row {index}: head block {name!r} must be the last row")
        layers.append(module)
        infos.append(LayerInfo(index, source, repeats, str(name), ctor_args, out_channels, kwargs))
        channels.append(out_channels)
    if get_block(str(rows[-1][2])).channels != "head":
        raise ValueError("the last row of a model config must be a head block (e.g. Detect)")
    return layers, infos


def split_row_args(raw: Any, nc: int) -> tuple[list, dict[str, Any]]:
    """A row's arguments -> ``(positional, keywords)``, config strings resolved.

    Args:
        raw: ``None``, a list (positional), a map (keywords) or a list ending in a map.
        nc: Class count, substituted for the string ``"nc"``.

    Returns:
        The positional arguments and the keyword arguments.

    Raises:
        TypeError: If ``raw`` has another type or a keyword is not a string.
    """
    if raw is None:
        positional, keywords = [], {}
    elif isinstance(raw, dict):
        positional, keywords = [], dict(raw)
    elif isinstance(raw, (list, tuple)):
        positional = list(raw)
        keywords = positional.pop() if positional and isinstance(positional[-1], dict) else {}
    else:
        raise TypeError(f"args must be a list, a map or a list ending in a map, got {type(raw).__name__}")
    if not all(isinstance(key, str) for key in keywords):
        raise TypeError(f"keyword argument names must be strings, got {sorted(map(repr, keywords))}")
    return [_resolve_arg(a, nc) for a in positional], {k: _resolve_arg(v, nc) for k, v in keywords.items()}


def build_layer(
    spec: BlockSpec,
    args: list,
    in_channels: list[Channels],
    repeats: int,
    context: ScaleContext,
    kwargs: dict[str, Any] | None = None,
) -> tuple[nn.Module, list, Channels]:
    """Build one row's module following the block's channel contract.

    Args:
        spec: The registered block.
        args: The row's positional arguments (strings already resolved).
        in_channels: Channel count of each of the row's inputs (a tuple for a layer with several
            outputs).
        repeats: Depth-scaled repeat count.
        context: Scale of the model being built.
        kwargs: The row's keyword arguments, passed to the constructor unchanged.

    Returns:
        ``(module, constructor positional args, output channels)``; the module is an
        ``nn.Sequential`` of ``repeats`` copies when the block does not take the repeat count
        itself. Output channels are a tuple for a ``"features"`` block.

    Raises:
        ValueError: If the inputs or the stack cannot work with the contract.
    """
    contract = spec.channels
    kwargs = dict(kwargs or {})
    if contract == "index":
        if len(in_channels) != 1 or not isinstance(in_channels[0], tuple):
            raise ValueError(f"block {spec.name!r} selects one output of a layer with several outputs (one input)")
    else:
        multi = [i for i, c in enumerate(in_channels) if isinstance(c, tuple)]
        if multi:
            raise ValueError(
                f"input {multi[0]} of block {spec.name!r} has {len(in_channels[multi[0]])} outputs; "
                "select one with an Index row (e.g. [k, 1, Index, [0]])"
            )
    if contract in ("scaled", "same", "none", "features") and len(in_channels) != 1:
        raise ValueError(f"block {spec.name!r} ({contract!r} contract) takes one input, got {len(in_channels)}")
    out_channels: Channels
    if contract == "scaled":
        if not args:
            raise ValueError(f"block {spec.name!r} needs its output channels as the first positional argument")
        out_channels = make_divisible(min(args[0], context.max_channels) * context.width, 8)
        ctor_args = [in_channels[0], out_channels, *args[1:]]
        if spec.repeats:
            ctor_args.insert(2, repeats)
            repeats = 1
        elif repeats > 1 and in_channels[0] != out_channels:
            raise ValueError(
                f"{repeats} stacked copies of {spec.name!r} from {in_channels[0]} to {out_channels} channels cannot "
                "run (every copy is built with the same input channels); use repeats 1 or equal channels"
            )
    elif contract in ("same", "features"):
        out_channels = in_channels[0]  # type: ignore[assignment]
        ctor_args = [in_channels[0], *args]
    elif contract == "concat":
        out_channels = sum(in_channels)  # type: ignore[arg-type]
        ctor_args = list(args)
    elif contract == "none":
        out_channels = in_channels[0]
        ctor_args = list(args)
    elif contract == "index":
        ctor_args = list(args)
        position = args[0] if args else kwargs.get("index", 0)
        outputs = in_channels[0]
        if not isinstance(position, int) or not -len(outputs) <= position < len(outputs):  # type: ignore[arg-type]
            raise ValueError(f"index {position!r} out of range for an input with {len(outputs)} outputs")  # type: ignore[arg-type]
        out_channels = outputs[position]  # type: ignore[index]
    else:  # "head"
        out_channels = 0
        ctor_args = list(args)
        kwargs["in_channels"] = list(in_channels)
    if spec.adapt_args is not None:
        ctor_args = list(spec.adapt_args(ctor_args, context))
    if repeats > 1 and contract == "features":
        raise ValueError(f"block {spec.name!r} has several outputs and cannot be stacked (repeats {repeats})")
    try:
        if repeats > 1:
            module: nn.Module = nn.Sequential(*(spec.cls(*ctor_args, **kwargs) for _ in range(repeats)))
        else:
            module = spec.cls(*ctor_args, **kwargs)
    except TypeError as error:  # wrong argument names or counts: name the constructor's signature
        raise ValueError(f"{spec.cls.__name__}{_signature(spec.cls)}: {error}") from error
    if contract == "features":
        declared = getattr(module, "out_channels", None)
        if not isinstance(declared, (list, tuple)) or not all(isinstance(c, int) for c in declared):
            raise ValueError(f"block {spec.name!r} ('features' contract) must set out_channels to a list of ints")
        out_channels = tuple(declared)
    return module, ctor_args, out_channels


def _signature(cls: type) -> str:
    """``"(in_channels, focal_window=3, ...)"``: the constructor's argument names and defaults."""
    try:
        parameters = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        return "(...)"
    shown = [
        f"**{p.name}" if p.kind is p.VAR_KEYWORD else f"*{p.name}" if p.kind is p.VAR_POSITIONAL else
        p.name if p.default is p.empty else f"{p.name}={p.default!r}"
        for p in parameters
    ]  # fmt: skip
    return f"({', '.join(shown)})"


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
