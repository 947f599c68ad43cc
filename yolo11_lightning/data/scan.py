"""Verify every image and label of a split once, repair what can be repaired, and cache the result.

Each problem is counted (never a crash, never a silent loss):

==========================  ===========================================  ======================
input                       action                                       counter
==========================  ===========================================  ======================
unreadable/truncated image  image skipped                                ``corrupt``
EXIF orientation            applied when loading (size after rotation)   ``fixes["exif"]``
grayscale/RGBA/16-bit/...   converted to 8-bit colour when loading       ``fixes["converted"]``
coords slightly out [0, 1]  clipped (tolerance ``COORD_TOLERANCE``)      ``fixes["clipped"]``
coords badly out of [0, 1]  row dropped                                  ``fixes["out_of_bounds"]``
zero-size box               row dropped                                  ``fixes["zero_size"]``
duplicate row               removed                                      ``fixes["duplicates"]``
polygon row                 converted to its bounding box                ``fixes["polygons"]``
unparsable row              row dropped                                  ``fixes["malformed"]``
missing/empty label file    kept as a background image                   ``backgrounds``
class id >= nc              ``ValueError`` naming file and line          --
==========================  ===========================================  ======================

The result is cached beside the labels (``labels/<split>.yolo11-lightning.cache``, an ``.npz`` without
pickles) and reused while the hash of every image and label file's size and mtime is unchanged.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from yolo11_lightning.data.config import label_path_for
from yolo11_lightning.training.errors import UserError

log = logging.getLogger(__name__)

CACHE_VERSION = 1
COORD_TOLERANCE = 0.01  # corners within [-tol, 1 + tol] are clipped, beyond that the row is dropped
_EXIF_ORIENTATION = 0x0112
_PLAIN_MODES = frozenset({"RGB"})
_MAX_LISTED = 10  # unreadable files named one by one before the rest is only counted


@dataclass
class ImageRecord:
    """One verified image and its labels.

    Attributes:
        path: Image file.
        height: Height after EXIF orientation.
        width: Width after EXIF orientation.
        classes: ``int64 (n,)`` class ids.
        boxes: ``float32 (n, 4)`` normalised ``cx, cy, w, h`` boxes.
    """

    path: Path
    height: int
    width: int
    classes: np.ndarray
    boxes: np.ndarray


@dataclass
class ScanSummary:
    """Counts for one split (``fixes`` maps each repair kind to how many rows/images it touched)."""

    images: int = 0
    boxes: int = 0
    backgrounds: int = 0
    corrupt: int = 0
    fixes: Counter[str] = field(default_factory=Counter)

    @property
    def fixed(self) -> int:
        """Total number of repairs."""
        return sum(self.fixes.values())

    def line(self, split: str) -> str:
        """The one-line report for a split."""
        detail = ", ".join(f"{kind} {count}" for kind, count in sorted(self.fixes.items()) if count)
        return (
            f"{split}: {self.images} images, {self.boxes} boxes, {self.backgrounds} backgrounds, "
            f"{self.corrupt} corrupt, {self.fixed} fixed" + (f" ({detail})" if detail else "")
        )


@dataclass
class _Checked:
    record: ImageRecord | None
    fixes: Counter[str]
    corrupt_reason: str = ""


def _png_bit_depth(path: Path) -> int:
    """Bits per channel from a PNG's IHDR chunk (PIL reports 16-bit RGB PNGs as plain ``RGB``)."""
    with open(path, "rb") as handle:
        header = handle.read(25)
    return header[24] if len(header) == 25 else 8


def _check_image(path: Path) -> tuple[int, int, Counter[str]]:
    """Return (height, width, fixes) after full verification; raise on unreadable images."""
    fixes: Counter[str] = Counter()
    with Image.open(path) as image:
        image.verify()  # structure and checksums, cheap
    with Image.open(path) as image:
        if image.format == "JPEG":
            with open(path, "rb") as handle:
                handle.seek(-2, os.SEEK_END)
                complete = handle.read() == b"\xff\xd9"
            if not complete:
                image.load()  # raises on a truncated file; trailing bytes after the image are fine
        width, height = image.size
        orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
        if orientation in (5, 6, 7, 8):
            width, height = height, width
        if orientation not in (1, None):
            fixes["exif"] += 1
        if image.mode not in _PLAIN_MODES or (image.format == "PNG" and _png_bit_depth(path) > 8):
            fixes["converted"] += 1
    if min(width, height) < 2:
        raise ValueError(f"image size {width}x{height} is too small")
    return height, width, fixes


def _parse_labels(label_path: Path, num_classes: int) -> tuple[np.ndarray, np.ndarray, Counter[str]]:
    """Parse one label file into (classes, cxcywh boxes, fixes); raise ValueError on bad class ids."""
    fixes: Counter[str] = Counter()
    classes, corners = [], []
    for line_number, line in enumerate(label_path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            values = [float(v) for v in fields]
        except ValueError:
            fixes["malformed"] += 1
            continue
        class_value = values[0]
        if not math.isfinite(class_value) or class_value != int(class_value) or not 0 <= class_value < num_classes:
            raise UserError(
                f"{label_path}:{line_number}: class id {fields[0]} is not in 0..{num_classes - 1} "
                f"(the data.yaml declares {num_classes} classes)"
            )
        coords = values[1:]
        if len(coords) == 4:
            cx, cy, w, h = coords
            box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
        elif len(coords) >= 6 and len(coords) % 2 == 0:
            xs, ys = coords[0::2], coords[1::2]
            box = (min(xs), min(ys), max(xs), max(ys))
            fixes["polygons"] += 1
        else:
            fixes["malformed"] += 1
            continue
        classes.append(int(class_value))
        corners.append(box)
    if not classes:
        return np.zeros(0, np.int64), np.zeros((0, 4), np.float32), fixes
    cls = np.asarray(classes, np.int64)
    xyxy = np.asarray(corners, np.float64)
    inside = ((xyxy >= -COORD_TOLERANCE) & (xyxy <= 1 + COORD_TOLERANCE)).all(1)
    fixes["out_of_bounds"] += int((~inside).sum())
    cls, xyxy = cls[inside], xyxy[inside]
    clipped = xyxy.clip(0.0, 1.0)
    fixes["clipped"] += int((clipped != xyxy).any(1).sum())
    nonzero = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    fixes["zero_size"] += int((~nonzero).sum())
    cls, clipped = cls[nonzero], clipped[nonzero]
    boxes = np.stack(
        [(clipped[:, 0] + clipped[:, 2]) / 2, (clipped[:, 1] + clipped[:, 3]) / 2, clipped[:, 2] - clipped[:, 0], clipped[:, 3] - clipped[:, 1]],
        axis=1,
    ).astype(np.float32)
    rows = np.concatenate([cls[:, None].astype(np.float32), boxes], axis=1)
    _, first = np.unique(rows, axis=0, return_index=True)
    first.sort()  # keep the file's order
    fixes["duplicates"] += len(rows) - len(first)
    return cls[first], boxes[first], fixes


def _check_one(image_path: Path, num_classes: int) -> _Checked:
    try:
        height, width, fixes = _check_image(image_path)
    except Exception as error:  # any decoder error means the image cannot be used
        return _Checked(None, Counter(), f"{image_path}: {type(error).__name__}: {error}")
    label_path = label_path_for(image_path)
    if label_path.is_file():
        classes, boxes, label_fixes = _parse_labels(label_path, num_classes)
        fixes.update(label_fixes)
    else:
        classes, boxes = np.zeros(0, np.int64), np.zeros((0, 4), np.float32)
    return _Checked(ImageRecord(image_path, height, width, classes, boxes), fixes)


def files_hash(image_files: list[Path], num_classes: int) -> str:
    """Hash of the size and mtime of every image and label file (and the class count)."""
    digest = hashlib.sha1(f"v{CACHE_VERSION} nc={num_classes}".encode())
    for image_path in image_files:
        for path in (image_path, label_path_for(image_path)):
            try:
                stat = path.stat()
                digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
            except OSError:
                digest.update(f"{path}|missing\n".encode())
    return digest.hexdigest()


def cache_path_for(image_files: list[Path], split: str) -> Path:
    """Where the scan cache of a split lives: beside the first image's label folder."""
    return label_path_for(image_files[0]).parent.parent / f"{split}.yolo11-lightning.cache"


def _save_cache(path: Path, digest: str, records: list[ImageRecord], summary: ScanSummary) -> None:
    counts = np.array([len(r.classes) for r in records], np.int64)
    payload = {
        "hash": np.array(digest),
        "paths": np.array([str(r.path) for r in records]),
        "shapes": np.array([(r.height, r.width) for r in records], np.int64).reshape(-1, 2),
        "counts": counts,
        "classes": np.concatenate([r.classes for r in records]) if records else np.zeros(0, np.int64),
        "boxes": np.concatenate([r.boxes for r in records]) if records else np.zeros((0, 4), np.float32),
        "summary": np.array(json.dumps({"images": summary.images, "boxes": summary.boxes, "backgrounds": summary.backgrounds, "corrupt": summary.corrupt, "fixes": dict(summary.fixes)})),
    }
    buffer = io.BytesIO()
    np.savez(buffer, **payload)
    temporary = path.with_name(path.name + f".{os.getpid()}.tmp")
    try:
        temporary.write_bytes(buffer.getvalue())
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        log.warning("could not write the scan cache %s (%s); the next run scans again", path, error)


def _load_cache(path: Path, digest: str) -> tuple[list[ImageRecord], ScanSummary] | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["hash"]) != digest:
                return None
            paths, shapes, counts = data["paths"], data["shapes"], data["counts"]
            classes, boxes, summary = data["classes"], data["boxes"], json.loads(str(data["summary"]))
    except Exception:  # missing, stale format or damaged: scan again
        return None
    offsets = np.concatenate([[0], np.cumsum(counts)])
    records = [
        ImageRecord(Path(p), int(s[0]), int(s[1]), classes[offsets[i] : offsets[i + 1]], boxes[offsets[i] : offsets[i + 1]])
        for i, (p, s) in enumerate(zip(paths, shapes))
    ]
    fixes = Counter(summary.pop("fixes"))
    return records, ScanSummary(**summary, fixes=fixes)


def scan_split(
    image_files: list[Path], num_classes: int, split: str, source: str, use_cache: bool = True, threads: int = 8
) -> tuple[list[ImageRecord], ScanSummary]:
    """Verify a split (or load its cache), log the warnings and the summary line, return the records.

    Args:
        image_files: The split's image files (from ``list_image_files``).
        num_classes: Number of classes in ``data.yaml``; larger class ids are an error.
        split: Split name for messages and the cache file name.
        source: Human-readable origin of the split (its folders or lists) for error messages.
        use_cache: Read and write the cache beside the labels.
        threads: Threads for the first scan (decoding headers releases the GIL).

    Returns:
        The usable images (in file order) and the split's counts.

    Raises:
        ValueError: If a label has a class id >= ``num_classes``, or the split has no usable image.
    """
    if not image_files:
        raise UserError(f"{split}: no images found in {source}")
    digest = files_hash(image_files, num_classes)
    cache_file = cache_path_for(image_files, split)
    cached = _load_cache(cache_file, digest) if use_cache else None
    if cached is not None:
        records, summary = cached
    else:
        with ThreadPoolExecutor(max(1, threads)) as pool:
            checked = list(pool.map(lambda path: _check_one(path, num_classes), image_files))
        records, summary, corrupt_messages = [], ScanSummary(), []
        for item in checked:
            if item.record is None:
                summary.corrupt += 1
                corrupt_messages.append(item.corrupt_reason)
                continue
            records.append(item.record)
            summary.fixes.update(item.fixes)
            summary.boxes += len(item.record.classes)
            summary.backgrounds += int(len(item.record.classes) == 0)
        summary.images = len(records)
        for message in corrupt_messages[:_MAX_LISTED]:
            log.warning("%s: skipping unreadable image %s", split, message)
        if len(corrupt_messages) > _MAX_LISTED:
            log.warning("%s: ... and %d more unreadable images", split, len(corrupt_messages) - _MAX_LISTED)
        if use_cache and records:
            _save_cache(cache_file, digest, records, summary)
    if not records:
        raise UserError(f"{split}: no usable images in {source} ({summary.corrupt} unreadable)")
    (log.warning if summary.fixed or summary.corrupt else log.info)(summary.line(split))
    return records, summary
