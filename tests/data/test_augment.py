"""Boxes stay on their pixels through every geometric step (``yolo11_lightning/data/augment.py``)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from data_builders import COLOURS, best_component_iou, colour_box, draw_boxes

from yolo11_lightning.data.augment import (
    AugmentConfig,
    PixelExtras,
    box_candidates,
    flip_horizontal,
    flip_vertical,
    hsv_jitter,
    mosaic4,
    random_affine,
    scale_translate,
)

BOXES = [(10, 12, 60, 50), (70, 30, 130, 110), (140, 5, 190, 40), (20, 80, 55, 115)]


def _scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    image, _ = draw_boxes(200, 120, BOXES)
    return image, np.arange(len(BOXES)), np.array(BOXES, np.float32)


def _assert_boxes_on_pixels(image: np.ndarray, classes: np.ndarray, boxes: np.ndarray, threshold: float = 0.9) -> None:
    assert len(classes) == len(boxes)
    for k, box in zip(classes, boxes):
        assert best_component_iou(image, int(k), box) > threshold, (k, box)


def test_flips_are_exact() -> None:
    image, classes, boxes = _scene()
    for flip in (flip_horizontal, flip_vertical):
        out, moved = flip(image, boxes)
        for k, box in zip(classes, moved):
            np.testing.assert_array_equal(colour_box(out, int(k))[0], box)


@pytest.mark.parametrize("seed", range(6))
def test_mosaic_keeps_every_visible_box(seed: int) -> None:
    rng = np.random.default_rng(seed)
    tiles = []
    for t in range(4):  # tile t holds one box of colour t (and size/aspect varies per tile)
        w, h = (160, 100) if t % 2 else (90, 160)
        image, _ = draw_boxes(w, h, [])
        x1, y1 = int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))
        box = (x1, y1, x1 + w // 3, y1 + h // 3)
        image[box[1] : box[3], box[0] : box[2]] = COLOURS[t]
        tiles.append((image, np.array([t]), np.array([box], np.float32)))
    canvas, classes, boxes = mosaic4(tiles, 160, rng)
    assert canvas.shape == (320, 320, 3)
    _assert_boxes_on_pixels(canvas, classes, boxes, 0.99)
    for t in set(range(4)) - set(classes.tolist()):
        assert colour_box(canvas, t)[1] == 0  # only boxes with nothing left on the canvas are dropped


@pytest.mark.parametrize("seed", range(8))
def test_affine_scale_translate_keeps_boxes_on_pixels(seed: int) -> None:
    image, classes, boxes = _scene()
    out, kept_classes, kept_boxes = random_affine(
        image, classes, boxes, (160, 128), AugmentConfig(), np.random.default_rng(seed)
    )
    assert out.shape == (128, 160, 3)
    _assert_boxes_on_pixels(out, kept_classes, kept_boxes, 0.9)
    for k in set(classes.tolist()) - set(kept_classes.tolist()):  # dropped: at most a sliver is visible
        x1, y1, x2, y2 = BOXES[k]
        assert colour_box(out, k)[1] < 0.1 * (x2 - x1) * (y2 - y1) * 1.5**2 + 2 * (x2 - x1 + y2 - y1)


@pytest.mark.parametrize("seed", range(4))
def test_affine_rotation_shear_perspective_keep_enclosing_boxes(seed: int) -> None:
    image, classes, boxes = _scene()
    config = AugmentConfig(degrees=20, shear=5, perspective=0.0005, translate=0.0, scale=0.1)
    out, kept_classes, kept_boxes = random_affine(
        image, classes, boxes, (240, 160), config, np.random.default_rng(seed)
    )
    assert len(kept_classes) == len(BOXES)  # nothing leaves a canvas this large
    _assert_boxes_on_pixels(out, kept_classes, kept_boxes, 0.85)


def test_box_candidates_filter_remnants() -> None:
    before = np.array([[0, 0, 100, 100]] * 4, np.float32)
    after = np.array([[0, 0, 50, 50], [0, 0, 30, 30], [0, 0, 2, 50], [0, 0, 100, 0.9]], np.float32)
    # 25% area kept; 9% area (< 10%); 2 px wide (not > 2); collapsed
    np.testing.assert_array_equal(box_candidates(before, after), [True, False, False, False])


def test_photometric_steps_are_seeded_and_keep_shape() -> None:
    image, _, _ = _scene()
    first = hsv_jitter(image.copy(), (0.015, 0.7, 0.4), np.random.default_rng(3))
    again = hsv_jitter(image.copy(), (0.015, 0.7, 0.4), np.random.default_rng(3))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, image)
    extras = PixelExtras(p=1.0)  # every extra fires: blurred, grey, equalised
    out_a, out_b = extras(image.copy(), np.random.default_rng(1)), extras(image.copy(), np.random.default_rng(1))
    np.testing.assert_array_equal(out_a, out_b)
    assert out_a.shape == image.shape and out_a.dtype == np.uint8
    channel_spread = out_a.astype(int).max(-1) - out_a.astype(int).min(-1)
    assert channel_spread.max() <= 3  # ToGray ran (CLAHE after it leaves only rounding differences)
    assert PixelExtras(p=0.0)(image, np.random.default_rng(0)) is image


def test_scale_translate_matches_warp_affine() -> None:
    image = np.random.default_rng(0).integers(0, 255, (120, 200, 3), dtype=np.uint8)
    image = cv2.GaussianBlur(image, (9, 9), 3)  # smooth, so half-pixel conventions barely matter
    for scale, shift_x, shift_y in [(1.3, -40.5, 10.2), (0.6, 30.0, -5.7), (1.0, 0.0, 0.0)]:
        fast, realised = scale_translate(image, scale, shift_x, shift_y, (160, 128))
        np.testing.assert_allclose(realised[[0, 1], [0, 1]], scale, rtol=0.02)
        np.testing.assert_allclose(realised[:2, 2], [shift_x, shift_y], atol=1.0)
        slow = cv2.warpAffine(image, realised[:2], (160, 128), borderValue=(114, 114, 114))
        inner = (slice(4, -4), slice(4, -4))
        assert np.abs(fast[inner].astype(int) - slow[inner].astype(int)).mean() < 3
    empty, _ = scale_translate(image, 1.0, 500.0, 0.0, (64, 64))
    assert (empty == 114).all()
