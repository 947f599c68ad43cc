"""Early stopping on ``val/mAP50-95`` with the reference's patience, saying when and why it stops."""

from __future__ import annotations

import math
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info


class EarlyStopping(Callback):
    """Stop training after ``patience`` validations without a new best ``monitor`` (higher is better).

    On by default in ``fit`` (the reference's ``patience`` of 100 epochs); ``patience: 0`` turns it
    off. When it stops it prints the epoch it stopped at and the best epoch with its value. Its state
    (best value and epoch, validations waited) is saved in checkpoints, so a resumed run counts on.
    Every process sees the same (DDP-reduced) metric, so all stop together.

    Args:
        patience: validations (one per epoch by default) without improvement before stopping; 0: never.
        monitor: the logged metric to watch.
        min_delta: smallest increase that counts as an improvement.
    """

    def __init__(self, patience: int = 100, monitor: str = "val/mAP50-95", min_delta: float = 0.0) -> None:
        if patience < 0:
            raise ValueError(f"patience must be >= 0, got {patience}")
        self.patience = patience
        self.monitor = monitor
        self.min_delta = min_delta
        self.best = -math.inf
        self.best_epoch = -1
        self.wait = 0
        self.stopped_epoch: int | None = None

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Compare the new value with the best one; stop the fit once ``patience`` is used up."""
        if self.patience == 0 or trainer.sanity_checking or trainer.state.fn != "fit":
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            return
        value = float(value)
        epoch = trainer.current_epoch
        if value > self.best + self.min_delta:
            self.best, self.best_epoch, self.wait = value, epoch, 0
            return
        self.wait += 1
        if self.wait >= self.patience and not trainer.should_stop:
            trainer.should_stop = True
            self.stopped_epoch = epoch
            rank_zero_info(
                f"early stopping: no improvement of {self.monitor} in the last {self.patience} epochs; "
                f"stopped at epoch {epoch}, best epoch {self.best_epoch} ({self.monitor} {self.best:.4f}). "
                "Set --early_stopping.patience 0 to train all epochs."
            )

    def state_dict(self) -> dict[str, Any]:
        """Best value and epoch, validations waited."""
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output."""
        self.best = float(state_dict.get("best", -math.inf))
        self.best_epoch = int(state_dict.get("best_epoch", -1))
        self.wait = int(state_dict.get("wait", 0))
