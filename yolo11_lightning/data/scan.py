"""Verify every image and label of a split once, repair what can be repaired, and cache the result.

Each problem is counted (never a crash, never a silent loss):

==========================  ===========================================  ======================
input                       action                                       counter
==========================  ===========================================  ======================
unreadable/truncated image  image skipped (same decoder as training)    ``corrupt``
format OpenCV cannot decode image skipped, the format named              ``corrupt``
EXIF orientation            applied when loading (size after rotation)   ``fixes["exif"]``
grayscale/RGBA/16-bit/...   converted to 8-bit colour when loading       ``fixes["converted"]``
coords slightly out [0, 1]  clipped (tolerance ``COORD_TOLERANCE``)      ``fixes["clipped"]``
coords badly out of [0, 1]  row dropped                                  ``fixes["out_of_bounds"]``
zero-size box               row dropped                                  ``fixes["zero_size"]``
duplicate row               removed                                      ``fixes["duplicates"]``
polygon row                 converted to its bounding box                ``fixes["polygons"]``
unparsable row              row dropped (``file:line`` logged)           ``fixes["malformed"]``
non-UTF-8 line              row dropped (``file:line`` logged)           ``fixes["malformed"]``
path listed twice           second entry dropped                         ``fixes["list_duplicates"]``
empty label file            kept as a background image                   ``backgrounds``
missing label file          kept as a background image                   ``backgrounds``, ``missing_labels``
label path not a readable   image skipped, reason logged                 ``bad_labels``
file (folder, broken link)
more than half unlabelled   warning naming the label folder              (``strict_labels``: error)
class id >= nc              ``ValueError`` naming file and line          --
==========================  ===========================================  ======================

Images are verified with the decoder that training, validation and predict use
(:func:`~yolo11_lightning.inference.decode.read_image`, with its truncated-JPEG check), so an image
that passes the scan decodes later. Labels are looked up beside the image path as listed (a
symbolic link's label beside the link). The result is cached beside the labels
(``labels/<split>.yolo11-lightning.cache``, an ``.npz`` without pickles) and reused while the hash
of every image and label file's size and mtime is unchanged.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from yolo11_lightning.data.config import label_path_for
from yolo11_lightning.data.labels import label_problem, parse_labels
from yolo11_lightning.errors import UserError
from yolo11_lightning.inference.decode import quiet_native_stderr, read_image

log = logging.getLogger(__name__)

CACHE_VERSION = 2
_EXIF_ORIENTATION = 0x0112
_PLAIN_MODES = frozenset({"RGB"})
_MAX_LISTED = 10  # unreadable files named one by one before the rest is only counted
MISSING_LABELS_WARNING_FRACTION = 0.5  # more than this fraction of a split without label files: warning


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
    missing_labels: int = 0  # usable images without a label file (counted in backgrounds too)
    bad_labels: int = 0  # images skipped because their label path is not a readable file
    missing_example: str = ""  # the label path looked for, for the first image without one

    @property
    def fixed(self) -> int:
        """Total number of repairs."""
        return sum(self.fixes.values())

    def line(self, split: str) -> str:
        """The one-line report for a split."""
        detail = ", ".join(f"{kind} {count}" for kind, count in sorted(self.fixes.items()) if count)
        line = (
            f"{split}: {self.images} images, {self.boxes} boxes, {self.backgrounds} backgrounds, "
            f"{self.corrupt} corrupt, {self.fixed} fixed" + (f" ({detail})" if detail else "")
        )
        if self.missing_labels:
            line += f"; {self.missing_labels} without a label file"
        if self.bad_labels:
            line += f"; {self.bad_labels} skipped for an unreadable label file"
        return line


@dataclass
class _Checked:
    record: ImageRecord | None
    fixes: Counter[str]
    corrupt_reason: str = ""
    label_problem: str = ""  # the label path exists but is not a readable file
    missing_label: bool = False
    messages: list[str] = field(default_factory=list)  # file:line notes on dropped rows


def _png_bit_depth(path: Path) -> int:
    """Bits per channel from a PNG's IHDR chunk (PIL reports 16-bit RGB PNGs as plain ``RGB``)."""
    with open(path, "rb") as handle:
        header = handle.read(25)
    return header[24] if len(header) == 25 else 8


def _header_fixes(path: Path) -> Counter[str]:
    """What loading will repair, from the header (PIL; no decode): EXIF orientation, conversions."""
    fixes: Counter[str] = Counter()
    try:
        with Image.open(path) as image:
            orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
            if orientation not in (1, None):
                fixes["exif"] += 1
            if image.mode not in _PLAIN_MODES or (image.format == "PNG" and _png_bit_depth(path) > 8):
                fixes["converted"] += 1
    except Exception:  # noqa: BLE001 - OpenCV decodes it (checked before); PIL does not know the header
        pass
    return fixes


def _check_image(path: Path) -> tuple[int, int, Counter[str]]:
    """Return (height, width, fixes) after a full decode by the training decoder; raise on unusable images."""
    image = read_image(path, verify=True)  # the size after EXIF orientation, as training sees it
    height, width = image.shape[:2]
    if min(width, height) < 2:
        raise ValueError(f"image size {width}x{height} is too small")
    return height, width, _header_fixes(path)


def _check_one(image_path: Path, num_classes: int) -> _Checked:
    try:
        height, width, fixes = _check_image(image_path)
    except Exception as error:  # any decoder error means the image cannot be used
        reason = str(error) if isinstance(error, OSError) else f"{image_path}: {type(error).__name__}: {error}"
        return _Checked(None, Counter(), reason)
    label_path = label_path_for(image_path)
    empty = np.zeros(0, np.int64), np.zeros((0, 4), np.float32)
    if not os.path.lexists(label_path):
        return _Checked(ImageRecord(image_path, height, width, *empty), fixes, missing_label=True)
    problem = label_problem(label_path)
    messages: list[str] = []
    if not problem:
        try:
            classes, boxes, label_fixes = parse_labels(label_path, num_classes, messages)
        except OSError as error:
            problem = f"label file {label_path} cannot be read ({error.strerror or error})"
    if problem:
        return _Checked(None, Counter(), label_problem=f"{image_path}: {problem}")
    fixes.update(label_fixes)
    return _Checked(ImageRecord(image_path, height, width, classes, boxes), fixes, messages=messages)


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
        "summary": np.array(json.dumps({**dataclasses.asdict(summary), "fixes": dict(summary.fixes)})),
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
        ImageRecord(
            Path(p), int(s[0]), int(s[1]), classes[offsets[i] : offsets[i + 1]], boxes[offsets[i] : offsets[i + 1]]
        )
        for i, (p, s) in enumerate(zip(paths, shapes))
    ]
    fixes = Counter(summary.pop("fixes"))
    return records, ScanSummary(**summary, fixes=fixes)


def _log_listed(split: str, what: str, messages: list[str]) -> None:
    for message in messages[:_MAX_LISTED]:
        log.warning("%s: %s %s", split, what, message)
    if len(messages) > _MAX_LISTED:
        log.warning("%s: ... and %d more", split, len(messages) - _MAX_LISTED)


def _summarise(split: str, checked: list[_Checked]) -> tuple[list[ImageRecord], ScanSummary]:
    records, summary = [], ScanSummary()
    corrupt, bad_labels, rows = [], [], []
    for item in checked:
        rows.extend(item.messages)
        if item.record is None:
            if item.label_problem:
                summary.bad_labels += 1
                bad_labels.append(item.label_problem)
            else:
                summary.corrupt += 1
                corrupt.append(item.corrupt_reason)
            continue
        records.append(item.record)
        summary.fixes.update(item.fixes)
        summary.boxes += len(item.record.classes)
        summary.backgrounds += int(len(item.record.classes) == 0)
        if item.missing_label:
            summary.missing_labels += 1
            summary.missing_example = summary.missing_example or str(label_path_for(item.record.path))
    summary.images = len(records)
    _log_listed(split, "skipping unreadable image", corrupt)
    _log_listed(split, "skipping image with an unreadable label:", bad_labels)
    _log_listed(split, "label", rows)
    return records, summary


def _check_label_coverage(summary: ScanSummary, split: str, strict: bool) -> None:
    """Warn (``strict``: raise) when more than half of a split's images have no label file."""
    if summary.missing_labels <= MISSING_LABELS_WARNING_FRACTION * summary.images:
        return
    folder = Path(summary.missing_example).parent
    where = f"{folder}" + ("" if folder.is_dir() else " (that folder does not exist)")
    message = (
        f"{split}: {summary.missing_labels} of {summary.images} images have no label file; labels were looked for "
        f"in {where}, e.g. {summary.missing_example}. Images without a label file train as backgrounds: put the "
        "labels in a 'labels' folder beside 'images' (same sub-folders, .txt per image)"
    )
    if strict:
        raise UserError(message)
    log.warning("%s (--data.strict_labels true makes this an error)", message)


def scan_split(
    image_files: list[Path],
    num_classes: int,
    split: str,
    source: str,
    use_cache: bool = True,
    threads: int = 8,
    listed_duplicates: int = 0,
    expect_labels: bool = True,
    strict_labels: bool = False,
) -> tuple[list[ImageRecord], ScanSummary]:
    """Verify a split (or load its cache), log the warnings and the summary line, return the records.

    Args:
        image_files: The split's image files (from ``find_image_files``).
        num_classes: Number of classes in ``data.yaml``; larger class ids are an error.
        split: Split name for messages and the cache file name.
        source: Human-readable origin of the split (its folders or lists) for error messages.
        use_cache: Read and write the cache beside the labels.
        threads: Threads for the first scan (decoding releases the GIL).
        listed_duplicates: Paths the listing dropped as listed twice (reported as ``list_duplicates``).
        expect_labels: Warn when more than half of the images have no label file (off for predict).
        strict_labels: Make that warning an error.

    Returns:
        The usable images (in file order) and the split's counts.

    Raises:
        ValueError: If a label has a class id >= ``num_classes``, the split has no usable image, or
            (``strict_labels``) more than half of its images have no label file.
    """
    if not image_files:
        raise UserError(f"{split}: no images found in {source}")
    digest = files_hash(image_files, num_classes)
    cache_file = cache_path_for(image_files, split)
    cached = _load_cache(cache_file, digest) if use_cache else None
    if cached is not None:
        records, summary = cached
    else:
        with quiet_native_stderr(), ThreadPoolExecutor(max(1, threads)) as pool:
            checked = list(pool.map(lambda path: _check_one(path, num_classes), image_files))
        records, summary = _summarise(split, checked)
        if use_cache and records:
            _save_cache(cache_file, digest, records, summary)
    if listed_duplicates:
        summary.fixes["list_duplicates"] = listed_duplicates
    if not records:
        raise UserError(
            f"{split}: no usable images in {source} ({summary.corrupt} unreadable, "
            f"{summary.bad_labels} with an unreadable label file)"
        )
    (log.warning if summary.fixed or summary.corrupt or summary.bad_labels else log.info)(summary.line(split))
    if expect_labels:
        _check_label_coverage(summary, split, strict_labels)
    return records, summary
