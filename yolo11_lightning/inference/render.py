"""The one box renderer: annotated images for predict, the Python API and the validation figures.

Line width and font scale grow with the image (legible on a 64x64 thumbnail and on a 4000x3000
photo); each class has a stable colour (a fixed palette indexed by class id); labels sit above the
box, or inside it when the box touches the top edge, on a filled background in the class colour
with black or white text, whichever contrasts more.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

# 20 distinct colours (RGB), indexed by class id modulo 20.
_PALETTE_RGB = (
    (255, 56, 56), (255, 157, 151), (255, 112, 31), (255, 178, 29), (207, 210, 49),
    (72, 249, 10), (146, 204, 23), (61, 219, 134), (26, 147, 52), (0, 212, 187),
    (44, 153, 168), (0, 194, 255), (52, 69, 147), (100, 115, 255), (0, 24, 236),
    (132, 56, 255), (82, 0, 133), (203, 56, 255), (255, 149, 200), (255, 55, 199),
)  # fmt: skip


def class_colour(class_id: int, bgr: bool = True) -> tuple[int, int, int]:
    """The stable colour of a class, BGR (OpenCV) by default."""
    red, green, blue = _PALETTE_RGB[int(class_id) % len(_PALETTE_RGB)]
    return (blue, green, red) if bgr else (red, green, blue)


def line_width_for(height: int, width: int) -> int:
    """Box line width in pixels: about 0.3% of the mean side; at least 2 (1 below a 200-pixel mean side)."""
    mean_side = (height + width) / 2
    return max(round(mean_side * 0.003), 2 if mean_side >= 200 else 1)


def draw_detections(
    image: np.ndarray,
    boxes: np.ndarray | Sequence[Sequence[float]],
    class_ids: np.ndarray | Sequence[int],
    names: dict[int, str] | None = None,
    scores: np.ndarray | Sequence[float] | None = None,
    line_width: int | None = None,
    show_labels: bool = True,
) -> np.ndarray:
    """Draw boxes with class names (and scores) on a copy of ``image``.

    Args:
        image: ``uint8 (H, W, 3)`` BGR image.
        boxes: ``(n, 4)`` ``x1, y1, x2, y2`` in the image's pixels.
        class_ids: ``(n,)`` class ids.
        names: class id -> name (the id itself when missing).
        scores: ``(n,)`` confidences, shown after the name; ``None`` for ground truth.
        line_width: box line width; ``None``: :func:`line_width_for` the image.
        show_labels: draw the name/score labels.

    Returns:
        The annotated copy (``uint8 (H, W, 3)`` BGR).
    """
    canvas = np.ascontiguousarray(image).copy()
    height, width = canvas.shape[:2]
    thickness = line_width or line_width_for(height, width)
    font_scale = thickness / 3
    font_thickness = max(thickness - 1, 1)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    class_ids = np.asarray(class_ids).reshape(-1).astype(int)
    names = names or {}
    for index, (box, class_id) in enumerate(zip(boxes, class_ids)):
        colour = class_colour(class_id)
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness, lineType=cv2.LINE_AA)
        if not show_labels:
            continue
        label = names.get(int(class_id), str(int(class_id)))
        if scores is not None:
            label = f"{label} {float(scores[index]):.2f}"
        (text_w, text_h), baseline = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, font_thickness)
        text_h += baseline
        above = y1 - text_h - thickness >= 0
        top = y1 - text_h - thickness if above else y1
        left = min(max(x1, 0), max(width - text_w - 2, 0))
        cv2.rectangle(canvas, (left, top), (left + text_w + 2, top + text_h + thickness), colour, -1, cv2.LINE_AA)
        text_colour = (0, 0, 0) if sum(colour) / 3 > 140 else (255, 255, 255)
        cv2.putText(
            canvas,
            label,
            (left + 1, top + text_h - baseline + thickness // 2),
            cv2.FONT_HERSHEY_SIMPLEX,
            font_scale,
            text_colour,
            font_thickness,
            cv2.LINE_AA,
        )
    return canvas
