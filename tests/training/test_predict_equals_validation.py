"""Predict equals validation: the boxes predict gives each val image are those the validation step scores.

Same trained weights, same NMS settings (validation's conf, iou and multi-label) and the same
letterbox shape per image: predict's data path (``PredictDataset`` + ``collate_predict`` +
``YOLOModule.predict_step``) against the validation step's own detections.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from checkpoint_builders import TRAINED
from lightning.pytorch import Trainer

from yolo11_lightning.data.datamodule import YOLODataModule
from yolo11_lightning.data.sources import PredictDataset, SourceItem, collate_predict
from yolo11_lightning.training.module import YOLOModule

pytestmark = pytest.mark.slow

DATA = Path(__file__).resolve().parents[2] / "data" / "shapes4" / "data.yaml"
IMGSZ = 160


def test_predict_boxes_equal_the_validation_boxes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    datamodule = YOLODataModule(str(DATA), imgsz=IMGSZ, batch_size=4, workers=0, scan_cache=False, pin_memory=False)
    module = YOLOModule(model="yolo11n.yaml", num_classes=4, print_class_table=False)
    scored: dict[int, torch.Tensor] = {}
    shapes: dict[int, tuple[int, int]] = {}
    paths: dict[int, str] = {}
    update = module.metrics.update

    def capture(image_ids, predictions, *args):
        for image_id, rows in zip(image_ids.tolist(), predictions):
            scored[image_id] = rows.clone()
        return update(image_ids, predictions, *args)

    monkeypatch.setattr(module.metrics, "update", capture)
    original_step = module.validation_step

    def step(batch, batch_idx):
        for image_id, path in zip(batch.image_ids.tolist(), batch.paths):
            shapes[image_id], paths[image_id] = batch.input_shape, path
        return original_step(batch, batch_idx)

    monkeypatch.setattr(module, "validation_step", step)
    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                      default_root_dir=tmp_path)  # fmt: skip
    trainer.validate(module, datamodule=datamodule, ckpt_path=str(TRAINED), weights_only=False)
    assert len(scored) == 17 and sum(len(rows) for rows in scored.values()) > 50

    # Predict's data path on the same files with the validation's letterbox shapes and NMS settings.
    ids = sorted(scored)
    dataset = PredictDataset([SourceItem(paths[i]) for i in ids], IMGSZ, shapes=[shapes[i] for i in ids])
    monkeypatch.setattr(YOLOModule, "predict_nms", property(lambda self: self.val_nms))
    module.eval()
    with torch.inference_mode():
        for index, image_id in enumerate(ids):
            batch = collate_predict([dataset[index]])
            assert batch.input_shape == shapes[image_id]
            (predicted,) = module.predict_step(batch, index)
            expected = scored[image_id]
            assert len(predicted) == len(expected), paths[image_id]
            torch.testing.assert_close(predicted.boxes, expected[:, :4], atol=1e-3, rtol=0)
            torch.testing.assert_close(predicted.scores, expected[:, 4], atol=1e-6, rtol=0)
            assert predicted.class_ids.tolist() == expected[:, 5].long().tolist()
