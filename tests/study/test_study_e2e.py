"""A 2 variants x 2 seeds x 1 epoch study on the shipped data, through `python -m yolo11_lightning.study`."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def _study(out: Path) -> subprocess.CompletedProcess:
    command = [
        sys.executable, "-m", "yolo11_lightning.study",
        "--variants", "yolo11n.yaml", "yolo11n-eca.yaml",
        "--seeds", "0", "1",
        "--config", "configs/quickstart.yaml",
        "--out", str(out),
        "--latency-runs", "2",
        "--trainer.max_epochs", "1",
        "--trainer.limit_train_batches", "1",
        "--trainer.limit_val_batches", "1",
        "--data.imgsz", "64",
        "--data.batch_size", "4",
        "--data.workers", "0",
        "--data.scan_cache", "false",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=1800, check=False)


@pytest.mark.slow
def test_two_by_two_study_writes_its_outputs_and_skips_finished_runs(tmp_path: Path) -> None:
    first = _study(tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stdout.count("train ") == 4
    with (tmp_path / "study.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["variant"], r["seed"]) for r in rows] == [
        ("yolo11n.yaml", "0"), ("yolo11n.yaml", "1"), ("yolo11n-eca.yaml", "0"), ("yolo11n-eca.yaml", "1"),
    ]  # fmt: skip
    assert all(r["epochs"] == "1" and float(r["seconds"]) > 0 and 0 <= float(r["map50_95"]) <= 1 for r in rows)
    # ECA: one 1-D conv over channels per level, k = 3, 5, 5 taps for 64, 128, 256 channels (no bias).
    assert rows[0]["params"] == "2590620" and int(rows[2]["params"]) == 2590620 + 3 + 5 + 5
    text = (tmp_path / "study.md").read_text()
    assert "| yolo11n | 2 |" in text and "| yolo11n-eca | 2 |" in text
    assert (tmp_path / "study.png").stat().st_size > 0
    for variant in ("yolo11n", "yolo11n-eca"):
        for seed in (0, 1):
            assert (tmp_path / variant / f"seed{seed}" / "checkpoints" / "last.ckpt").is_file()
    second = _study(tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    assert second.stdout.count("skip ") == 4 and "train " not in second.stdout
