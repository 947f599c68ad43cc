"""DDP on CPU (gloo, 2 processes) through ``train.py``: training runs, and validation is exact.

``--trainer.strategy ddp`` re-executes the command line in each process, so every run is a
``train.py`` subprocess. One epoch of DDP training writes ``last.ckpt``; that
checkpoint is then validated with 1 and with 2 processes. The shipped validation split has 17
images (9 + 8 over two ranks): the unpadded validation sampler must give each image to exactly one
rank and the gathered metric must equal the single-process figures bit for bit; the validation
losses (image-weighted sums reduced over processes) must equal them to a relative 1e-6. Lightning's
default padding sampler would count an image twice and change mAP. ``val_conf 0`` at 320 px keeps
every detection of the barely trained model, so the figures are small but non-zero. (``--trainer.sync_batchnorm``
is for GPUs: torch's SyncBatchNorm refuses CPU modules.)
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from robustness_helpers import ROOT, tiny_cli_args

pytestmark = pytest.mark.slow

METRICS = ("val/mAP50-95", "val/mAP50", "val/mAP75", "val/precision", "val/recall")
LOSSES = ("val/box_loss", "val/cls_loss", "val/dfl_loss")


def _train_py(args: list[str], timeout: float = 400.0) -> str:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("MASTER_PORT", None)
    proc = subprocess.run(
        [sys.executable, "train.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc.stdout + proc.stderr


def _logged_metrics(log_root: Path) -> dict[str, str]:
    """The validation figures from the (single) CSV log under ``log_root``, as logged strings."""
    (metrics_file,) = log_root.rglob("metrics.csv")
    with metrics_file.open() as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("val/mAP50-95")]
    assert len(rows) == 1, rows
    return {name: rows[0][name] for name in METRICS + LOSSES}


def _distributed(processes: int) -> list[str]:
    if processes == 1:
        return ["--trainer.devices", "1"]
    return ["--trainer.strategy", "ddp", "--trainer.devices", str(processes)]


def test_ddp_trains_and_validation_equals_single_process(tmp_path: Path) -> None:
    checkpoint_dir = tmp_path / "checkpoints"
    output = _train_py(
        [
            "fit",
            *tiny_cli_args(tmp_path / "fit", checkpoint_dir, epochs=1, batches=2),
            *_distributed(2),
            "--trainer.limit_val_batches",
            "0",
        ]  # fmt: skip
    )
    assert "distributed_backend=gloo" in output and "All distributed processes registered" in output
    checkpoint = torch.load(checkpoint_dir / "last.ckpt", map_location="cpu", weights_only=False)
    assert checkpoint["global_step"] > 0 and checkpoint["ema_updates"] > 0

    figures = {}
    for processes in (1, 2):
        root = tmp_path / f"validate{processes}"
        output = _train_py(
            [
                "validate",
                *tiny_cli_args(root, root / "unused", epochs=1),
                *_distributed(processes),
                "--trainer.limit_val_batches",
                "1.0",
                "--model.val_conf",
                "0.0",
                "--data.imgsz",
                "320",
                "--data.val_batch_size",
                "4",
                "--model.print_class_table",
                "true",
                "--ckpt_path",
                str(checkpoint_dir / "last.ckpt"),
            ]  # fmt: skip
        )
        # The per-class table's "all" row: every one of the 17 images (72 boxes) evaluated once.
        assert re.search(r"^\s+all\s+17\s+72\s", output, re.MULTILINE), output[-3000:]
        figures[processes] = _logged_metrics(root / "logs")
    assert float(figures[1]["val/mAP50"]) > 0 and float(figures[1]["val/recall"]) > 0, figures
    assert {k: figures[2][k] for k in METRICS} == {k: figures[1][k] for k in METRICS}
    # the losses are image-weighted over both processes (9 + 8 images), not a mean of the two means
    for name in LOSSES:
        assert float(figures[2][name]) == pytest.approx(float(figures[1][name]), rel=1e-6, abs=0), name
