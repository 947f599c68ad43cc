"""Crash safety: ``train.py fit`` killed with SIGKILL (also mid checkpoint write) always resumes.

A chain of ``train.py fit`` subprocesses (tiny model, 4 epochs of 3 batches, every checkpoint write
slowed down to about a second by ``slow_checkpoint_fit.py``) is killed at random moments: during a
checkpoint write (aimed with the write markers) and at an arbitrary time. After every kill the
newest ``last.ckpt`` must load, and ``fit --ckpt_path last.ckpt`` must carry on; the last link of
the chain runs to the end. Afterwards the checkpoint directory holds no temp files and ``$TMPDIR``
holds nothing (Lightning's own save stages files there). ``scripts/crash_trials.py`` runs the same
with many more kills. A truncated ``last.ckpt`` makes resume fail with a message naming the previous
good checkpoint.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from robustness_helpers import ROOT, tiny_cli_args

from yolo11_lightning.training.checkpoint import UnreadableCheckpointError, is_temp_file

pytestmark = pytest.mark.slow

DRIVER = Path(__file__).with_name("slow_checkpoint_fit.py")
EPOCHS = 4
WRITE_SECONDS = 0.6


def _start(root: Path, checkpoint_dir: Path, markers: Path, resume: bool, tmpdir: Path) -> subprocess.Popen:
    args = ["fit", *tiny_cli_args(root, checkpoint_dir, EPOCHS)]
    if resume:
        args += ["--ckpt_path", str(checkpoint_dir / "last.ckpt")]
    env = dict(os.environ, TMPDIR=str(tmpdir), PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    return subprocess.Popen(
        [sys.executable, str(DRIVER), str(markers), str(WRITE_SECONDS), *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for(markers: Path, pattern: str, count: int, proc: subprocess.Popen, timeout: float = 180.0) -> None:
    """Wait until ``count`` marker files match ``pattern`` (the process must still be running)."""
    deadline = time.monotonic() + timeout
    while len(list(markers.glob(pattern))) < count:
        if proc.poll() is not None:
            raise AssertionError(f"process exited ({proc.returncode}) before {pattern} x{count}:\n{proc.stdout.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"timed out waiting for {pattern} x{count} in {markers}")
        time.sleep(0.02)


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the process finished before it could be killed"


def _assert_last_loads(checkpoint_dir: Path) -> int:
    """``last.ckpt`` loads completely; return its epoch."""
    checkpoint = torch.load(checkpoint_dir / "last.ckpt", map_location="cpu", weights_only=False)
    assert {"state_dict", "ema_state_dict", "optimizer_states", "loops"} <= checkpoint.keys()
    return int(checkpoint["epoch"])


def test_sigkill_at_random_moments_always_resumes(tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("CRASH_TEST_SEED", "0")))
    checkpoint_dir, tmpdir = tmp_path / "checkpoints", tmp_path / "tmpdir"
    tmpdir.mkdir()
    epochs_seen = []

    # 1. Fresh run killed in the middle of the first checkpoint write after last.ckpt exists.
    markers = tmp_path / "markers1"
    proc = _start(tmp_path, checkpoint_dir, markers, resume=False, tmpdir=tmpdir)
    _wait_for(markers, "write-*-last.done", 1, proc)
    started = len(list(markers.glob("*.started")))
    _wait_for(markers, "*.started", started + 1, proc)
    time.sleep(rng.uniform(0.1, 0.9) * WRITE_SECONDS)
    _kill(proc)
    assert len(list(markers.glob("*.done"))) == started, "the kill missed the write"
    epochs_seen.append(_assert_last_loads(checkpoint_dir))
    assert any(is_temp_file(p) for p in checkpoint_dir.iterdir()), "a killed write leaves its temp file"

    # 2. Resumed run killed at an arbitrary moment after its first write started.
    markers = tmp_path / "markers2"
    proc = _start(tmp_path, checkpoint_dir, markers, resume=True, tmpdir=tmpdir)
    _wait_for(markers, "*.started", 1, proc)
    time.sleep(rng.uniform(0.0, 3.0))
    _kill(proc)
    epochs_seen.append(_assert_last_loads(checkpoint_dir))

    # 3. Resumed run to the end.
    proc = _start(tmp_path, checkpoint_dir, tmp_path / "markers3", resume=True, tmpdir=tmpdir)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output
    assert "Restoring states from the checkpoint" in output
    assert _assert_last_loads(checkpoint_dir) == EPOCHS - 1
    assert epochs_seen[0] <= epochs_seen[1] <= EPOCHS - 1
    assert not [p.name for p in checkpoint_dir.iterdir() if is_temp_file(p)]
    assert not list(tmpdir.iterdir()), f"files left in TMPDIR: {list(tmpdir.iterdir())}"


def test_resume_from_truncated_checkpoint_names_previous_good_one(tmp_path: Path) -> None:
    from yolo11_lightning.training.cli import YOLOCLI

    torch.set_num_threads(1)
    checkpoint_dir = tmp_path / "checkpoints"
    # (limit_train_batches 1 would parse as the fraction 1.0: use 2 batches)
    YOLOCLI(args=["fit", *tiny_cli_args(tmp_path, checkpoint_dir, epochs=1, batches=2)])
    last = checkpoint_dir / "last.ckpt"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 3])
    with pytest.raises(UnreadableCheckpointError) as info:
        YOLOCLI(
            args=[
                "fit",
                *tiny_cli_args(tmp_path, checkpoint_dir, epochs=2, batches=2),
                "--ckpt_path",
                str(last),
            ]  # fmt: skip
        )
    assert str(checkpoint_dir / "best.ckpt") in str(info.value)
