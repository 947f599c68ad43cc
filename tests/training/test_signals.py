"""Preemption: SIGTERM during ``train.py fit`` saves a resumable checkpoint, exits 4, resumes bitwise.

A tiny run (3 epochs of 3 batches, gradient accumulation 2) is sent SIGTERM in the middle of its
second epoch. The process must exit with ``ExitCode.INTERRUPTED`` (4, not Lightning's 0) after
writing ``last.ckpt`` at the step boundary; ``fit --ckpt_path last.ckpt`` then finishes the run,
and the final raw weights, EMA weights and optimizer state must be bitwise those of a run that
was never interrupted, and every epoch's logged ``train/loss_epoch`` the same (also the epoch that
was cut in two). SIGINT (Ctrl-C) is handled the same way.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from robustness_helpers import ROOT, tiny_cli_args

from yolo11_lightning.exit_codes import ExitCode

pytestmark = pytest.mark.slow

DRIVER = Path(__file__).with_name("marked_fit.py")
EPOCHS = 3


def _args(root: Path, checkpoint_dir: Path) -> list[str]:
    return ["fit", *tiny_cli_args(root, checkpoint_dir, EPOCHS), "--resume.num_threads", "1"]


def _popen(args: list[str], markers: Path, step_seconds: float) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    return subprocess.Popen(
        [sys.executable, str(DRIVER), str(markers), str(step_seconds), *args],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def _run(args: list[str], markers: Path) -> str:
    proc = _popen(args, markers, 0.0)
    output, _ = proc.communicate(timeout=400)
    assert proc.returncode == 0, output[-4000:]
    return output


def _final_state(path: Path) -> dict:
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    return {
        "epoch": checkpoint["epoch"],
        "global_step": checkpoint["global_step"],
        "state_dict": checkpoint["state_dict"],
        "ema": checkpoint["ema_state_dict"],
        "ema_updates": checkpoint["ema_updates"],
        "optimizer": checkpoint["optimizer_states"][0]["state"],
    }


def _epoch_losses(log_root: Path) -> dict[int, str]:
    """``{epoch: train/loss_epoch}`` as logged (the newest log folder wins for an epoch)."""
    losses = {}
    for metrics_file in sorted(log_root.rglob("metrics.csv")):
        with metrics_file.open() as handle:
            for row in csv.DictReader(handle):
                if row.get("train/loss_epoch"):
                    losses[int(row["epoch"])] = row["train/loss_epoch"]
    return losses


def _assert_bitwise(expected: object, actual: object, where: str = "") -> None:
    if isinstance(expected, torch.Tensor):
        assert torch.equal(expected, actual), where
    elif isinstance(expected, dict):
        assert expected.keys() == actual.keys(), where
        for key in expected:
            _assert_bitwise(expected[key], actual[key], f"{where}/{key}")
    else:
        assert expected == actual, f"{where}: {expected!r} != {actual!r}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The final state of the run that is never interrupted."""
    root = tmp_path_factory.mktemp("reference")
    _run(_args(root, root / "checkpoints"), root / "markers")
    return {**_final_state(root / "checkpoints" / "last.ckpt"), "epoch_losses": _epoch_losses(root / "logs")}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_saves_a_checkpoint_exits_4_and_resumes_bitwise(tmp_path: Path, signum: int, reference: dict) -> None:
    checkpoint_dir = tmp_path / "interrupted" / "checkpoints"
    markers = tmp_path / "interrupted" / "markers"
    proc = _popen(_args(tmp_path / "interrupted", checkpoint_dir), markers, 1.0)
    deadline = time.monotonic() + 300
    while not (markers / "e1-b0").exists():  # the second epoch's first batch has run
        assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.poll() else "timeout"
        time.sleep(0.05)
    proc.send_signal(signum)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == ExitCode.INTERRUPTED, output[-4000:]
    assert f"Stopped by {signal.Signals(signum).name} at epoch 1" in output
    saved = torch.load(checkpoint_dir / "last.ckpt", map_location="cpu", weights_only=False)
    batches_done = saved["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]["processed"]
    assert saved["epoch"] == 1 and batches_done in (1, 2)  # mid-epoch, not the end of epoch 0
    assert not (markers / "e1-b2").exists()  # it stopped at the next step boundary

    _run([*_args(tmp_path / "interrupted", checkpoint_dir), "--ckpt_path", str(checkpoint_dir / "last.ckpt")], markers)
    resumed = {
        **_final_state(checkpoint_dir / "last.ckpt"),
        "epoch_losses": _epoch_losses(tmp_path / "interrupted" / "logs"),
    }
    # the epoch cut by the signal logs the mean over all its batches, not only those after the resume
    assert sorted(resumed["epoch_losses"]) == [0, 1, 2]
    _assert_bitwise(reference, resumed)
