"""load_weights: reference checkpoints (with and without the reference installed), Lightning
checkpoints, state dicts, safetensors, class-count remap and error messages."""

from __future__ import annotations

import copy
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from model_cache import cached_model

from yolo11_lightning.nn.builder import build_model
from yolo11_lightning.nn.weights import load_weights, read_state_dict

REPO_ROOT = Path(__file__).resolve().parents[2]


def _randomised(model: torch.nn.Module, seed: int = 3) -> torch.nn.Module:
    """Random weights and BN statistics everywhere, so a skipped tensor cannot go unnoticed."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point() and not name.endswith("dfl.conv.weight"):
                tensor.copy_(
                    torch.rand(tensor.shape, generator=generator) * 0.2 + (0.9 if "running_var" in name else -0.1)
                )
    return model


def _eval_outputs(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        decoded, _ = model(images)
    model.train()
    return decoded


@pytest.fixture(scope="module")
def reference_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.Tensor, torch.Tensor]:
    """A checkpoint saved the way the reference's trainer saves one, and the reference's outputs."""
    tasks = pytest.importorskip("ultralytics.nn.tasks")
    reference = _randomised(tasks.DetectionModel("yolo11n.yaml", verbose=False))
    images = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    # The reference stores a half-precision copy of the EMA model object; compare against the
    # reference running those same half-rounded weights in float32.
    half = copy.deepcopy(reference).half()
    expected = _eval_outputs(copy.deepcopy(half).float(), images)
    checkpoint = {
        "epoch": -1,
        "best_fitness": None,
        "model": None,
        "ema": half,
        "updates": 1,
        "optimizer": None,
        "train_args": {"imgsz": 640},
        "date": "2026-01-01T00:00:00",
        "version": "8.3.253",
    }
    path = tmp_path_factory.mktemp("reference") / "yolo11n_ref.pt"
    torch.save(checkpoint, path)
    return path, expected, images


@pytest.mark.reference
def test_reference_checkpoint_gives_the_reference_outputs(reference_checkpoint) -> None:
    path, expected, images = reference_checkpoint
    model = load_weights(build_model("yolo11n.yaml"), path)
    assert model.head.cv2[0][-1].bias.dtype == torch.float32
    assert (_eval_outputs(model, images) - expected).abs().max().item() < 1e-4


@pytest.mark.reference
def test_reference_checkpoint_loads_without_the_reference_installed(reference_checkpoint, tmp_path: Path) -> None:
    """A fresh interpreter where importing ultralytics fails loads the same file, same outputs."""
    path, expected, images = reference_checkpoint
    torch.save(images, tmp_path / "images.pt")
    script = f"""
import importlib.abc, json, sys
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "ultralytics":
            raise ImportError("ultralytics is hidden in this test")
sys.meta_path.insert(0, Blocker())
import torch
from yolo11_lightning import build_model, load_weights
model = load_weights(build_model("yolo11n.yaml"), {str(path)!r}).eval()
with torch.no_grad():
    decoded, _ = model(torch.load({str(tmp_path / "images.pt")!r}))
torch.save(decoded, {str(tmp_path / "decoded.pt")!r})
print(json.dumps({{"ultralytics_imported": any(m.split(".")[0] == "ultralytics" for m in sys.modules)}}))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"ultralytics_imported": False}
    decoded = torch.load(tmp_path / "decoded.pt")
    assert (decoded - expected).abs().max().item() < 1e-4


@pytest.mark.reference
def test_reference_checkpoint_into_another_class_count(reference_checkpoint, caplog: pytest.LogCaptureFixture) -> None:
    path, _, _ = reference_checkpoint
    source = read_state_dict(path)
    model = build_model("yolo11n.yaml", nc=3)
    with caplog.at_level(logging.INFO, logger="yolo11_lightning.nn.weights"):
        load_weights(model, path)
    assert "trained for 80 classes, model has 3: re-initialised" in caplog.text
    assert "model.23.cv3.0.2" in caplog.text
    state = model.state_dict()
    # Everything outside the class branch is the file's; the class outputs are fresh with the prior bias.
    for key, value in source.items():
        if ".23.cv3." not in key:
            assert torch.equal(state[key], value.float()), key
    assert state["model.23.cv3.0.0.0.conv.weight"].equal(source["model.23.cv3.0.0.0.conv.weight"].float())
    assert state["model.23.cv3.0.2.weight"].shape == (3, 64, 1, 1)
    prior = torch.tensor(5 / 3 / (640 / 8) ** 2).log()
    torch.testing.assert_close(state["model.23.cv3.0.2.bias"], prior.expand(3))


def test_state_dict_safetensors_and_lightning_checkpoint(tmp_path: Path) -> None:
    source = _randomised(build_model("yolo11n.yaml", nc=4))
    images = torch.rand(1, 3, 64, 64)
    expected = _eval_outputs(source, images)
    ema = _randomised(copy.deepcopy(source), seed=7)
    expected_ema = _eval_outputs(ema, images)

    torch.save(source.state_dict(), tmp_path / "weights.pth")
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, tmp_path / "weights.safetensors")
    raw_state = {f"model.{k}": v for k, v in source.state_dict().items()}
    raw_state["loss_fn.proj"] = torch.arange(16.0)  # other module state in a Lightning checkpoint is ignored
    lightning = {"state_dict": raw_state, "epoch": 3, "hyper_parameters": {"model": "yolo11n.yaml"}}
    torch.save(lightning, tmp_path / "raw.ckpt")
    torch.save({**lightning, "ema_state_dict": ema.state_dict(), "ema_updates": 10}, tmp_path / "ema.ckpt")

    target = build_model("yolo11n.yaml", nc=4)
    files = [
        ("weights.pth", expected),
        ("weights.safetensors", expected),
        ("raw.ckpt", expected),
        ("ema.ckpt", expected_ema),
    ]
    for name, want in files:
        _randomised(target, seed=11)  # forget the previous file's weights
        load_weights(target, tmp_path / name)
        assert (_eval_outputs(target, images) - want).abs().max().item() < 1e-5, name


def test_mismatched_models_name_the_keys(tmp_path: Path) -> None:
    small = cached_model("yolo11n.yaml")
    torch.save(small.state_dict(), tmp_path / "n.pt")
    with pytest.raises(
        ValueError, match=r"n\.pt: weights do not match the model; .*shape mismatches .*model\.0\.conv\.weight"
    ):
        load_weights(build_model("yolo11s.yaml"), tmp_path / "n.pt")
    state = dict(small.state_dict())
    state.pop("model.9.cv1.conv.weight")
    state["model.99.extra"] = torch.zeros(1)
    torch.save(state, tmp_path / "edited.pt")
    with pytest.raises(ValueError) as error:
        load_weights(build_model("yolo11n.yaml"), tmp_path / "edited.pt")
    message = str(error.value)
    assert "edited.pt" in message
    assert "missing keys (1): model.9.cv1.conv.weight" in message
    assert "unexpected keys (1): model.99.extra" in message


def test_unreadable_files_are_named(tmp_path: Path) -> None:
    model = cached_model("yolo11n.yaml")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match=r"junk\.pt: not a readable PyTorch checkpoint"):
        load_weights(model, tmp_path / "junk.pt")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(ValueError, match=r"junk\.safetensors: not a readable safetensors file"):
        load_weights(model, tmp_path / "junk.safetensors")
    torch.save({"optimizer": {"lr": 0.1}}, tmp_path / "no_model.pt")
    with pytest.raises(ValueError, match=r"no_model\.pt: no model weights found"):
        load_weights(model, tmp_path / "no_model.pt")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_weights(model, tmp_path / "missing.pt")


def test_unknown_pickled_classes_are_never_imported_or_called(tmp_path: Path) -> None:
    """A pickle that would run ``os.system`` only produces an inert stand-in, not a call."""

    class Exploit:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    torch.save({"model": Exploit()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="no model weights found"):
        load_weights(cached_model("yolo11n.yaml"), tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists()
