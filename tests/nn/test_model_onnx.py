"""Whole-model ONNX export of every bundled config, checked against onnxruntime.

Exporter: the TorchScript-based one (``dynamo=False``, opset 17). torch 2.14 defaults to the
dynamo exporter, which also works for these models but took about 6x longer on this machine.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from yolo11_lightning.nn.builder import build_model, bundled_configs

onnxruntime = pytest.importorskip("onnxruntime")


@pytest.mark.parametrize("config", bundled_configs())
def test_onnx_export_matches_pytorch(config: str, tmp_path: Path) -> None:
    model = build_model(config.replace("yolo11", "yolo11n", 1), nc=3).eval()
    images = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        decoded, maps = model(images)
    path = tmp_path / "model.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape-derived Python values
        torch.onnx.export(
            model, (images,), str(path), dynamo=False, opset_version=17, input_names=["images"],
            output_names=["decoded", "p3", "p4", "p5"],
        )
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {"images": images.numpy()})
    expected = [decoded, *maps]
    assert len(outputs) == len(expected)
    for name, got, want in zip(["decoded", "p3", "p4", "p5"], outputs, expected, strict=True):
        assert got.shape == tuple(want.shape), name
        assert abs(torch.from_numpy(got) - want).max().item() < 1e-3, name
