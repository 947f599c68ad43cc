"""YOLOModule's guarded numerics end to end: skipped, counted, logged; a stopped run keeps its checkpoint.

Complements ``test_module.py`` (NaN loss skip and the stop rule): here a non-finite *gradient*
with a finite loss is injected too, the skip count must reach the logged metrics, and a run stopped
by repeated non-finite steps must leave its last epoch checkpoint loadable with finite weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from robustness_helpers import SyntheticIndices, synthetic_collate, tiny_model_config
from torch.utils.data import DataLoader

from yolo11_lightning.training.checkpoint import AtomicCheckpointIO, is_temp_file
from yolo11_lightning.training.module import NonFiniteTrainingError, YOLOModule


class _InfiniteGradient(torch.autograd.Function):
    """Identity forward; the backward pass returns infinite gradients (the loss stays finite)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad * float("inf")


class _Faulty:
    """Wraps the loss: NaN loss on the calls in ``nan_loss``, infinite gradient on ``inf_grad``."""

    def __init__(self, loss: Any, nan_loss: set[int], inf_grad: set[int]) -> None:
        self.loss, self.nan_loss, self.inf_grad, self.calls = loss, nan_loss, inf_grad, 0

    def __call__(self, preds: Any, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        total, components = self.loss(preds, targets)
        call, self.calls = self.calls, self.calls + 1
        if call in self.nan_loss:
            total = total * float("nan")
        if call in self.inf_grad:
            total = _InfiniteGradient.apply(total)
        return total, components


def _module(directory: Path, **kwargs: Any) -> YOLOModule:
    torch.manual_seed(0)
    return YOLOModule(
        str(tiny_model_config(directory)), num_classes=2, batch_size=2, nominal_batch_size=2, warmup_epochs=0,
        print_class_table=False, **kwargs,
    )  # fmt: skip


def _trainer(root: Path, epochs: int, batches: int) -> Trainer:
    return Trainer(
        accelerator="cpu", max_epochs=epochs, limit_train_batches=batches, limit_val_batches=0, logger=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=root,
        callbacks=[ModelCheckpoint(dirpath=root / "checkpoints", filename="last", monitor=None)],
        plugins=[AtomicCheckpointIO()],
    )  # fmt: skip


def _all_finite(state: dict[str, torch.Tensor]) -> bool:
    return all(bool(torch.isfinite(v).all()) for v in state.values() if v.dtype.is_floating_point)


def test_nan_loss_and_infinite_gradient_are_skipped_counted_and_logged(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    module = _module(tmp_path)
    module.loss_fn = _Faulty(module.loss_fn, nan_loss={1}, inf_grad={3})
    trainer = _trainer(tmp_path, epochs=1, batches=6)
    trainer.fit(module, DataLoader(SyntheticIndices(), batch_size=2, collate_fn=synthetic_collate))
    assert module.nonfinite_skipped == 2 and module.nonfinite_consecutive == 0
    assert module.ema.updates == 4  # six optimizer calls, two of them skipped
    assert float(trainer.callback_metrics["train/nonfinite_skipped"]) == 2.0
    assert _all_finite(module.model.state_dict()) and _all_finite(module.ema.state_dict())
    saved = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert saved["yolo_state"]["nonfinite_skipped"] == 2  # the count survives a resume


def test_repeated_nonfinite_steps_stop_the_run_and_keep_the_last_good_checkpoint(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    module = _module(tmp_path, max_nonfinite_steps=3)
    # Epoch 0 (calls 0-2) trains normally; from epoch 1 on every loss is NaN.
    module.loss_fn = _Faulty(module.loss_fn, nan_loss=set(range(3, 100)), inf_grad=set())
    trainer = _trainer(tmp_path, epochs=3, batches=3)
    with pytest.raises(
        NonFiniteTrainingError, match="3 consecutive optimizer steps.*The last good state is .*last.ckpt"
    ):
        trainer.fit(module, DataLoader(SyntheticIndices(), batch_size=2, collate_fn=synthetic_collate))
    checkpoint_dir = tmp_path / "checkpoints"
    assert [p.name for p in checkpoint_dir.iterdir()] == ["last.ckpt"]
    saved = AtomicCheckpointIO().load_checkpoint(checkpoint_dir / "last.ckpt")
    assert saved["epoch"] == 0 and saved["global_step"] == 3
    assert _all_finite(saved["state_dict"]) and _all_finite(saved["ema_state_dict"])
    assert not any(is_temp_file(p) for p in checkpoint_dir.iterdir())
