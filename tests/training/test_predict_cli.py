"""``train.py predict``/``validate`` driven by the checkpoint alone: sources, outputs, defaults, errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from unittest import mock

import cv2
import numpy as np
import pytest
from checkpoint_builders import NAMES, make_checkpoint, make_reference_weights

from yolo11_lightning.inference.loading import NotATrainingCheckpointError
from yolo11_lightning.training.cli import YOLOCLI

pytestmark = pytest.mark.slow

SHAPES4 = Path(__file__).resolve().parents[2] / "data" / "shapes4"
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false", "--data.workers", "0"]
LOW = ["--model.predict_conf", "0.0001", "--model.max_det", "2"]  # random weights: only very low scores


def _run(args: list[str]) -> YOLOCLI:
    with mock.patch.object(sys, "argv", ["train.py"]):
        return YOLOCLI(args=args)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "rand.ckpt", imgsz=96)


def _photos(root: Path) -> Path:
    """A user's folder of photos (no labels, no data.yaml), in sub-folders."""
    for index, name in enumerate(["b.jpg", "a.jpg", "sub/c.png"]):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        image = cv2.imread(str(SHAPES4 / "images" / "val" / f"val_000{index}.jpg"))
        cv2.imwrite(str(path), image)
    return root


def _listing(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_predict_a_folder_from_the_checkpoint_alone(
    tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture
) -> None:
    photos = _photos(tmp_path / "photos")
    before = _listing(tmp_path)
    cli = _run(["predict", "--ckpt_path", str(checkpoint), "--data.source", str(photos),
                "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"), *QUIET, *LOW])  # fmt: skip
    run = Path(cli.trainer.log_dir)
    out = capsys.readouterr()
    assert f"results in {run}" in out.out.strip().splitlines()[-1]
    assert "imgsz 96 (from inference)" in out.out  # stdout: stderr is kept for errors
    assert cli.datamodule.imgsz == 96 and cli.model.model.nc == 4 and cli.model.model.names == NAMES
    assert _listing(tmp_path) - before == {
        p for p in _listing(tmp_path) if p.startswith("runs")
    }  # nothing beside the photos
    records = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    assert [Path(r["path"]).relative_to(photos.resolve()).as_posix() for r in records] == [
        "a.jpg",
        "b.jpg",
        "sub/c.png",
    ]
    assert [r["image_id"] for r in records] == [0, 1, 2] and all(len(r["boxes"]) == 2 for r in records)
    assert sorted(_listing(run / "images")) == ["a.jpg", "b.jpg", "sub", "sub/c.png"]
    for record in records:  # txt rows = the JSONL boxes
        name = Path(record["path"]).relative_to(photos.resolve()).with_suffix(".txt")
        rows = np.loadtxt(run / "labels" / name, ndmin=2)
        height, width = cv2.imread(record["path"]).shape[:2]
        centre = np.array(record["boxes"])[:, :2] / 2 + np.array(record["boxes"])[:, 2:] / 2
        np.testing.assert_allclose(rows[:, 1:3], centre / (width, height), atol=1e-4)
    coco = json.loads((run / "predictions.json").read_text())
    assert len(coco) == 6 and {c["image_id"] for c in coco} == {0, 1, 2}


def test_weights_files_point_to_model_weights(tmp_path: Path) -> None:
    reference = make_reference_weights(tmp_path / "yolo11n.pt", nc=4, imgsz=64)
    with pytest.raises(NotATrainingCheckpointError, match=r"is a reference weights file.*--model.weights"):
        _run(["predict", "--ckpt_path", str(reference), "--data.source", str(SHAPES4 / "images" / "val")])
    # As --model.weights it works: its config, class names and training size are used.
    image = SHAPES4 / "images" / "val" / "val_0003.jpg"
    cli = _run(["predict", "--model.weights", str(reference), "--data.source", str(image),
                "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"), *QUIET, *LOW])  # fmt: skip
    assert cli.datamodule.imgsz == 64 and cli.model.model.names == NAMES
    assert len((Path(cli.trainer.log_dir) / "predictions.jsonl").read_text().splitlines()) == 1


def test_video_in_video_out(tmp_path: Path, checkpoint: Path) -> None:
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (128, 96))
    frame = cv2.resize(cv2.imread(str(SHAPES4 / "images" / "val" / "val_0000.jpg")), (128, 96))
    for index in range(6):
        writer.write(np.roll(frame, 4 * index, axis=1))
    writer.release()
    cli = _run(["predict", "--ckpt_path", str(checkpoint), "--data.source", str(video), "--data.vid_stride", "2",
                "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"), *QUIET, *LOW])  # fmt: skip
    run = Path(cli.trainer.log_dir)
    records = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    assert [r["path"].rsplit("#", 1)[1] for r in records] == ["0", "2", "4"]
    capture = cv2.VideoCapture(str(run / "images" / "clip.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    assert sorted(p.name for p in (run / "labels").iterdir()) == ["clip_0.txt", "clip_2.txt", "clip_4.txt"]


def test_validate_takes_model_and_imgsz_from_the_checkpoint(tmp_path: Path, checkpoint: Path) -> None:
    cli = _run(["validate", "--ckpt_path", str(checkpoint), "--data.data", str(SHAPES4 / "data.yaml"),
                "--data.scan_cache", "false", "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"),
                "--trainer.limit_val_batches", "1", "--model.print_class_table", "false", *QUIET])  # fmt: skip
    assert cli.datamodule.imgsz == 96 and cli.model.model.nc == 4
    # An explicit flag overrides the checkpoint's value.
    cli = _run(["validate", "--ckpt_path", str(checkpoint), "--data.data", str(SHAPES4 / "data.yaml"),
                "--data.imgsz", "64", "--data.scan_cache", "false",
                "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"), "--trainer.limit_val_batches", "1",
                "--model.print_class_table", "false", *QUIET])  # fmt: skip
    assert cli.datamodule.imgsz == 64
