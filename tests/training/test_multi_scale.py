"""Multi-scale training: per-batch sizes, stride multiples in [0.5, 1.5] x imgsz, reproducible by position."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from yolo11_lightning.data.batch import Batch
from yolo11_lightning.training.module import YOLOModule
from yolo11_lightning.training.multi_scale import multi_scale_size, resize_batch

IMGSZ, STRIDE = 320, 32


def _batch(size: int = IMGSZ) -> Batch:
    return Batch(
        images=torch.randint(0, 255, (2, 3, size, size), dtype=torch.uint8),
        targets=torch.tensor([[0, 1, 0.5, 0.5, 0.2, 0.3]]),
        image_ids=torch.arange(2),
        orig_shapes=torch.full((2, 2), size),
        ratio_pad=torch.tensor([[1.0, 1.0, 0.0, 0.0]] * 2),
        paths=["a", "b"],
    )


def _shapes_seen(module: YOLOModule, epoch: int, batches: int = 20) -> list[tuple[int, int]]:
    object.__setattr__(module, "_trainer", SimpleNamespace(current_epoch=epoch))
    return [tuple(module._train_input(_batch(), index).shape[2:]) for index in range(batches)]


def test_training_inputs_take_several_stride_multiple_sizes() -> None:
    module = YOLOModule("yolo11n.yaml", num_classes=2, batch_size=2, multi_scale=True)
    shapes = _shapes_seen(module, epoch=0)
    assert len(set(shapes)) >= 3, shapes
    for height, width in shapes:
        assert height == width and height % STRIDE == 0
        assert 0.5 * IMGSZ <= height <= 1.5 * IMGSZ, height
    # The same position gives the same size (a resumed run draws what the uninterrupted one drew) ...
    assert _shapes_seen(module, epoch=0) == shapes
    # ... another epoch other sizes.
    assert _shapes_seen(module, epoch=1) != shapes


def test_off_by_default() -> None:
    module = YOLOModule("yolo11n.yaml", num_classes=2, batch_size=2)
    assert set(_shapes_seen(module, epoch=0, batches=5)) == {(IMGSZ, IMGSZ)}


def test_size_distribution_covers_the_range() -> None:
    sizes = {multi_scale_size(640, 32, seed=0, epoch=0, batch_index=i) for i in range(400)}
    assert sizes == set(range(320, 960 + 1, 32))  # every stride multiple of [0.5, 1.5] x 640


def test_resize_keeps_the_aspect_and_rounds_each_side_up() -> None:
    images = torch.rand(1, 3, 320, 480)
    assert resize_batch(images, 640, 32).shape[2:] == (448, 640)  # 320 * 4/3 = 426.7 -> 448
    assert resize_batch(images, 480, 32) is images
