"""Auto batch size: the trial search (through a fake memory probe) and the CPU message."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from yolo11_lightning.exit_codes import ExitCode
from yolo11_lightning.training.auto_batch import largest_fitting_batch
from yolo11_lightning.training.cli import main
from yolo11_lightning.training.errors import UserError

GiB = 2**30
SHAPES4 = Path(__file__).resolve().parents[2] / "data" / "shapes4" / "data.yaml"


def _linear_probe(fixed: float, per_image: float, tried: list[int], oom_from: int | None = None):  # noqa: ANN202
    def probe(batch: int) -> int:
        tried.append(batch)
        if oom_from is not None and batch >= oom_from:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return int(fixed + per_image * batch)

    return probe


def test_the_largest_batch_under_the_memory_fraction() -> None:
    tried: list[int] = []
    # 1 GiB fixed + 0.3 GiB per image, 16 GiB device: 60% = 9.6 GiB -> at most 28 images -> 16.
    assert largest_fitting_batch(_linear_probe(1 * GiB, 0.3 * GiB, tried), 16 * GiB) == 16
    assert tried == [1, 2, 4, 8, 16, 32]  # found by trial, stopping at the first that does not fit
    assert largest_fitting_batch(_linear_probe(1 * GiB, 0.3 * GiB, []), 16 * GiB, fraction=0.9) == 32
    assert largest_fitting_batch(_linear_probe(0, 1, []), 16 * GiB, max_batch=256) == 256


def test_out_of_memory_ends_the_search() -> None:
    tried: list[int] = []
    assert largest_fitting_batch(_linear_probe(1 * GiB, 0.01 * GiB, tried, oom_from=8), 80 * GiB) == 4
    assert tried == [1, 2, 4, 8]


def test_nothing_fits() -> None:
    with pytest.raises(UserError, match="even a batch of 1"):
        largest_fitting_batch(_linear_probe(15 * GiB, 1 * GiB, []), 16 * GiB)


def test_on_the_cpu_a_clear_message_and_exit_code(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "argv", ["train.py"])
    args = ["fit", "--data.data", str(SHAPES4), "--data.batch_size", "-1", "--trainer.accelerator", "cpu"]
    args += ["--trainer.logger", "false"]
    assert main(args) == ExitCode.USER_ERROR
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) <= 3
    assert lines[0] == "error: --data.batch_size -1 (auto batch) needs a CUDA GPU to measure; this run is on the CPU"
    assert lines[1] == "hint: give a batch size, e.g. --data.batch_size 16"


def test_other_non_positive_batch_sizes_are_refused() -> None:
    from yolo11_lightning import YOLODataModule

    with pytest.raises(UserError, match="batch_size=0"):
        YOLODataModule(str(SHAPES4), batch_size=0)
