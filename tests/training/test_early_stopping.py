"""``EarlyStopping``: stops a real fit after ``patience`` epochs without a better mAP, and says so."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from lightning.pytorch import LightningModule, Trainer
from torch.utils.data import DataLoader

from yolo11_lightning.training.early_stopping import EarlyStopping


class _LogsAScriptedMap(LightningModule):
    """A one-parameter module whose validation logs ``val/mAP50-95`` from a script, one value per epoch."""

    def __init__(self, maps: list[float]) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.maps = maps

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        return (self.weight * batch).sum()

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        self.log("val/mAP50-95", self.maps[self.current_epoch])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.0)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(torch.ones(1, 1))

    def val_dataloader(self) -> DataLoader:
        return DataLoader(torch.ones(1, 1))


def _fit(maps: list[float], callback: EarlyStopping) -> Trainer:
    trainer = Trainer(
        max_epochs=len(maps), callbacks=[callback], logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, accelerator="cpu",
    )  # fmt: skip
    trainer.fit(_LogsAScriptedMap(maps))
    return trainer


def test_stops_at_patience_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    maps = [0.1, 0.3, 0.2, 0.3, 0.25, 0.9, 0.9, 0.9, 0.9, 0.9]  # best at epoch 1; 3 epochs without a better one
    callback = EarlyStopping(patience=3)
    with caplog.at_level(logging.INFO):
        trainer = _fit(maps, callback)
    assert callback.stopped_epoch == 4 and callback.best_epoch == 1 and callback.best == pytest.approx(0.3)
    assert trainer.current_epoch == 5  # epochs 0..4 ran, then the fit ended
    message = "stopped at epoch 4, best epoch 1 (val/mAP50-95 0.3000)"
    assert any(message in record.getMessage() for record in caplog.records), caplog.text


def test_improvements_reset_the_count_and_zero_patience_never_stops() -> None:
    maps = [0.1, 0.2, 0.2, 0.3, 0.3, 0.4, 0.4, 0.5]  # an improvement every second epoch
    assert _fit(maps, EarlyStopping(patience=2)).current_epoch == len(maps)
    flat = [0.5] * 6
    off = EarlyStopping(patience=0)
    assert _fit(flat, off).current_epoch == len(flat) and off.stopped_epoch is None


def test_state_survives_a_checkpoint() -> None:
    callback = EarlyStopping(patience=5)
    callback.best, callback.best_epoch, callback.wait = 0.4, 7, 3
    restored = EarlyStopping(patience=5)
    restored.load_state_dict(callback.state_dict())
    assert (restored.best, restored.best_epoch, restored.wait) == (0.4, 7, 3)


def test_the_cli_has_it_on_with_the_reference_patience(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from yolo11_lightning.training.cli import YOLOCLI

    monkeypatch.setattr(sys, "argv", ["train.py"])
    data = Path(__file__).resolve().parents[2] / "data" / "shapes4" / "data.yaml"
    cli = YOLOCLI(args=["--data.data", str(data), "--trainer.logger", "false"], run=False)
    stoppers = [cb for cb in cli.trainer.callbacks if isinstance(cb, EarlyStopping)]
    assert len(stoppers) == 1 and stoppers[0].patience == 100 and stoppers[0].monitor == "val/mAP50-95"
