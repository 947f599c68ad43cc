"""Tests for yolo11_lightning/inference/writers.py: the predict outputs read back from disk."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from yolo11_lightning.inference.results import Detections
from yolo11_lightning.inference.writers import OutputOptions, PredictionOutputs

NAMES = {0: "present", 1: "logo", 2: "portrait"}


def _detections(
    path: str, image_id: int, shape: tuple[int, int], boxes: list[list[float]], classes: list[int]
) -> Detections:
    count = len(boxes)
    return Detections(
        path=path,
        image_id=image_id,
        boxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        scores=torch.linspace(0.9, 0.5, count) if count else torch.zeros(0),
        class_ids=torch.tensor(classes, dtype=torch.int64),
        orig_shape=shape,
        names=NAMES,
    )


def _line_width(annotated: np.ndarray, original: np.ndarray, column: int, rows: slice) -> int:
    """How many pixels of ``column`` (within ``rows``) the drawing changed by more than half the colour
    difference (the anti-aliased fringe does not count): the edge's thickness."""
    changed = np.abs(annotated[rows, column].astype(int) - original[rows, column].astype(int)).max(-1) > 85
    return int(changed.sum())


@pytest.mark.parametrize(("height", "width", "expected"), [(64, 64, 1), (3000, 4000, 10)])  # 10 = 0.3% of 3500
def test_annotations_scale_with_the_image(tmp_path: Path, height: int, width: int, expected: int) -> None:
    original = np.full((height, width, 3), 200, np.uint8)
    source = tmp_path / "src" / "scene.png"
    source.parent.mkdir()
    cv2.imwrite(str(source), original)
    box = [width * 0.25, height * 0.5, width * 0.75, height * 0.9]
    outputs = PredictionOutputs(tmp_path / "run", OutputOptions(save_txt=False, save_json=False, save_jsonl=False))
    outputs.write(_detections(str(source), 0, (height, width), [box], [2]), original)
    outputs.close()
    annotated = cv2.imread(str(tmp_path / "run" / "images" / "scene.png"))
    assert annotated.shape == original.shape
    # Box outline: line width ~0.3% of the mean side, measured across the bottom edge (no label there).
    bottom = int(box[3])
    assert _line_width(annotated, original, width // 2, slice(bottom - 20, bottom + 20)) in (
        expected - 1,
        expected,
        expected + 1,
    )
    # The label sits above the box: its height grows with the line width (font scale proportional).
    label_rows = (annotated[: int(box[1]), int(box[0]) + 1] != original[: int(box[1]), int(box[0]) + 1]).any(-1)
    assert 8 * expected <= label_rows.sum() <= 40 * expected
    # Pixels change only where the box and its label are.
    changed = (annotated != original).any(-1)
    assert changed.sum() > 0 and not changed[: int(box[1]) - 25 * expected - 5].any()
    if width > 1000:  # on the thumbnail the label is shifted left to stay inside the image
        assert not changed[:, : int(box[0]) - 2 * expected].any()


def test_txt_json_jsonl_read_back(tmp_path: Path) -> None:
    shapes = [(300, 400), (200, 100)]
    items = [
        _detections("/data/a.jpg", 0, shapes[0], [[10.5, 20.25, 110.0, 220.0], [200, 10, 390, 290]], [0, 2]),
        _detections("/data/b.jpg", 1, shapes[1], [], []),
    ]
    options = OutputOptions(save_images=False, save_conf=True)
    outputs = PredictionOutputs(tmp_path, options)
    for item in items:
        outputs.write(item)
    summary = outputs.close()
    assert summary == f"predict: 2 images, 2 boxes (1 portrait, 1 present); results in {tmp_path}"
    # YOLO txt: class cx cy w h score, normalised; equal to the returned boxes.
    rows = np.loadtxt(tmp_path / "labels" / "a.txt", ndmin=2)
    height, width = shapes[0]
    xyxy = np.stack([
        (rows[:, 1] - rows[:, 3] / 2) * width, (rows[:, 2] - rows[:, 4] / 2) * height,
        (rows[:, 1] + rows[:, 3] / 2) * width, (rows[:, 2] + rows[:, 4] / 2) * height,
    ], 1)  # fmt: skip
    np.testing.assert_allclose(xyxy, items[0].boxes.numpy(), atol=1e-3)
    assert rows[:, 0].tolist() == [0, 2]
    np.testing.assert_allclose(rows[:, 5], items[0].scores.numpy(), atol=1e-5)
    assert (tmp_path / "labels" / "b.txt").read_text() == ""
    # JSONL: one line per image in input order.
    lines = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert [line["path"] for line in lines] == ["/data/a.jpg", "/data/b.jpg"]
    assert lines[0]["class_names"] == ["present", "portrait"]
    # COCO results: load with pycocotools against ground truth equal to the boxes -> AP 1.0.
    ground_truth = {
        "images": [{"id": i, "height": h, "width": w} for i, (h, w) in enumerate(shapes)],
        "categories": [{"id": k, "name": v} for k, v in NAMES.items()],
        "annotations": [
            {"id": n + 1, "image_id": 0, "category_id": c, "bbox": [x1, y1, x2 - x1, y2 - y1],
             "area": (x2 - x1) * (y2 - y1), "iscrowd": 0}
            for n, ((x1, y1, x2, y2), c) in enumerate(zip(items[0].boxes.tolist(), [0, 2]))
        ],
    }  # fmt: skip
    gt = COCO()
    gt.dataset = ground_truth
    gt.createIndex()
    results = gt.loadRes(str(tmp_path / "predictions.json"))
    assert len(results.anns) == 2
    evaluation = COCOeval(gt, results, "bbox")
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    assert evaluation.stats[0] == pytest.approx(1.0)


def test_switches_and_name_clashes(tmp_path: Path) -> None:
    image = np.full((40, 60, 3), 100, np.uint8)
    for folder in ("x", "y"):
        (tmp_path / folder).mkdir()
        cv2.imwrite(str(tmp_path / folder / "same.png"), image)
    options = OutputOptions(save_txt=False, save_json=False, save_jsonl=False, save_crops=True)
    outputs = PredictionOutputs(tmp_path / "run", options)
    for index, folder in enumerate(("x", "y")):
        outputs.write(_detections(str(tmp_path / folder / "same.png"), index, (40, 60), [[5, 5, 25, 35]], [1]), image)
    outputs.close()
    run = tmp_path / "run"
    assert sorted(p.name for p in (run / "images").iterdir()) == ["same.png", "same_2.png"]
    assert sorted(p.name for p in (run / "crops" / "logo").iterdir()) == ["same_0.jpg", "same_2_0.jpg"]
    assert cv2.imread(str(run / "crops" / "logo" / "same_0.jpg")).shape == (30, 20, 3)
    assert not (run / "labels").exists() and not (run / "predictions.json").exists()
    assert not (run / "predictions.jsonl").exists()
    # A folder source keeps the sub-folders instead.
    nested = PredictionOutputs(tmp_path / "run2", options, source_root=tmp_path)
    nested.write(_detections(str(tmp_path / "y" / "same.png"), 0, (40, 60), [], []), image)
    nested.close()
    assert (tmp_path / "run2" / "images" / "y" / "same.png").is_file()
