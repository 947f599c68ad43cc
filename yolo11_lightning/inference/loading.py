"""What inference needs from a checkpoint or weights file: the network, its class names and input size.

Plain PyTorch (no Lightning is imported), so the command line and the Python
:class:`~yolo11_lightning.inference.detector.Detector` read files the same way.

A ``YOLOModule`` checkpoint stores an explicit ``inference`` entry (see :func:`inference_entry`):
the resolved model config, class names, training ``imgsz`` and stride. Older checkpoints fall back
to ``model_config`` + ``class_names`` for the network and to Lightning's
``datamodule_hyper_parameters["imgsz"]`` for the input size, then to 640 with a warning.
A reference ``.pt`` file carries its model config (``yaml``), names and ``train_args["imgsz"]``.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

logger = logging.getLogger(__name__)

DEFAULT_IMGSZ = 640
"""Input size used when a file records none (with a warning)."""

INFERENCE_FORMAT = 1
"""Version of the checkpoint's ``inference`` entry."""


class NotATrainingCheckpointError(ValueError):
    """A weights file (reference ``.pt``, state dict) was given where a training checkpoint is expected."""


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a trained network for inference.

    Attributes:
        path: the file it was read from.
        kind: ``"checkpoint"`` (our Lightning checkpoint), ``"reference"`` (a reference ``.pt``) or
            ``"state_dict"`` (tensors only: no config, names or size).
        model_config: resolved model config (a dict for ``build_model``), or a config name; ``None``
            for a plain state dict.
        names: class id -> name (empty when the file records none).
        imgsz: training input size (square side / long side).
        imgsz_source: where ``imgsz`` came from (for messages): ``"inference"``,
            ``"datamodule_hyper_parameters"``, ``"train_args"`` or ``"default"``.
        stride: the network's largest stride.
    """

    path: Path
    kind: str
    model_config: dict[str, Any] | str | None
    names: dict[int, str]
    imgsz: int
    imgsz_source: str
    stride: int = 32

    @property
    def num_classes(self) -> int | None:
        """Class count of the stored config (``None`` when unknown)."""
        if isinstance(self.model_config, dict) and "nc" in self.model_config:
            return int(self.model_config["nc"])
        return len(self.names) or None


def inference_entry(model: nn.Module, imgsz: int | None) -> dict[str, Any]:
    """The ``inference`` entry ``YOLOModule`` writes into its checkpoints.

    Args:
        model: the ``DetectionModel`` being saved.
        imgsz: the training input size (``None`` when unknown: readers then fall back).

    Returns:
        ``{"format", "model_config", "names", "imgsz", "stride"}``: plain Python types only.
    """
    config = dict(getattr(model, "yaml", {}) or {})
    config["nc"] = int(getattr(model, "nc", config.get("nc", 0)))
    stride = getattr(model, "stride", None)
    return {
        "format": INFERENCE_FORMAT,
        "model_config": _plain(config),
        "names": {int(k): str(v) for k, v in dict(getattr(model, "names", {}) or {}).items()},
        "imgsz": int(imgsz) if imgsz else None,
        "stride": int(max(stride.tolist())) if isinstance(stride, torch.Tensor) else 32,
    }


def _plain(value: Any) -> Any:
    """Containers and scalars only (what ``torch.load(weights_only=True)`` accepts back)."""
    if isinstance(value, dict):
        return {(k if isinstance(k, (int, str)) else str(k)): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _load(path: Path) -> Any:
    """Load a checkpoint or weights file on CPU without importing the code that wrote it."""
    try:  # our checkpoints hold plain types only
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # noqa: BLE001 - pickled objects (reference .pt): read them through stand-ins
        logger.debug("%s: not a weights-only checkpoint (%s); reading it through stand-ins", path, error)
    from yolo11_lightning.nn.weights import _restricted_pickle

    try:
        return torch.load(path, map_location="cpu", pickle_module=_restricted_pickle, weights_only=False)
    except Exception as error:
        raise ValueError(f"{path}: not a readable PyTorch checkpoint ({type(error).__name__}: {error})") from error


def _stored_config(checkpoint: dict[str, Any]) -> dict[str, Any] | str | None:
    """The model config of one of our checkpoints (``inference`` entry, else ``model_config``)."""
    entry = checkpoint.get("inference") or {}
    if entry.get("model_config"):
        return dict(entry["model_config"])
    saved = checkpoint.get("model_config")
    if saved and "backbone" in saved and "head" in saved:
        config = {k: v for k, v in saved.items() if k not in {"scale_values", "config_name"}}
        if saved.get("scale") and saved.get("scale_values"):
            config["scales"] = {saved["scale"]: list(saved["scale_values"])}
        config["yaml_file"] = saved.get("config_name", "<checkpoint>")
        return config
    hparams = checkpoint.get("hyper_parameters") or {}
    return hparams.get("model") if isinstance(hparams.get("model"), str) else None


def _checkpoint_imgsz(checkpoint: dict[str, Any], path: Path) -> tuple[int, str]:
    entry = checkpoint.get("inference") or {}
    if entry.get("imgsz"):
        return int(entry["imgsz"]), "inference"
    data_hparams = checkpoint.get("datamodule_hyper_parameters") or {}
    if data_hparams.get("imgsz"):
        return int(data_hparams["imgsz"]), "datamodule_hyper_parameters"
    warnings.warn(f"{path} records no training image size: using imgsz={DEFAULT_IMGSZ}", stacklevel=3)
    return DEFAULT_IMGSZ, "default"


def is_training_checkpoint(checkpoint: Any) -> bool:
    """Whether a loaded object is a Lightning checkpoint written by ``YOLOModule``."""
    return (
        isinstance(checkpoint, dict)
        and isinstance(checkpoint.get("state_dict"), dict)
        and ("inference" in checkpoint or "model_config" in checkpoint or "ema_state_dict" in checkpoint)
    )


def read_spec(path: str | Path, checkpoint: Any = None) -> ModelSpec:
    """Read the model description of a checkpoint or weights file (weights are not copied).

    Args:
        path: our ``.ckpt``, a reference ``.pt``, or a state-dict file.
        checkpoint: the already loaded object (skips reading ``path`` again).

    Returns:
        The :class:`ModelSpec`.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if the file is unreadable.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint or weights file not found: {path}")
    if path.suffix == ".safetensors":
        return ModelSpec(path, "state_dict", None, {}, DEFAULT_IMGSZ, "default")
    checkpoint = _load(path) if checkpoint is None else checkpoint
    if is_training_checkpoint(checkpoint):
        entry = checkpoint.get("inference") or {}
        names = entry.get("names") or checkpoint.get("class_names") or {}
        imgsz, source = _checkpoint_imgsz(checkpoint, path)
        return ModelSpec(
            path=path,
            kind="checkpoint",
            model_config=_stored_config(checkpoint),
            names={int(k): str(v) for k, v in dict(names).items()},
            imgsz=imgsz,
            imgsz_source=source,
            stride=int(entry.get("stride") or 32),
        )
    if (
        isinstance(checkpoint, dict)
        and checkpoint.get("model") is not None
        and not isinstance(checkpoint["model"], dict)
    ):
        model = checkpoint.get("ema") or checkpoint["model"]  # a pickled reference model (stand-in)
        state = getattr(model, "__dict__", {})
        config = state.get("yaml") if isinstance(state.get("yaml"), dict) else None
        names = state.get("names") or {}
        if isinstance(names, (list, tuple)):
            names = dict(enumerate(names))
        train_args = checkpoint.get("train_args") or {}
        imgsz = train_args.get("imgsz") if isinstance(train_args, dict) else None
        stride = state.get("stride")
        return ModelSpec(
            path=path,
            kind="reference",
            model_config=dict(config) if config else None,
            names={int(k): str(v) for k, v in dict(names).items()},
            imgsz=int(imgsz) if isinstance(imgsz, int) else DEFAULT_IMGSZ,
            imgsz_source="train_args" if isinstance(imgsz, int) else "default",
            stride=int(max(stride.tolist())) if isinstance(stride, torch.Tensor) else 32,
        )
    return ModelSpec(path, "state_dict", None, {}, DEFAULT_IMGSZ, "default")


def require_training_checkpoint(path: str | Path | ModelSpec) -> ModelSpec:
    """The :class:`ModelSpec` of a training checkpoint; a weights file gets a one-line pointer to ``--model.weights``.

    Args:
        path: the file, or its already read :class:`ModelSpec`.

    Raises:
        NotATrainingCheckpointError: if ``path`` is a reference ``.pt`` or a plain state dict.
    """
    spec = path if isinstance(path, ModelSpec) else read_spec(path)
    path = spec.path
    if spec.kind != "checkpoint":
        what = "a reference weights file" if spec.kind == "reference" else "a weights file (state dict)"
        raise NotATrainingCheckpointError(
            f"{path} is {what}, not a training checkpoint: pass it as --model.weights {path} "
            "(--ckpt_path is for .ckpt files written by this project)"
        )
    return spec


def load_model(path: str | Path, model_config: dict[str, Any] | str | None = None) -> tuple[nn.Module, ModelSpec]:
    """Build the network a file describes, load its (EMA) weights, and put it in eval mode.

    Args:
        path: our ``.ckpt``, a reference ``.pt``, or a state-dict/safetensors file.
        model_config: the config to build (needed for a plain state dict; overrides the stored one).

    Returns:
        ``(model, spec)``: a ``DetectionModel`` in eval mode with ``names`` set.

    Raises:
        ValueError: if the file records no model config and none is given, or the weights do not fit.
    """
    from yolo11_lightning.nn.builder import build_model
    from yolo11_lightning.nn.weights import load_weights

    spec = read_spec(path)
    config = model_config or spec.model_config
    if config is None:
        raise ValueError(f"{path} holds weights only: give the model config it was trained with (model_config=...)")
    model = build_model(config, nc=spec.num_classes)
    load_weights(model, path)
    if spec.names and len(spec.names) == model.nc:
        model.names = dict(spec.names)
    return model.eval(), spec
