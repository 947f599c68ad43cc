"""``YOLODataModule``: names, sharding, mosaic switch, and Lightning resume (``data/datamodule.py``)."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import lightning.pytorch as pl
import pytest
import torch
from data_builders import SHAPES4_YAML
from torch.utils.data import DataLoader

from yolo11_lightning import YOLODataModule
from yolo11_lightning.data.samplers import TrainingSampler, ValidationSampler
from yolo11_lightning.data.workers import WorkerInit


def _fake_trainer(world_size: int = 1, rank: int = 0, max_epochs: int = 20, epoch: int = 0) -> SimpleNamespace:
    epochs = SimpleNamespace(current=SimpleNamespace(processed=epoch, started=epoch))
    batches = SimpleNamespace(is_last_batch=False, current=SimpleNamespace(processed=0))
    fit_loop = SimpleNamespace(epoch_progress=epochs, epoch_loop=SimpleNamespace(batch_progress=batches))
    return SimpleNamespace(world_size=world_size, global_rank=rank, max_epochs=max_epochs, fit_loop=fit_loop)


def test_names_are_known_right_after_init() -> None:
    datamodule = YOLODataModule(str(SHAPES4_YAML), imgsz=320, batch_size=4, workers=0)
    assert datamodule.names == {0: "present", 1: "logo", 2: "portrait", 3: "ball"}
    assert datamodule.num_classes == 4
    assert datamodule.datasets == {}  # nothing scanned yet
    assert datamodule.hparams.imgsz == 320


def test_default_workers_follow_the_cpus_and_the_device(monkeypatch) -> None:
    """``workers=None``: training min(8, CPUs per local process); evaluation 0 when the model is on the CPU."""
    monkeypatch.setattr("yolo11_lightning.data.workers.available_cpus", lambda: 12)
    datamodule = YOLODataModule(str(SHAPES4_YAML), imgsz=128, batch_size=4, val_batch_size=4, persistent_workers=False)
    on = {
        device: SimpleNamespace(
            **vars(_fake_trainer()), num_devices=processes, strategy=SimpleNamespace(root_device=torch.device(device))
        )  # fmt: skip
        for device, processes in (("cpu", 1), ("cuda", 4))
    }
    datamodule.trainer = on["cpu"]
    datamodule.setup("fit")
    assert datamodule.train_dataloader().num_workers == 8  # 12 CPUs, at most 8
    assert datamodule.val_dataloader().num_workers == 0  # competes with the model's threads
    datamodule.trainer = on["cuda"]  # 4 processes on this machine: 12 // 4 CPUs each
    assert datamodule.train_dataloader().num_workers == 3
    assert datamodule.val_dataloader().num_workers == 3
    explicit = YOLODataModule(str(SHAPES4_YAML), imgsz=128, batch_size=4, workers=5, persistent_workers=False)
    explicit.trainer = on["cpu"]
    explicit.setup("fit")
    assert explicit.train_dataloader().num_workers == 5 and explicit.val_dataloader().num_workers == 5


def test_worker_priority_is_idle_on_the_cpu_and_applied_in_the_workers() -> None:
    """``worker_priority=None``: idle beside a CPU model, normal beside a GPU; the workers really run that way."""
    datamodule = YOLODataModule(str(SHAPES4_YAML), imgsz=128, batch_size=4, workers=1, persistent_workers=False)
    for device, expected in (("cpu", "idle"), ("cuda", "normal")):
        datamodule.trainer = SimpleNamespace(**vars(_fake_trainer()), num_devices=1,
                                             strategy=SimpleNamespace(root_device=torch.device(device)))  # fmt: skip
        assert datamodule.worker_init().priority == expected
    explicit = YOLODataModule(str(SHAPES4_YAML), imgsz=128, batch_size=4, worker_priority="normal")
    explicit.trainer = datamodule.trainer
    assert explicit.worker_init().priority == "normal"
    with pytest.raises(ValueError, match="worker_priority must be 'normal' or 'idle'"):
        WorkerInit("low")  # type: ignore[arg-type]
    if not hasattr(os, "SCHED_IDLE"):
        pytest.skip("no SCHED_IDLE on this platform")
    here = (os.sched_getscheduler(0), os.nice(0))
    seen = {}
    for priority in ("idle", "normal"):
        loader = DataLoader(_Scheduling(), num_workers=1, worker_init_fn=WorkerInit(priority))
        seen[priority] = {tuple(int(value) for value in sample) for sample in loader}
    assert seen["normal"] == {here}
    # SCHED_IDLE, or nice 19 where a sandbox refuses the policy change
    assert seen["idle"] in ({(os.SCHED_IDLE, here[1])}, {(here[0], 19)})


class _Scheduling(torch.utils.data.Dataset):
    """Two samples: ``(scheduling policy, niceness)`` of the process that builds them."""

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> tuple[int, int]:
        return os.sched_getscheduler(0), os.nice(0)


def test_ddp_shards_and_unpadded_validation() -> None:
    seen, train_sizes = [], []
    for rank in range(2):
        datamodule = YOLODataModule(str(SHAPES4_YAML), imgsz=128, batch_size=4, val_batch_size=4, workers=0)
        datamodule.trainer = _fake_trainer(world_size=2, rank=rank, epoch=3)
        datamodule.setup("fit")
        train = datamodule.train_dataloader()
        assert isinstance(train.sampler, TrainingSampler) and train.sampler.epoch == 3 and train.sampler.rank == rank
        train_sizes.append(len(train.sampler))
        val = datamodule.val_dataloader()
        assert isinstance(val.sampler, ValidationSampler)
        for batch in val:
            seen += batch.image_ids.tolist()
    assert train_sizes == [32, 32]
    assert sorted(seen) == list(range(17))  # 17 validation images, each exactly once over 2 ranks


def test_mosaic_rule_override_and_state() -> None:
    datamodule = YOLODataModule(str(SHAPES4_YAML), close_mosaic=10, workers=0)
    assert datamodule.mosaic_enabled(500)  # no trainer: always on
    datamodule.trainer = _fake_trainer(max_epochs=30)
    assert datamodule.mosaic_enabled(19) and not datamodule.mosaic_enabled(20)
    datamodule.set_mosaic(True)
    assert datamodule.mosaic_enabled(25)
    restored = YOLODataModule(str(SHAPES4_YAML), close_mosaic=10, workers=0)
    restored.trainer = _fake_trainer(max_epochs=30)
    restored.load_state_dict(datamodule.state_dict())
    assert restored.mosaic_enabled(25)
    restored.set_mosaic(None)
    assert not restored.mosaic_enabled(25)


class _Recorder(pl.LightningModule):
    """Records what each training batch contained, per epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(1))
        self.seen: dict[int, list[tuple[list[int], float]]] = {}

    def training_step(self, batch: dict, batch_index: int) -> torch.Tensor:
        checksum = float(batch.images.double().sum() + batch.targets.double().sum())
        self.seen.setdefault(self.current_epoch, []).append((batch.image_ids.tolist(), checksum))
        return (self.weight * batch.images.float().mean()).sum()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.0)


def _fit(
    max_epochs: int, tmp_path: Path, ckpt_path: str | None = None, set_mosaic: bool | None = None
) -> tuple[_Recorder, pl.Trainer]:
    datamodule = YOLODataModule(str(SHAPES4_YAML), imgsz=64, batch_size=8, workers=1, close_mosaic=1, seed=11)
    if set_mosaic is not None:
        datamodule.set_mosaic(set_mosaic)
    module = _Recorder()
    trainer = pl.Trainer(
        max_epochs=max_epochs, limit_train_batches=2, limit_val_batches=0, accelerator="cpu", devices=1,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    return module, trainer


def test_resumed_run_sees_the_same_batches(tmp_path: Path) -> None:
    full, _ = _fit(3, tmp_path)
    assert full.seen[0] != full.seen[1]  # new order and augmentation every epoch
    first, trainer = _fit(2, tmp_path, set_mosaic=False)
    checkpoint = tmp_path / "epoch2.ckpt"
    trainer.save_checkpoint(checkpoint)
    assert torch.load(checkpoint, weights_only=False)["YOLODataModule"] == {"mosaic_override": False}
    assert first.seen[0] != full.seen[0]  # mosaic forced off changes the samples (same order)
    assert [ids for ids, _ in first.seen[0]] == [ids for ids, _ in full.seen[0]]
    # resume without an override in the new DataModule: the checkpoint's False comes back, and
    # epoch 2 is mosaic-off in the full run too (close_mosaic=1), so the batches must match exactly
    resumed, _ = _fit(3, tmp_path, ckpt_path=str(checkpoint))
    assert list(resumed.seen) == [2]
    assert resumed.seen[2] == full.seen[2]
