"""``TimeBudget``: the epochs, and with them the LR schedule, re-planned to end near the budget."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch import LightningModule, Trainer
from torch.utils.data import DataLoader

from yolo11_lightning.training.optim import lr_factor
from yolo11_lightning.training.time_budget import TimeBudget


class FakeClock:
    """A clock that the training steps advance."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class _ScheduledToy(LightningModule):
    """Each step takes ``seconds_per_epoch / 2`` on the fake clock and records the recipe's LR factor,
    read, as ``YOLOModule`` does, from ``trainer.max_epochs`` at every step."""

    def __init__(self, clock: FakeClock, seconds_per_epoch: list[float]) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.clock, self.seconds = clock, seconds_per_epoch
        self.factors: list[tuple[int, int, float]] = []

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        epochs = self.trainer.max_epochs
        self.factors.append((self.current_epoch, epochs, lr_factor(self.current_epoch, epochs, 0.01)))
        self.clock.now += self.seconds[min(self.current_epoch, len(self.seconds) - 1)] / 2
        return (self.weight * batch).sum()

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        self.log("val/x", 0.0)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.0)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(torch.ones(2, 1))

    def val_dataloader(self) -> DataLoader:
        return DataLoader(torch.ones(1, 1))


def _fit(hours: float, seconds_per_epoch: list[float], max_epochs: int = 100) -> tuple[_ScheduledToy, TimeBudget]:
    clock = FakeClock()
    budget = TimeBudget(hours)
    budget.clock = clock
    module = _ScheduledToy(clock, seconds_per_epoch)
    trainer = Trainer(
        max_epochs=max_epochs, callbacks=[budget], logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, accelerator="cpu",
    )  # fmt: skip
    trainer.fit(module)
    return module, budget


@pytest.mark.parametrize(("hours", "seconds"), [(0.1, [20.0]), (0.05, [30.0, 10.0]), (0.2, [7.0])])
def test_ends_within_ten_percent_of_the_budget_with_the_final_lr(hours: float, seconds: list[float]) -> None:
    module, budget = _fit(hours, seconds)
    used = budget.elapsed()
    assert abs(used / (hours * 3600) - 1) <= 0.10, used
    last_epoch, planned, factor = module.factors[-1]
    assert last_epoch == planned - 1  # the last planned epoch ran ...
    assert factor == lr_factor(planned - 1, planned, 0.01)  # ... at the schedule's final LR
    assert planned != 100  # the plan changed from max_epochs


def test_the_plan_follows_the_measured_epoch_time() -> None:
    module, _ = _fit(0.1, [20.0])  # 360 s / 20 s per epoch
    plans = sorted({planned for epoch, planned, _ in module.factors if epoch > 0})
    assert plans == [18]


def test_off_by_default() -> None:
    module, budget = _fit(None, [20.0], max_epochs=3)  # type: ignore[arg-type]
    assert budget.hours is None and module.factors[-1][:2] == (2, 3)


def test_state_keeps_the_time_used() -> None:
    budget = TimeBudget(1.0)
    budget.clock = FakeClock()
    budget._start = budget.clock.now - 500.0
    restored = TimeBudget(1.0)
    restored.load_state_dict(budget.state_dict())
    assert restored.elapsed() == pytest.approx(500.0)
