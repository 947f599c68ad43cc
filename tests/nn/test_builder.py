"""Config resolution, scaling and the registry-driven builder."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import yaml
from model_cache import cached_model

from yolo11_lightning.nn.builder import build_model, bundled_configs, load_model_config, make_divisible
from yolo11_lightning.nn.registry import registered_blocks

REPO_ROOT = Path(__file__).resolve().parents[2]

# The reference's parameter counts (its model summaries).
PARAMS_NC80 = {"n": 2_624_080, "s": 9_458_752, "m": 20_114_688, "l": 25_372_160, "x": 56_966_176}


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _base_config() -> dict:
    text = (REPO_ROOT / "yolo11_lightning/nn/cfg/models/yolo11.yaml").read_text()
    return yaml.safe_load(text)


@pytest.mark.parametrize("scale", list(PARAMS_NC80))
def test_parameter_counts_match_the_reference(scale: str) -> None:
    model = cached_model(f"yolo11{scale}.yaml")
    assert _params(model) == PARAMS_NC80[scale]
    assert model.nc == 80 and model.reg_max == 16
    assert model.stride.tolist() == [8.0, 16.0, 32.0]
    assert model.yaml["scale"] == scale


def test_nc_override_changes_the_head_only() -> None:
    model = cached_model("yolo11n.yaml", 25)
    assert _params(model) == 2_594_715  # the seed articles' own summary of yolo11n at nc=25
    assert model.nc == 25 and model.head.nc == 25
    assert model.names == {i: str(i) for i in range(25)}


def test_c3k_flag_follows_the_scale() -> None:
    """The reference switches every C3k2 to C3k inner blocks at scales m, l and x."""
    small, medium = cached_model("yolo11s.yaml"), cached_model("yolo11m.yaml")
    c3k2_rows = [info.index for info in small.layer_infos if info.name == "C3k2"]
    assert [small.layer_infos[i].args[3] for i in c3k2_rows] == [False, False, True, True, False, False, False, True]
    assert all(medium.layer_infos[i].args[3] is True for i in c3k2_rows)


def test_config_from_path_dict_and_scaled_file_name(tmp_path: Path) -> None:
    base = _base_config()
    # A user file named with a scale letter next to its unscaled config, like the reference allows.
    (tmp_path / "mynet.yaml").write_text(yaml.safe_dump(base, sort_keys=False))
    from_path = load_model_config(tmp_path / "mynet.yaml")
    assert from_path["scale"] == "n"  # no letter in the name: first scale, with a warning
    scaled_file = tmp_path / "yolo11s.yaml"
    (tmp_path / "yolo11.yaml").write_text(yaml.safe_dump(base, sort_keys=False))
    assert load_model_config(scaled_file)["scale"] == "s"
    as_dict = load_model_config({**base, "scale": "l"})
    assert as_dict["scale"] == "l"
    # The dict passed in is not modified.
    original = copy.deepcopy(base)
    build_model({**base, "scale": "n"}, nc=3)
    assert base == original


def test_bundled_names_resolve_with_a_scale_suffix() -> None:
    assert "yolo11.yaml" in bundled_configs()
    cfg = load_model_config("yolo11x.yaml")
    assert cfg["scale"] == "x" and cfg["scales"]["x"] == [1.0, 1.5, 512]


def test_missing_config_lists_bundled_ones() -> None:
    with pytest.raises(FileNotFoundError, match="Bundled configs: .*yolo11.yaml"):
        load_model_config("nonexistent_net.yaml")


def test_unknown_block_error_lists_known_blocks() -> None:
    cfg = _base_config()
    cfg["backbone"][9] = [-1, 1, "SPPFF", [1024, 5]]
    with pytest.raises(KeyError) as error:
        build_model(cfg)
    message = str(error.value)
    assert "unknown block 'SPPFF'" in message
    for known in ("C3k2", "SPPF", "C2PSA", "Detect", "Concat", "nn.Upsample"):
        assert known in message


def test_malformed_rows_name_the_row() -> None:
    cfg = _base_config()
    cfg["head"][1] = [[-1, 99], 1, "Concat", [1]]
    with pytest.raises(ValueError, match="row 12 .*invalid 'from'"):
        build_model(cfg)
    cfg = _base_config()
    cfg["head"].append([-1, 1, "Conv", [64]])
    with pytest.raises(ValueError, match="head block 'Detect' must be the last row"):
        build_model(cfg)


def test_user_block_registered_through_the_imports_key() -> None:
    """A block defined in a test module is used by name; nothing in the package knows it."""
    cfg = _base_config()
    cfg["imports"] = ["toy_blocks"]
    cfg["backbone"].insert(10, [-1, 1, "ToySqueezeGate", []])  # after SPPF, before C2PSA
    # Indices after the insertion shift by one.
    for row in cfg["head"]:
        if isinstance(row[0], list):
            row[0] = [j + 1 if j >= 10 else j for j in row[0]]
    model = build_model({**cfg, "scale": "n"})
    assert "ToySqueezeGate" in registered_blocks()
    assert type(model.model[10]).__name__ == "ToySqueezeGate"
    assert model.layer_infos[10].args == [256]  # "same" contract: input channels prepended
    assert _params(model) == PARAMS_NC80["n"] + 256 * 256 + 256
    model.eval()
    with torch.no_grad():
        decoded, maps = model(torch.rand(1, 3, 64, 96))
    assert decoded.shape == (1, 4 + 80, 8 * 12 + 4 * 6 + 2 * 3)


def test_missing_import_module_is_named() -> None:
    cfg = {**_base_config(), "imports": ["no_such_module_for_blocks"], "scale": "n"}
    with pytest.raises(ImportError, match="no_such_module_for_blocks"):
        build_model(cfg)


def test_make_divisible() -> None:
    assert make_divisible(64 * 0.25, 8) == 16
    assert make_divisible(1024 * 0.25, 8) == 256
    assert make_divisible(20, 8) == 24
    assert make_divisible(512 * 1.5, 8) == 768


def test_bundled_configs_resolve_from_an_installed_wheel(tmp_path: Path) -> None:
    """Build a wheel from a copy of the sources, install it elsewhere, build a scaled bundled name."""
    import shutil
    import subprocess
    import sys

    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, source / name)
    shutil.copytree(
        REPO_ROOT / "yolo11_lightning", source / "yolo11_lightning", ignore=shutil.ignore_patterns("__pycache__")
    )
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(source)], check=True
    )
    wheel = next((tmp_path / "dist").glob("yolo11_lightning-*.whl"))
    subprocess.run([*pip, "install", "--no-deps", "--target", str(tmp_path / "site"), str(wheel)], check=True)
    script = (
        "import yolo11_lightning, torch\n"
        "from yolo11_lightning import build_model\n"
        "from yolo11_lightning.nn.builder import bundled_configs\n"
        "model = build_model('yolo11s.yaml')\n"
        "count = sum(p.numel() for p in model.parameters())\n"
        "print(yolo11_lightning.__file__, model.yaml['scale'], count, bundled_configs())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path / "site"), "PATH": ""},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    location, scale, params, configs = result.stdout.split(" ", 3)
    assert location.startswith(str(tmp_path / "site")) and scale == "s"
    assert int(params) == PARAMS_NC80["s"]
    assert "yolo11.yaml" in configs
