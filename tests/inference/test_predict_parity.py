"""Predict equals the reference: the same trained weights give the same detections.

The trained checkpoint (``checkpoint_builders.TRAINED``) is loaded into the reference's own model,
whose own ``predict`` (batch 1: minimal-padding letterbox) runs on the shipped images at conf 0.25;
our ``predict`` command and our Python API run on the same files.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from unittest import mock

import pytest
import torch
from checkpoint_builders import TRAINED
from torchvision.ops import box_iou

from yolo11_lightning.inference.detector import Detector

pytestmark = [pytest.mark.reference, pytest.mark.slow]

SHAPES4 = Path(__file__).resolve().parents[2] / "data" / "shapes4"
IMGSZ = 160


def _match(reference: dict[str, tuple], ours: dict[str, tuple]) -> tuple[int, int, int]:
    """``(reference boxes, matched by one of ours with the same class and IoU >= 0.9, our boxes)``."""
    total = matched = extra = 0
    for name, (ref_boxes, ref_classes) in reference.items():
        our_boxes, our_classes = ours[name]
        total += len(ref_boxes)
        extra += len(our_boxes)
        if len(ref_boxes) and len(our_boxes):
            iou = box_iou(ref_boxes, our_boxes) * (ref_classes[:, None] == our_classes[None, :])
            matched += int((iou.max(1).values >= 0.9).sum())
    return total, matched, extra


@pytest.fixture(scope="module")
def reference_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple]:
    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel

    checkpoint = torch.load(TRAINED, map_location="cpu", weights_only=True)
    model = DetectionModel("yolo11n.yaml", nc=4, verbose=False)
    model.load_state_dict({k: v.float() for k, v in checkpoint["ema_state_dict"].items()}, strict=True)
    model.names = dict(checkpoint["class_names"])
    weights = tmp_path_factory.mktemp("reference") / "shapes4.pt"
    torch.save({"model": model, "train_args": {"imgsz": IMGSZ}}, weights)
    # A glob source: the reference reads it one image at a time (a list of paths would be one batch,
    # letterboxed to a common square shape).
    results = YOLO(str(weights)).predict(
        str(SHAPES4 / "images" / "*" / "*.jpg"), imgsz=IMGSZ, conf=0.25, iou=0.7, device="cpu", verbose=False, batch=1
    )
    return {str(Path(r.path).resolve()): (r.boxes.xyxy.float(), r.boxes.cls.long()) for r in results}


def _check(reference: dict[str, tuple], ours: dict[str, tuple]) -> None:
    assert set(ours) == set(reference)
    total, matched, ours_count = _match(reference, ours)
    extra = ours_count - matched
    assert total >= 50, f"only {total} reference boxes"
    assert matched >= 0.99 * total, f"{matched} of {total} reference boxes matched"
    assert extra <= 0.01 * total, f"{extra} extra boxes for {total} reference boxes"


def test_python_api_equals_reference_predict(reference_results: dict[str, tuple]) -> None:
    detector = Detector.from_checkpoint(TRAINED)
    assert detector.imgsz == IMGSZ
    results = detector(str(SHAPES4 / "images" / "*" / "*.jpg"))
    _check(reference_results, {r.path: (r.boxes, r.class_ids) for r in results})


def test_predict_command_equals_reference_predict(tmp_path: Path, reference_results: dict[str, tuple]) -> None:
    from yolo11_lightning.training.cli import YOLOCLI

    args = ["predict", "--ckpt_path", str(TRAINED), "--data.source", str(SHAPES4 / "images" / "*" / "*.jpg"),
            "--data.workers", "0", "--trainer.enable_progress_bar", "false", "--prediction_writer.save_images", "false",
            "--trainer.logger.init_args.save_dir", str(tmp_path)]  # fmt: skip
    with mock.patch.object(sys, "argv", ["train.py"]):
        cli = YOLOCLI(args=args)
    lines = [json.loads(line) for line in (Path(cli.trainer.log_dir) / "predictions.jsonl").read_text().splitlines()]
    assert [line["path"] for line in lines] == sorted(reference_results)  # input order: sorted glob
    ours = {
        line["path"]: (torch.tensor(line["boxes"]).reshape(-1, 4), torch.tensor(line["class_ids"]).long())
        for line in lines
    }
    _check(reference_results, ours)
