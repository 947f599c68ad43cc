"""Pre-processing shared by training, validation, predict and the Python API.

Decode (EXIF-oriented 8-bit BGR; the one decoder lives in ``decode.py`` and is re-exported here),
resize, letterbox to the network's stride, and stack into the ``uint8 (B, 3, H, W)`` RGB input.
Every path that feeds the network goes through these functions, so an image is prepared the same
way whether it is validated, predicted from the command line or passed to
:class:`~yolo11_lightning.inference.detector.Detector`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
import torch

from yolo11_lightning.inference.decode import UnreadableImageError, read_image

__all__ = [
    "PAD_VALUE",
    "UnreadableImageError",
    "letterbox",
    "letterbox_with_mapping",
    "read_image",
    "resize_long_side",
    "stack_images",
    "to_float_input",
]

PAD_VALUE = 114
"""Grey value of the letterbox padding (and of the mosaic canvas)."""


def resize_long_side(image: np.ndarray, size: int) -> np.ndarray:
    """Resize so the longer side equals ``size`` (aspect kept; sides rounded up, as the reference)."""
    height, width = image.shape[:2]
    ratio = size / max(height, width)
    if ratio == 1:
        return image
    new_size = (min(math.ceil(width * ratio), size), min(math.ceil(height * ratio), size))
    return cv2.resize(image, new_size, interpolation=cv2.INTER_LINEAR)


def letterbox(
    image: np.ndarray, shape: tuple[int, int], scaleup: bool = True, stride: int | None = None
) -> tuple[np.ndarray, tuple[float, float], tuple[int, int]]:
    """Resize keeping the aspect ratio and pad (centred, value 114) to ``shape = (height, width)``.

    Args:
        image: ``(H, W, 3)`` image.
        shape: target ``(height, width)``.
        scaleup: allow enlarging (``False``: only shrink).
        stride: when given, pad only up to the next multiple of ``stride`` instead of the full
            ``shape`` (minimal padding, as the reference's single-image predict).

    Returns:
        The padded image, the gains ``(gain_x, gain_y)`` of the resize (per axis, exact after
        rounding) and the padding ``(pad_x, pad_y)`` on the left/top: new = old * gain + pad.
    """
    height, width = image.shape[:2]
    ratio = min(shape[0] / height, shape[1] / width)
    if not scaleup:
        ratio = min(ratio, 1.0)
    new_width, new_height = round(width * ratio), round(height * ratio)
    pad_w, pad_h = shape[1] - new_width, shape[0] - new_height
    if stride:
        pad_w, pad_h = pad_w % stride, pad_h % stride
    if (new_width, new_height) != (width, height):
        image = cv2.resize(image, (new_width, new_height), interpolation=cv2.INTER_LINEAR)
    pad_w, pad_h = pad_w / 2, pad_h / 2
    top, bottom = round(pad_h - 0.1), round(pad_h + 0.1)
    left, right = round(pad_w - 0.1), round(pad_w + 0.1)
    if top or bottom or left or right:
        image = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3)
    return image, (new_width / width, new_height / height), (left, top)


def letterbox_with_mapping(
    image: np.ndarray,
    original_shape: tuple[int, int],
    shape: tuple[int, int],
    scaleup: bool = False,
    stride: int | None = None,
) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """Letterbox a (possibly already resized) image and give the mapping from its original pixels.

    Args:
        image: the image, possibly already resized from its original size (evaluation images are
            resized to ``imgsz`` on their long side when loaded).
        original_shape: ``(height, width)`` of the image as decoded from the file.
        shape: target ``(height, width)``.
        scaleup: allow enlarging ``image``.
        stride: minimal padding to this stride (see :func:`letterbox`).

    Returns:
        The network-input image and ``ratio_pad = (gain_x, gain_y, pad_x, pad_y)``: input pixel =
        original pixel * gain + pad.
    """
    boxed, (gain_x, gain_y), (pad_x, pad_y) = letterbox(image, shape, scaleup=scaleup, stride=stride)
    # overall gain original -> input, per axis: (letterboxed side in pixels) / (original side)
    total_x = gain_x * image.shape[1] / original_shape[1]
    total_y = gain_y * image.shape[0] / original_shape[0]
    return boxed, (total_x, total_y, float(pad_x), float(pad_y))


def stack_images(images: Sequence[np.ndarray]) -> torch.Tensor:
    """``(H, W, 3)`` BGR uint8 images of one shape -> ``uint8 (B, 3, H, W)`` RGB tensor (one copy)."""
    height, width = images[0].shape[:2]
    batch = np.empty((len(images), 3, height, width), dtype=np.uint8)
    for i, image in enumerate(images):
        batch[i] = image.transpose(2, 0, 1)[::-1]  # HWC BGR -> CHW RGB
    return torch.from_numpy(batch)


def to_float_input(images: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
    """``uint8 (B, 3, H, W)`` -> float in [0, 1], optionally in channels-last memory format."""
    images = images.float() / 255.0
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images
