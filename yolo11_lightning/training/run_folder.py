"""The run folder: where a run's logs, checkpoints and figures go, and resuming into it.

* :class:`RunCSVLogger` is Lightning's CSV logger whose ``save_dir`` defaults to the trainer's
  ``default_root_dir`` (Lightning's convention; the CLI fills it in before building the trainer),
  and which appends to an existing ``metrics.csv`` instead of deleting it (a resumed run).
* :func:`run_folder_of` recognises a checkpoint inside a run folder
  (``<run>/checkpoints/<name>.ckpt`` next to ``<run>/config.yaml``); ``fit --ckpt_path`` on such a
  checkpoint continues in ``<run>`` with its saved configuration (:func:`resume_arguments`).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

CONFIG_FILE = "config.yaml"


class _AppendingWriter(ExperimentWriter):
    """Lightning's CSV writer, but an existing ``metrics.csv`` is continued (its columns kept)."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as handle:
                header = next(csv.reader(handle), [])
            self.metrics_keys = sorted(set(header))


class RunCSVLogger(CSVLogger):
    """CSV logger into ``<save_dir>/<name>/version_<n>`` that continues an existing ``metrics.csv``.

    Args:
        save_dir: root folder; ``None``: the trainer's ``default_root_dir`` (filled in by the CLI;
            ``runs`` when the logger is built directly in Python).
        name: experiment name (a sub-folder of ``save_dir``).
        version: ``version_<n>`` (an int) or a folder name (a string); ``None``: the next free number.
        prefix: prefix of every metric key.
        flush_logs_every_n_steps: how often to write the buffered rows.
    """

    def __init__(
        self,
        save_dir: str | None = None,
        name: str = "yolo11",
        version: int | str | None = None,
        prefix: str = "",
        flush_logs_every_n_steps: int = 100,
    ) -> None:
        super().__init__(
            save_dir if save_dir is not None else "runs",
            name=name,
            version=version,
            prefix=prefix,
            flush_logs_every_n_steps=flush_logs_every_n_steps,
        )

    @property
    def experiment(self) -> ExperimentWriter:
        """The writer (created on first use)."""
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment


def run_folder_of(ckpt_path: str | os.PathLike[str]) -> Path | None:
    """The run folder holding ``ckpt_path`` (``<run>/checkpoints/x.ckpt`` with ``<run>/config.yaml``), else None."""
    path = Path(ckpt_path)
    if path.parent.name != "checkpoints":
        return None
    run = path.parent.parent
    return run if (run / CONFIG_FILE).is_file() else None


def option_value(args: Sequence[str], name: str) -> str | None:
    """The value of ``--name value`` or ``--name=value`` in ``args`` (the last one), else None."""
    value = None
    for index, arg in enumerate(args):
        if arg == name and index + 1 < len(args):
            value = args[index + 1]
        elif arg.startswith(name + "="):
            value = arg[len(name) + 1 :]
    return value


def resume_arguments(args: Sequence[str]) -> list[str]:
    """``fit --ckpt_path <run>/checkpoints/x.ckpt`` without ``--config``: add the run's saved config.

    Args:
        args: the command line after the program name.

    Returns:
        ``args``, with ``--config <run>/config.yaml`` inserted after ``fit`` when it applies.
    """
    args = list(args)
    if not args or args[0] != "fit" or any(a in ("--config", "-c") or a.startswith("--config=") for a in args):
        return args
    ckpt_path = option_value(args, "--ckpt_path")
    run = run_folder_of(ckpt_path) if ckpt_path else None
    if run is None:
        return args
    return [args[0], "--config", str(run / CONFIG_FILE), *args[1:]]


def point_logger_at_run(logger_config: Any, run: Path) -> bool:
    """Make a CSV/TensorBoard-style logger config (``save_dir``, ``name``, ``version``) write into ``run``.

    Args:
        logger_config: the parsed ``trainer.logger`` namespace (``class_path``, ``init_args``).
        run: the run folder to continue.

    Returns:
        Whether the logger could be pointed there (it has the three arguments).
    """
    init_args = getattr(logger_config, "init_args", None)
    if init_args is None or not all(hasattr(init_args, key) for key in ("save_dir", "name", "version")):
        return False
    run = run.resolve()
    name = init_args.name or ""
    if name and run.parent.name == name:
        init_args.save_dir = str(run.parent.parent)
    else:
        init_args.save_dir, init_args.name = str(run.parent), ""
    init_args.version = run.name
    return True


def run_directory(trainer: Trainer) -> Path:
    """The run folder (``trainer.log_dir``), without the collective broadcast of ``Trainer.log_dir``.

    Safe on one process only (figures, ``results.csv`` and ``predictions.json`` are written by rank 0):
    ``Trainer.log_dir`` broadcasts from rank 0, so calling it on rank 0 alone under DDP deadlocks.
    """
    if trainer.loggers:
        logger = trainer.loggers[0]
        folder = getattr(logger, "log_dir", None) or getattr(logger, "save_dir", None)
        if folder:
            return Path(folder)
    return Path(trainer.default_root_dir)
