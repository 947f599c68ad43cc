"""Verification, repair counts and the scan cache (``yolo11_lightning/data/scan.py``)."""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from data_builders import draw_boxes
from PIL import Image

from yolo11_lightning.data import scan
from yolo11_lightning.data.config import list_image_files
from yolo11_lightning.data.scan import cache_path_for, scan_split
from yolo11_lightning.inference.preprocess import read_image

MESSY_LABELS = "\n".join(
    [
        "0 0.5 0.5 0.2 0.2",  # good
        "1 0.5 0.5 0.2 0.2",  # good (other class)
        "1 0.5 0.5 0.2 0.2",  # duplicate -> removed
        "2 0.9 0.5 0.205 0.2",  # x2 = 1.0025 -> clipped
        "2 1.5 0.5 0.1 0.1",  # far outside -> dropped
        "3 0.5 0.5 0.0 0.1",  # zero width -> dropped
        "0 0.1 0.1 0.3 0.1 0.3 0.4 0.1 0.4",  # polygon -> box (0.1, 0.1)-(0.3, 0.4)
        "1 0.5 0.5",  # malformed -> dropped
        "",
    ]
)


def _jpeg_bytes(image: np.ndarray, exif_orientation: int | None = None) -> bytes:
    pil = Image.fromarray(image[..., ::-1])
    buffer = io.BytesIO()
    if exif_orientation is None:
        pil.save(buffer, "JPEG")
    else:
        exif = pil.getexif()
        exif[0x0112] = exif_orientation
        pil.save(buffer, "JPEG", exif=exif.tobytes())
    return buffer.getvalue()


@pytest.fixture
def messy_split(write_split, tmp_path: Path) -> Path:
    """A split with one instance of every bad input the scan must handle."""
    good, good_rows = draw_boxes(64, 48, [(4, 4, 20, 20), (30, 10, 60, 40)])
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    truncated = _jpeg_bytes(noise)[:400]
    items = {
        "good.png": (good, "\ufeff" + "\r\n".join(good_rows)),  # byte-order mark, Windows line ends
        "truncated.jpg": (truncated, "0 0.5 0.5 0.1 0.1"),
        "garbage.png": (b"this is not an image", "0 0.5 0.5 0.1 0.1"),
        "exif.jpg": (_jpeg_bytes(np.zeros((20, 40, 3), np.uint8), exif_orientation=6), "0 0.5 0.5 0.5 0.5"),
        "gray.png": (np.full((32, 32), 128, np.uint8), None),
        "rgba.png": (np.full((32, 32, 4), 200, np.uint8), None),
        "deep.png": (np.full((32, 32, 3), 40000, np.uint16), None),
        "messy.png": (np.zeros((50, 50, 3), np.uint8), MESSY_LABELS),
        "empty.png": (np.zeros((30, 30, 3), np.uint8), ""),
    }
    return write_split("train", items)


def test_every_bad_input_is_counted(messy_split: Path, caplog: pytest.LogCaptureFixture) -> None:
    files = list_image_files([messy_split])
    with caplog.at_level(logging.INFO):
        records, summary = scan_split(files, 4, "train", str(messy_split))
    assert (summary.images, summary.boxes, summary.backgrounds, summary.corrupt) == (7, 7, 4, 2)
    assert dict(summary.fixes) == {
        "exif": 1,
        "converted": 3,
        "duplicates": 1,
        "clipped": 1,
        "out_of_bounds": 1,
        "zero_size": 1,
        "polygons": 1,
        "malformed": 1,
    }
    assert summary.fixed == 10
    line = summary.line("train")
    assert line.startswith("train: 7 images, 7 boxes, 4 backgrounds, 2 corrupt, 10 fixed")
    assert line in caplog.text
    assert "truncated.jpg" in caplog.text and "garbage.png" in caplog.text
    by_name = {r.path.name: r for r in records}
    assert set(by_name) == {"good.png", "exif.jpg", "gray.png", "rgba.png", "deep.png", "messy.png", "empty.png"}
    # EXIF orientation 6 rotates the stored 40x20 image to 20 wide x 40 high, in the scan and the decoder
    assert (by_name["exif.jpg"].height, by_name["exif.jpg"].width) == (40, 20)
    assert read_image(str(by_name["exif.jpg"].path)).shape == (40, 20, 3)
    for name in ("gray.png", "rgba.png", "deep.png"):
        decoded = read_image(str(by_name[name].path))
        assert decoded.shape == (32, 32, 3) and decoded.dtype == np.uint8
    assert read_image(str(by_name["deep.png"].path))[0, 0, 0] == 40000 >> 8
    messy = by_name["messy.png"]
    np.testing.assert_array_equal(messy.classes, [0, 1, 2, 0])
    np.testing.assert_allclose(
        messy.boxes,
        [
            [0.5, 0.5, 0.2, 0.2],
            [0.5, 0.5, 0.2, 0.2],
            [(0.7975 + 1.0) / 2, 0.5, 1.0 - 0.7975, 0.2],
            [0.2, 0.25, 0.2, 0.3],
        ],
        atol=1e-6,
    )


def test_class_id_out_of_range_names_file_and_line(write_split) -> None:
    image, _ = draw_boxes(32, 32, [])
    folder = write_split("train", {"a.png": (image, "0 0.5 0.5 0.1 0.1\n4 0.5 0.5 0.1 0.1\n")})
    with pytest.raises(ValueError, match=r"a\.txt:2: class id 4 .*0\.\.3"):
        scan_split(list_image_files([folder]), 4, "train", str(folder))


def test_empty_split_is_an_error_naming_the_path(write_split, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no images found in /some/where"):
        scan_split([], 2, "val", "/some/where")
    folder = write_split("val", {"broken.jpg": (b"\xff\xd8 broken", None)})
    with pytest.raises(ValueError, match=f"no usable images in {folder}"):
        scan_split(list_image_files([folder]), 2, "val", str(folder))


def test_cache_is_reused_until_a_file_changes(write_split, monkeypatch: pytest.MonkeyPatch) -> None:
    image, rows = draw_boxes(40, 40, [(2, 2, 20, 20)])
    folder = write_split("train", {"a.png": (image, rows[0]), "b.png": (image, "")})
    files = list_image_files([folder])
    records, summary = scan_split(files, 2, "train", str(folder))
    cache_file = cache_path_for(files, "train")
    assert cache_file.is_file() and cache_file.parent.name == "labels"
    assert (summary.images, summary.boxes) == (2, 1)

    calls: list[Path] = []
    original = scan._check_one
    monkeypatch.setattr(scan, "_check_one", lambda path, nc: calls.append(path) or original(path, nc))
    cached, cached_summary = scan_split(files, 2, "train", str(folder))
    assert calls == []  # served from the cache
    assert cached_summary == summary
    assert [r.path for r in cached] == [r.path for r in records]
    np.testing.assert_array_equal(cached[0].boxes, records[0].boxes)

    # editing a label (new size and mtime) invalidates the cache
    label = folder.parent.parent / "labels" / "train" / "b.txt"
    label.write_text("1 0.5 0.5 0.5 0.5\n")
    os.utime(label, ns=(label.stat().st_atime_ns, label.stat().st_mtime_ns + 10**9))
    _, changed = scan_split(files, 2, "train", str(folder))
    assert len(calls) == 2 and (changed.boxes, changed.backgrounds) == (2, 0)

    # touching an image (same content, new mtime) also invalidates it
    calls.clear()
    image_file = folder / "a.png"
    os.utime(image_file, ns=(image_file.stat().st_atime_ns, image_file.stat().st_mtime_ns + 10**9))
    scan_split(files, 2, "train", str(folder))
    assert len(calls) == 2
    calls.clear()
    scan_split(files, 2, "train", str(folder))
    assert calls == []


def test_damaged_cache_is_rebuilt(write_split) -> None:
    image, rows = draw_boxes(40, 40, [(2, 2, 20, 20)])
    folder = write_split("train", {"a.png": (image, rows[0])})
    files = list_image_files([folder])
    scan_split(files, 2, "train", str(folder))
    cache_path_for(files, "train").write_bytes(b"junk")
    records, summary = scan_split(files, 2, "train", str(folder))
    assert summary.boxes == 1 and len(records) == 1
    assert cv2.imread(str(folder / "a.png")) is not None
