"""Export a detector to ONNX or TorchScript: ``python train.py export --ckpt_path best.ckpt --format onnx``.

The exported graph takes ``images`` ``float32 (B, 3, H, W)`` in [0, 1] (RGB, letterboxed to a
multiple of the stride) and returns ``output`` ``(B, 4 + nc, A)``: xywh boxes in input pixels, then
class probabilities, as the first element of ``DetectionModel``'s eval output. Batch, height and
width are dynamic by default: one file runs at any size that is a multiple of the stride.

Metadata travels with the file (ONNX ``metadata_props``; TorchScript ``_extra_files["metadata.json"]``):
``format_version``, ``names`` (JSON ``{id: name}``), ``stride``, ``imgsz``, ``dynamic`` and
``model_config`` (the architecture as JSON). :class:`~yolo11_lightning.inference.exported.ExportedModel`
reads it back.

Exporters: ONNX uses the TorchScript-based exporter (``dynamo=False``; the torch.export-based one
also works for these models but took several times longer here); TorchScript uses ``torch.jit.trace``.
Both trace the network once, so the head computes its anchor grid from symbolic sizes while tracing
(see :func:`yolo11_lightning.nn.head.traced_anchor_grid`).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NoReturn

import torch
from torch import nn

from yolo11_lightning.exit_codes import ExitCode

EXPORT_FORMAT_VERSION = 1
"""Version of the metadata layout written into exported files."""

DEFAULT_OPSET = 17
FORMAT_SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript"}
INPUT_NAME = "images"
OUTPUT_NAME = "output"
METADATA_FILE = "metadata.json"  # TorchScript extra file

ExportFormat = Literal["onnx", "torchscript"]


@dataclass(frozen=True)
class ExportMetadata:
    """What an exported file records about its model.

    Attributes:
        names: Class names, ``{id: name}``.
        stride: Largest stride of the network (input sides must be multiples of it).
        imgsz: Input size the model was trained/validated at (long side, pixels).
        model_config: The architecture (``training.checkpoint_state.architecture_of``), JSON-safe.
        dynamic: Whether batch, height and width are dynamic (``False``: fixed ``1 x 3 x imgsz x imgsz``).
        format_version: Layout version (:data:`EXPORT_FORMAT_VERSION`).
    """

    names: dict[int, str]
    stride: int
    imgsz: int
    model_config: dict[str, Any] = field(default_factory=dict)
    dynamic: bool = True
    format_version: int = EXPORT_FORMAT_VERSION

    def to_strings(self) -> dict[str, str]:
        """String key/value pairs (ONNX ``metadata_props`` and the TorchScript JSON file)."""
        return {
            "format_version": str(self.format_version),
            "names": json.dumps({str(k): v for k, v in self.names.items()}),
            "stride": str(self.stride),
            "imgsz": str(self.imgsz),
            "dynamic": json.dumps(self.dynamic),
            "model_config": json.dumps(self.model_config, default=str),
        }

    @classmethod
    def from_strings(cls, values: dict[str, str], source: str = "exported model") -> ExportMetadata:
        """Parse :meth:`to_strings` output.

        Raises:
            ValueError: If a field is missing or unreadable, or the layout version is newer (names ``source``).
        """
        try:
            version = int(values["format_version"])
            if version > EXPORT_FORMAT_VERSION:
                raise ValueError(f"metadata format {version} is newer than this package's {EXPORT_FORMAT_VERSION}")
            return cls(
                names={int(k): str(v) for k, v in json.loads(values["names"]).items()},
                stride=int(values["stride"]),
                imgsz=int(values["imgsz"]),
                model_config=json.loads(values.get("model_config", "{}")),
                dynamic=bool(json.loads(values.get("dynamic", "true"))),
                format_version=version,
            )
        except (KeyError, ValueError, TypeError, AttributeError) as error:
            raise ValueError(f"{source}: no readable yolo11_lightning export metadata ({error})") from error


class DecodedOutput(nn.Module):
    """The network with only its decoded output: ``images (B, 3, H, W) -> (B, 4 + nc, A)``.

    Args:
        model: A ``DetectionModel`` (used in eval mode).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Decoded predictions of the eval-mode network."""
        return self.model(images)[0]


def export_model(
    model: nn.Module,
    path: str | Path,
    format: ExportFormat,
    imgsz: int,
    metadata: ExportMetadata,
    dynamic: bool = True,
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Write ``model`` as an ONNX or TorchScript file with its metadata (plain torch, no Lightning).

    Args:
        model: A ``DetectionModel``; a CPU float32 eval-mode copy is exported, ``model`` is untouched.
        path: Output file.
        format: ``"onnx"`` or ``"torchscript"``.
        imgsz: Side of the square example input the graph is traced with (a multiple of the stride).
        metadata: Recorded in the file (its ``dynamic`` is set from ``dynamic``).
        dynamic: Dynamic batch, height and width (``False``: the graph is fixed to ``1 x 3 x imgsz x imgsz``).
        opset: ONNX opset.

    Returns:
        The written path.

    Raises:
        ValueError: For an unknown format or an ``imgsz`` that is not a multiple of the stride.
    """
    if format not in FORMAT_SUFFIXES:
        raise ValueError(f"unknown export format {format!r}; choose one of {', '.join(FORMAT_SUFFIXES)}")
    if imgsz <= 0 or imgsz % metadata.stride:
        raise ValueError(f"imgsz={imgsz} must be a positive multiple of the stride {metadata.stride}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = ExportMetadata(**{**metadata.__dict__, "dynamic": dynamic})
    network = DecodedOutput(copy.deepcopy(model).float().cpu().eval())
    example = torch.zeros(1, 3, imgsz, imgsz)
    with torch.no_grad(), warnings.catch_warnings():
        # Tracer and exporter deprecation notices; sizes stay symbolic (the head and MLLA handle tracing).
        warnings.simplefilter("ignore")
        if format == "onnx":
            _export_onnx(network, example, path, metadata, dynamic, opset)
        else:
            traced = torch.jit.trace(network, example, check_trace=False)  # parity is tested instead
            extra = {METADATA_FILE: json.dumps(metadata.to_strings())}
            torch.jit.save(traced, str(path), _extra_files=extra)
    return path


def _export_onnx(
    network: nn.Module, example: torch.Tensor, path: Path, metadata: ExportMetadata, dynamic: bool, opset: int
) -> None:
    """ONNX export, then the metadata written into the model's ``metadata_props``."""
    import onnx

    axes = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"}, OUTPUT_NAME: {0: "batch", 2: "anchors"}}
    torch.onnx.export(
        network,
        (example,),
        str(path),
        dynamo=False,
        opset_version=opset,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_axes=axes if dynamic else None,
    )
    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    for key, value in metadata.to_strings().items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name = "yolo11_lightning"
    onnx.save(proto, str(path))


# ----------------------------------------------------------------------------------------------
# Reading a checkpoint or weights file. PRIVATE and minimal: to be replaced by the shared loader
# (inference/loading.py) when the branches are merged.
# ----------------------------------------------------------------------------------------------
@dataclass
class _Loaded:
    """A model rebuilt from a file, with what the export records."""

    model: nn.Module
    names: dict[int, str]
    imgsz: int


def _load_for_export(ckpt_path: str | None, weights: str | None, config: str | None) -> _Loaded:
    """Rebuild the network of a Lightning checkpoint, a reference ``.pt`` or a weights file + config."""
    from yolo11_lightning.nn.builder import build_model
    from yolo11_lightning.nn.weights import _restricted_pickle, load_weights

    source = Path(ckpt_path or weights or "")
    if not source.is_file():
        raise FileNotFoundError(f"checkpoint not found: {source}")
    try:
        raw = torch.load(source, map_location="cpu", pickle_module=_restricted_pickle, weights_only=False)
    except Exception as error:  # zip, pickle and storage errors all mean "not a checkpoint"
        raise ValueError(f"{source}: not a readable PyTorch checkpoint ({type(error).__name__})") from error
    raw = raw if isinstance(raw, dict) else {}
    stored = _stored_config(raw)
    if config is None and stored is None:
        raise ValueError(f"{source} records no model config: give it with --model.model (e.g. yolo11n.yaml)")
    names = _stored_names(raw)
    model = build_model(config if config is not None else stored, nc=len(names) if names else None)
    load_weights(model, source)
    if names and len(names) == model.nc:
        model.names = names
    return _Loaded(model.eval(), dict(model.names), _stored_imgsz(raw))


def _stored_config(raw: dict[str, Any]) -> dict[str, Any] | None:
    """The architecture a file records: ours (``model_config``) or the reference's (``model.yaml``)."""
    saved = raw.get("model_config")
    if isinstance(saved, dict):  # ours: architecture_of(model), with the selected scale's values only
        config = dict(saved)
        if "scale_values" in config and config.get("scale"):
            config["scales"] = {config["scale"]: list(config.pop("scale_values"))}
        config["yaml_file"] = config.pop("config_name", "<checkpoint>")
        return config
    for key in ("ema", "model"):  # the reference's pickled model (read as an inert stand-in)
        yaml_dict = getattr(raw.get(key), "yaml", None)
        if isinstance(yaml_dict, dict):
            return dict(yaml_dict)
    return None


def _stored_names(raw: dict[str, Any]) -> dict[int, str]:
    """Class names of our checkpoint or of the reference's pickled model (empty if none)."""
    from yolo11_lightning.training.checkpoint_state import class_names_dict

    names = raw.get("class_names")
    for key in ("ema", "model"):
        names = names if names is not None else getattr(raw.get(key), "names", None)
    return class_names_dict(names) if isinstance(names, (dict, list, tuple)) else {}


def _stored_imgsz(raw: dict[str, Any], default: int = 640) -> int:
    """Training image size: our data module's hyperparameters or the reference's ``train_args``."""
    for key in ("datamodule_hyper_parameters", "train_args"):
        value = (raw.get(key) or {}).get("imgsz") if isinstance(raw.get(key), dict) else None
        if isinstance(value, int):
            return value
        if isinstance(value, (list, tuple)) and value:
            return int(max(value))
    return default


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors and the user-error exit code."""

    def error(self, message: str) -> NoReturn:
        _fail(message)


def _fail(message: str) -> NoReturn:
    print(f"export: error: {message}", file=sys.stderr)
    raise SystemExit(int(ExitCode.USER_ERROR))


def build_parser() -> argparse.ArgumentParser:
    """The ``export`` command's arguments."""
    parser = _Parser(
        prog="train.py export",
        description="Export a trained detector to ONNX or TorchScript (dynamic batch, height and width).",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--ckpt_path", help="Lightning checkpoint written by fit (EMA weights are exported)")
    source.add_argument("--model.weights", dest="weights", help="weights file: reference .pt, .ckpt, state dict")
    parser.add_argument(
        "--model.model", dest="config", help="model config (needed when the file records none, e.g. a state dict)"
    )
    parser.add_argument("--format", default="onnx", choices=sorted(FORMAT_SUFFIXES), help="output format")
    parser.add_argument("--imgsz", type=int, help="recorded input size and trace size (default: the training imgsz)")
    parser.add_argument("--output", help="output file (default: next to the input, with the format's suffix)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset")
    parser.add_argument("--static", action="store_true", help="fix the graph to 1 x 3 x imgsz x imgsz")
    return parser


def main(args: Sequence[str] | None = None) -> Path:
    """Run ``export`` with command-line arguments; print the written path on stdout.

    Args:
        args: Arguments after ``export`` (``None``: ``sys.argv[1:]``).

    Returns:
        The written path.

    Raises:
        SystemExit: With :attr:`ExitCode.USER_ERROR` and one line on stderr for bad input.
    """
    options = build_parser().parse_args(args)
    try:
        loaded = _load_for_export(options.ckpt_path, options.weights, options.config)
    except (FileNotFoundError, ValueError, KeyError) as error:
        _fail(str(error).splitlines()[0] if str(error) else type(error).__name__)
    from yolo11_lightning.training.checkpoint_state import architecture_of

    stride = int(loaded.model.stride.max())
    imgsz = options.imgsz or loaded.imgsz
    if imgsz <= 0 or imgsz % stride:
        _fail(f"--imgsz {imgsz} must be a positive multiple of the stride {stride}")
    source = Path(options.ckpt_path or options.weights)
    output = Path(options.output) if options.output else source.with_suffix(FORMAT_SUFFIXES[options.format])
    metadata = ExportMetadata(loaded.names, stride, imgsz, architecture_of(loaded.model))
    path = export_model(
        loaded.model, output, options.format, imgsz, metadata, dynamic=not options.static, opset=options.opset
    )
    shape = f"1x3x{imgsz}x{imgsz} fixed" if options.static else "dynamic batch/height/width"
    print(f"exported {options.format} ({shape}, {len(loaded.names)} classes, imgsz {imgsz})", file=sys.stderr)
    print(path)
    return path
