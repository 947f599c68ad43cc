"""``validate`` against the reference's own ``val`` on the shipped data, same weights (EMA loaded into its model).

Meaningful only with weights trained on the shipped data (a fresh model has P = R = 0 on both
sides): by default the committed ``tests/data/trained/shapes4_yolo11n_160.ckpt`` (imgsz 160); set
``YOLO11_TRAINED_CKPT`` to another ``last.ckpt``/``best.ckpt`` of a quickstart-like run, e.g.
``python train.py fit --config configs/quickstart.yaml`` then
``YOLO11_TRAINED_CKPT=runs/quickstart/version_0/checkpoints/best.ckpt pytest tests/training/test_reference_val.py``.
``YOLO11_TRAINED_IMGSZ`` gives the image size it was trained at (default 320),
``YOLO11_TRAINED_CONF`` the NMS confidence threshold of both validators (default 0.001, the
reference's; a barely trained model needs a lower one to produce any detection).
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
TRAINED = Path(__file__).resolve().parents[1] / "data" / "trained" / "shapes4_yolo11n_160.ckpt"
CKPT = os.environ.get("YOLO11_TRAINED_CKPT") or (str(TRAINED) if TRAINED.is_file() else None)
IMGSZ = int(os.environ.get("YOLO11_TRAINED_IMGSZ", "160" if CKPT == str(TRAINED) else "320"))
CONF = float(os.environ.get("YOLO11_TRAINED_CONF", "0.001"))


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
        data=str(DATA), imgsz=IMGSZ, batch=16, conf=CONF, iou=0.7, device="cpu", plots=False, workers=0,
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
                "--model.val_conf",
                str(CONF),
            ]
        )
    ours = cli.model.last_results
    box = reference.box
    print(f"ours P {ours.precision:.4f} R {ours.recall:.4f} mAP50 {ours.map50:.4f} mAP50-95 {ours.map50_95:.4f}")
    print(f"reference P {box.mp:.4f} R {box.mr:.4f} mAP50 {box.map50:.4f} mAP50-95 {box.map:.4f}")
    print(
        "per class (ours P, R | reference P, R):",
        [(row.name, round(row.precision, 4), round(row.recall, 4)) for row in ours.per_class],
        list(zip(box.ap_class_index.tolist(), box.p.round(4).tolist(), box.r.round(4).tolist())),
    )
    assert max(box.mp, box.mr) > 0.02, "the weights are not trained enough for a meaningful comparison"
    assert ours.precision == pytest.approx(box.mp, abs=0.003)
    assert ours.recall == pytest.approx(box.mr, abs=0.003)
    # Per class the predictions' small differences weigh more (committed weights: one class's P
    # differs by 0.0048, the others agree to 1e-4); on the same predictions they agree to 1e-6
    # (test_metrics_on_the_reference_validators_own_predictions).
    rows = {row.class_id: row for row in ours.per_class}
    for index, class_id in enumerate(box.ap_class_index.tolist()):
        assert rows[class_id].precision == pytest.approx(box.p[index], abs=0.01), class_id
        assert rows[class_id].recall == pytest.approx(box.r[index], abs=0.01), class_id


@pytest.mark.skipif(not CKPT, reason="set YOLO11_TRAINED_CKPT to weights trained on data/shapes4")
def test_metrics_on_the_reference_validators_own_predictions(tmp_path: Path) -> None:
    """The reference's ``val`` predictions and labels, fed to DetectionMetrics too: P/R overall and per class equal."""
    from ultralytics import YOLO
    from ultralytics.models.yolo.detect import DetectionValidator
    from ultralytics.nn.tasks import DetectionModel

    from yolo11_lightning.training.metrics import DetectionMetrics

    checkpoint = torch.load(CKPT, map_location="cpu", weights_only=False)
    names = dict(checkpoint["class_names"])
    reference_model = DetectionModel("yolo11n.yaml", nc=len(names), verbose=False)
    reference_model.load_state_dict(checkpoint["ema_state_dict"], strict=True)
    reference_model.names = names
    torch.save({"model": reference_model.float(), "train_args": {"imgsz": IMGSZ}}, tmp_path / "reference.pt")
    ours = DetectionMetrics(names)
    original_update = DetectionValidator.update_metrics
    seen = [0]

    def update_metrics(self, preds, batch):  # noqa: ANN001, ANN202 - the reference's signature
        for index, pred in enumerate(preds):
            labels = self._prepare_batch(index, batch)
            rows = torch.cat([pred["bboxes"], pred["conf"][:, None], pred["cls"][:, None]], 1).cpu()
            ours.update(torch.tensor([seen[0]]), [rows], [labels["bboxes"].cpu()], [labels["cls"].cpu().long()])
            seen[0] += 1
        return original_update(self, preds, batch)

    with mock.patch.object(DetectionValidator, "update_metrics", update_metrics):
        reference = YOLO(str(tmp_path / "reference.pt")).val(
            data=str(DATA), imgsz=IMGSZ, batch=16, conf=CONF, iou=0.7, device="cpu", plots=False, workers=0,
            half=False, verbose=False, project=str(tmp_path), name="reference_val",
        )  # fmt: skip
    results = ours.compute()
    box = reference.box
    assert seen[0] == 17 and max(box.mp, box.mr) > 0.02
    assert results.precision == pytest.approx(box.mp, abs=1e-6)
    assert results.recall == pytest.approx(box.mr, abs=1e-6)
    rows = {row.class_id: row for row in results.per_class}
    for index, class_id in enumerate(box.ap_class_index.tolist()):
        assert rows[class_id].precision == pytest.approx(box.p[index], abs=1e-6), class_id
        assert rows[class_id].recall == pytest.approx(box.r[index], abs=1e-6), class_id
