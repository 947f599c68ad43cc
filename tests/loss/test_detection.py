"""Tests for yolo11_lightning/loss/detection.py: reference parity (values and gradients) and hand-made cases."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from yolo11_lightning import DetectionLoss

STRIDES = torch.tensor([8.0, 16.0, 32.0])


def fake_model(nc: int, strides: torch.Tensor = STRIDES) -> SimpleNamespace:
    return SimpleNamespace(nc=nc, reg_max=16, stride=strides)


def random_maps(batch: int, imgsz: int, nc: int, gen: torch.Generator, cls_shift: float = 0.0) -> list[torch.Tensor]:
    return [
        torch.cat(
            (
                torch.randn(batch, 64, imgsz // s, imgsz // s, generator=gen) * 2,
                torch.randn(batch, nc, imgsz // s, imgsz // s, generator=gen) * 2 + cls_shift,
            ),
            1,
        )
        for s in (8, 16, 32)
    ]


def random_targets(counts: list[int], nc: int, gen: torch.Generator, outside: int = 0) -> torch.Tensor:
    """(N, 6) targets; the first ``outside`` boxes of each image reach past the left/top border."""
    rows = []
    for image, count in enumerate(counts):
        wh = torch.rand(count, 2, generator=gen) * 0.3 + 0.01
        xy = torch.rand(count, 2, generator=gen) * (1 - wh) + wh / 2
        xy[:outside] = wh[:outside] / 4  # centre inside, a quarter of the box outside the image
        cls = torch.randint(0, nc, (count, 1), generator=gen).float()
        rows.append(torch.cat((torch.full((count, 1), float(image)), cls, xy, wh), 1))
    return torch.cat(rows)


def reference_loss(nc: int):
    from ultralytics.nn.tasks import DetectionModel
    from ultralytics.utils import IterableSimpleNamespace
    from ultralytics.utils.loss import v8DetectionLoss

    model = DetectionModel("yolo11n.yaml", nc=nc, verbose=False)
    model.args = IterableSimpleNamespace(box=7.5, cls=0.5, dfl=1.5)
    return v8DetectionLoss(model), model.stride


def assert_parity(nc: int, maps: list[torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
    reference, strides = reference_loss(nc)
    ref_maps = [m.clone().requires_grad_() for m in maps]
    our_maps = [m.clone().requires_grad_() for m in maps]
    ref_total, ref_items = reference(
        ref_maps, {"batch_idx": targets[:, 0], "cls": targets[:, 1:2], "bboxes": targets[:, 2:]}
    )
    ref_total.sum().backward()
    total, components = DetectionLoss(fake_model(nc, strides))(our_maps, targets)
    items = components.as_tensor()
    total.backward()
    assert components._fields == ("box", "cls", "dfl")
    assert items.dtype == torch.float32 and not items.requires_grad
    assert (ref_items > 0).all()
    torch.testing.assert_close(items, ref_items, rtol=1e-4, atol=0)
    torch.testing.assert_close(total, ref_total.sum(), rtol=1e-4, atol=0)
    for ours, theirs in zip(our_maps, ref_maps):
        scale = theirs.grad.abs().max()
        torch.testing.assert_close(ours.grad, theirs.grad, rtol=1e-4, atol=1e-4 * scale)
    return items


@pytest.mark.reference
def test_parity_real_shaped_with_empty_and_crowded_images() -> None:
    """640x640, nc=80: an image without boxes and one with 205 boxes, 5 of them crossing the border."""
    gen = torch.Generator().manual_seed(0)
    maps = random_maps(2, 640, 80, gen, cls_shift=-4.0)
    targets = random_targets([0, 205], 80, gen, outside=5)
    assert_parity(80, maps, targets)


@pytest.mark.reference
def test_parity_random_small() -> None:
    gen = torch.Generator().manual_seed(1)
    maps = random_maps(2, 256, 3, gen)
    targets = random_targets([7, 17], 3, gen)
    assert_parity(3, maps, targets[torch.randperm(targets.shape[0], generator=gen)])  # rows in any order


def perfect_case() -> tuple[DetectionLoss, list[torch.Tensor], torch.Tensor]:
    """One stride-8 level on a 128x128 input, two boxes with edges on cell centres, and a map that
    predicts them exactly (one-hot DFL bins at the integer distances) at every anchor inside them."""
    loss = DetectionLoss(fake_model(2, torch.tensor([8.0])))
    cells = 16
    boxes_cells = torch.tensor([[2.5, 3.5, 9.5, 8.5], [10.5, 9.5, 15.5, 15.5]])  # xyxy in cells
    labels = [0, 1]
    grid = torch.arange(cells) + 0.5
    anchor_y, anchor_x = torch.meshgrid(grid, grid, indexing="ij")
    logits = torch.zeros(1, 64 + 2, cells, cells)
    logits[:, 64:] = -8.0
    for box, label in zip(boxes_cells, labels):
        inside = (anchor_x > box[0]) & (anchor_x < box[2]) & (anchor_y > box[1]) & (anchor_y < box[3])
        distances = torch.stack((anchor_x - box[0], anchor_y - box[1], box[2] - anchor_x, box[3] - anchor_y))
        for side in range(4):
            bins = distances[side].round().long().clamp(0, 15)
            one_hot = torch.nn.functional.one_hot(bins, 16).permute(2, 0, 1).float() * 30.0
            logits[0, side * 16 : (side + 1) * 16][:, inside] = one_hot[:, inside]
        logits[0, 64 + label][inside] = 8.0
    xywh = torch.cat(((boxes_cells[:, :2] + boxes_cells[:, 2:]) / 2, boxes_cells[:, 2:] - boxes_cells[:, :2]), 1)
    targets = torch.cat((torch.zeros(2, 1), torch.tensor(labels).float()[:, None], xywh / cells), 1)
    return loss, [logits], targets


def test_perfect_prediction_gives_near_zero_box_and_dfl_loss() -> None:
    loss, maps, targets = perfect_case()
    total, (box, cls, dfl) = loss(maps, targets)
    assert torch.isfinite(total)
    assert box.item() < 1e-5 and dfl.item() < 1e-5
    assert cls.item() > 0
    # The same map with one box moved by a cell is clearly penalised.
    shifted = targets.clone()
    shifted[0, 2] += 1 / 16
    _, (box_shifted, _, dfl_shifted) = loss(maps, shifted)
    assert box_shifted.item() > 0.1 and dfl_shifted.item() > 0.1


def test_boxes_partly_outside_the_image() -> None:
    gen = torch.Generator().manual_seed(2)
    maps = [m.requires_grad_() for m in random_maps(2, 128, 4, gen)]
    # Boxes whose normalised corners go below 0 and above 1 (centre inside, or on the border).
    targets = torch.tensor([[0, 1, 0.0, 0.5, 0.4, 0.3], [0, 2, 0.95, 0.95, 0.5, 0.5], [1, 3, 0.5, 1.1, 0.4, 0.6]])
    total, items = DetectionLoss(fake_model(4))(maps, targets)
    total.backward()
    assert torch.isfinite(total) and (items.as_tensor() > 0).all()
    assert all(torch.isfinite(m.grad).all() for m in maps)


def test_zero_area_targets_are_dropped_without_nan() -> None:
    gen = torch.Generator().manual_seed(3)
    maps = random_maps(2, 128, 4, gen)
    good = random_targets([3, 2], 4, gen)
    degenerate = torch.tensor([[0, 1, 0.5, 0.5, 0.0, 0.2], [1, 2, 0.3, 0.3, 0.1, 0.0], [1, 0, 0.0, 0.0, 0.0, 0.0]])
    loss = DetectionLoss(fake_model(4))
    expected_total, expected_items = loss(maps, good)
    with pytest.warns(UserWarning, match="dropped 3 target"):
        total, items = loss(maps, torch.cat((degenerate[:1], good, degenerate[1:])))
    assert loss.dropped_targets == 3
    assert torch.isfinite(total)
    torch.testing.assert_close(items.as_tensor(), expected_items.as_tensor())
    torch.testing.assert_close(total, expected_total)


def test_no_targets_gives_finite_loss_and_gradients() -> None:
    gen = torch.Generator().manual_seed(4)
    maps = [m.requires_grad_() for m in random_maps(2, 64, 3, gen)]
    total, items = DetectionLoss(fake_model(3))(maps, torch.zeros(0, 6))
    total.backward()
    assert torch.isfinite(total) and items.box == 0 and items.dfl == 0 and items.cls > 0
    assert all(torch.isfinite(m.grad).all() for m in maps)
    assert maps[0].grad[:, 64:].abs().sum() > 0 and maps[0].grad[:, :64].abs().sum() == 0


def _check_autocast_bf16_matches_float32(loss: DetectionLoss) -> None:
    gen = torch.Generator().manual_seed(5)
    maps = [m.to(torch.bfloat16).requires_grad_() for m in random_maps(2, 64, 3, gen)]
    targets = random_targets([2, 3], 3, gen)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        total, items = loss(maps, targets)
    total.backward()
    assert total.dtype == torch.float32 and items.as_tensor().dtype == torch.float32
    assert torch.isfinite(total) and all(torch.isfinite(m.grad).all() for m in maps)
    expected_total, expected_items = loss([m.detach().float() for m in maps], targets)
    torch.testing.assert_close(items.as_tensor(), expected_items.as_tensor())
    torch.testing.assert_close(total, expected_total)


def test_autocast_bf16_computes_in_float32() -> None:
    _check_autocast_bf16_matches_float32(DetectionLoss(fake_model(3)))


def test_a_total_reduced_in_bf16_is_caught() -> None:
    """A loss whose total (not its components) passes through bfloat16 fails the check above."""

    class TotalInBF16(DetectionLoss):
        def __call__(self, preds: list[torch.Tensor], targets: torch.Tensor) -> tuple[torch.Tensor, object]:
            total, items = super().__call__(preds, targets)
            if torch.is_autocast_enabled("cpu"):
                total = total.to(torch.bfloat16).float()
            return total, items

    with pytest.raises(AssertionError, match="not close"):
        _check_autocast_bf16_matches_float32(TotalInBF16(fake_model(3)))


def test_bad_inputs_raise_clear_errors() -> None:
    maps = random_maps(2, 64, 3, torch.Generator().manual_seed(6))
    loss = DetectionLoss(fake_model(3))
    with pytest.raises(ValueError, match="classes must be integers"):
        loss(maps, torch.tensor([[0, 3, 0.5, 0.5, 0.2, 0.2]]))
    with pytest.raises(ValueError, match="image indices"):
        loss(maps, torch.tensor([[2, 0, 0.5, 0.5, 0.2, 0.2]]))
    with pytest.raises(ValueError, match=r"\(N, 6\)"):
        loss(maps, torch.zeros(3, 5))
    with pytest.raises(ValueError, match="NaN"):
        loss(maps, torch.tensor([[0, 0, float("nan"), 0.5, 0.2, 0.2]]))
    with pytest.raises(ValueError, match="4 \\* reg_max \\+ nc"):
        loss([m[:, :-1] for m in maps], torch.zeros(0, 6))
    with pytest.raises(ValueError, match="prediction maps"):
        loss(maps[:2], torch.zeros(0, 6))
