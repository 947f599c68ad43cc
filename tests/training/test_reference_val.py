"""``validate`` against the reference's own ``val`` on the shipped data, same weights (EMA loaded into its model).

Meaningful only with weights trained on the shipped data (a fresh model has P = R = 0 on both
sides): set ``YOLO11_TRAINED_CKPT`` to a ``last.ckpt``/``best.ckpt`` of a quickstart-like run, e.g.
``python train.py fit --config configs/quickstart.yaml`` then
``YOLO11_TRAINED_CKPT=runs/quickstart/version_0/checkpoints/best.ckpt pytest tests/training/test_reference_val.py``.
``YOLO11_TRAINED_IMGSZ`` gives the image size it was trained at (default 320).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from unittest import mock

import pytest
import torch

pytestmark = [pytest.mark.slow, pytest.mark.reference]

DATA = Path(__file__).resolve().parents[2] / "data" / "shapes4" / "data.yaml"
CKPT = os.environ.get("YOLO11_TRAINED_CKPT")
IMGSZ = int(os.environ.get("YOLO11_TRAINED_IMGSZ", "320"))


@pytest.mark.skipif(not CKPT, reason="set YOLO11_TRAINED_CKPT to weights trained on data/shapes4")
def test_precision_recall_within_0_003_of_reference_val(tmp_path: Path) -> None:
    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel

    from yolo11_lightning.training.cli import YOLOCLI

    checkpoint = torch.load(CKPT, map_location="cpu", weights_only=False)
    reference_model = DetectionModel("yolo11n.yaml", nc=len(checkpoint["class_names"]), verbose=False)
    reference_model.load_state_dict(checkpoint["ema_state_dict"], strict=True)  # the keys match
    reference_model.names = dict(checkpoint["class_names"])
    reference_path = tmp_path / "reference.pt"
    torch.save({"model": reference_model.float(), "train_args": {"imgsz": IMGSZ}}, reference_path)
    reference = YOLO(str(reference_path)).val(
        data=str(DATA), imgsz=IMGSZ, batch=16, conf=0.001, iou=0.7, device="cpu", plots=False, workers=0,
        half=False, verbose=False, project=str(tmp_path), name="reference_val",
    )  # fmt: skip

    with mock.patch.object(sys, "argv", ["train.py"]):
        cli = YOLOCLI(
            args=[
                "validate",
                "--ckpt_path",
                CKPT,
                "--data.data",
                str(DATA),
                "--data.imgsz",
                str(IMGSZ),
                "--data.workers",
                "0",
                "--data.scan_cache",
                "false",
                "--trainer.accelerator",
                "cpu",
                "--trainer.enable_progress_bar",
                "false",
                "--trainer.default_root_dir",
                str(tmp_path / "ours"),
                "--figures.enabled",
                "false",
            ]
        )
    ours = cli.model.last_results
    box = reference.box
    assert box.mp > 0.05 and box.mr > 0.05, "the weights are not trained enough for a meaningful comparison"
    assert ours.precision == pytest.approx(box.mp, abs=0.003)
    assert ours.recall == pytest.approx(box.mr, abs=0.003)
    rows = {row.class_id: row for row in ours.per_class}
    for index, class_id in enumerate(box.ap_class_index.tolist()):
        assert rows[class_id].precision == pytest.approx(box.p[index], abs=0.003), class_id
        assert rows[class_id].recall == pytest.approx(box.r[index], abs=0.003), class_id
    print(f"ours P {ours.precision:.4f} R {ours.recall:.4f} mAP50 {ours.map50:.4f} mAP50-95 {ours.map50_95:.4f}")
    print(f"reference P {box.mp:.4f} R {box.mr:.4f} mAP50 {box.map50:.4f} mAP50-95 {box.map:.4f}")
