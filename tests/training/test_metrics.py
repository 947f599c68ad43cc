"""DetectionMetrics against pycocotools COCOeval (computed independently) and the reference's P/R."""

from __future__ import annotations

import contextlib
import io

import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from yolo11_lightning.training.metrics import DetectionMetrics, match_at_iou

NUM_CLASSES = 3
MAX_DET = 300


def _hand_built_set(seed: int = 0, images: int = 25) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Per image: predictions (n, 6) xyxy/score/class, gt boxes (m, 4), gt labels (m,)."""
    generator = torch.Generator().manual_seed(seed)
    data = []
    for index in range(images):
        m = 0 if index == 3 else int(torch.randint(1, 8, (1,), generator=generator))
        xy = torch.rand(m, 2, generator=generator) * 400
        wh = torch.rand(m, 2, generator=generator) * 150 + 8
        gt_boxes = torch.cat([xy, xy + wh], 1)
        gt_labels = torch.randint(0, NUM_CLASSES, (m,), generator=generator)
        # True-ish detections: jittered GT, sometimes with a wrong class; plus random false positives.
        jitter = (torch.rand(m, 4, generator=generator) - 0.5) * wh.repeat(1, 2) * 0.4
        det_boxes = gt_boxes + jitter
        det_labels = torch.where(torch.rand(m, generator=generator) < 0.8, gt_labels, (gt_labels + 1) % NUM_CLASSES)
        fp = int(torch.randint(0, 6, (1,), generator=generator))
        fxy = torch.rand(fp, 2, generator=generator) * 400
        fboxes = torch.cat([fxy, fxy + torch.rand(fp, 2, generator=generator) * 100 + 5], 1)
        boxes = torch.cat([det_boxes, fboxes])
        labels = torch.cat([det_labels, torch.randint(0, NUM_CLASSES, (fp,), generator=generator)])
        scores = torch.rand(len(boxes), generator=generator)
        if index == 5:  # an image without detections
            boxes, labels, scores = boxes[:0], labels[:0], scores[:0]
        preds = torch.cat([boxes, scores[:, None], labels[:, None].float()], 1)
        data.append((preds, gt_boxes, gt_labels))
    return data


def _cocoeval(data) -> COCOeval:
    """Plain pycocotools evaluation of the set (xywh json, same detection limit)."""
    images, annotations, detections = [], [], []
    for image_id, (preds, boxes, labels) in enumerate(data):
        images.append({"id": image_id, "width": 640, "height": 640})
        for box, label in zip(boxes.tolist(), labels.tolist()):
            w, h = box[2] - box[0], box[3] - box[1]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": label,
                    "bbox": [box[0], box[1], w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
        for row in preds.tolist():
            detections.append(
                {
                    "image_id": image_id,
                    "category_id": int(row[5]),
                    "score": row[4],
                    "bbox": [row[0], row[1], row[2] - row[0], row[3] - row[1]],
                }
            )
    gt = COCO()
    gt.dataset = {"images": images, "annotations": annotations, "categories": [{"id": c} for c in range(NUM_CLASSES)]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dt = gt.loadRes(detections)
        evaluator = COCOeval(gt, dt, "bbox")
        evaluator.params.maxDets = [1, 10, MAX_DET]
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def _metrics(data, batch: int = 4, backend: str = "faster_coco_eval") -> DetectionMetrics:
    metrics = DetectionMetrics({0: "a", 1: "b", 2: "c"}, max_det=MAX_DET, backend=backend)
    for start in range(0, len(data), batch):
        chunk = data[start : start + batch]
        metrics.update(
            torch.arange(start, start + len(chunk)),
            [c[0] for c in chunk],
            [c[1] for c in chunk],
            [c[2] for c in chunk],
        )
    return metrics


@pytest.mark.parametrize(("seed", "backend"), [(0, "faster_coco_eval"), (1, "faster_coco_eval"), (0, "pycocotools")])
def test_map_equals_pycocotools(seed: int, backend: str) -> None:
    data = _hand_built_set(seed)
    results = _metrics(data, backend=backend).compute()
    reference = _cocoeval(data)
    # COCOeval.summarize's first line is hard-wired to 100 detections; with maxDets [1, 10, 300] its
    # own figure is the mean over the valid entries of the precision table at the last limit.
    table = reference.eval["precision"][:, :, :, 0, -1]  # (iou, recall, class)
    assert results.map50_95 == pytest.approx(table[table > -1].mean(), abs=1e-6)
    assert results.map50 == pytest.approx(reference.stats[1], abs=1e-6)  # AP50 at maxDets[2]
    assert results.map75 == pytest.approx(reference.stats[2], abs=1e-6)
    assert 0.05 < results.map50_95 < 0.95  # a non-trivial figure, not a degenerate 0 or 1
    # Per-class AP from the same evaluation, class by class.
    precision = reference.eval["precision"][:, :, :, 0, -1]
    for row in results.per_class:
        table = precision[:, :, row.class_id]
        assert row.ap50_95 == pytest.approx(table[table > -1].mean(), abs=1e-6)
        assert row.ap50 == pytest.approx(table[0][table[0] > -1].mean(), abs=1e-6)
    assert results.images == len(data)
    assert results.instances == sum(len(d[2]) for d in data)
    assert sum(row.instances for row in results.per_class) == results.instances


def test_duplicate_image_ids_are_counted_once() -> None:
    data = _hand_built_set(0)
    metrics = _metrics(data)
    once = metrics.compute().map50_95
    # Padding duplicates (same ids again) must not change the figure.
    metrics.update(torch.tensor([0, 1]), [data[0][0], data[1][0]], [data[0][1], data[1][1]], [data[0][2], data[1][2]])
    assert metrics.compute().map50_95 == once
    assert "all" in metrics.compute().table()


def test_match_at_iou_one_to_one() -> None:
    gt = torch.tensor([[0.0, 0, 10, 10]])
    preds = torch.tensor([[0.0, 0, 10, 10], [0.0, 0, 10, 9], [0.0, 0, 10, 10]])
    correct = match_at_iou(preds, torch.tensor([0, 0, 1]), gt, torch.tensor([0]))
    assert correct.tolist() == [True, False, False]


def test_detection_limit_is_300_not_100() -> None:
    # One ground truth found only by the 151st detection of its image: counted with a limit of 300,
    # lost with COCO's default 100.
    gt_boxes, gt_labels = torch.tensor([[10.0, 10.0, 60.0, 60.0]]), torch.tensor([0])
    offsets = torch.arange(150, dtype=torch.float32)[:, None] * 3 + 100
    false_positives = torch.cat([offsets, offsets, offsets + 20, offsets + 20], 1)
    boxes = torch.cat([false_positives, gt_boxes])
    scores = torch.cat([torch.linspace(0.9, 0.5, 150), torch.tensor([0.1])])
    preds = torch.cat([boxes, scores[:, None], torch.zeros(151, 1)], 1)
    data = [(preds, gt_boxes, gt_labels)]
    results = _metrics(data).compute()
    table = _cocoeval(data).eval["precision"][:, :, :, 0, -1]
    assert results.map50_95 == pytest.approx(table[table > -1].mean(), abs=1e-9)
    assert results.map50_95 > 0.005  # with 100 detections it would be 0
