"""ResultsCSV: ``results.csv`` in the run folder, one row per epoch, beside Lightning's ``metrics.csv``.

Columns: ``epoch``, the training losses (epoch means), the validation losses and metrics, and the
learning rate of each optimizer parameter group at the epoch's end (``lr/pg0`` ...). A resumed
run rewrites the rows of the epochs it trains again and keeps the earlier ones.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer

from yolo11_lightning.training.run_folder import run_directory

RESULTS_FILE = "results.csv"
TRAIN_KEYS = ("train/box_loss", "train/cls_loss", "train/dfl_loss")
VAL_KEYS = (
    "val/box_loss", "val/cls_loss", "val/dfl_loss", "val/precision", "val/recall", "val/mAP50", "val/mAP75",
    "val/mAP50-95",
)  # fmt: skip


def read_results(path: str | Path) -> list[dict[str, str]]:
    """The rows of a ``results.csv`` (empty when the file does not exist)."""
    path = Path(path)
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


class ResultsCSV(Callback):
    """Writes ``results.csv`` (see the module docstring) on rank 0 after every training epoch."""

    def __init__(self) -> None:
        self._validated_epoch: int | None = None

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Remember that this epoch has validation figures (not every epoch validates)."""
        if not trainer.sanity_checking:
            self._validated_epoch = trainer.current_epoch

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Append this epoch's row (rewriting a row of the same or a later epoch from a previous attempt)."""
        if not trainer.is_global_zero or trainer.sanity_checking:
            return
        metrics = trainer.callback_metrics
        row: dict[str, float | int] = {"epoch": trainer.current_epoch}
        for key in TRAIN_KEYS:
            value = metrics.get(f"{key}_epoch", metrics.get(key))
            row[key] = float(value) if value is not None else math.nan
        validated = self._validated_epoch == trainer.current_epoch
        for key in VAL_KEYS:
            value = metrics.get(key) if validated else None
            row[key] = float(value) if value is not None else math.nan
        for optimizer in trainer.optimizers:
            for index, group in enumerate(optimizer.param_groups):
                row[f"lr/pg{index}"] = float(group["lr"])
        path = run_directory(trainer) / RESULTS_FILE
        rows = [r for r in read_results(path) if int(float(r["epoch"])) < trainer.current_epoch]
        rows.append({key: (f"{value:.9g}" if isinstance(value, float) else str(value)) for key, value in row.items()})
        columns = list(row) + [key for r in rows for key in r if key not in row]
        columns = list(dict.fromkeys(columns))
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".csv.tmp")
        with temporary.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns, restval="")
            writer.writeheader()
            writer.writerows(rows)
        temporary.replace(path)
