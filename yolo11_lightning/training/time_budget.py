"""A training time budget in hours that re-plans the epochs (and with them the LR schedule and close_mosaic)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info


class TimeBudget(Callback):
    """Fit the run into ``hours``: after every epoch, ``max_epochs = ceil(budget / mean epoch time)``.

    As the reference's ``time`` option: the measured mean epoch time (training and validation)
    re-plans the number of epochs, so the LR schedule (read from ``trainer.max_epochs`` each step)
    and ``close_mosaic`` (the last N of ``trainer.max_epochs``) follow the new plan, and the run ends
    after the last planned epoch with its validation, near the budget, with the LR at its final
    scheduled value. The plan never goes below the epochs already done. Unlike
    ``--trainer.max_time``, which stops mid-schedule, nothing is cut off.

    Args:
        hours: the time budget in hours; ``None`` turns the callback off.
    """

    def __init__(self, hours: float | None = None) -> None:
        if hours is not None and hours <= 0:
            raise ValueError(f"hours must be > 0, got {hours}")
        self.hours = hours
        self.clock: Callable[[], float] = time.monotonic  # tests inject a fake clock
        self._start: float | None = None
        self._elapsed_before = 0.0  # seconds spent before a resume
        self._epochs_timed = 0

    @property
    def budget_seconds(self) -> float:
        """The budget in seconds (``inf`` when off)."""
        return math.inf if self.hours is None else self.hours * 3600.0

    def elapsed(self) -> float:
        """Seconds of training so far (including the time before a resume)."""
        return self._elapsed_before + (0.0 if self._start is None else self.clock() - self._start)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Start the clock."""
        if self.hours is not None:
            self._start = self.clock()

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Re-plan ``max_epochs`` from the mean epoch time (after the epoch's validation)."""
        if self.hours is None:
            return
        self._epochs_timed += 1
        done = trainer.current_epoch + 1
        mean = self.elapsed() / self._epochs_timed
        planned = max(done, math.ceil(self.budget_seconds / mean)) if mean > 0 else done
        if trainer.world_size > 1:  # every process keeps the same plan
            planned = int(trainer.strategy.broadcast(planned, src=0))
        if planned != trainer.fit_loop.max_epochs:
            rank_zero_info(
                f"time budget {self.hours:g} h: {mean:.1f} s per epoch -> {planned} epochs "
                f"(LR schedule and close_mosaic re-planned; {self.elapsed() / 3600:.3f} h used)"
            )
            trainer.fit_loop.max_epochs = planned
        if done >= planned:
            trainer.should_stop = True

    def state_dict(self) -> dict[str, Any]:
        """Time used and epochs timed, so a resumed run keeps counting."""
        return {"elapsed": self.elapsed(), "epochs_timed": self._epochs_timed}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output."""
        self._elapsed_before = float(state_dict.get("elapsed", 0.0))
        self._epochs_timed = int(state_dict.get("epochs_timed", 0))
