"""What a checkpoint records about the network, and the check that it fits the model being built."""

from __future__ import annotations

from typing import Any

from torch import nn

from yolo11_lightning.training.errors import UserError

# Config keys that define the architecture (the file name and the unused scales do not).
_ARCHITECTURE_KEYS = ("backbone", "head", "nc", "scale", "channels", "imports", "reg_max")


def class_names_dict(names: dict[int, str] | list[str] | tuple[str, ...]) -> dict[int, str]:
    """Class names as ``{id: name}`` with int keys (YAML/JSON may give string keys or a list).

    Args:
        names: a dict or a sequence of names.

    Returns:
        The names keyed by class id.
    """
    if isinstance(names, dict):
        return {int(k): str(v) for k, v in names.items()}
    return {i: str(name) for i, name in enumerate(names)}


def architecture_of(model: nn.Module) -> dict[str, Any]:
    """The architecture-defining part of a model's resolved config (``model.yaml``).

    Args:
        model: a ``DetectionModel``.

    Returns:
        A plain dict: layer rows, class count, scale and the selected scale's multipliers, and the
        config file name (for messages only).
    """
    config = dict(getattr(model, "yaml", {}) or {})
    architecture = {key: config[key] for key in _ARCHITECTURE_KEYS if key in config}
    architecture["nc"] = int(getattr(model, "nc", config.get("nc", 0)))
    scale = config.get("scale")
    if scale and isinstance(config.get("scales"), dict) and scale in config["scales"]:
        architecture["scale_values"] = list(config["scales"][scale])
    architecture["config_name"] = str(config.get("yaml_file", "<dict>"))
    return architecture


def check_architecture(checkpoint: dict[str, Any], model: nn.Module) -> None:
    """Raise a clear error when ``checkpoint`` was saved from another architecture than ``model``.

    Args:
        checkpoint: a loaded Lightning checkpoint written by ``YOLOModule``.
        model: the model the checkpoint is about to be loaded into.

    Raises:
        UserError: (a ValueError) if layer rows, scale or class count differ.
    """
    saved = checkpoint.get("model_config")
    if saved is None:
        return  # not written by YOLOModule: the state-dict load reports mismatches itself
    current = architecture_of(model)
    comparable = [key for key in set(saved) | set(current) if key != "config_name"]
    different = sorted(key for key in comparable if saved.get(key) != current.get(key))
    if not different:
        return
    details = []
    if "nc" in different:
        details.append(f"{saved.get('nc')} classes in the checkpoint, {current.get('nc')} in the model")
    if any(key != "nc" for key in different):
        details.append(
            f"model config {saved.get('config_name')!r} (scale {saved.get('scale')!r}) in the checkpoint, "
            f"{current.get('config_name')!r} (scale {current.get('scale')!r}) in the model"
        )
    raise UserError(
        "checkpoint does not match the model: " + "; ".join(details) + f" (differing: {', '.join(different)}). "
        "Build the same model as the checkpoint, e.g. --model.model "
        f"{saved.get('config_name')} with the data set it was trained on."
    )
