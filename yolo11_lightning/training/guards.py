"""Divergence detection for the training loop: cheap per-step checks and a check before every save.

Non-finite values are only the last stage of a divergence. With a learning rate far too high the
loss and the weights stay finite for a long time: AdamW at ``lr0 10`` saturates every logit until
the loss is exactly 0.0 (weights 5.7e10), SGD drives the weights to 7e6 while the loss jumps by
four orders of magnitude and collapses again. :class:`DivergenceGuard` recognises this from
numbers the step computes anyway (the loss, and the total gradient norm that clipping returns;
no extra pass over the parameters per step):

* **collapsed loss**: the per-image loss below ``min_loss`` (1e-6). With at least one box in the
  batch the classification term alone has a floor (the binary cross-entropy against soft IoU
  targets is at least their entropy, about 0.5 per positive anchor), and without boxes it is the
  sum over every anchor and class (thousands of terms); reaching 1e-6 needs every logit beyond
  about -20, which only saturated weights give.
* **loss spike**: the per-image loss more than ``spike_factor`` (1000) times its running
  (geometric) mean over the previous steps. Legitimate losses of this recipe stay within a factor
  of about 10 of each other (mosaic vs. plain samples, warmup), so three orders of magnitude is
  far outside normal variation.
* **gradient explosion**: the total gradient norm before clipping above ``max_grad_norm`` times
  the number of images per optimizer step (``grad_clip_norm`` = 10 is the clipping target; the
  recipe's loss is summed over images, so the norm grows with the batch; see
  ``docs/robustness.md`` for the measured range).

Before every checkpoint save, :meth:`DivergenceGuard.check_weights` does one pass over the
trainable weights (saving serialises them anyway): a non-finite weight or one larger than
``max_weight`` (1e4; trained YOLO weights stay below about 10) refuses the save, so ``last.ckpt``
keeps the last good state.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import torch
from lightning.pytorch import Trainer
from torch import nn

from yolo11_lightning.exit_codes import ExitCode


class TrainingDivergedError(RuntimeError):
    """The training diverged (or produced non-finite weights); no checkpoint was written from it."""

    exit_code = ExitCode.DIVERGED


@dataclass
class DivergenceGuard:
    """The per-step divergence rules (see the module docstring) and their running state.

    Attributes:
        min_loss: per-image loss at or below which the loss counts as collapsed.
        spike_factor: per-image loss above this multiple of its running geometric mean is a spike.
        max_grad_norm: bound on the pre-clipping total gradient norm, per image of the optimizer step.
        max_weight: bound on the absolute value of any trainable weight (checked before saves).
        log_mean: running mean of ``log(loss)`` over the accepted steps (``None`` before the first).
    """

    min_loss: float = 1e-6
    spike_factor: float = 1e3
    max_grad_norm: float = 1e4
    max_weight: float = 1e4
    log_mean: float | None = None
    momentum: float = 0.9

    def check_loss(self, loss: float) -> str:
        """Check one batch's per-image loss; returns the reason it diverged, or "" (and learns it)."""
        if not math.isfinite(loss):
            return ""  # non-finite values have their own rule (skipped steps, max_nonfinite_steps)
        if loss <= self.min_loss:
            return f"the loss collapsed to {loss:.3g} (at most {self.min_loss:g}: the outputs are saturated)"
        log_loss = math.log(loss)
        if self.log_mean is not None and log_loss - self.log_mean > math.log(self.spike_factor):
            return (
                f"the loss jumped to {loss:.4g}, {math.exp(log_loss - self.log_mean):.3g} times its running mean "
                f"{math.exp(self.log_mean):.4g} (limit {self.spike_factor:g}x)"
            )
        self.log_mean = (
            log_loss if self.log_mean is None else self.momentum * self.log_mean + (1 - self.momentum) * log_loss
        )
        return ""

    def check_grad_norm(self, norm: float, images: int) -> str:
        """Check the total gradient norm (before clipping) of a step over ``images`` images."""
        bound = self.max_grad_norm * max(1, images)
        if math.isfinite(norm) and norm > bound:
            return f"the gradient norm is {norm:.4g}, above {bound:.4g} ({self.max_grad_norm:g} per image)"
        return ""

    def check_weights(self, model: nn.Module, trainable_only: bool = True) -> str:
        """One pass over the (trainable) weights: the reason they are unusable, or ""."""
        largest = torch.zeros(())
        for parameter in model.parameters():
            if (parameter.requires_grad or not trainable_only) and parameter.numel():
                value = parameter.detach().abs().max().cpu()
                if not bool(torch.isfinite(value)):
                    return "the weights are not finite"
                largest = torch.maximum(largest, value.to(largest.dtype))
        if float(largest) > self.max_weight:
            return f"a weight reached {float(largest):.3g} (limit {self.max_weight:g})"
        return ""

    def state_dict(self) -> dict[str, Any]:
        """The running state saved in checkpoints (exact resume)."""
        return {"log_mean": self.log_mean}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output."""
        self.log_mean = state.get("log_mean")


def last_good_checkpoint(trainer: Trainer) -> str:
    """A sentence naming the newest checkpoint this run saved (for the divergence messages)."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    paths = {
        path
        for callback in trainer.checkpoint_callbacks
        if isinstance(callback, ModelCheckpoint)
        for path in (callback.last_model_path, callback.best_model_path)
        if path and os.path.isfile(path)
    }
    if not paths:
        return "No checkpoint was saved before, so there is nothing to resume from"
    newest = max(paths, key=os.path.getmtime)
    return (
        f"The last good state is {newest} (the newest checkpoint; it passed the weight check); "
        f"resume with --ckpt_path {newest} and a lower --model.lr0"
    )
