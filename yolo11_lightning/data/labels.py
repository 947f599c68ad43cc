"""Reading one YOLO label file: any encoding, every row checked and repaired or dropped with a count.

The counters (``fixes``) and what each means are documented in :mod:`yolo11_lightning.data.scan`.
"""

from __future__ import annotations

import codecs
import math
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from yolo11_lightning.errors import UserError

COORD_TOLERANCE = 0.01  # corners within [-tol, 1 + tol] are clipped, beyond that the row is dropped


def _label_lines(label_path: Path, fixes: Counter[str], messages: list[str]) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of a label file in any encoding: UTF-8 (BOM optional) or UTF-16 with a
    BOM; a line that is not valid UTF-8 is dropped as ``malformed`` with its ``file:line``."""
    raw = label_path.read_bytes()
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            raw = raw.decode("utf-16").encode("utf-8")
        except UnicodeDecodeError:
            pass  # not really UTF-16: fall through to the line-by-line check
    raw = raw.removeprefix(codecs.BOM_UTF8)
    for line_number, line in enumerate(raw.splitlines(), start=1):
        try:
            yield line_number, line.decode("utf-8")
        except UnicodeDecodeError as error:
            fixes["malformed"] += 1
            messages.append(f"{label_path}:{line_number}: not UTF-8 (byte 0x{line[error.start]:02x}); row dropped")


def parse_labels(
    label_path: Path, num_classes: int, messages: list[str] | None = None
) -> tuple[np.ndarray, np.ndarray, Counter[str]]:
    """Parse one label file into (classes, cxcywh boxes, fixes); raise ValueError on bad class ids.

    Dropped rows are described (``file:line: reason``) in ``messages`` when given.
    """
    fixes: Counter[str] = Counter()
    messages = [] if messages is None else messages
    classes, corners = [], []
    for line_number, line in _label_lines(label_path, fixes, messages):
        fields = line.split()
        if not fields:
            continue
        try:
            values = [float(v) for v in fields]
        except ValueError:
            fixes["malformed"] += 1
            messages.append(f"{label_path}:{line_number}: not a row of numbers ({line.strip()[:40]!r}); row dropped")
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
            messages.append(f"{label_path}:{line_number}: {len(coords)} coordinates (4 or an even 6+); row dropped")
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
        [
            (clipped[:, 0] + clipped[:, 2]) / 2,
            (clipped[:, 1] + clipped[:, 3]) / 2,
            clipped[:, 2] - clipped[:, 0],
            clipped[:, 3] - clipped[:, 1],
        ],
        axis=1,
    ).astype(np.float32)
    rows = np.concatenate([cls[:, None].astype(np.float32), boxes], axis=1)
    _, first = np.unique(rows, axis=0, return_index=True)
    first.sort()  # keep the file's order
    fixes["duplicates"] += len(rows) - len(first)
    return cls[first], boxes[first], fixes


def label_problem(label_path: Path) -> str:
    """Why an existing label path cannot be read as a file ("" when it can)."""
    if label_path.is_dir():
        return f"label path {label_path} is a folder, not a file"
    if not label_path.exists():
        return f"label path {label_path} is a broken symbolic link"
    if not label_path.is_file():
        return f"label path {label_path} is not a regular file"
    if not os.access(label_path, os.R_OK):
        return f"label file {label_path} is not readable (permission denied)"
    return ""
