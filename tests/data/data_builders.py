"""Helpers that draw test images with boxes of known colours (imported by the data tests)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

# Distinct pure colours (BGR); class k is drawn in COLOURS[k] so a box can be matched to its pixels.
COLOURS = [(0, 0, 255), (0, 255, 0), (255, 0, 0), (0, 255, 255), (255, 0, 255), (255, 255, 0)]
SHAPES4_YAML = Path(__file__).resolve().parents[2] / "data" / "shapes4" / "data.yaml"


def draw_boxes(width: int, height: int, boxes: Sequence[tuple[int, int, int, int]]) -> tuple[np.ndarray, list[str]]:
    """A grey image with box k filled in ``COLOURS[k]``; returns it and its YOLO label rows."""
    image = np.full((height, width, 3), 60, np.uint8)
    rows = []
    for k, (x1, y1, x2, y2) in enumerate(boxes):
        image[y1:y2, x1:x2] = COLOURS[k]
        rows.append(f"{k} {(x1 + x2) / 2 / width} {(y1 + y2) / 2 / height} {(x2 - x1) / width} {(y2 - y1) / height}")
    return image, rows


def colour_box(image_bgr: np.ndarray, k: int, tolerance: int = 60) -> tuple[np.ndarray, int]:
    """Bounding box ``xyxy`` (pixel edges) of the pixels close to ``COLOURS[k]``, and their count."""
    mask = (np.abs(image_bgr.astype(np.int16) - np.array(COLOURS[k])) < tolerance).all(-1)
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return np.zeros(4), 0
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float64), len(xs)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two ``xyxy`` boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def best_component_iou(image_bgr: np.ndarray, k: int, box: np.ndarray, tolerance: int = 100) -> float:
    """Highest IoU between ``box`` and the bounding box of any connected region of colour ``k``."""
    mask = (np.abs(image_bgr.astype(np.int16) - np.array(COLOURS[k])) < tolerance).all(-1).astype(np.uint8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask)
    best = 0.0
    for x, y, w, h, _area in stats[1:count]:
        best = max(best, iou(np.array([x, y, x + w, y + h], np.float64), np.asarray(box, np.float64)))
    return best
