"""Gradient clipping, non-finite steps and divergence stops of :class:`~yolo11_lightning.training.module.YOLOModule`.

A mixin: it uses the module's ``model``, ``ema``, ``guard``, ``hparams`` and the step counters
that ``YOLOModule.__init__`` creates and checkpoints save.
"""

from __future__ import annotations

import torch

from yolo11_lightning.training.guards import TrainingDivergedError, last_good_checkpoint


class NonFiniteTrainingError(TrainingDivergedError):
    """Raised when too many consecutive optimizer steps had a non-finite loss or gradient."""


class StepSafetyHooks:
    """Clip, skip non-finite steps, stop on divergence, update the EMA after a good step."""

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Clip the (already unscaled) gradients; drop them all when the step must be skipped.

        A step is skipped when a loss of its accumulation window was not finite or the total
        gradient norm is not finite; an optimizer step without gradients changes nothing. Under
        ``16-mixed`` a non-finite gradient norm is left to the GradScaler (it skips the step and
        lowers its scale, which is routine while the scale calibrates) and not counted.
        """
        parameters = [p for p in self.model.parameters() if p.grad is not None]
        total_norm = torch.nn.utils.clip_grad_norm_(parameters, max_norm=self.hparams.grad_clip_norm)
        if not bool(torch.isfinite(total_norm)):
            if getattr(self.trainer.precision_plugin, "scaler", None) is not None:
                self._scaler_skipped = True
            else:
                self._skip_current_step = True
        elif parameters:
            # the norm clipping computed anyway: no extra pass over the gradients
            self._diverged = self._diverged or self.guard.check_grad_norm(float(total_norm), self._window_images)
        self._window_images = 0
        if self.trainer.world_size > 1:  # every process takes the same decision
            strategy = self.trainer.strategy
            self._skip_current_step = bool(strategy.reduce_boolean_decision(self._skip_current_step, all=False))
            if strategy.reduce_boolean_decision(bool(self._diverged), all=False) and not self._diverged:
                self._diverged = "another process diverged"
        if self._skip_current_step:
            for parameter in parameters:
                parameter.grad = None

    def _stop_diverged(self, reason: str, error: type[TrainingDivergedError] = TrainingDivergedError) -> None:
        raise error(
            f"training diverged at epoch {self.current_epoch}, step {self.global_step}: {reason}. No checkpoint is "
            f"written from these weights. {last_good_checkpoint(self.trainer)} "
            "(or check the data, or use 32-bit precision)."
        )

    def _finish_step(self) -> None:
        """Bookkeeping after an optimizer step: divergence stop, EMA update or non-finite accounting."""
        if self._diverged:
            reason, self._diverged = self._diverged, ""
            self._stop_diverged(reason)
        if self._scaler_skipped and not self._skip_current_step:
            self._scaler_skipped = False
            return
        self._scaler_skipped = False
        if self._skip_current_step:
            self._skip_current_step = False
            self.nonfinite_skipped += 1
            self.nonfinite_consecutive += 1
            limit = self.hparams.max_nonfinite_steps
            if self.nonfinite_consecutive >= limit:
                self._stop_diverged(
                    f"{self.nonfinite_consecutive} consecutive optimizer steps had a non-finite loss or gradient",
                    NonFiniteTrainingError,
                )
            return
        self.nonfinite_consecutive = 0
        self.ema.update(self.model)
