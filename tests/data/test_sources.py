"""Tests for yolo11_lightning/data/sources.py: predict sources in input order, no files beside them."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from yolo11_lightning.data.sources import PredictDataset, SourceItem, collate_predict, list_source


def _image(path: Path, width: int = 64, height: int = 48, value: int = 90) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((height, width, 3), value, np.uint8))
    return path


def _video(path: Path, frames: int, width: int = 96, height: int = 64) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (width, height))
    for index in range(frames):
        writer.write(np.full((height, width, 3), 20 * index, np.uint8))
    writer.release()
    return path


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_folder_is_recursive_and_sorted(tmp_path: Path) -> None:
    for name in ("b.jpg", "a.png", "sub/c.jpg", "sub/deeper/a0.bmp"):
        _image(tmp_path / name)
    (tmp_path / "notes.txt.bak").write_text("x")
    before = _tree(tmp_path)
    items = list_source(tmp_path)
    assert [Path(i.path).relative_to(tmp_path).as_posix() for i in items] == [
        "a.png",
        "b.jpg",
        "sub/c.jpg",
        "sub/deeper/a0.bmp",
    ]
    assert all(i.frame is None for i in items)
    assert _tree(tmp_path) == before  # no scan cache or anything else beside the images


def test_glob_sorted_and_txt_in_file_order(tmp_path: Path) -> None:
    for name in ("x2.jpg", "x1.jpg", "y.jpg"):
        _image(tmp_path / name)
    assert [Path(i.path).name for i in list_source(str(tmp_path / "x*.jpg"))] == ["x1.jpg", "x2.jpg"]
    listing = tmp_path / "list.txt"
    listing.write_text(f"y.jpg\n\n{tmp_path / 'x2.jpg'}\nx1.jpg\n")
    assert [Path(i.path).name for i in list_source(listing)] == ["y.jpg", "x2.jpg", "x1.jpg"]
    assert [Path(i.path).name for i in list_source(tmp_path / "y.jpg")] == ["y.jpg"]


def test_missing_and_empty_sources_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="predict source not found"):
        list_source(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no images or videos"):
        list_source(tmp_path)
    (tmp_path / "list.txt").write_text("missing.jpg\n")
    with pytest.raises(FileNotFoundError, match="line 1"):
        list_source(tmp_path / "list.txt")


def test_video_frames_in_order_with_stride(tmp_path: Path) -> None:
    video = _video(tmp_path / "clip.mp4", frames=7)
    items = list_source(video)
    assert [i.frame for i in items] == list(range(7)) and items[3].name == f"{video.resolve()}#3"
    strided = list_source(video, vid_stride=3)
    assert [i.frame for i in strided] == [0, 3, 6]
    dataset = PredictDataset(strided, imgsz=64)
    means = [float(dataset[i]["image"][20:40, 10:50].mean()) for i in range(3)]  # frame k was filled with 20 * k
    assert means == pytest.approx([0, 60, 120], abs=4)
    assert dataset[1]["path"].endswith("#3") and dataset[1]["orig_shape"] == (64, 96)


def test_minimal_padding_square_and_corrupt_images(tmp_path: Path) -> None:
    good = _image(tmp_path / "good.jpg", width=200, height=100)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    items = [SourceItem(str(good)), SourceItem(str(bad)), SourceItem(str(good))]
    minimal = PredictDataset(items, imgsz=96, stride=32)
    assert minimal[0]["image"].shape == (64, 96, 3)  # 96x48 resized, padded to the next multiple of 32
    assert PredictDataset(items, imgsz=96, stride=None)[0]["image"].shape == (96, 96, 3)
    batch = collate_predict([minimal[i] for i in range(3)])
    assert batch.skipped == [str(bad)] and batch.image_ids.tolist() == [0, 2]
    assert tuple(batch.images.shape) == (2, 3, 64, 96) and not batch.has_labels and batch.originals is None
    empty = collate_predict([minimal[1]])
    assert len(empty) == 0 and empty.skipped == [str(bad)]
    kept = PredictDataset(items, imgsz=96, keep_originals=True)
    assert collate_predict([kept[0]]).originals[0].shape == (100, 200, 3)
