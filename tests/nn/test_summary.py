"""Model summary: layer table, totals, GFLOPs against the reference's published figures."""

from __future__ import annotations

import re

import pytest
import torch
from model_cache import cached_model

from yolo11_lightning.nn.summary import model_summary, summary_totals

# GFLOPs at 640x640 as the reference reports them (its model config comments, thop-based).
REFERENCE_GFLOPS = {"n": 6.6, "s": 21.7, "m": 68.5, "l": 87.6, "x": 196.0}


@pytest.mark.parametrize("scale", list(REFERENCE_GFLOPS))
def test_gflops_within_3_percent_of_the_reference(scale: str) -> None:
    totals = summary_totals(cached_model(f"yolo11{scale}.yaml"), imgsz=640)
    assert abs(totals["gflops"] / REFERENCE_GFLOPS[scale] - 1) < 0.03, totals["gflops"]


def test_gflops_scale_with_the_image_area() -> None:
    model = cached_model("yolo11n.yaml")
    full = summary_totals(model, imgsz=640)["gflops"]
    half = summary_totals(model, imgsz=(320, 640))["gflops"]
    assert half == pytest.approx(full / 2, rel=0.02)  # attention is the only non-linear term


def test_layer_table_and_totals_line() -> None:
    _check_layer_table_and_totals(cached_model("yolo11n.yaml"))


def test_layer_count_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Counting every module instead of the leaves (319 when the docstring said so) fails the check."""
    import yolo11_lightning.nn.summary as summary

    real = summary.summary_totals

    def counting_containers(model: torch.nn.Module, imgsz: int = 640) -> dict[str, float]:
        return {**real(model, imgsz), "layers": sum(1 for _ in model.modules())}

    monkeypatch.setattr(summary, "summary_totals", counting_containers)
    with pytest.raises(AssertionError, match="257"):
        _check_layer_table_and_totals(cached_model("yolo11n.yaml"))


def _check_layer_table_and_totals(model: torch.nn.Module) -> None:
    text = model_summary(model)
    lines = text.splitlines()
    assert lines[0].split() == ["from", "n", "params", "module", "arguments"]
    rows = lines[1:-1]
    assert len(rows) == len(model.model) == 24
    assert rows[2].split()[:5] == ["2", "-1", "1", "6640", "yolo11_lightning.nn.blocks.csp.C3k2"]
    assert "[32, 64, 1, False, 0.25]" in rows[2]
    assert rows[23].split()[:4] == ["23", "[16,", "19,", "22]"]
    assert [int(row.split()[3]) for row in rows[:2]] == [464, 4672]  # Conv(3, 16, 3, 2), Conv(16, 32, 3, 2)
    totals = re.fullmatch(
        r"YOLO11n summary: ([\d,]+) layers, ([\d,]+) parameters, ([\d,]+) gradients, ([\d.]+) GFLOPs", lines[-1]
    )
    assert totals is not None, lines[-1]
    assert totals[1] == "257"  # leaf modules (the reference's own count of its modules differs)
    assert totals[2] == "2,624,080" and totals[3] == "2,624,064"  # the frozen DFL conv has 16 weights
    assert float(totals[4]) == pytest.approx(6.6, abs=0.2)
