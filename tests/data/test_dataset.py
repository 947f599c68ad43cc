"""Samples, determinism and the batch layout (``yolo11_lightning/data/dataset.py``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from data_builders import COLOURS, SHAPES4_YAML, best_component_iou, colour_box, draw_boxes, iou
from torch.utils.data import DataLoader

from yolo11_lightning.data.augment import AugmentConfig
from yolo11_lightning.data.config import list_image_files, load_data_config
from yolo11_lightning.data.dataset import YOLODataset, collate
from yolo11_lightning.data.samplers import SampleRequest, TrainingSampler, ValidationSampler
from yolo11_lightning.data.scan import scan_split

GEOMETRY_ONLY = AugmentConfig(hsv_h=0, hsv_s=0, hsv_v=0, extras_p=0, flipud=0.5, degrees=5)


@pytest.fixture(scope="module")
def shapes4_train():
    config = load_data_config(SHAPES4_YAML)
    records, _ = scan_split(list_image_files(config.splits["train"]), config.num_classes, "train", "shapes4")
    return records


@pytest.fixture
def coloured_records(write_split):
    """Six PNG images of different sizes; image i has boxes of colours i and (i + 3) % 6."""
    rng = np.random.default_rng(0)
    items = {}
    for i in range(6):
        w, h = int(rng.integers(160, 260)), int(rng.integers(120, 260))
        boxes = []
        for left in (0, w // 2):  # one box per half, so they never overlap
            x1, y1 = left + int(rng.integers(0, w // 2 - 60)), int(rng.integers(0, h - 60))
            boxes.append((x1, y1, x1 + int(rng.integers(25, 60)), y1 + int(rng.integers(25, 60))))
        image = np.full((h, w, 3), 60, np.uint8)
        rows = []
        for colour, (x1, y1, x2, y2) in zip((i, (i + 3) % 6), boxes):
            image[y1:y2, x1:x2] = COLOURS[colour]
            rows.append(f"{colour} {(x1 + x2) / 2 / w} {(y1 + y2) / 2 / h} {(x2 - x1) / w} {(y2 - y1) / h}")
        items[f"{i}.png"] = (image, "\n".join(rows))
    folder = write_split("train", items)
    records, _ = scan_split(list_image_files([folder]), 6, "train", str(folder))
    return records


@pytest.mark.parametrize("mosaic", [True, False])
def test_training_boxes_cover_their_pixels(coloured_records, mosaic: bool) -> None:
    dataset = YOLODataset(coloured_records, 192, augment=GEOMETRY_ONLY, seed=7)
    kept = 0
    for index in range(len(dataset)):
        for epoch in range(3):
            sample = dataset[SampleRequest(index, epoch, mosaic)]
            image = sample["image"]
            assert image.shape == (192, 192, 3)
            wh = np.array([192, 192, 192, 192])
            cx, cy, w, h = sample["boxes"].T
            boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1) * wh
            for k, box in zip(sample["classes"], boxes):
                assert best_component_iou(image, int(k), box) > 0.85, (index, epoch, k)
            kept += len(boxes)
    assert kept > 20


@pytest.mark.parametrize("shape", [None, (160, 224)])
def test_evaluation_sample_maps_back_to_original_pixels(coloured_records, shape) -> None:
    dataset = YOLODataset(coloured_records, 224)
    for index, record in enumerate(coloured_records):
        sample = dataset[SampleRequest(index, shape=shape)]
        height, width = sample["image"].shape[:2]
        assert (height, width) == (shape or (224, 224))
        assert sample["orig_shape"] == (record.height, record.width)
        gain_x, gain_y, pad_x, pad_y = sample["ratio_pad"]
        new_w, new_h = record.width * gain_x, record.height * gain_y  # the letterboxed image inside the canvas
        assert new_w <= width + 1e-3 and new_h <= height + 1e-3
        assert new_w == pytest.approx(width, abs=1e-3) or new_h == pytest.approx(height, abs=1e-3)
        assert new_w + 2 * pad_x == pytest.approx(width, abs=1) and new_h + 2 * pad_y == pytest.approx(height, abs=1)
        cx, cy, w, h = sample["boxes"].T * np.array([[width], [height], [width], [height]])
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
        for k, box in zip(sample["classes"], boxes):
            assert iou(colour_box(sample["image"], int(k), 100)[0], box) > 0.9
            original = (box - [pad_x, pad_y, pad_x, pad_y]) / [gain_x, gain_y, gain_x, gain_y]
            rx, ry, rw, rh = record.boxes[list(record.classes).index(k)] * ([record.width, record.height] * 2)
            np.testing.assert_allclose(original, [rx - rw / 2, ry - rh / 2, rx + rw / 2, ry + rh / 2], atol=1e-3)


def test_same_request_same_sample_whatever_the_history(shapes4_train) -> None:
    first = YOLODataset(shapes4_train, 160, augment=AugmentConfig(extras_p=0.5), seed=1)
    second = YOLODataset(shapes4_train, 160, augment=AugmentConfig(extras_p=0.5), seed=1, cache_images=True)
    for index in (5, 0, 40):
        second[SampleRequest((index + 7) % 64, 3)]  # different buffer contents
        a, b = first[SampleRequest(index, 3)], second[SampleRequest(index, 3)]
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["boxes"], b["boxes"])
    other_epoch = first[SampleRequest(5, 4)]["image"]
    assert not np.array_equal(other_epoch, first[SampleRequest(5, 3)]["image"])


def test_batches_are_identical_with_0_and_2_workers(shapes4_train) -> None:
    dataset = YOLODataset(shapes4_train, 128, augment=AugmentConfig(), seed=5)
    runs = []
    for workers in (0, 2):
        sampler = TrainingSampler(len(dataset), seed=5)
        sampler.set_epoch(2)
        loader = DataLoader(dataset, batch_size=4, sampler=sampler, num_workers=workers, collate_fn=collate)
        batches = []
        for batch in loader:
            batches.append(batch)
            if len(batches) == 3:
                break
        runs.append(batches)
    for a, b in zip(*runs):
        assert torch.equal(a.images, b.images) and torch.equal(a.targets, b.targets)
        assert torch.equal(a.image_ids, b.image_ids)


def test_collate_layout(shapes4_train) -> None:
    config = load_data_config(SHAPES4_YAML)
    records, _ = scan_split(list_image_files(config.splits["val"]), 4, "val", "shapes4")
    dataset = YOLODataset(records, 320)
    sampler = ValidationSampler(dataset.image_shapes, 320, batch_size=5)
    requests = list(sampler)[:5]
    samples = [dataset[r] for r in requests]
    batch = collate(samples)
    h, w = requests[0].shape
    assert batch.images.shape == (5, 3, h, w) and batch.images.dtype == torch.uint8
    # RGB channel order: channel 0 of the batch is the BGR sample's channel 2
    assert torch.equal(batch.images[1, 0], torch.from_numpy(samples[1]["image"][..., 2]))
    counts = [len(s["classes"]) for s in samples]
    assert batch.targets.shape == (sum(counts), 6) and batch.targets.dtype == torch.float32
    assert batch.targets[:, 0].tolist() == [float(i) for i, n in enumerate(counts) for _ in range(n)]
    assert batch.image_ids.tolist() == [r.index for r in requests]
    assert batch.orig_shapes.dtype == torch.int64 and batch.ratio_pad.shape == (5, 4)
    assert batch.paths == [str(records[r.index].path) for r in requests]
    assert ((batch.targets[:, 2:] > 0) & (batch.targets[:, 2:] <= 1)).all()


def test_background_only_batch(write_split) -> None:
    image, _ = draw_boxes(64, 64, [])
    folder = write_split("val", {"a.png": (image, None), "b.png": (image, "")})
    records, _ = scan_split(list_image_files([folder]), 1, "val", str(folder))
    batch = collate([YOLODataset(records, 64)[i] for i in range(2)])
    assert batch.targets.shape == (0, 6)
