"""``detect``: NMS on decoded outputs, then boxes mapped back to original pixels by the letterbox's gain and pad."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

import yolo11_lightning.inference.postprocess as postprocess
from yolo11_lightning.inference.postprocess import NMSSettings, detect

# Two images with different letterboxes; per-axis gains differ so that a swapped axis shows.
RATIO_PAD = torch.tensor([[0.5, 0.4, 16.0, 8.0], [0.25, 0.25, 0.0, 40.0]])
ORIG_SHAPES = torch.tensor([[400, 300], [640, 640]])  # (height, width)
# Boxes in original pixels, well inside the images, so that no clipping can hide a wrong mapping.
ORIGINAL_BOXES = [
    torch.tensor([[30.0, 50.0, 130.0, 250.0], [160.0, 20.0, 280.0, 90.0]]),
    torch.tensor([[100.0, 200.0, 300.0, 520.0]]),
]


def _decoded(nc: int = 3, anchors: int = 8) -> torch.Tensor:
    """``(2, 4 + nc, anchors)``: the boxes above mapped to input pixels (xywh), class 1 and 2, the rest empty."""
    decoded = torch.zeros(2, 4 + nc, anchors)
    for image, boxes in enumerate(ORIGINAL_BOXES):
        gain = RATIO_PAD[image, :2].repeat(2)
        pad = RATIO_PAD[image, 2:].repeat(2)
        xyxy = boxes * gain + pad
        xywh = torch.cat([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]], 1)
        decoded[image, :4, : len(boxes)] = xywh.T
        for k in range(len(boxes)):
            decoded[image, 4 + 1 + k, k] = 0.9 - 0.1 * k
    return decoded


def _check_detect_maps_to_original_pixels() -> None:
    results = detect(_decoded(), RATIO_PAD, ORIG_SHAPES, NMSSettings(conf=0.25))
    assert len(results) == 2
    for image, boxes in enumerate(ORIGINAL_BOXES):
        rows = results[image]
        assert rows.shape == (len(boxes), 6)
        torch.testing.assert_close(rows[:, :4], boxes, rtol=0, atol=1e-3)
        torch.testing.assert_close(rows[:, 4], torch.tensor([0.9, 0.8][: len(boxes)]))
        assert rows[:, 5].tolist() == [1.0, 2.0][: len(boxes)]


def test_detect_maps_boxes_to_original_pixels() -> None:
    _check_detect_maps_to_original_pixels()


def test_detect_respects_the_confidence_threshold() -> None:
    results = detect(_decoded(), RATIO_PAD, ORIG_SHAPES, NMSSettings(conf=0.85))
    assert [len(r) for r in results] == [1, 1]


@pytest.mark.parametrize(
    "broken",
    [
        pytest.param(lambda ratio_pad: ratio_pad * torch.tensor([1.0, 1.0, 0.0, 0.0]), id="pad ignored"),
        pytest.param(lambda ratio_pad: ratio_pad[[1, 0, 2, 3]], id="gain axes swapped"),
        pytest.param(lambda ratio_pad: ratio_pad[[0, 0, 2, 3]], id="one gain for both axes"),
    ],
)
def test_a_wrong_gain_or_pad_is_caught(
    monkeypatch: pytest.MonkeyPatch, broken: Callable[[torch.Tensor], torch.Tensor]
) -> None:
    """The mapping check above fails when the gain or the pad is applied wrongly."""
    real = postprocess.scale_boxes_to_original
    monkeypatch.setattr(
        postprocess, "scale_boxes_to_original", lambda boxes, ratio_pad, shape: real(boxes, broken(ratio_pad), shape)
    )
    with pytest.raises(AssertionError):
        _check_detect_maps_to_original_pixels()
