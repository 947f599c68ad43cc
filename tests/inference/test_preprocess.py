"""Tests for yolo11_lightning/inference/preprocess.py: letterbox geometry and the input tensor."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from data_builders import colour_box, draw_boxes, iou

from yolo11_lightning.inference.preprocess import letterbox, letterbox_with_mapping, stack_images

BOXES = [(10, 12, 60, 50), (70, 30, 130, 110), (140, 5, 190, 40), (20, 80, 55, 115)]


def _scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    image, _ = draw_boxes(200, 120, BOXES)
    return image, np.arange(len(BOXES)), np.array(BOXES, np.float32)


@pytest.mark.parametrize("shape", [(160, 160), (96, 224), (300, 200)])
def test_letterbox_maps_boxes_exactly(shape: tuple[int, int]) -> None:
    image, classes, boxes = _scene()
    out, (gain_x, gain_y), (pad_x, pad_y) = letterbox(image, shape)
    assert out.shape == (*shape, 3)
    assert abs(gain_x - gain_y) < 0.02  # aspect kept up to rounding
    moved = boxes * np.array([gain_x, gain_y, gain_x, gain_y]) + np.array([pad_x, pad_y, pad_x, pad_y])
    for k, box in zip(classes, moved):
        assert iou(colour_box(out, int(k))[0], box) > 0.95
    # padding is grey 114 and centred (differs by at most one pixel between the two sides)
    assert (out[: int(pad_y)] == 114).all() and (out[:, : int(pad_x)] == 114).all()
    assert (
        abs((shape[1] - round(200 * gain_x)) - 2 * pad_x) <= 1
        and abs((shape[0] - round(120 * gain_y)) - 2 * pad_y) <= 1
    )


def test_letterbox_without_scaleup_keeps_small_images() -> None:
    image, _, _ = _scene()
    out, gains, pads = letterbox(image, (320, 320), scaleup=False)
    assert gains == (1.0, 1.0) and pads == (60, 100) and out.shape == (320, 320, 3)


@pytest.mark.parametrize(
    ("height", "width", "expected"), [(120, 200, (384, 640)), (480, 640, (480, 640)), (1000, 50, (640, 32))]
)
def test_letterbox_with_stride_pads_minimally(height: int, width: int, expected: tuple[int, int]) -> None:
    """The reference's single-image predict shape: long side imgsz, short side padded to the next stride multiple."""
    image = np.zeros((height, width, 3), np.uint8)
    out, _, _ = letterbox(image, (640, 640), stride=32)
    assert out.shape[:2] == expected


def test_mapping_from_original_through_a_resized_copy() -> None:
    """An image already resized on load still maps original pixels exactly onto the input."""
    image, classes, boxes = _scene()
    half = image[::2, ::2].copy()  # 60 x 100, as if loaded at a smaller size
    out, (gain_x, gain_y, pad_x, pad_y) = letterbox_with_mapping(half, (120, 200), (64, 128))
    moved = boxes * np.array([gain_x, gain_y, gain_x, gain_y]) + np.array([pad_x, pad_y, pad_x, pad_y])
    assert out.shape == (64, 128, 3) and abs(gain_x - 0.5) < 0.02
    for k, box in zip(classes, moved):
        assert iou(colour_box(out, int(k))[0], box) > 0.8


def test_stack_images_is_rgb_chw() -> None:
    image = np.zeros((4, 6, 3), np.uint8)
    image[..., 0] = 7  # blue in BGR
    batch = stack_images([image, image])
    assert batch.shape == (2, 3, 4, 6) and batch.dtype == torch.uint8
    assert (batch[:, 2] == 7).all() and (batch[:, :2] == 0).all()
