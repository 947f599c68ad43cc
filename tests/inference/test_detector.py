"""Tests for yolo11_lightning/inference/detector.py and loading.py: the Python API from a checkpoint."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from checkpoint_builders import NAMES, TRAINED, make_checkpoint

from yolo11_lightning.inference.detector import Detector
from yolo11_lightning.inference.loading import NotATrainingCheckpointError, read_spec, require_training_checkpoint

VAL = Path(__file__).resolve().parents[2] / "data" / "shapes4" / "images" / "val"
LOW = {"conf": 0.0001, "max_det": 8}  # random weights: only very low scores (and input-independent boxes)
SOME = {"conf": 0.05, "max_det": 8}  # the trained checkpoint: a few boxes per image


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "rand.ckpt", imgsz=96)


@pytest.fixture(scope="module")
def detector() -> Detector:
    return Detector.from_checkpoint(TRAINED, **SOME)


def _same(a, b, nonempty: bool = True) -> None:  # noqa: ANN001 - two Predictions
    assert len(a) == len(b) and (len(a) > 0 or not nonempty)
    torch.testing.assert_close(a.boxes, b.boxes, atol=1e-3, rtol=0)
    torch.testing.assert_close(a.scores, b.scores, atol=1e-5, rtol=0)
    assert a.class_ids.tolist() == b.class_ids.tolist()


def test_spec_from_the_checkpoint_and_its_fallbacks(tmp_path: Path, checkpoint: Path, detector: Detector) -> None:
    spec = read_spec(checkpoint)
    assert (spec.kind, spec.imgsz, spec.imgsz_source, spec.names, spec.num_classes) == (
        "checkpoint",
        96,
        "inference",
        NAMES,
        4,
    )
    assert (detector.imgsz, detector.stride, detector.names) == (160, 32, NAMES)
    older = read_spec(make_checkpoint(tmp_path / "old.ckpt", inference_entry=False, datamodule_imgsz=128))
    assert (older.imgsz, older.imgsz_source, older.names) == (128, "datamodule_hyper_parameters", NAMES)
    assert isinstance(older.model_config, dict) and older.model_config["scales"] == {"n": [0.5, 0.25, 1024]}
    with pytest.warns(UserWarning, match="no training image size: using imgsz=640"):
        oldest = read_spec(make_checkpoint(tmp_path / "oldest.ckpt", inference_entry=False))
    assert oldest.imgsz == 640
    # An older checkpoint rebuilds the same network: same boxes.
    _same(
        Detector.from_checkpoint(tmp_path / "old.ckpt", imgsz=96, **LOW)(VAL / "val_0000.jpg")[0],
        Detector.from_checkpoint(checkpoint, **LOW)(VAL / "val_0000.jpg")[0],
    )
    state_dict = tmp_path / "weights.pt"
    torch.save(torch.load(checkpoint, weights_only=True)["ema_state_dict"], state_dict)
    with pytest.raises(NotATrainingCheckpointError, match=f"pass it as --model.weights {state_dict}"):
        require_training_checkpoint(state_dict)


def test_every_input_kind_gives_the_same_boxes(detector: Detector) -> None:
    path = VAL / "val_0001.jpg"
    bgr = cv2.imread(str(path))
    reference = detector(str(path))[0]
    assert reference.path == str(path.resolve()) and reference.orig_shape == bgr.shape[:2]
    _same(detector(path)[0], reference)
    _same(detector(bgr)[0], reference)
    _same(detector(np.ascontiguousarray(bgr[..., ::-1]), channels="RGB")[0], reference)
    rgb_tensor = torch.from_numpy(np.ascontiguousarray(bgr[..., ::-1])).permute(2, 0, 1)
    _same(detector(rgb_tensor)[0], reference)
    _same(detector(rgb_tensor.float() / 255)[0], reference)
    both = detector(torch.stack([rgb_tensor, rgb_tensor]))
    assert [p.image_id for p in both] == [0, 1]
    _same(both[1], reference)
    # Wrong channel order is not silently the same.
    assert not torch.equal(detector(np.ascontiguousarray(bgr[..., ::-1]))[0].scores, reference.scores)
    # Overrides per call: class filter and agnostic NMS.
    only = detector(bgr, classes=[int(reference.class_ids[0])])[0]
    assert len(only) > 0 and set(only.class_ids.tolist()) == {int(reference.class_ids[0])}
    if importlib.util.find_spec("PIL") is not None:
        from PIL import Image

        _same(detector(Image.open(path))[0], reference)


def test_lists_folders_keep_input_order_and_batches_agree(detector: Detector) -> None:
    files = [VAL / "val_0003.jpg", VAL / "val_0000.jpg", VAL / "val_0002.jpg"]
    results = detector([str(f) for f in files])
    assert [Path(r.path).name for r in results] == ["val_0003.jpg", "val_0000.jpg", "val_0002.jpg"]
    assert [r.image_id for r in results] == [0, 1, 2]
    folder = detector(VAL)
    assert [Path(r.path).name for r in folder] == sorted(p.name for p in VAL.iterdir())
    batched = detector(VAL, batch_size=4)
    assert sum(len(r) for r in folder) > 10
    for a, b in zip(folder, batched):
        _same(a, b, nonempty=False)


def test_plot_save_and_outputs(tmp_path: Path, detector: Detector) -> None:
    result = detector(VAL / "val_0000.jpg")[0]
    plotted = result.plot()
    assert plotted.shape == result.image.shape and (plotted != result.image).any()
    x1, y1, x2, y2 = result.boxes[0].round().int().tolist()
    assert (plotted[y1 : y2 + 1, x1 : x2 + 1] != result.image[y1 : y2 + 1, x1 : x2 + 1]).any()
    saved = result.save(tmp_path / "one.png")
    assert np.array_equal(cv2.imread(str(saved)), plotted)
    rows = np.loadtxt(result.save_txt(tmp_path / "one.txt"), ndmin=2)
    assert rows.shape == (len(result), 5)
    run = detector.save(VAL, tmp_path / "run")
    boxes = sum(len(r) for r in detector(VAL))
    assert len(list((run / "images").iterdir())) == 17 and len(list((run / "labels").iterdir())) == 17
    assert len(json.loads((run / "predictions.json").read_text())) == boxes > 0
    assert detector.summary.startswith(f"predict: 17 images, {boxes} boxes")


def test_any_backend_callable(detector: Detector) -> None:
    model = detector.backend
    plain = Detector(lambda images: model(images)[0], names=NAMES, imgsz=160, **SOME)
    _same(plain(VAL / "val_0005.jpg")[0], detector(VAL / "val_0005.jpg")[0])


@pytest.mark.slow
def test_exported_onnx_predicts_like_the_checkpoint(detector: Detector, tmp_path: Path) -> None:
    """An exported .onnx goes through the same pre/post-processing, in the API and in ``train.py predict``."""
    from yolo11_lightning.export import main as export_main
    from yolo11_lightning.training.cli import main as cli_main

    onnx = export_main(["--ckpt_path", str(TRAINED), "--format", "onnx", "--output", str(tmp_path / "m.onnx")])
    exported = Detector.from_path(onnx, **SOME)
    assert exported.imgsz == detector.imgsz and exported.names == detector.names
    ours, theirs = detector(VAL), exported(VAL)
    assert len(ours) == len(theirs) == 17
    for a, b in zip(ours, theirs):
        _same(a, b, nonempty=False)
    assert sum(len(p) for p in ours) > 0

    code = cli_main(
        ["predict", "--ckpt_path", str(onnx), "--data.source", str(VAL), "--trainer.default_root_dir",
         str(tmp_path / "runs"), "--model.predict_conf", str(SOME["conf"]), "--model.max_det", str(SOME["max_det"])]
    )  # fmt: skip
    assert code == 0
    lines = (tmp_path / "runs" / "exported" / "version_0" / "predictions.jsonl").read_text().splitlines()
    written = [json.loads(line) for line in lines]
    assert [Path(r["path"]).name for r in written] == [Path(p.path).name for p in ours]
    for record, prediction in zip(written, ours):
        torch.testing.assert_close(torch.tensor(record["boxes"]).reshape(-1, 4), prediction.boxes, atol=0.01, rtol=0)
    assert cli_main(["predict", "--ckpt_path", str(tmp_path / "missing.onnx"), "--data.source", str(VAL)]) == 2


def test_prediction_does_not_import_lightning(checkpoint: Path) -> None:
    code = f"""
import sys
from yolo11_lightning import Detector
det = Detector.from_checkpoint({str(checkpoint)!r}, conf=0.0001, max_det=3)
result = det({str(VAL / "val_0000.jpg")!r})[0]
assert len(result) == 3, len(result)
print("lightning imported:", any(m.split(".")[0] in ("lightning", "pytorch_lightning") for m in sys.modules))
"""
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=Path(__file__).parents[2],
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "lightning imported: False"
