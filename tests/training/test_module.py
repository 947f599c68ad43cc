"""YOLOModule's guarded numerics on tiny synthetic batches (no data set needed)."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch import Trainer
from torch.utils.data import DataLoader, Dataset

from yolo11_lightning.data.batch import Batch
from yolo11_lightning.training.module import NonFiniteTrainingError, YOLOModule


class _Synthetic(Dataset):
    def __len__(self) -> int:
        return 16

    def __getitem__(self, index: int) -> int:
        return index


def _collate(indices: list[int]) -> Batch:
    generator = torch.Generator().manual_seed(indices[0])
    batch = len(indices)
    targets = torch.tensor([[i, i % 2, 0.5, 0.5, 0.4, 0.3] for i in range(batch)], dtype=torch.float32)
    return Batch(
        images=torch.randint(0, 255, (batch, 3, 64, 64), generator=generator, dtype=torch.uint8),
        targets=targets,
        image_ids=torch.tensor(indices),
        orig_shapes=torch.tensor([[64, 64]] * batch),
        ratio_pad=torch.tensor([[1.0, 1.0, 0.0, 0.0]] * batch),
        paths=[str(i) for i in indices],
    )


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
    trainer.fit(module, DataLoader(_Synthetic(), batch_size=2, collate_fn=_collate))


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
