"""Preemption: SIGTERM or SIGINT save a resumable checkpoint at the next step boundary and exit 4.

Lightning's own SIGTERM handling stops the loop and exits with status 0 (a scheduler sees a
success and does not requeue; the partial epoch is lost), and a first Ctrl-C exits 1 without a
checkpoint. :class:`SaveOnSignal` replaces both during ``fit``:

1. the signal only sets a flag (a second SIGINT interrupts at once, as usual);
2. at the end of the current training batch (under DDP all processes agree on the flag there) the
   checkpoint is written with the trainer's checkpoint plugin (atomic) to ``last.ckpt`` of the
   ``last_checkpoint`` folder, so the usual ``--ckpt_path .../last.ckpt`` resumes; it is a
   mid-epoch checkpoint like a step checkpoint, and :class:`~yolo11_lightning.training.resume.ExactResume`
   makes the resumed run bitwise equal to an uninterrupted one;
3. the process exits with :attr:`ExitCode.INTERRUPTED` (4), a non-zero status schedulers requeue.

A signal that arrives during validation is acted on after the next training batch (the run ends
normally when it was the last validation). The table of exit codes is in
:mod:`yolo11_lightning.exit_codes`.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from yolo11_lightning.exit_codes import ExitCode

log = logging.getLogger(__name__)


class TrainingInterrupted(SystemExit):
    """Raised after the preemption checkpoint is saved; exits with :attr:`ExitCode.INTERRUPTED`."""

    exit_code = ExitCode.INTERRUPTED

    def __init__(self, message: str) -> None:
        super().__init__(int(ExitCode.INTERRUPTED))
        self.message = message

    def __str__(self) -> str:
        return self.message


class SaveOnSignal(Callback):
    """Save a resumable checkpoint at the next step boundary after SIGTERM/SIGINT, then exit 4.

    Args:
        enabled: install the handlers during ``fit`` (``False``: Lightning's behaviour).
        dirpath: folder of the checkpoint; ``None`` takes the ``last_checkpoint`` callback's (the
            first ``ModelCheckpoint`` without a monitor), else ``<default_root_dir>/checkpoints``.
        filename: checkpoint file name without ``.ckpt``.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, enabled: bool = True, dirpath: str | None = None, filename: str = "last") -> None:
        self.enabled = enabled
        self.dirpath = dirpath
        self.filename = filename
        self.received: int | None = None
        self.saved_path: Path | None = None
        self._previous: dict[int, Any] = {}

    # --------------------------------------------------------------------------------- handlers
    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and self.received is not None:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        self.received = signum
        log.warning(
            "Received %s: saving a resumable checkpoint after the current training step, then exiting with %d",
            signal.Signals(signum).name, int(ExitCode.INTERRUPTED),
        )  # fmt: skip

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Install the handlers (after Lightning installed its own, which they replace during fit)."""
        self.received = None
        if not self.enabled or threading.current_thread() is not threading.main_thread():
            return
        for signum in self.SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handler)

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Put the previous handlers back."""
        self._restore()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        """Put the previous handlers back."""
        self._restore()

    # ------------------------------------------------------------------------------------ saving
    def checkpoint_path(self, trainer: Trainer) -> Path:
        """Where the preemption checkpoint goes (see the class arguments)."""
        directory = self.dirpath
        if directory is None:
            callbacks = [cb for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint) and cb.dirpath]
            unmonitored = [cb for cb in callbacks if cb.monitor is None]
            chosen = (unmonitored or callbacks or [None])[0]
            directory = chosen.dirpath if chosen is not None else str(Path(trainer.default_root_dir) / "checkpoints")
        return Path(directory) / f"{self.filename}{ModelCheckpoint.FILE_EXTENSION}"

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """At a step boundary: when a signal arrived (on any process), save and exit 4."""
        received = self.received is not None
        if trainer.world_size > 1:
            received = bool(trainer.strategy.reduce_boolean_decision(received, all=False))
        if not received:
            return
        path = self.checkpoint_path(trainer)
        trainer.save_checkpoint(path)
        self.saved_path = path
        name = signal.Signals(self.received).name if self.received is not None else "a signal (on another process)"
        message = (
            f"Stopped by {name} at epoch {trainer.current_epoch}, batch {batch_idx} (step {trainer.global_step}); "
            f"a resumable checkpoint was saved to {path}. Resume with --ckpt_path {path}"
        )
        if trainer.is_global_zero:
            print(message, flush=True)
        raise TrainingInterrupted(message)
