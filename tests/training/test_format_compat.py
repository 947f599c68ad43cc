"""A committed checkpoint of format 1 keeps validating and resuming as the code changes.

``data/format_v1.ckpt.xz`` was written once by ``data/make_format_v1.py`` (a 146k-parameter
YOLO11 after one epoch; bfloat16 tensors, xz-compressed). If a change of the checkpoint layout
breaks this test, bump ``FORMAT_VERSION`` and make the loader read version 1; do not regenerate the file.
"""

from __future__ import annotations

import importlib.util
import lzma
import math
from pathlib import Path

import pytest
import torch

from yolo11_lightning.training.checkpoint import FORMAT_KEY
from yolo11_lightning.training.cli import run_cli

DATA = Path(__file__).with_name("data")
_spec = importlib.util.spec_from_file_location("make_format_v1", DATA / "make_format_v1.py")
make_format_v1 = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_format_v1)

pytestmark = pytest.mark.slow


@pytest.fixture
def format_v1(tmp_path: Path) -> Path:
    path = tmp_path / "committed" / "last.ckpt"
    path.parent.mkdir()
    path.write_bytes(lzma.decompress((DATA / "format_v1.ckpt.xz").read_bytes()))
    return path


def test_format_v1_checkpoint_validates_and_resumes(tmp_path: Path, format_v1: Path) -> None:
    torch.set_num_threads(1)
    saved = torch.load(format_v1, map_location="cpu", weights_only=False)
    assert saved[FORMAT_KEY] == 1 and saved["epoch"] == 0
    cli = run_cli(["validate", *make_format_v1.format_args(tmp_path / "validate"), "--ckpt_path", str(format_v1)])
    metrics = cli.trainer.callback_metrics
    assert math.isfinite(float(metrics["val/box_loss"])) and float(metrics["val/cls_loss"]) > 0
    cli = run_cli(
        [
            "fit",
            *make_format_v1.format_args(tmp_path / "resume"),
            "--trainer.max_epochs",
            "2",
            "--ckpt_path",
            str(format_v1),
        ]
    )
    assert cli.trainer.current_epoch == 2 and cli.trainer.global_step > saved["global_step"]
    assert cli.model.ema.updates > saved["ema_updates"]
    assert all(bool(torch.isfinite(p).all()) for p in cli.model.model.parameters())
