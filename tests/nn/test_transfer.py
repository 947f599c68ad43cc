"""Weight transfer across variants: yolo11n weights into the seed variants, exact counts, exact values,
and the policy for replaced blocks, other class counts and other scales."""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import pytest
import torch

from yolo11_lightning.nn.builder import build_model
from yolo11_lightning.nn.transfer import align_layers, transfer_weights
from yolo11_lightning.nn.weights import load_weights, read_state_dict

# yolo11n at nc=80 has 499 state-dict tensors (every Conv: conv.weight + 4 BatchNorm tensors +
# num_batches_tracked = 6). Hand-derived counts for each seed variant built at nc=80:
#   yolo11n-mlla: all 499 transferred (layers 17.. shift by up to 3); the three MLLAttention rows
#     (17, 21, 25) are new: 4 tensors each (qk weight and bias, lepe weight and bias) = 12.
#   yolo11n-c2psa-mlla: layer 10 keeps cv1, cv2 and m.0.ffn (2 Conv blocks) but not the softmax
#     attention (qkv, proj, pe: 3 x 6 = 18 tensors): 499 - 18 = 481 transferred, 4 new (MLLAttention).
#   yolo11n-focalmodulation: SPPF (cv1, cv2: 2 x 6 = 12 tensors) has no counterpart in
#     FocalModulation (f_linear w+b, 2 focal convs, h w+b, proj w+b = 8 new): 499 - 12 = 487.
EXPECTED = {
    "yolo11n-mlla.yaml": (499, 12, 0),
    "yolo11n-c2psa-mlla.yaml": (481, 4, 18),
    "yolo11n-focalmodulation.yaml": (487, 8, 12),
}


def _randomised(state: dict[str, torch.Tensor], seed: int = 5) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        k: (torch.rand(v.shape, generator=generator) * 0.2 + 0.9).to(v.dtype) if v.is_floating_point() else v + 7
        for k, v in state.items()
    }


@pytest.fixture(scope="module")
def our_yolo11n_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Our yolo11n's state dict with random values everywhere (so a skipped copy is visible)."""
    path = tmp_path_factory.mktemp("ours") / "yolo11n_state.pt"
    torch.save(_randomised(build_model("yolo11n.yaml").state_dict()), path)
    return path


@pytest.fixture(scope="module")
def reference_yolo11n_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint saved as the reference's trainer saves one (float16 EMA model object)."""
    tasks = pytest.importorskip("ultralytics.nn.tasks")
    reference = tasks.DetectionModel("yolo11n.yaml", verbose=False)
    reference.load_state_dict(_randomised(reference.state_dict()))
    path = tmp_path_factory.mktemp("reference") / "yolo11n.pt"
    torch.save({"epoch": -1, "model": None, "ema": copy.deepcopy(reference).half(), "updates": 1}, path)
    return path


def _check_variant(config: str, path: Path) -> None:
    source = read_state_dict(path)
    torch.manual_seed(0)
    model = build_model(config)
    torch.manual_seed(0)
    fresh = build_model(config).state_dict()
    report = transfer_weights(model, path)
    transferred, initialised, unused = EXPECTED[config]
    assert (len(report.transferred), len(report.initialised), len(report.unused)) == (transferred, initialised, unused)
    assert report.total == transferred + initialised
    assert report.headline().startswith(f"transferred {transferred}/{transferred + initialised} tensors, {initialised}")
    state = model.state_dict()
    for key in report.transferred:  # exactly the source's value (float16 -> float32 is exact)
        file_key = f"model.{report.layer_map[int(key.split('.')[1])]}.{key.split('.', 2)[2]}"
        assert torch.equal(state[key], source[file_key].to(state[key].dtype)), key
    for key in report.initialised:  # untouched
        assert torch.equal(state[key], fresh[key]), key


@pytest.mark.parametrize("config", sorted(EXPECTED))
def test_our_yolo11n_weights_into_each_seed_variant(config: str, our_yolo11n_file: Path) -> None:
    _check_variant(config, our_yolo11n_file)


@pytest.mark.reference
@pytest.mark.parametrize("config", sorted(EXPECTED))
def test_reference_yolo11n_checkpoint_into_each_seed_variant(config: str, reference_yolo11n_file: Path) -> None:
    _check_variant(config, reference_yolo11n_file)


def test_which_parts_carry_over(our_yolo11n_file: Path) -> None:
    mlla = transfer_weights(build_model("yolo11n-mlla.yaml"), our_yolo11n_file)
    assert {k.split(".")[1] for k in mlla.initialised} == {"17", "21", "25"}
    assert mlla.layer_map[26] == 23 and mlla.layer_map[18] == 17 and mlla.layer_map[16] == 16
    c2psa = transfer_weights(build_model("yolo11n-c2psa-mlla.yaml"), our_yolo11n_file)
    layer10 = sorted({k.split(".")[2] if k.split(".")[2] != "m" else ".".join(k.split(".")[2:5])
                      for k in c2psa.transferred if k.startswith("model.10.")})  # fmt: skip
    assert layer10 == ["cv1", "cv2", "m.0.ffn"]
    assert all(k.startswith("model.10.m.0.attn.") for k in c2psa.initialised)
    focal = transfer_weights(build_model("yolo11n-focalmodulation.yaml"), our_yolo11n_file)
    assert all(k.startswith("model.9.") for k in focal.initialised) and 9 not in focal.layer_map
    assert "not transferred: model.9 (FocalModulation), no counterpart in the file: 8 tensors" in focal.summary()


def test_other_class_count_reinitialises_the_class_branch_only(our_yolo11n_file: Path) -> None:
    model = build_model("yolo11n-mlla.yaml", nc=4)
    report = transfer_weights(model, our_yolo11n_file)
    # At nc=80 the class branch's hidden width c3 is max(64, min(80, 100)) = 80, at nc=4 it is 64. Per
    # level, cv3 is [DWConv(c, c), Conv(c, c3)], [DWConv(c3, c3), Conv(c3, c3)], Conv2d(c3, nc): only
    # the first DWConv keeps its shape; 3 Conv blocks x 6 tensors + the output conv's 2 = 20 per level.
    new_head = [k for k in report.initialised if k.startswith("model.26.")]
    assert len(new_head) == 3 * 20 and all(k.startswith("model.26.cv3.") for k in new_head)
    kept = {k.rsplit(".", 2)[0] for k in report.transferred if k.startswith("model.26.cv3.")}
    assert kept == {"model.26.cv3.0.0.0", "model.26.cv3.1.0.0", "model.26.cv3.2.0.0"}
    assert "model.26.cv3.0.2.weight: file (80, 80, 1, 1) vs model (4, 64, 1, 1)" in report.summary()
    assert len(report.initialised) == 12 + len(new_head)


def test_another_scale_transfers_little_and_warns(our_yolo11n_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        report = transfer_weights(build_model("yolo11s.yaml"), our_yolo11n_file)
    assert len(report.transferred) < report.total / 2
    assert "is it another scale or architecture" in caplog.text


def test_load_weights_stays_strict(our_yolo11n_file: Path) -> None:
    with pytest.raises(ValueError, match=r"missing keys \(223\).*unexpected keys \(211\)"):  # the numbers
        load_weights(build_model("yolo11n-mlla.yaml"), our_yolo11n_file)


def test_alignment_skips_inserted_and_replaced_layers() -> None:
    def layer(*shapes: tuple[int, ...]) -> dict[str, torch.Tensor]:
        return {f"t{i}": torch.zeros(s) for i, s in enumerate(shapes)}

    file_layers = {0: layer((4, 3, 3, 3)), 1: layer((8, 4, 1, 1)), 2: layer((8, 8, 3, 3))}
    # model: an inserted layer at 1 (no match), then the file's 1 and 2, then a new one.
    model_layers = {0: layer((4, 3, 3, 3)), 1: layer((5, 5)), 2: layer((8, 4, 1, 1)), 3: layer((8, 8, 3, 3)), 4: {}}
    assert align_layers(file_layers, model_layers) == {0: 0, 2: 1, 3: 2}


def test_normalisation_follows_the_weight_before_it() -> None:
    """A BatchNorm whose shapes match is not copied when the convolution it normalises was not."""
    from collections import OrderedDict

    class Net(torch.nn.Module):
        def __init__(self, c_in: int) -> None:
            super().__init__()
            layer = OrderedDict(
                a=torch.nn.Conv2d(4, 8, 1),
                a_bn=torch.nn.BatchNorm2d(8),
                b=torch.nn.Conv2d(c_in, 8, 3, bias=False),
                b_bn=torch.nn.BatchNorm2d(8),
            )
            self.model = torch.nn.Sequential(torch.nn.Sequential(layer))

    source = _randomised(Net(2).state_dict())
    report = transfer_weights(Net(3), source)
    assert sorted(report.transferred) == sorted(
        f"model.0.{m}.{t}" for m, ts in {"a": ("weight", "bias"), "a_bn": _BN}.items() for t in ts
    )
    assert "model.0.b.weight" in report.shape_mismatches
    assert all(k.startswith(("model.0.b.", "model.0.b_bn.")) for k in report.initialised)


_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
