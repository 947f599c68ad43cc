"""A clear one-line error, before anything is built, when the chosen logger's package is missing.

Lightning's optional loggers import their package only when constructed and fail deep inside the
trainer's construction; TensorBoard is an optional extra of this project
(``pip install -e .[tensorboard]``).
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

from yolo11_lightning.exit_codes import ExitCode

# Logger class name -> (importable packages, any one suffices; how to install).
_REQUIREMENTS: dict[str, tuple[tuple[str, ...], str]] = {
    "TensorBoardLogger": (("tensorboard", "tensorboardX"), "pip install -e .[tensorboard]"),
    "WandbLogger": (("wandb",), "pip install wandb"),
    "MLFlowLogger": (("mlflow",), "pip install mlflow"),
    "CometLogger": (("comet_ml",), "pip install comet-ml"),
    "NeptuneLogger": (("neptune",), "pip install neptune"),
}


def missing_logger_package(logger_config: Any) -> str | None:
    """The one-line message for a configured logger whose package is not installed, else None.

    Args:
        logger_config: the parsed ``trainer.logger`` value: a namespace with ``class_path``, a list
            of them, or a bool/None.
    """
    configs = logger_config if isinstance(logger_config, list) else [logger_config]
    for config in configs:
        class_path = str(getattr(config, "class_path", "") or "")
        name = class_path.rsplit(".", 1)[-1]
        if name not in _REQUIREMENTS:
            continue
        packages, install = _REQUIREMENTS[name]
        if not any(importlib.util.find_spec(package) for package in packages):
            return (
                f"error: --trainer.logger {name} needs the '{packages[0]}' package, which is not installed: {install}"
            )
    return None


def check_logger_installed(logger_config: Any) -> None:
    """Exit with :attr:`ExitCode.USER_ERROR` and one line on stderr when the logger's package is missing."""
    message = missing_logger_package(logger_config)
    if message:
        print(message, file=sys.stderr, flush=True)
        raise SystemExit(int(ExitCode.USER_ERROR))
