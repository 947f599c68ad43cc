"""The divergence guard (``training/guards.py`` in ``YOLOModule``): diverging runs stop, good ones never.

Unit tests pin each rule; the end-to-end tests run ``train.py fit`` in-process on the tiny model:
``lr0 10`` with SGD and with AdamW (finite but runaway training: the loss spikes or collapses to
exactly zero) must stop with the divergence message; ``lr0 1e30`` resumed from a good checkpoint
must stop without overwriting that ``last.ckpt``, which then resumes with a sane lr to a finite
loss; and a ``bf16-mixed`` run must not trip the guard.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from robustness_helpers import tiny_cli_args

from yolo11_lightning.training.cli import run_cli
from yolo11_lightning.training.guards import DivergenceGuard, TrainingDivergedError
from yolo11_lightning.training.module import NonFiniteTrainingError


def test_collapsed_loss_is_divergence() -> None:
    guard = DivergenceGuard()
    assert guard.check_loss(3.0) == ""
    assert "collapsed to 0" in guard.check_loss(0.0)
    assert "collapsed" in guard.check_loss(1e-7)
    assert guard.check_loss(2e-6) == ""  # only at or below the floor


def test_loss_spike_against_the_running_mean() -> None:
    guard = DivergenceGuard()
    for value in (5.0, 2.0, 8.0, 3.0, 6.0):  # normal variation: a factor of a few
        assert guard.check_loss(value) == ""
    mean = math.exp(guard.log_mean)
    assert guard.check_loss(mean * 900) == ""  # below 1000x (and it is learnt)
    guard.log_mean = math.log(mean)
    reason = guard.check_loss(mean * 1100)
    assert "jumped to" in reason and "limit 1000x" in reason
    assert guard.check_loss(float("nan")) == ""  # non-finite values have their own rule


def test_gradient_norm_bound_scales_with_the_images_of_the_step() -> None:
    guard = DivergenceGuard(max_grad_norm=100.0)
    assert guard.check_grad_norm(790.0, images=8) == ""
    assert "above 800" in guard.check_grad_norm(801.0, images=8)
    assert guard.check_grad_norm(float("inf"), images=8) == ""  # the non-finite rule handles it


def test_weights_beyond_the_bound_or_not_finite() -> None:
    guard = DivergenceGuard(max_weight=100.0)
    model = torch.nn.Linear(3, 2)
    assert guard.check_weights(model) == ""
    with torch.no_grad():
        model.weight[0, 0] = 150.0
    assert "reached 150" in guard.check_weights(model)
    with torch.no_grad():
        model.weight[0, 0] = float("inf")
    assert guard.check_weights(model) == "the weights are not finite"
    model.weight.requires_grad_(False)
    assert guard.check_weights(model) == ""  # frozen weights only with trainable_only=False
    assert guard.check_weights(model, trainable_only=False) == "the weights are not finite"


def _fit(root: Path, epochs: int, *extra: str) -> object:
    return run_cli(["fit", *tiny_cli_args(root, root / "checkpoints", epochs, batches=4), *extra])


def _finite(state: dict[str, torch.Tensor]) -> bool:
    return all(bool(torch.isfinite(v).all()) for v in state.values() if v.is_floating_point())


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["SGD", "AdamW"])
def test_lr0_10_stops_with_the_divergence_message(tmp_path: Path, optimizer: str) -> None:
    torch.set_num_threads(1)
    with pytest.raises(TrainingDivergedError, match=r"training diverged at epoch \d+, step \d+: the (loss|gradient)"):
        _fit(tmp_path, 6, "--model.optimizer", optimizer, "--model.lr0", "10")
    for path in (tmp_path / "checkpoints").glob("*.ckpt"):  # whatever was saved is usable
        saved = torch.load(path, map_location="cpu", weights_only=False)
        assert _finite(saved["state_dict"]) and max(v.abs().max() for v in saved["state_dict"].values()) < 1e4


@pytest.mark.slow
def test_lr0_1e30_keeps_the_last_good_checkpoint_which_resumes(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    last = tmp_path / "checkpoints" / "last.ckpt"
    _fit(tmp_path, 1)
    good_bytes = last.read_bytes()
    with pytest.raises(TrainingDivergedError, match=rf"The last good state is {last}") as raised:
        _fit(tmp_path, 3, "--model.lr0", "1e30", "--ckpt_path", str(last))
    assert isinstance(raised.value, (TrainingDivergedError, NonFiniteTrainingError))
    assert last.read_bytes() == good_bytes  # not overwritten by the poisoned run
    saved = torch.load(last, map_location="cpu", weights_only=False)
    assert saved["epoch"] == 0 and _finite(saved["state_dict"]) and _finite(saved["ema_state_dict"])
    cli = _fit(tmp_path, 2, "--ckpt_path", str(last))
    assert cli.trainer.current_epoch == 2 and math.isfinite(float(cli.trainer.callback_metrics["train/loss_epoch"]))
    assert _finite(cli.model.model.state_dict())


@pytest.mark.slow
def test_mixed_precision_run_never_trips(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    cli = _fit(tmp_path, 3, "--trainer.precision", "bf16-mixed")
    assert cli.trainer.current_epoch == 3 and cli.model.nonfinite_skipped == 0
    assert math.isfinite(float(cli.trainer.callback_metrics["train/loss_epoch"]))
