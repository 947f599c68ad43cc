"""YOLOModule's guarded numerics on tiny synthetic batches (no data set needed)."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch import Trainer
from robustness_helpers import SyntheticIndices, synthetic_collate
from torch.utils.data import DataLoader

from yolo11_lightning.training.module import NonFiniteTrainingError, YOLOModule


class _PoisonedLoss:
    """Wraps the real loss and returns NaN for the chosen calls."""

    def __init__(self, loss, poisoned: set[int]) -> None:
        self.loss, self.poisoned, self.calls = loss, poisoned, 0

    def __call__(self, preds, targets):
        total, components = self.loss(preds, targets)
        poisoned = self.calls in self.poisoned
        self.calls += 1
        return (total * float("nan"), components) if poisoned else (total, components)


def _fit(module: YOLOModule, batches: int) -> None:
    trainer = Trainer(
        accelerator="cpu", max_epochs=1, limit_train_batches=batches, limit_val_batches=0, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(module, DataLoader(SyntheticIndices(), batch_size=2, collate_fn=synthetic_collate))


def _module(**kwargs) -> YOLOModule:
    return YOLOModule("yolo11n.yaml", num_classes=2, batch_size=2, nominal_batch_size=2, warmup_epochs=0, **kwargs)


def test_nonfinite_loss_skips_the_step_and_is_counted() -> None:
    module = _module()
    module.loss_fn = _PoisonedLoss(module.loss_fn, poisoned={1, 2})
    before = {k: v.clone() for k, v in module.model.state_dict().items()}
    _fit(module, batches=5)
    assert module.nonfinite_skipped == 2 and module.nonfinite_consecutive == 0
    assert module.ema.updates == 3  # one EMA update per applied step only
    assert module.trainer.global_step == 5  # the optimizer was called 5 times, 2 of them without gradients
    weights = module.model.state_dict()
    assert all(torch.isfinite(v).all() for v in weights.values() if v.dtype.is_floating_point)
    assert all(torch.isfinite(v).all() for v in module.ema.state_dict().values() if v.dtype.is_floating_point)
    assert any(not torch.equal(before[k], weights[k]) for k in before)  # the good steps did train


def test_consecutive_nonfinite_steps_stop_the_run() -> None:
    module = _module(max_nonfinite_steps=3)
    module.loss_fn = _PoisonedLoss(module.loss_fn, poisoned=set(range(100)))
    with pytest.raises(NonFiniteTrainingError, match="3 consecutive optimizer steps"):
        _fit(module, batches=6)
    assert module.nonfinite_skipped == 3
