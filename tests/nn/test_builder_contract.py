"""The open builder contract: keyword arguments in rows, layers with several outputs and Index
rows, clear errors for impossible stacks, block files imported by path, no import cycle."""

from __future__ import annotations

import ast
import copy
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import yaml

from yolo11_lightning.nn import registry
from yolo11_lightning.nn.builder import build_model
from yolo11_lightning.nn.registry import register_block

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIGS = REPO_ROOT / "yolo11_lightning/nn/cfg/models"


def _config(name: str = "yolo11-focalmodulation.yaml") -> dict:
    cfg = yaml.safe_load((CONFIGS / name).read_text())
    cfg["scale"] = "n"
    return cfg


def _built_with_seed(cfg: dict) -> nn.Module:
    torch.manual_seed(7)
    return build_model(cfg, nc=3)


@pytest.mark.parametrize(
    "args",
    [
        {"focal_window": 9, "focal_level": 3},  # keywords only
        [9, {"focal_level": 3}],  # positional then a trailing map
        [9, 3, {}],  # an empty trailing map
    ],
)
def test_keyword_rows_build_the_positional_module(args: object) -> None:
    positional, keyword = _config(), _config()
    positional["backbone"][9] = [-1, 1, "FocalModulation", [9, 3]]
    keyword["backbone"][9] = [-1, 1, "FocalModulation", args]
    expected, got = _built_with_seed(positional), _built_with_seed(keyword)
    assert got.model[9].kernel_sizes == expected.model[9].kernel_sizes == [9, 11, 13]
    want, have = expected.state_dict(), got.state_dict()
    assert list(want) == list(have)
    assert all(torch.equal(want[k], have[k]) for k in want)
    summary = got.summary(64)
    assert "FocalModulation" in summary


def test_keywords_are_recorded_and_reach_the_constructor() -> None:
    cfg = _config()
    cfg["backbone"][9] = [-1, 1, "FocalModulation", {"normalize_modulator": True}]
    model = build_model(cfg, nc=3)
    assert model.model[9].normalize_modulator is True and model.model[9].kernel_sizes == [3, 5]
    assert model.layer_infos[9].kwargs == {"normalize_modulator": True}
    assert model.layer_infos[9].args == [256]
    assert "{'normalize_modulator': True}" in model.summary(64)


def test_unknown_keyword_names_the_signature() -> None:
    cfg = _config()
    cfg["backbone"][9] = [-1, 1, "FocalModulation", {"focal_windw": 9}]
    with pytest.raises(ValueError, match=r"row 9 \(FocalModulation.*\(in_channels, focal_window=3, .*focal_windw"):
        build_model(cfg, nc=3)


def test_scaled_stack_with_changing_channels_is_refused_at_build() -> None:
    cfg = _config("yolo11.yaml")
    cfg["backbone"][0] = [-1, 2, "Conv", [64, 3, 2]]  # depth 0.5 of 2 is 1 copy: not a stack
    build_model(cfg, nc=3)
    cfg["backbone"][0] = [-1, 4, "Conv", [64, 3, 2]]  # 2 copies from 3 to 16 channels
    with pytest.raises(ValueError, match="row 0 .*2 stacked copies of 'Conv' from 3 to 16 channels cannot run"):
        build_model(cfg, nc=3)


class ToyPyramid(nn.Module):
    """Three outputs at strides 8, 16, 32 with 8, 16 and 24 channels (a stand-in backbone)."""

    def __init__(self, in_channels: int, base: int = 8) -> None:
        super().__init__()
        self.out_channels = [base, 2 * base, 3 * base]
        self.stem = nn.Conv2d(in_channels, base, 8, stride=8)
        self.down1 = nn.Conv2d(base, 2 * base, 2, stride=2)
        self.down2 = nn.Conv2d(2 * base, 3 * base, 2, stride=2)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        p3 = self.stem(x)
        p4 = self.down1(p3)
        return [p3, p4, self.down2(p4)]


@pytest.fixture(autouse=True)
def _toy_pyramid_registered() -> Iterator[None]:
    """ToyPyramid is registered only while a test of this file runs: registered at import, it would
    join the registry-wide test of tests/nn/test_registry.py (which feeds inputs too small for it)."""
    register_block("ToyPyramid", channels="features")(ToyPyramid)
    yield
    registry._REGISTRY.pop("ToyPyramid", None)


def _pyramid_config() -> dict:
    return {
        "nc": 3,
        "backbone": [
            [-1, 1, "ToyPyramid", {"base": 8}],  # 0
            [0, 1, "Index", [0]],  # 1 P3
            [0, 1, "Index", [1]],  # 2 P4
            [0, 1, "Index", [-1]],  # 3 P5
        ],
        "head": [
            [-1, 1, "Conv", [32, 1]],  # 4
            [[1, 2, 4], 1, "Detect", ["nc"]],  # 5
        ],
    }


def test_layers_with_several_outputs_and_index_rows() -> None:
    model = build_model(_pyramid_config())
    assert model.layer_infos[0].out_channels == (8, 16, 24)
    assert [info.out_channels for info in model.layer_infos[1:5]] == [8, 16, 24, 32]
    assert model.stride.tolist() == [8.0, 16.0, 32.0]
    assert [conv.conv.in_channels for conv in (model.head.cv2[i][0] for i in range(3))] == [8, 16, 32]
    maps = model(torch.rand(2, 3, 64, 96))
    assert [tuple(m.shape[-2:]) for m in maps] == [(8, 12), (4, 6), (2, 3)]
    assert "ToyPyramid" in model.summary(64)


def test_several_outputs_need_an_index_row() -> None:
    cfg = _pyramid_config()
    cfg["head"][0] = [0, 1, "Conv", [32, 1]]
    with pytest.raises(ValueError, match="row 4 .*input 0 of block 'Conv' has 3 outputs; select one with an Index row"):
        build_model(cfg)
    cfg = _pyramid_config()
    cfg["backbone"][2] = [0, 1, "Index", [3]]
    with pytest.raises(ValueError, match="row 2 .*index 3 out of range for an input with 3 outputs"):
        build_model(cfg)
    cfg = _pyramid_config()
    cfg["backbone"][3] = [1, 1, "Index", [0]]
    with pytest.raises(ValueError, match="row 3 .*selects one output of a layer with several outputs"):
        build_model(cfg)


def test_row_arguments_of_another_type_are_refused() -> None:
    cfg = _config()
    cfg["backbone"][9] = [-1, 1, "FocalModulation", "focal_window=9"]
    with pytest.raises(ValueError, match="row 9 .*args must be a list, a map or a list ending in a map"):
        build_model(cfg, nc=3)


def test_block_file_imported_by_path_next_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "gate_blocks.py").write_text(
        "import torch.nn as nn\n"
        "from yolo11_lightning.nn import register_block\n\n"
        "@register_block('PathGate', channels='same')\n"
        "class PathGate(nn.Module):\n"
        "    def __init__(self, c: int, scale: float = 1.0):\n"
        "        super().__init__()\n"
        "        self.scale = scale\n\n"
        "    def forward(self, x):\n"
        "        return x * self.scale\n"
    )
    cfg = _config("yolo11-mlla.yaml")
    del cfg["scale"]
    cfg["imports"] = ["gate_blocks.py"]
    for index in (17, 21, 25):
        cfg["head"][index - 11][2:] = ["PathGate", {"scale": 0.5}]
    path = tmp_path / "gated.yaml"
    path.write_text(yaml.safe_dump(cfg))
    model = build_model(str(path), nc=3)
    assert type(model.model[17]).__name__ == "PathGate" and model.model[21].scale == 0.5
    missing = copy.deepcopy(cfg)
    missing["imports"] = ["no_such_blocks.py"]
    path.write_text(yaml.safe_dump(missing))
    with pytest.raises(ImportError, match="block file 'no_such_blocks.py' named in the model config not found"):
        build_model(str(path), nc=3)


def test_registry_imports_none_of_its_clients() -> None:
    tree = ast.parse((REPO_ROOT / "yolo11_lightning/nn/registry.py").read_text())
    imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in imported if m and m.startswith("yolo11_lightning")]
    source = (REPO_ROOT / "yolo11_lightning/nn/registry.py").read_text()
    assert 'import_module("yolo11_lightning' not in source
    # Importing the registry alone (as a block file does) still knows the built-in blocks.
    code = "from yolo11_lightning.nn.registry import get_block; print(get_block('C3k2').cls.__module__)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, check=True)
    assert result.stdout.strip() == "yolo11_lightning.nn.blocks.csp"
