"""Geometric and photometric augmentation for detection, with boxes kept consistent.

Images are ``uint8 (H, W, 3)`` BGR arrays (OpenCV's order; converted to RGB once at the end of the
dataset), boxes ``float32 (n, 4)`` ``x1, y1, x2, y2`` in pixels, classes ``int64 (n,)``. Every random
draw comes from the ``numpy.random.Generator`` passed in, so a sample is a function of its seed.
Albumentations supplies the light pixel-level extras (blur, median blur, to-gray, CLAHE); the box-
carrying steps (mosaic, affine, flips, letterbox) are written here because they need the exact
reference geometry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import albumentations as A
import cv2
import numpy as np

from yolo11_lightning.inference.preprocess import PAD_VALUE


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation settings; the defaults are the reference's YOLO11 recipe.

    Attributes:
        mosaic: Probability of a 4-image mosaic.
        degrees: Rotation range (+/- degrees).
        translate: Translation range (+/- fraction of the output size).
        scale: Scale range (1 +/- scale).
        shear: Shear range (+/- degrees).
        perspective: Perspective range (+/- fraction).
        hsv_h: Hue gain (fraction of the hue circle).
        hsv_s: Saturation gain.
        hsv_v: Value gain.
        fliplr: Probability of a horizontal flip.
        flipud: Probability of a vertical flip.
        extras_p: Probability of each albumentations extra (Blur, MedianBlur, ToGray, CLAHE).
    """

    mosaic: float = 1.0
    degrees: float = 0.0
    translate: float = 0.1
    scale: float = 0.5
    shear: float = 0.0
    perspective: float = 0.0
    hsv_h: float = 0.015
    hsv_s: float = 0.7
    hsv_v: float = 0.4
    fliplr: float = 0.5
    flipud: float = 0.0
    extras_p: float = 0.01


def mosaic4(
    tiles: list[tuple[np.ndarray, np.ndarray, np.ndarray]], size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Place four ``(image, classes, boxes)`` tiles around a random centre of a ``2*size`` canvas.

    Tiles go top-left, top-right, bottom-left, bottom-right of the centre, which is drawn uniformly
    in ``[size/2, 3*size/2]`` on each axis. Boxes are shifted, clipped to the canvas, and boxes left
    with no area are dropped.

    Returns:
        The ``(2*size, 2*size, 3)`` canvas, classes and boxes.
    """
    canvas = np.full((2 * size, 2 * size, 3), PAD_VALUE, dtype=np.uint8)
    center_x, center_y = (int(rng.uniform(size // 2, 2 * size - size // 2)) for _ in range(2))
    all_classes, all_boxes = [], []
    for position, (image, classes, boxes) in enumerate(tiles):
        h, w = image.shape[:2]
        # canvas window (x1a, y1a, x2a, y2a) and the matching tile window (x1b, y1b, ...)
        if position == 0:
            x1a, y1a, x2a, y2a = max(center_x - w, 0), max(center_y - h, 0), center_x, center_y
            x1b, y1b, x2b, y2b = w - (x2a - x1a), h - (y2a - y1a), w, h
        elif position == 1:
            x1a, y1a, x2a, y2a = center_x, max(center_y - h, 0), min(center_x + w, 2 * size), center_y
            x1b, y1b, x2b, y2b = 0, h - (y2a - y1a), x2a - x1a, h
        elif position == 2:
            x1a, y1a, x2a, y2a = max(center_x - w, 0), center_y, center_x, min(2 * size, center_y + h)
            x1b, y1b, x2b, y2b = w - (x2a - x1a), 0, w, y2a - y1a
        else:
            x1a, y1a, x2a, y2a = center_x, center_y, min(center_x + w, 2 * size), min(2 * size, center_y + h)
            x1b, y1b, x2b, y2b = 0, 0, x2a - x1a, y2a - y1a
        canvas[y1a:y2a, x1a:x2a] = image[y1b:y2b, x1b:x2b]
        all_classes.append(classes)
        all_boxes.append(boxes + np.array([x1a - x1b, y1a - y1b] * 2, dtype=np.float32))
    classes = np.concatenate(all_classes)
    boxes = np.concatenate(all_boxes).clip(0, 2 * size)
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return canvas, classes[keep], boxes[keep]


def box_candidates(
    before: np.ndarray, after: np.ndarray, min_side: float = 2.0, max_aspect: float = 100.0, min_area_ratio: float = 0.1
) -> np.ndarray:
    """Boxes worth keeping after a warp: sides > ``min_side`` px, aspect < ``max_aspect``, and at least
    ``min_area_ratio`` of the area the box would have had unclipped (``before`` already scaled).

    Returns:
        Boolean mask ``(n,)``.
    """
    w1, h1 = before[:, 2] - before[:, 0], before[:, 3] - before[:, 1]
    w2, h2 = after[:, 2] - after[:, 0], after[:, 3] - after[:, 1]
    aspect = np.maximum(w2 / (h2 + 1e-16), h2 / (w2 + 1e-16))
    return (w2 > min_side) & (h2 > min_side) & (w2 * h2 / (w1 * h1 + 1e-16) > min_area_ratio) & (aspect < max_aspect)


def scale_translate(
    image: np.ndarray, scale: float, shift_x: float, shift_y: float, output_size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """``x' = scale * x + shift`` into ``output_size = (width, height)``, by resizing only the part of
    the image that lands in the output (several times cheaper than ``cv2.warpAffine``).

    The crop is cut at whole source pixels and placed at whole output pixels, so the realised
    transform differs from the requested one by under a pixel; it is returned, and boxes must use it.

    Returns:
        The output image (padded with 114) and the realised ``3 x 3`` matrix (scale and shift per axis).
    """
    out_w, out_h = output_size
    output = np.full((out_h, out_w, 3), PAD_VALUE, dtype=np.uint8)
    realised = np.array([[scale, 0.0, shift_x], [0.0, scale, shift_y], [0.0, 0.0, 1.0]])
    windows = []
    for axis, (size, out_size, shift) in enumerate(
        ((image.shape[1], out_w, shift_x), (image.shape[0], out_h, shift_y))
    ):
        start, stop = max(0, math.floor(-shift / scale)), min(size, math.ceil((out_size - shift) / scale))
        first, last = round(scale * start + shift), round(scale * stop + shift)
        if stop <= start or last <= first:
            return output, realised  # nothing of the image lands in the output
        factor = (last - first) / (stop - start)
        realised[axis, axis], realised[axis, 2] = factor, first - start * factor
        windows.append((start, stop, first, last))
    (x0, x1, dx0, dx1), (y0, y1, dy0, dy1) = windows
    patch = cv2.resize(image[y0:y1, x0:x1], (dx1 - dx0, dy1 - dy0), interpolation=cv2.INTER_LINEAR)
    ox0, oy0, ox1, oy1 = max(dx0, 0), max(dy0, 0), min(dx1, out_w), min(dy1, out_h)
    output[oy0:oy1, ox0:ox1] = patch[oy0 - dy0 : oy1 - dy0, ox0 - dx0 : ox1 - dx0]
    return output, realised


def random_affine(
    image: np.ndarray,
    classes: np.ndarray,
    boxes: np.ndarray,
    output_size: tuple[int, int],
    config: AugmentConfig,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random perspective/rotation/scale/shear/translation about the image centre into ``output_size``.

    The matrix is ``T @ S @ R @ P @ C`` (centre, perspective, rotate+scale, shear, translate) as in the
    reference. Without rotation, shear and perspective (the default) the warp is done by
    ``scale_translate``. Box corners are warped, their enclosing box clipped to the output, and
    remnants failing ``box_candidates`` are dropped.

    Args:
        image: Input image (e.g. a ``2*size`` mosaic canvas).
        classes: ``(n,)`` class ids.
        boxes: ``(n, 4)`` pixel ``xyxy`` boxes.
        output_size: ``(width, height)`` of the result.
        config: Ranges of the random parameters.
        rng: Source of every random draw.

    Returns:
        Warped image, kept classes and boxes.
    """
    out_w, out_h = output_size
    center = np.eye(3)
    center[0, 2], center[1, 2] = -image.shape[1] / 2, -image.shape[0] / 2
    perspective = np.eye(3)
    perspective[2, 0], perspective[2, 1] = rng.uniform(-config.perspective, config.perspective, 2)
    rotation = np.eye(3)
    angle = rng.uniform(-config.degrees, config.degrees)
    scale = rng.uniform(1 - config.scale, 1 + config.scale)
    rotation[:2] = cv2.getRotationMatrix2D(angle=angle, center=(0, 0), scale=scale)
    shear = np.eye(3)
    shear[0, 1], shear[1, 0] = np.tan(np.deg2rad(rng.uniform(-config.shear, config.shear, 2)))
    translation = np.eye(3)
    translation[0, 2] = rng.uniform(0.5 - config.translate, 0.5 + config.translate) * out_w
    translation[1, 2] = rng.uniform(0.5 - config.translate, 0.5 + config.translate) * out_h
    matrix = translation @ shear @ rotation @ perspective @ center

    if config.perspective:
        image = cv2.warpPerspective(image, matrix, dsize=(out_w, out_h), borderValue=(PAD_VALUE,) * 3)
    elif not config.degrees and not config.shear:  # scale + translation only (the default recipe)
        image, matrix = scale_translate(image, matrix[0, 0], matrix[0, 2], matrix[1, 2], (out_w, out_h))
    elif image.shape[:2] != (out_h, out_w) or not np.allclose(matrix, np.eye(3)):
        image = cv2.warpAffine(image, matrix[:2], dsize=(out_w, out_h), borderValue=(PAD_VALUE,) * 3)
    if len(boxes) == 0:
        return image, classes, boxes

    n = len(boxes)
    corners = np.ones((n * 4, 3))
    corners[:, :2] = boxes[:, [0, 1, 2, 3, 0, 3, 2, 1]].reshape(n * 4, 2)  # (x1,y1) (x2,y2) (x1,y2) (x2,y1)
    corners = corners @ matrix.T
    xy = (corners[:, :2] / corners[:, 2:3] if config.perspective else corners[:, :2]).reshape(n, 8)
    xs, ys = xy[:, 0::2], xy[:, 1::2]
    warped = np.stack([xs.min(1), ys.min(1), xs.max(1), ys.max(1)], axis=1)
    warped[:, [0, 2]] = warped[:, [0, 2]].clip(0, out_w)
    warped[:, [1, 3]] = warped[:, [1, 3]].clip(0, out_h)
    keep = box_candidates(boxes * scale, warped)
    return image, classes[keep], warped[keep].astype(np.float32)


def hsv_jitter(image: np.ndarray, gains: tuple[float, float, float], rng: np.random.Generator) -> np.ndarray:
    """Random hue shift and saturation/value scaling through lookup tables (BGR in, new BGR out)."""
    if not any(gains):
        return image
    draw = rng.uniform(-1, 1, 3) * np.asarray(gains)
    x = np.arange(256, dtype=np.float64)
    lut_hue = ((x + draw[0] * 180) % 180).astype(np.uint8)
    lut_sat = np.clip(x * (1 + draw[1]), 0, 255).astype(np.uint8)
    lut_val = np.clip(x * (1 + draw[2]), 0, 255).astype(np.uint8)
    lut_sat[0] = 0  # keep pure greys grey
    hue, sat, val = cv2.split(cv2.cvtColor(image, cv2.COLOR_BGR2HSV))
    merged = cv2.merge((cv2.LUT(hue, lut_hue), cv2.LUT(sat, lut_sat), cv2.LUT(val, lut_val)))
    return cv2.cvtColor(merged, cv2.COLOR_HSV2BGR)  # a new array: the input may be a cached image


def flip_horizontal(image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror left-right; boxes follow."""
    width = image.shape[1]
    boxes = boxes.copy()
    boxes[:, [0, 2]] = width - boxes[:, [2, 0]]
    return cv2.flip(image, 1), boxes


def flip_vertical(image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror top-bottom; boxes follow."""
    height = image.shape[0]
    boxes = boxes.copy()
    boxes[:, [1, 3]] = height - boxes[:, [3, 1]]
    return cv2.flip(image, 0), boxes


class PixelExtras:
    """The reference's light albumentations extras (pixel-level only, so boxes are unaffected).

    Which extras fire is drawn from the sample's generator; each firing transform is seeded from it
    too, so the result depends only on the sample's seed.

    Args:
        p: Probability of each of Blur, MedianBlur, ToGray and CLAHE; 0 disables them.
    """

    def __init__(self, p: float = 0.01) -> None:
        self.p = p
        self.transforms = [A.Blur(p=1.0), A.MedianBlur(p=1.0), A.ToGray(p=1.0), A.CLAHE(p=1.0)] if p > 0 else []

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Apply each extra with probability ``p`` (uint8 BGR in, uint8 BGR out)."""
        if not self.transforms:
            return image
        fire = rng.random(len(self.transforms)) < self.p
        seeds = rng.integers(2**32, size=len(self.transforms))
        for transform, fires, seed in zip(self.transforms, fire, seeds):
            if fires:
                transform.set_random_seed(int(seed))
                image = transform(image=image)["image"]
        return image
