"""Exact resume (``yolo11_lightning/training/resume.py`` with the data module's sampler position).

A tiny run (YOLO11 at width 0.125, 64 px, 4 images per batch, 3 batches per epoch, gradient accumulation 2 so
that pending gradients cross epoch ends) is trained for 3 epochs without interruption, and again
with a simulated crash (after an epoch, or in the middle of one with a checkpoint every optimizer
step) followed by ``fit(ckpt_path=...)`` in a fresh trainer, module and data module. Raw weights,
EMA weights and count, and the optimizer state must be bitwise equal to the uninterrupted run's,
with 0 and with 2 data-loader workers. The parent RNG is deliberately scrambled before resuming.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from robustness_helpers import DATA, tiny_model_config

from yolo11_lightning.data.datamodule import YOLODataModule
from yolo11_lightning.training.checkpoint import AtomicCheckpointIO, is_temp_file
from yolo11_lightning.training.module import YOLOModule
from yolo11_lightning.training.resume import ExactResume

EPOCHS = 3
BATCHES = 3


class SimulatedCrash(Exception):
    """Raised by :class:`CrashAt` to stop a run abruptly."""


class CrashAt(Callback):
    """Raise :class:`SimulatedCrash` when training reaches batch ``batch_idx`` of ``epoch``."""

    def __init__(self, epoch: int, batch_idx: int) -> None:
        self.epoch = epoch
        self.batch_idx = batch_idx

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        if (trainer.current_epoch, batch_idx) == (self.epoch, self.batch_idx):
            raise SimulatedCrash


def _fit(
    root: Path,
    workers: int,
    ckpt_path: Path | None = None,
    crash: CrashAt | None = None,
    step_checkpoints: bool = False,
    multi_scale: bool = False,
) -> tuple[YOLOModule, Trainer]:
    """Build everything fresh and fit (optionally from a checkpoint, optionally crashing)."""
    if ckpt_path is None:
        torch.manual_seed(0)  # the same initial weights for every fresh run
    datamodule = YOLODataModule(
        str(DATA), imgsz=64, batch_size=4, workers=workers, scan_cache=False, close_mosaic=1, persistent_workers=True
    )
    module = YOLOModule(
        str(tiny_model_config(root.parent)),
        num_classes=datamodule.num_classes,
        batch_size=4,
        nominal_batch_size=8,
        warmup_epochs=1.0,
        min_warmup_iterations=2,
        print_class_table=False,
        multi_scale=multi_scale,
    )
    callbacks: list[Callback] = [
        ExactResume(num_threads=1),
        ModelCheckpoint(dirpath=root, filename="last", monitor=None, enable_version_counter=False),
    ]
    if step_checkpoints:  # a checkpoint after every optimizer step
        callbacks.append(
            ModelCheckpoint(
                dirpath=root, filename="step", monitor=None, every_n_train_steps=1, enable_version_counter=False
            )
        )
    if crash is not None:
        callbacks.append(crash)
    trainer = Trainer(
        max_epochs=EPOCHS,
        limit_train_batches=BATCHES,
        limit_val_batches=1,
        num_sanity_val_steps=1,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
    )
    trainer.fit(module, datamodule, ckpt_path=ckpt_path)
    return module, trainer


def _state(module: YOLOModule, trainer: Trainer) -> dict[str, Any]:
    optimizer = trainer.optimizers[0].state_dict()
    return {
        "raw": module.model.state_dict(),
        "ema": module.ema.state_dict(),
        "ema_updates": module.ema.updates,
        "optimizer_state": optimizer["state"],
        "param_groups": [{k: v for k, v in g.items() if k != "params"} for g in optimizer["param_groups"]],
        "global_step": trainer.global_step,
    }


def _assert_bitwise_equal(expected: Any, actual: Any, where: str = "") -> None:
    if isinstance(expected, torch.Tensor):
        assert torch.equal(expected, actual), f"{where}: max abs diff {(expected.float() - actual.float()).abs().max()}"
    elif isinstance(expected, dict):
        assert expected.keys() == actual.keys(), where
        for key in expected:
            _assert_bitwise_equal(expected[key], actual[key], f"{where}/{key}")
    elif isinstance(expected, (list, tuple)):
        assert len(expected) == len(actual), where
        for i, (e, a) in enumerate(zip(expected, actual)):
            _assert_bitwise_equal(e, a, f"{where}[{i}]")
    else:
        assert expected == actual, f"{where}: {expected!r} != {actual!r}"


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    torch.set_num_threads(1)
    module, trainer = _fit(tmp_path_factory.mktemp("uninterrupted") / "run", workers=0)
    assert trainer.current_epoch == EPOCHS
    return _state(module, trainer)


@pytest.mark.parametrize(
    ("workers", "crash_epoch", "crash_batch", "checkpoint"),
    [
        # Crashed in epoch 1 before its first batch: resume from the epoch-0 checkpoint.
        (0, 1, 0, "last.ckpt"),
        (2, 1, 0, "last.ckpt"),
        # Crashed at epoch 1, batch 2: the newest step checkpoint is after batch 1 (mid-epoch).
        (2, 1, 2, "step.ckpt"),
        # Crashed at epoch 2, batch 1: the newest step checkpoint is after epoch 1's last batch.
        (0, 2, 1, "step.ckpt"),
    ],
)
def test_resume_is_bitwise_exact(
    uninterrupted: dict[str, Any], tmp_path: Path, workers: int, crash_epoch: int, crash_batch: int, checkpoint: str
) -> None:
    torch.set_num_threads(1)
    run = tmp_path / "run"
    step_checkpoints = checkpoint == "step.ckpt"
    with pytest.raises(SimulatedCrash):
        _fit(run, workers, crash=CrashAt(crash_epoch, crash_batch), step_checkpoints=step_checkpoints)
    saved = torch.load(run / checkpoint, map_location="cpu", weights_only=False)
    assert saved["global_step"] < uninterrupted["global_step"]
    torch.manual_seed(12345)  # a different parent RNG state than the crashed process had
    module, trainer = _fit(run, workers, ckpt_path=run / checkpoint, step_checkpoints=step_checkpoints)
    assert trainer.current_epoch == EPOCHS
    _assert_bitwise_equal(uninterrupted, _state(module, trainer))
    assert not [p for p in run.iterdir() if is_temp_file(p)]


@pytest.mark.slow
def test_resume_with_multi_scale_is_bitwise_exact(tmp_path: Path) -> None:
    """Multi-scale sizes depend on (seed, epoch, batch) only: a run resumed mid-epoch matches bitwise."""
    torch.set_num_threads(1)
    expected = _state(*_fit(tmp_path / "straight" / "run", 0, multi_scale=True))
    run = tmp_path / "crashed" / "run"
    with pytest.raises(SimulatedCrash):
        _fit(run, 0, crash=CrashAt(1, 2), step_checkpoints=True, multi_scale=True)
    torch.manual_seed(12345)
    module, trainer = _fit(run, 0, ckpt_path=run / "step.ckpt", step_checkpoints=True, multi_scale=True)
    _assert_bitwise_equal(expected, _state(module, trainer))


class NoisyAccumulatingModule(LightningModule):
    """A toy whose steps use all three global generators and accumulate gradients across epochs.

    Manual optimisation steps every second batch of a 3-batch epoch, so an epoch-end checkpoint
    holds gradients of a batch not yet applied.
    """

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.layer = torch.nn.Linear(8, 1)
        self.batches_seen = 0

    def training_step(self, batch: Any, batch_idx: int) -> None:
        import random

        import numpy as np

        (x,) = batch
        noise = torch.randn_like(x) + float(np.random.rand()) + random.random()
        self.manual_backward(self.layer(x + noise).pow(2).mean())
        self.batches_seen += 1
        if self.batches_seen % 2 == 0:
            optimizer = self.optimizers()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["batches_seen"] = self.batches_seen

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.batches_seen = checkpoint["batches_seen"]

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        data = torch.utils.data.TensorDataset(torch.arange(24, dtype=torch.float32).reshape(6, 4).repeat(1, 2) / 24)
        return torch.utils.data.DataLoader(data, batch_size=2)


def _fit_toy(root: Path, exact: bool, ckpt_path: Path | None = None, crash: CrashAt | None = None) -> torch.Tensor:
    torch.manual_seed(0)
    module = NoisyAccumulatingModule()
    callbacks: list[Callback] = [ModelCheckpoint(dirpath=root, filename="last", monitor=None)]
    callbacks += [ExactResume(seed=7)] if exact else []
    callbacks += [crash] if crash is not None else []
    trainer = Trainer(
        max_epochs=3, accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=root, callbacks=callbacks, plugins=[AtomicCheckpointIO()],
    )  # fmt: skip
    trainer.fit(module, ckpt_path=ckpt_path)
    return torch.cat([p.detach().flatten() for p in module.parameters()])


@pytest.mark.parametrize("exact", [True, False])
def test_rng_and_pending_gradients_are_restored(tmp_path: Path, exact: bool) -> None:
    """With ExactResume the toy resumes exactly; without it (the control) it does not."""
    expected = _fit_toy(tmp_path / "full", exact)
    with pytest.raises(SimulatedCrash):
        _fit_toy(tmp_path / "run", exact, crash=CrashAt(1, 0))
    saved = torch.load(tmp_path / "run" / "last.ckpt", weights_only=False)
    if exact:
        assert "pending_gradients" in saved  # epoch 0 ended between two optimizer steps
    torch.manual_seed(999)
    resumed = _fit_toy(tmp_path / "run", exact, ckpt_path=tmp_path / "run" / "last.ckpt")
    assert torch.equal(expected, resumed) == exact


def test_step_seed_depends_on_every_coordinate() -> None:
    from yolo11_lightning.training.resume import step_seed

    seeds = {step_seed(s, e, b, r) for s in (0, 1) for e in (0, 1) for b in (0, 1) for r in (0, 1)}
    assert len(seeds) == 16 and all(0 <= s < 2**32 for s in seeds)
