"""End to end on CPU with the shipped dataset: fit -> best/last checkpoints -> validate -> test -> predict."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from unittest import mock

import pytest
import torch
from PIL import Image

from yolo11_lightning.training.cli import YOLOCLI
from yolo11_lightning.training.optim import settings_at, warmup_iterations

pytestmark = pytest.mark.slow

DATA = Path(__file__).resolve().parents[2] / "data" / "shapes4" / "data.yaml"
IMGSZ = 160
EPOCHS, TRAIN_BATCHES, BATCH = 3, 2, 8


def _run(args: list[str]) -> YOLOCLI:
    """Run the CLI in-process, as ``python train.py <args>`` would."""
    with mock.patch.object(sys, "argv", ["train.py"]):
        return YOLOCLI(args=args)


def _common(root: Path) -> list[str]:
    return [
        "--model.model", "yolo11n.yaml",
        "--data.data", str(DATA),
        "--data.imgsz", str(IMGSZ),
        "--data.batch_size", str(BATCH),
        "--data.workers", "0",
        "--data.scan_cache", "false",
        "--data.pin_memory", "false",
        "--trainer.accelerator", "cpu",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--trainer.logger.init_args.save_dir", str(root),
        "--trainer.default_root_dir", str(root),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("run")
    cli = _run(
        [
            "fit", *_common(root),
            "--trainer.max_epochs", str(EPOCHS),
            "--trainer.limit_train_batches", str(TRAIN_BATCHES),
            "--trainer.num_sanity_val_steps", "0",
            "--model.nominal_batch_size", "16",
            "--model.min_warmup_iterations", "3",
            "--model.warmup_epochs", "1",
            "--data.close_mosaic", "1",
        ]  # fmt: skip
    )
    log_dir = Path(cli.trainer.log_dir)
    with (log_dir / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    val_rows = [r for r in rows if r.get("val/mAP50-95")]
    return {"root": root, "cli": cli, "log_dir": log_dir, "val_rows": val_rows}


def test_fit_writes_best_and_true_last(fitted: dict) -> None:
    checkpoints = fitted["log_dir"] / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["best.ckpt", "last.ckpt"]
    last = torch.load(checkpoints / "last.ckpt", map_location="cpu", weights_only=False)
    best = torch.load(checkpoints / "best.ckpt", map_location="cpu", weights_only=False)
    assert last["epoch"] == EPOCHS - 1  # the final epoch, not the best one
    # The recipe's optimizer steps: accumulate ramps 1 -> 16/8 over the warmup.
    warmup = warmup_iterations(1.0, TRAIN_BATCHES, 3)
    steps, last_step = 0, -1
    for iteration in range(EPOCHS * TRAIN_BATCHES):
        accumulate = settings_at(
            iteration, iteration // TRAIN_BATCHES, epochs=EPOCHS, warmup_iters=warmup, lr0=0.01, lrf=0.01,
            schedule="linear", momentum=0.937, warmup_momentum=0.8, warmup_bias_lr=0.1, batch_size=BATCH,
            nominal_batch_size=16,
        ).accumulate
        if iteration - last_step >= accumulate:
            steps, last_step = steps + 1, iteration
    assert last["global_step"] == steps
    assert last["ema_updates"] == steps
    assert set(last["ema_state_dict"]) == {k[len("model."):] for k in last["state_dict"] if k.startswith("model.")}
    assert last["model_config"]["nc"] == 4 and last["class_names"][3] == "ball"
    # Metrics were logged every epoch and best.ckpt holds the best one.
    maps = [float(r["val/mAP50-95"]) for r in fitted["val_rows"]]
    assert len(maps) == EPOCHS
    assert all(float(r["val/box_loss"]) > 0 for r in fitted["val_rows"])
    assert maps[best["epoch"]] == max(maps)


def test_validate_reproduces_logged_metrics(fitted: dict) -> None:
    last_path = fitted["log_dir"] / "checkpoints" / "last.ckpt"
    cli = _run(["validate", *_common(fitted["root"]), "--ckpt_path", str(last_path)])
    metrics = cli.trainer.callback_metrics
    logged = fitted["val_rows"][-1]
    # The EMA weights are evaluated: the loss (sensitive to every weight) and mAP match the last epoch.
    for key in ("val/mAP50-95", "val/mAP50", "val/precision", "val/recall", "val/box_loss", "val/cls_loss"):
        assert float(metrics[key]) == pytest.approx(float(logged[key]), rel=1e-5, abs=1e-7), key


def test_test_subcommand_evaluates_the_test_split(fitted: dict, tmp_path: Path) -> None:
    # The shipped data set has no test split: declare its validation images as the test split.
    shapes = DATA.parent
    data_yaml = tmp_path / "data.yaml"
    data_yaml.write_text(
        f"path: {shapes}\ntrain: images/train\nval: images/val\ntest: images/val\n"
        "names: {0: present, 1: logo, 2: portrait, 3: ball}\n"
    )
    args = [a if a != str(DATA) else str(data_yaml) for a in _common(fitted["root"])]
    last_path = fitted["log_dir"] / "checkpoints" / "last.ckpt"
    cli = _run(["test", *args, "--ckpt_path", str(last_path)])
    metrics = cli.trainer.callback_metrics
    logged = fitted["val_rows"][-1]
    for stage_key in ("mAP50-95", "mAP50", "precision", "recall"):
        assert float(metrics[f"test/{stage_key}"]) == pytest.approx(float(logged[f"val/{stage_key}"]), rel=1e-5, abs=1e-7)


def test_predict_writes_boxes_in_original_pixels(fitted: dict) -> None:
    last_path = fitted["log_dir"] / "checkpoints" / "last.ckpt"
    cli = _run(["predict", *_common(fitted["root"]), "--ckpt_path", str(last_path), "--model.predict_conf", "0.0001"])
    path = Path(cli.trainer.log_dir) / "predictions.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(records) == 17 and len({r["image_id"] for r in records}) == 17
    beyond_input = False
    for record in records:
        width, height = Image.open(record["path"]).size
        boxes = torch.tensor(record["boxes"]).reshape(-1, 4)
        assert len(boxes) == len(record["scores"]) == len(record["class_ids"]) > 0
        assert (boxes >= 0).all() and (boxes[:, [0, 2]] <= width).all() and (boxes[:, [1, 3]] <= height).all()
        assert (boxes[:, 2:] >= boxes[:, :2]).all()
        beyond_input |= bool((boxes > IMGSZ + 1).any())  # original images are 300-500 px, the input 160
    assert beyond_input


def test_checkpoint_of_another_model_fails_clearly(fitted: dict) -> None:
    last_path = fitted["log_dir"] / "checkpoints" / "last.ckpt"
    args = [a if a != "yolo11n.yaml" else "yolo11s.yaml" for a in _common(fitted["root"])]
    with pytest.raises(ValueError, match="checkpoint does not match the model.*yolo11n.yaml"):
        _run(["validate", *args, "--ckpt_path", str(last_path)])
