"""Load pretrained weights: reference ``.pt`` files, Lightning ``.ckpt``, state dicts, safetensors.

The reference saves a *pickled model object* (``{"model": DetectionModel, "ema": ...}``, float16).
It is read here without the reference package: a restricted unpickler turns every class it meets
into an inert stand-in that only records its state, and calls nothing but an allow-list of tensor,
collection and numpy rebuilders. The tensors are then collected from the stand-ins' ``_parameters``
and ``_buffers`` like ``state_dict()`` would.

Lightning checkpoints written by ``YOLOModule`` hold ``state_dict`` (keys ``model.<model key>``)
and ``ema_state_dict`` (keys as in ``DetectionModel.state_dict()``); the EMA weights are preferred.
"""

from __future__ import annotations

import builtins
import importlib
import logging
import pickle
import types
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

logger = logging.getLogger(__name__)

_MAX_LISTED_KEYS = 12


class StandIn:
    """Inert replacement for a class found in a pickle: records constructor args and state."""

    _pickled_name = "StandIn"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._pickle_args = args

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], (dict, type(None))):
            state = {**(state[0] or {}), **(state[1] or {})}  # (dict state, slots state)
        if isinstance(state, dict):
            self.__dict__.update(state)
        else:
            self.__dict__["_pickle_state"] = state

    def __repr__(self) -> str:
        return f"<stand-in for {self._pickled_name}>"


_STAND_INS: dict[tuple[str, str], type] = {}


def _stand_in(module: str, name: str) -> type:
    key = (module, name)
    if key not in _STAND_INS:
        _STAND_INS[key] = type(name, (StandIn,), {"_pickled_name": f"{module}.{name}"})
    return _STAND_INS[key]


def _allowed_global(module: str, name: str) -> Any | None:
    """The real object for allow-listed globals (tensor/collection/numpy rebuilders), else None."""
    if module == "torch._utils" and name in {
        "_rebuild_tensor",
        "_rebuild_tensor_v2",
        "_rebuild_parameter",
        "_rebuild_parameter_with_state",
    }:
        return getattr(torch._utils, name)
    if module == "torch":
        value = getattr(torch, name, None)
        if name in {"Size", "device"} or isinstance(value, (torch.dtype, torch.layout, torch.memory_format)):
            return value
    if module == "collections" and name == "OrderedDict":
        return OrderedDict
    if module in {"builtins", "__builtin__"} and name in {"set", "frozenset", "list", "dict", "tuple", "slice"}:
        return getattr(builtins, name)
    if module == "_codecs" and name == "encode":
        import codecs

        return codecs.encode
    if module == "copyreg" and name == "_reconstructor":
        return _safe_reconstructor
    if module in {"numpy.core.multiarray", "numpy._core.multiarray"} and name in {"scalar", "_reconstruct"}:
        try:  # numpy 2 moved numpy.core to numpy._core
            multiarray = importlib.import_module("numpy._core.multiarray")
        except ImportError:
            multiarray = importlib.import_module("numpy.core.multiarray")
        return getattr(multiarray, name)
    if module == "numpy" and name in {"dtype", "ndarray"}:
        import numpy as np

        return getattr(np, name)
    return None


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that never imports user code: unknown globals become :class:`StandIn` classes."""

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102 (pickle API)
        allowed = _allowed_global(module, name)
        return allowed if allowed is not None else _stand_in(module, name)


def _safe_reconstructor(cls: type, base: type, state: Any) -> Any:
    """Protocol-0/1 object reconstruction restricted to stand-ins and plain ``object``."""
    if isinstance(cls, type) and issubclass(cls, StandIn):
        return cls()
    raise pickle.UnpicklingError(f"refusing to reconstruct {cls!r}")


# A module-like object for torch.load(pickle_module=...).
_restricted_pickle = types.ModuleType("yolo11_restricted_pickle")
_restricted_pickle.Unpickler = RestrictedUnpickler  # type: ignore[attr-defined]
_restricted_pickle.load = lambda file, **kw: RestrictedUnpickler(file, **kw).load()  # type: ignore[attr-defined]
_restricted_pickle.__dict__["UnpicklingError"] = pickle.UnpicklingError


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read the model tensors of a weights file, whatever its format.

    Args:
        path: ``.pt``/``.pth`` (reference checkpoint, pickled model or plain state dict),
            ``.ckpt`` (Lightning) or ``.safetensors``.

    Returns:
        ``{key: tensor}`` with keys as in ``DetectionModel.state_dict()``.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If the file cannot be read or holds no model weights (the message names it).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path), device="cpu"))
        except (SafetensorError, OSError, ValueError) as error:
            raise ValueError(f"{path}: not a readable safetensors file ({error})") from error
    try:
        obj = torch.load(path, map_location="cpu", pickle_module=_restricted_pickle, weights_only=False)
    except Exception as error:  # zip, pickle and storage errors all mean "not a checkpoint"
        raise ValueError(f"{path}: not a readable PyTorch checkpoint ({type(error).__name__}: {error})") from error
    state = _extract_state_dict(obj)
    if not state:
        keys = sorted(map(str, obj))[:_MAX_LISTED_KEYS] if isinstance(obj, dict) else type(obj).__name__
        raise ValueError(f"{path}: no model weights found (top level: {keys})")
    return state


def _extract_state_dict(obj: Any) -> dict[str, torch.Tensor]:
    """Find the model tensors in a loaded checkpoint object."""
    if isinstance(obj, StandIn):
        return _module_tensors(obj)
    if not isinstance(obj, dict):
        return {}
    if obj.get("ema_state_dict") is not None:  # our Lightning checkpoint: EMA weights first
        return _extract_state_dict(obj["ema_state_dict"])
    if isinstance(obj.get("state_dict"), dict):  # Lightning checkpoint without EMA
        return lightning_model_state(obj["state_dict"])
    for key in ("ema", "model"):  # reference checkpoint: EMA first, as the reference loads it
        if obj.get(key) is not None:
            return _extract_state_dict(obj[key])
    if obj and all(isinstance(value, torch.Tensor) for value in obj.values()):
        return {str(key): value for key, value in obj.items()}
    return {}


def lightning_model_state(state_dict: dict[str, Any]) -> dict[str, Any]:
    """The network's entries of a ``YOLOModule`` state dict: keys under ``model.``, prefix stripped."""
    return {key[len("model.") :]: value for key, value in state_dict.items() if key.startswith("model.")}


def _module_tensors(module: StandIn, prefix: str = "") -> dict[str, torch.Tensor]:
    """``state_dict()`` of a pickled ``nn.Module`` seen through stand-ins."""
    tensors: dict[str, torch.Tensor] = {}
    state = module.__dict__
    for name, param in (state.get("_parameters") or {}).items():
        if param is not None:
            tensors[prefix + name] = param.detach()
    skipped = set(state.get("_non_persistent_buffers_set") or ())
    for name, buffer in (state.get("_buffers") or {}).items():
        if buffer is not None and name not in skipped:
            tensors[prefix + name] = buffer
    for name, child in (state.get("_modules") or {}).items():
        if isinstance(child, StandIn):
            tensors.update(_module_tensors(child, f"{prefix}{name}."))
    return tensors


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load weights into ``model`` strictly, in place.

    Every tensor of the file must be used and every model tensor must be found, with one
    exception: when the file was trained for another class count, the class branch of the head
    (``cv3``) keeps the tensors whose shapes still match and re-initialises the others: always
    the output convs, and the hidden layers too when their width depends on the class count
    (``max(in_channels, min(nc, 100))``). This is logged at INFO level.

    Args:
        model: A model from :func:`yolo11_lightning.build_model` (or any module with matching
            state-dict keys).
        path: Reference ``.pt``, Lightning ``.ckpt``, state-dict ``.pt``/``.pth`` or ``.safetensors``.

    Returns:
        ``model``.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the file is unreadable, or its tensors do not match the model (the message
            names the file and the missing, unexpected or mis-shaped keys).
    """
    path = Path(path)
    state = read_state_dict(path)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    class_branch, output_keys = _class_branch_keys(model)
    file_nc = int(state[output_keys[0]].shape[0]) if output_keys and output_keys[0] in state else None
    remap = (
        file_nc is not None
        and file_nc != int(model.head.nc)
        and all(  # type: ignore[attr-defined]
            k.startswith(class_branch) for k in mismatched
        )
    )
    if missing or unexpected or (mismatched and not remap):
        problems = []
        if missing:
            problems.append(f"missing keys ({len(missing)}): {_listing(missing)}")
        if unexpected:
            problems.append(f"unexpected keys ({len(unexpected)}): {_listing(unexpected)}")
        if mismatched:
            shapes = [f"{k} file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in mismatched]
            problems.append(f"shape mismatches ({len(mismatched)}): {_listing(shapes)}")
        raise ValueError(f"{path}: weights do not match the model; " + "; ".join(problems))
    skipped = set(mismatched) | (set(output_keys) if remap else set())
    model.load_state_dict({k: v for k, v in state.items() if k not in skipped}, strict=False)
    if remap:
        reset = _reinitialise(model, skipped)
        model.head.reset_class_outputs()  # type: ignore[attr-defined]
        logger.info(
            "%s: trained for %d classes, model has %d: re-initialised %s",
            path,
            file_nc,
            model.head.nc,  # type: ignore[attr-defined]
            ", ".join(reset),
        )
    logger.info("loaded %d of %d tensors from %s", len(state) - len(skipped), len(state), path)
    return model


def _class_branch_keys(model: nn.Module) -> tuple[str, list[str]]:
    """The head's class-branch key prefix and its output-conv keys (empty without such a head)."""
    layers = getattr(model, "model", None)
    head = getattr(model, "head", None)
    if not isinstance(layers, nn.Sequential) or head is None or not hasattr(head, "cv3"):
        return "", []
    prefix = f"model.{len(layers) - 1}.cv3."
    outputs = [
        f"{prefix}{level}.{len(branch) - 1}.{name}"
        for level, branch in enumerate(head.cv3)
        for name in ("weight", "bias")
    ]
    return prefix, outputs


def _reinitialise(model: nn.Module, keys: set[str]) -> list[str]:
    """Reset the modules owning ``keys`` (parameters and running statistics); return their names."""
    owners = sorted({key.rsplit(".", 1)[0] for key in keys})
    for name in owners:
        module = model.get_submodule(name)
        if hasattr(module, "reset_running_stats"):
            module.reset_running_stats()
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return owners


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED_KEYS])
    return shown + (f", ... ({len(items) - _MAX_LISTED_KEYS} more)" if len(items) > _MAX_LISTED_KEYS else "")
