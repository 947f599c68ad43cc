"""Training switches of ``YOLODataModule``: ``single_cls``, ``fraction``, ``disk_cache``."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from data_builders import SHAPES4_YAML

from yolo11_lightning import YOLODataModule
from yolo11_lightning.data.config import fraction_subset, list_image_files, load_data_config
from yolo11_lightning.training.errors import UserError


def _fake_trainer(world_size: int, rank: int, epoch: int) -> SimpleNamespace:
    epochs = SimpleNamespace(current=SimpleNamespace(processed=epoch, started=epoch))
    batches = SimpleNamespace(is_last_batch=False, current=SimpleNamespace(processed=0))
    fit_loop = SimpleNamespace(epoch_progress=epochs, epoch_loop=SimpleNamespace(batch_progress=batches))
    return SimpleNamespace(world_size=world_size, global_rank=rank, max_epochs=20, fit_loop=fit_loop)


def _datamodule(**kwargs: object) -> YOLODataModule:
    return YOLODataModule(str(SHAPES4_YAML), imgsz=64, batch_size=4, workers=0, scan_cache=False, **kwargs)


def test_single_cls_makes_one_class_of_all_labels() -> None:
    plain, single = _datamodule(), _datamodule(single_cls=True)
    assert single.names == {0: "item"} and single.num_classes == 1
    for datamodule in (plain, single):
        datamodule.setup("fit")
    for split in ("train", "val"):
        plain_classes = np.concatenate([r.classes for r in plain.datasets[split].records])
        single_classes = np.concatenate([r.classes for r in single.datasets[split].records])
        assert len(np.unique(plain_classes)) == 4  # the data has four classes ...
        assert single_classes.shape == plain_classes.shape and (single_classes == 0).all()  # ... all now class 0
    sample = single.datasets["train"][0]
    assert set(sample["classes"].tolist()) <= {0}


@pytest.mark.parametrize("fraction", [0.25, 0.5])
def test_fraction_is_one_seeded_subset_every_epoch_and_on_every_rank(fraction: float) -> None:
    every_file = list_image_files(load_data_config(SHAPES4_YAML).splits["train"])
    expected = set(fraction_subset(every_file, fraction, seed=3))
    assert len(expected) == round(fraction * len(every_file))
    assert expected != set(every_file[: len(expected)])  # drawn, not the first files
    for epoch in range(3):
        seen: set = set()
        for rank in range(2):
            datamodule = _datamodule(fraction=fraction, seed=3)
            datamodule.trainer = _fake_trainer(world_size=2, rank=rank, epoch=epoch)
            datamodule.setup("fit")
            records = datamodule.datasets["train"].records
            assert len(records) == len(expected)
            assert len(datamodule.datasets["val"]) == 17  # evaluation splits stay whole
            sampler = datamodule.train_dataloader().sampler
            seen |= {records[request.index].path for request in sampler}
        assert seen == expected, epoch


def test_fraction_depends_on_the_seed_and_is_checked() -> None:
    files = list_image_files(load_data_config(SHAPES4_YAML).splits["train"])
    assert fraction_subset(files, 0.25, 0) != fraction_subset(files, 0.25, 1)
    assert fraction_subset(files, 0.25, 0) == fraction_subset(files, 0.25, 0)
    assert len(fraction_subset(files, 0.001, 0)) == 1
    with pytest.raises(UserError, match="fraction=0"):
        _datamodule(fraction=0.0)


def test_disk_cache_is_reused_and_invalidated_by_an_edit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    import cv2

    import yolo11_lightning.data.dataset as dataset_module
    from yolo11_lightning.data.dataset import DISK_CACHE_DIR, YOLODataset
    from yolo11_lightning.data.scan import scan_split

    source = SHAPES4_YAML.parent
    for kind in ("images", "labels"):
        (tmp_path / kind).mkdir()
        for path in sorted((source / kind / "val").iterdir())[:3]:
            shutil.copy(path, tmp_path / kind / path.name)
    files = sorted((tmp_path / "images").iterdir())
    records, _ = scan_split(files, 4, "val", str(tmp_path), use_cache=False)
    decoded: list[str] = []
    real_read = dataset_module.read_image
    monkeypatch.setattr(dataset_module, "read_image", lambda path: decoded.append(path) or real_read(path))

    first = [YOLODataset(records, 64, disk_cache=True).load_image(i) for i in range(3)]
    assert len(decoded) == 3 and len(list((tmp_path / "images" / DISK_CACHE_DIR).glob("*.npy"))) == 3
    second_run = YOLODataset(records, 64, disk_cache=True)
    again = [second_run.load_image(i) for i in range(3)]
    assert len(decoded) == 3  # reused: nothing decoded
    assert all(np.array_equal(a, b) for a, b in zip(first, again))

    edited = cv2.imread(str(files[1]))
    edited[:40] = 255
    cv2.imwrite(str(files[1]), edited)
    third_run = YOLODataset(records, 64, disk_cache=True)
    fresh = [third_run.load_image(i) for i in range(3)]
    assert decoded[3:] == [str(files[1])]  # only the edited image is decoded again ...
    assert not np.array_equal(fresh[1], first[1]) and np.array_equal(fresh[0], first[0])
    assert len(list((tmp_path / "images" / DISK_CACHE_DIR).glob("*.npy"))) == 3  # ... its stale file removed
    assert YOLODataset(records, 64).disk_cache is False  # off by default


def test_rect_training_batches_have_the_aspect_grouped_shapes(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from yolo11_lightning.data.samplers import RectTrainingSampler, rect_batch_shape

    datamodule = YOLODataModule(
        str(SHAPES4_YAML), imgsz=320, batch_size=4, workers=0, scan_cache=False, rect_train=True
    )
    datamodule.trainer = _fake_trainer(world_size=1, rank=0, epoch=2)
    datamodule.setup("fit")
    with caplog.at_level(logging.INFO):
        loader = datamodule.train_dataloader()
    assert "mosaic off" in caplog.text
    assert isinstance(loader.sampler, RectTrainingSampler) and not datamodule.mosaic_enabled(0)
    dataset = datamodule.datasets["train"]
    aspect = dataset.image_shapes[:, 0] / dataset.image_shapes[:, 1]
    order = np.argsort(aspect, kind="stable")
    shapes = set()
    for number, batch in enumerate(loader):
        members = order[number * 4 : (number + 1) * 4]
        expected = rect_batch_shape(aspect[members], 320, 32, 0.0)  # no extra pad in training
        assert tuple(batch.images.shape[2:]) == expected
        assert batch.image_ids.tolist() == members.tolist()  # grouped by aspect ratio, not shuffled
        shapes.add(expected)
    assert len(shapes) >= 2  # shapes4 has landscape and portrait images
    with pytest.raises(UserError, match="one process"):
        multi = _datamodule(rect_train=True)
        multi.trainer = _fake_trainer(world_size=2, rank=0, epoch=0)
        multi.setup("fit")
        multi.train_dataloader()
