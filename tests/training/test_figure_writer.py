"""FigureWriter: a failing figure is one warning (the run goes on); TensorBoard-like loggers get the figures."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from yolo11_lightning.plotting.style import new_figure
from yolo11_lightning.training.figures import FigureWriter


class _Experiment:
    def __init__(self) -> None:
        self.figures: list[tuple[str, int]] = []

    def add_figure(self, tag: str, figure, global_step: int) -> None:  # noqa: ANN001 - a matplotlib Figure
        self.figures.append((tag, global_step))


def _trainer(tmp_path: Path, loggers: list) -> SimpleNamespace:
    return SimpleNamespace(log_dir=str(tmp_path), default_root_dir=str(tmp_path), loggers=loggers, global_step=7)


def test_a_failing_figure_is_a_warning(tmp_path: Path) -> None:
    writer = FigureWriter()

    def broken():
        raise ValueError("bad data")

    with pytest.warns(UserWarning, match=r"figure x\.png could not be written: ValueError: bad data"):
        writer._save(_trainer(tmp_path, []), "x.png", broken)
    assert list(tmp_path.iterdir()) == [] and writer.written == []


def test_figures_go_to_tensorboard_like_loggers(tmp_path: Path) -> None:
    experiment = _Experiment()
    csv_like = SimpleNamespace(experiment=SimpleNamespace())  # no add_figure: skipped
    writer = FigureWriter()
    writer._save(_trainer(tmp_path, [csv_like, SimpleNamespace(experiment=experiment)]), "val_PR_curve.png", new_figure)
    assert (tmp_path / "val_PR_curve.png").is_file()
    assert experiment.figures == [("val_PR_curve", 7)]
