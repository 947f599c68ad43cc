"""The run folder end to end (``python train.py`` in a fresh process, an empty working directory).

``fit --trainer.default_root_dir R`` writes logs, checkpoints, figures and ``results.csv`` under R
only; ``fit --ckpt_path R/.../last.ckpt`` alone continues in the same folder (metrics appended, the
best score kept); the console shows the model summary and none of the known noise.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "data" / "shapes4" / "data.yaml"
NOISE = ("💡 Tip", "LeafSpec", "dirpath has changed", "exists and is not empty", "sync_dist=True")


def _train_py(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, str(REPO / "train.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    cwd = tmp_path_factory.mktemp("cwd")
    root = tmp_path_factory.mktemp("root") / "R"
    first = _train_py(
        [
            "fit",
            "--data.data",
            str(DATA),
            "--data.imgsz",
            "64",
            "--data.batch_size",
            "8",
            "--data.workers",
            "0",
            "--data.scan_cache",
            "false",
            "--data.close_mosaic",
            "0",
            "--model.nominal_batch_size",
            "8",
            "--model.min_warmup_iterations",
            "1",
            "--trainer.accelerator",
            "cpu",
            "--trainer.max_epochs",
            "2",
            "--trainer.limit_train_batches",
            "2",
            "--trainer.num_sanity_val_steps",
            "0",
            "--trainer.enable_progress_bar",
            "false",
            "--figures.train_batches",
            "1",
            "--figures.val_batches",
            "1",
            "--trainer.default_root_dir",
            str(root),
        ],
        cwd,
    )
    assert first.returncode == 0, first.stderr[-3000:]
    run_dir = root / "yolo11" / "version_0"
    listing_after_first = sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))
    resumed = _train_py(
        ["fit", "--ckpt_path", str(run_dir / "checkpoints" / "last.ckpt"), "--trainer.max_epochs", "3"], cwd
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return {
        "cwd": cwd,
        "root": root,
        "run": run_dir,
        "first": first,
        "resumed": resumed,
        "first_files": listing_after_first,
    }


def test_everything_is_under_the_root_dir(run: dict) -> None:
    assert list(run["cwd"].iterdir()) == []  # nothing in the working directory (the scan cache is off)
    assert [p.name for p in (run["root"] / "yolo11").iterdir()] == ["version_0"]  # the resume made no version_1
    files = run["first_files"]
    for name in ("config.yaml", "metrics.csv", "results.csv", "checkpoints/best.ckpt", "checkpoints/last.ckpt",
                 "labels.png", "train_batch0.png", "results.png", "val_PR_curve.png", "val_F1_curve.png",
                 "val_P_curve.png", "val_R_curve.png", "val_confusion_matrix.png",
                 "val_confusion_matrix_normalized.png", "val_batch0_labels_vs_pred.png"):  # fmt: skip
        assert f"yolo11/version_0/{name}" in files, name


def test_resume_continues_in_the_same_folder(run: dict) -> None:
    metrics = _rows(run["run"] / "metrics.csv")
    val_rows = [r for r in metrics if r.get("val/mAP50-95")]
    assert [int(r["epoch"]) for r in val_rows] == [0, 1, 2]  # the first run's rows kept, the resumed one's appended
    scores = [float(r["val/mAP50-95"]) for r in val_rows]
    best = torch.load(run["run"] / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
    last = torch.load(run["run"] / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["epoch"] == 2
    # The best over all epochs (the first of equal scores): the resumed run knew the earlier best score.
    assert best["epoch"] == scores.index(max(scores))
    callback_state = next(v for k, v in best["callbacks"].items() if "val/mAP50-95" in k)
    assert callback_state["best_model_score"] == pytest.approx(max(scores))


def test_results_csv_has_one_row_per_epoch_with_the_logged_values(run: dict) -> None:
    results = _rows(run["run"] / "results.csv")
    assert [int(r["epoch"]) for r in results] == [0, 1, 2]
    metrics = _rows(run["run"] / "metrics.csv")
    for row in results:
        epoch = row["epoch"]
        val = next(r for r in metrics if r["epoch"] == epoch and r.get("val/mAP50-95"))
        train = next(r for r in metrics if r["epoch"] == epoch and r.get("train/box_loss_epoch"))
        for key in ("val/mAP50-95", "val/mAP50", "val/precision", "val/recall", "val/box_loss", "val/cls_loss"):
            assert float(row[key]) == pytest.approx(float(val[key]), rel=1e-6, abs=1e-9), key
        for key in ("box_loss", "cls_loss", "dfl_loss"):
            assert float(row[f"train/{key}"]) == pytest.approx(float(train[f"train/{key}_epoch"]), rel=1e-6), key
        assert float(row["lr/pg0"]) > 0


def test_console_shows_the_summary_and_no_noise(run: dict) -> None:
    for process in (run["first"], run["resumed"]):
        summary = [line for line in process.stdout.splitlines() if " summary: " in line]
        assert summary and "GFLOPs at 64x64" in summary[0] and "parameters" in summary[0]
        assert "Total Flops" not in process.stdout + process.stderr  # Lightning's one-row summary is gone
        for noise in NOISE:
            assert noise not in process.stderr, noise
    assert "val epoch 0" in run["first"].stdout and "AP50-95" in run["first"].stdout  # the per-class table


def test_validate_save_json_is_loadable_by_pycocotools(run: dict, tmp_path: Path) -> None:
    from PIL import Image
    from pycocotools.coco import COCO

    root = tmp_path / "validate"
    process = _train_py(
        ["validate", "--config", str(run["run"] / "config.yaml"),
         "--ckpt_path", str(run["run"] / "checkpoints" / "best.ckpt"), "--model.save_json", "true",
         "--trainer.default_root_dir", str(root), "--trainer.logger.init_args.save_dir", str(root),
         "--model.val_conf", "0.0001"],
        run["cwd"],
    )  # fmt: skip
    assert process.returncode == 0, process.stderr[-3000:]
    for noise in NOISE:  # including "dirpath has changed" for a checkpoint of another folder
        assert noise not in process.stderr, noise
    path = next(root.rglob("predictions.json"))
    records = json.loads(path.read_text())
    assert records and {"image_id", "category_id", "bbox", "score"} <= set(records[0])
    images = sorted((DATA.parent / "images" / "val").iterdir())
    gt = COCO()
    gt.dataset = {
        "images": [
            {"id": i, "width": Image.open(p).size[0], "height": Image.open(p).size[1]} for i, p in enumerate(images)
        ],
        "annotations": [],
        "categories": [{"id": c} for c in range(4)],
    }
    gt.createIndex()
    loaded = gt.loadRes(str(path))
    assert len(loaded.anns) == len(records)
    assert {r["image_id"] for r in records} <= set(range(len(images)))
    assert (root / "yolo11").is_dir() and (next(root.rglob("val_PR_curve.png"))).is_file()


def test_missing_tensorboard_is_one_line(tmp_path: Path) -> None:
    import importlib.util

    if importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX"):
        pytest.skip("tensorboard is installed")
    process = _train_py(
        ["fit", "--data.data", str(DATA), "--trainer.logger", "lightning.pytorch.loggers.TensorBoardLogger",
         "--trainer.logger.save_dir", str(tmp_path / "tb")],
        tmp_path,
    )  # fmt: skip
    assert process.returncode == 2
    expected = (
        "error: --trainer.logger TensorBoardLogger needs the 'tensorboard' package, which is not installed: "
        "pip install -e .[tensorboard]"
    )
    assert process.stderr.strip().splitlines() == [expected]
    assert not (tmp_path / "tb").exists()
