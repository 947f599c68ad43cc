"""DetectionModel: numerical parity with the reference, outputs, shapes, fusion."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable

import pytest
import torch
from model_cache import cached_model

from yolo11_lightning.nn.builder import build_model, bundled_configs


def _reference_model(config: str) -> torch.nn.Module:
    ultralytics_tasks = pytest.importorskip("ultralytics.nn.tasks")
    return ultralytics_tasks.DetectionModel(config, verbose=False)


def _perturb_batchnorm(model: torch.nn.Module) -> None:
    """Non-trivial BN statistics/affine so that parity is not trivially near-identity."""
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.rand(n, generator=generator) - 0.5)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            with torch.no_grad():
                module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.copy_(torch.rand(n, generator=generator) * 0.4 - 0.2)


@pytest.mark.reference
@pytest.mark.parametrize("scale", ["n", "s", "m", "l", "x"])
def test_eval_outputs_match_the_reference(scale: str) -> None:
    """Load the reference's weights (same keys, strict) and compare decoded and raw outputs."""
    reference = _reference_model(f"yolo11{scale}.yaml")
    ours = cached_model(f"yolo11{scale}.yaml")
    # The head's bias initialisation matches, compared before any weight is copied across.
    _assert_head_biases_match(ours, reference)
    _perturb_batchnorm(reference)
    ours.load_state_dict(reference.state_dict(), strict=True)
    reference.eval()
    ours.eval()
    images = torch.rand(1, 3, 64, 96)  # small and non-square to keep the five scales quick
    with torch.no_grad():
        ref_decoded, ref_maps = reference(images)
        our_decoded, our_maps = ours(images)
    ours.train()
    assert our_decoded.shape == ref_decoded.shape == (1, 84, 8 * 12 + 4 * 6 + 2 * 3)
    assert (our_decoded - ref_decoded).abs().max().item() < 1e-4
    for ref_map, our_map in zip(ref_maps, our_maps, strict=True):
        assert (our_map - ref_map).abs().max().item() < 1e-4
    assert torch.equal(ours.stride, reference.stride)


def _head_biases(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The biases of the head's last box (``cv2``) and class (``cv3``) convolutions, by state-dict key."""
    return {
        key: value
        for key, value in model.state_dict().items()
        if re.fullmatch(r"model\.\d+\.cv[23]\.\d+\.2\.bias", key)
    }


def _assert_head_biases_match(ours: torch.nn.Module, reference: torch.nn.Module) -> None:
    """Same keys, three levels each for box and class, equal values (box 1.0, class log(5 / nc / cells))."""
    our_biases, reference_biases = _head_biases(ours), _head_biases(reference)
    assert len(our_biases) == 6 and our_biases.keys() == reference_biases.keys()
    for key, value in our_biases.items():
        torch.testing.assert_close(value, reference_biases[key], rtol=0, atol=1e-6, msg=key)


@pytest.mark.reference
def test_head_bias_comparison_fails_on_a_wrong_initialisation() -> None:
    """The comparison above catches a head whose class biases are initialised differently."""
    reference = _reference_model("yolo11n.yaml")
    ours = cached_model("yolo11n.yaml")
    with torch.no_grad():
        ours.head.cv3[1][-1].bias.add_(0.5)  # e.g. a wrong stride or image size in the prior
    with pytest.raises(AssertionError, match="cv3.1.2.bias"):
        _assert_head_biases_match(ours, reference)


def _check_independent_copies(factory: Callable[[str], torch.nn.Module]) -> None:
    first = factory("yolo11n.yaml")
    first.eval()
    with torch.no_grad():
        first.head.cv2[0][-1].bias.add_(1.0)
    second = factory("yolo11n.yaml")
    assert second.training and second is not first
    assert torch.all(second.head.cv2[0][-1].bias == 1.0)


def test_cached_model_hands_out_independent_copies() -> None:
    _check_independent_copies(cached_model)


def test_a_shared_cached_model_would_leak_state() -> None:
    """The copy check fails when the cache hands out its one shared instance (as it once did)."""
    import functools

    from yolo11_lightning.nn.builder import build_model

    shared = functools.lru_cache(maxsize=None)(build_model)
    with pytest.raises(AssertionError):
        _check_independent_copies(shared)


def test_train_mode_returns_raw_maps_per_stride() -> None:
    model = cached_model("yolo11n.yaml", 3)
    maps = model(torch.rand(2, 3, 64, 96))
    assert [tuple(m.shape) for m in maps] == [(2, 67, 8, 12), (2, 67, 4, 6), (2, 67, 2, 3)]


def test_head_bias_initialisation_from_stride_and_nc() -> None:
    model = cached_model("yolo11n.yaml", 25)
    for level, stride in enumerate([8, 16, 32]):
        assert torch.all(model.head.cv2[level][-1].bias == 1.0)
        expected = torch.tensor(5 / 25 / (640 / stride) ** 2).log()
        torch.testing.assert_close(model.head.cv3[level][-1].bias, expected.expand(25))


@pytest.mark.parametrize("config", bundled_configs())
@pytest.mark.parametrize("size", [(320, 320), (224, 448), (448, 224)])
def test_forward_backward_every_bundled_config(config: str, size: tuple[int, int]) -> None:
    """Square and non-square inputs, train (backward) and eval; everything finite."""
    scaled = config.replace("yolo11", "yolo11n", 1)
    model = cached_model(scaled, 3)
    height, width = size
    # Two images: training normalises over the batch, and some blocks (timm's selective kernel) apply
    # BatchNorm to pooled (B, C, 1, 1) maps, which needs more than one image in train mode.
    images = torch.rand(2, 3, height, width)
    model.train()
    model.zero_grad(set_to_none=True)
    maps = model(images)
    assert [m.shape[-2:] for m in maps] == [(height // s, width // s) for s in (8, 16, 32)]
    sum(m.float().square().mean() for m in maps).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    model.zero_grad(set_to_none=True)
    model.eval()
    with torch.no_grad():
        decoded, _ = model(images)
    model.train()
    anchors = sum((height // s) * (width // s) for s in (8, 16, 32))
    assert decoded.shape == (2, 4 + 3, anchors)
    assert torch.isfinite(decoded).all()
    # Boxes are in input pixels: centres inside the image's span of anchor cells.
    assert decoded[:, 0].min() > -width and decoded[:, 0].max() < 2 * width


def test_fuse_keeps_outputs() -> None:
    model = build_model("yolo11n.yaml")
    _perturb_batchnorm(model)
    model.eval()
    images = torch.rand(1, 3, 96, 128)
    with torch.no_grad():
        decoded, maps = model(images)
        fused = copy.deepcopy(model).fuse()
        fused_decoded, fused_maps = fused(images)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    for raw, fused_raw in zip(maps, fused_maps, strict=True):
        assert (raw - fused_raw).abs().max().item() < 1e-4
    assert (decoded[:, 4:] - fused_decoded[:, 4:]).abs().max().item() < 1e-4  # class scores
    # Box coordinates are pixels (up to ~128 here): float32 resolution there is ~1e-5.
    torch.testing.assert_close(fused_decoded[:, :4], decoded[:, :4], rtol=1e-5, atol=1e-4)
    fused.fuse()  # idempotent
    with torch.no_grad():
        again, _ = fused(images)
    assert torch.equal(again, fused_decoded)


def test_channels_last_eval_matches() -> None:
    model = cached_model("yolo11n.yaml").eval()
    images = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        reference, _ = model(images)
        model_cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
        decoded, _ = model_cl(images.contiguous(memory_format=torch.channels_last))
    model.train()
    torch.testing.assert_close(decoded, reference, rtol=1e-5, atol=1e-4)


def test_anchor_grid_is_cached_per_input_shape() -> None:
    model = cached_model("yolo11n.yaml").eval()
    with torch.no_grad():
        model(torch.rand(1, 3, 64, 64))
        first = model.head._anchors
        model(torch.rand(1, 3, 64, 64))
        assert model.head._anchors is first  # reused
        model(torch.rand(1, 3, 64, 96))
        assert model.head._anchors is not first and model.head._anchors.shape == (2, 8 * 12 + 4 * 6 + 2 * 3)
    model.train()
