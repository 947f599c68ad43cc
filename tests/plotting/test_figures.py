"""The figures' content, read back from matplotlib's artists before saving, and their files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

from yolo11_lightning.data.config import list_image_files, load_data_config
from yolo11_lightning.data.scan import scan_split
from yolo11_lightning.plotting import (
    label_statistics,
    plot_batch,
    plot_confidence_curve,
    plot_confusion_matrix,
    plot_label_statistics,
    plot_labels_vs_predictions,
    plot_pr_curve,
    plot_results,
    save_figure,
)
from yolo11_lightning.plotting.pr import pr_curve_area
from yolo11_lightning.training.metrics import DetectionMetrics, DetectionResults

DATA = Path(__file__).resolve().parents[2] / "data" / "shapes4" / "data.yaml"
NAMES = {0: "circle", 1: "square", 2: "triangle"}


def _results(seed: int = 0, images: int = 20) -> DetectionResults:
    """A hand-built evaluation: jittered ground truth (some with a wrong class) plus false positives."""
    generator = torch.Generator().manual_seed(seed)
    metrics = DetectionMetrics(NAMES)
    for index in range(images):
        m = int(torch.randint(1, 6, (1,), generator=generator))
        xy = torch.rand(m, 2, generator=generator) * 400
        gt = torch.cat([xy, xy + torch.rand(m, 2, generator=generator) * 120 + 10], 1)
        labels = torch.randint(0, 3, (m,), generator=generator)
        boxes = torch.cat(
            [gt + (torch.rand(m, 4, generator=generator) - 0.5) * 20, torch.rand(2, 4, generator=generator) * 50]
        )
        boxes[-2:, 2:] += boxes[-2:, :2] + 5
        classes = torch.cat([torch.where(torch.rand(m, generator=generator) < 0.8, labels, (labels + 1) % 3),
                             torch.randint(0, 3, (2,), generator=generator)])  # fmt: skip
        scores = torch.rand(len(boxes), generator=generator)
        order = scores.argsort(descending=True)
        preds = torch.cat([boxes, scores[:, None], classes[:, None].float()], 1)[order]
        metrics.update(torch.tensor([index]), [preds], [gt], [labels])
    return metrics.compute()


def _check_readable(figure: Figure, legend: bool = True) -> None:
    """At least 800x600 px, a title, labelled axes (for every axes with data) and a legend."""
    width, height = figure.get_size_inches() * figure.dpi
    assert width >= 800 and height >= 600
    titled = figure.get_suptitle() or any(axes.get_title() for axes in figure.axes)
    assert titled
    for axes in figure.axes:
        if axes.get_lines() or axes.images or axes.patches or axes.collections:
            if axes.get_label() == "<colorbar>":
                continue
            assert axes.get_xlabel() and axes.get_ylabel(), axes.get_title()
    if legend:
        assert figure.legends or any(axes.get_legend() for axes in figure.axes)


def test_pr_curve_area_is_the_logged_map50(tmp_path: Path) -> None:
    results = _results()
    figure = plot_pr_curve(results.curves, NAMES)
    _check_readable(figure)
    assert pr_curve_area(figure) == pytest.approx(results.map50, abs=1e-3)
    assert 0.1 < results.map50 < 0.95
    # Each class's legend entry carries its AP50, the per-class table's figure.
    texts = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    for row in results.per_class:
        assert f"{row.name}  AP50 {row.ap50:.3f}" in texts
    path = save_figure(figure, tmp_path / "pr.png")
    assert Image.open(path).size == (1000, 750)


@pytest.mark.parametrize("kind", ["F1", "Precision", "Recall"])
def test_confidence_curves(kind: str) -> None:
    results = _results(1)
    figure = plot_confidence_curve(results.curves, NAMES, kind)
    _check_readable(figure)
    lines = figure.axes[0].get_lines()
    assert len(lines) == len(results.curves.class_ids) + 1  # one per class with ground truth, and the mean
    # The per-class precision/recall curves pass through the table's P and R at the reported confidence.
    if kind != "F1":
        best = results.curves.best_index
        for line, row in zip(lines, results.per_class):
            assert line.get_ydata()[best] == pytest.approx(row.precision if kind == "Precision" else row.recall)


def test_confusion_matrix_figure_shows_the_counts() -> None:
    matrix = np.array([[3, 0, 1, 2], [1, 4, 0, 0], [0, 0, 5, 1], [2, 1, 0, 0]])
    figure = plot_confusion_matrix(matrix, NAMES)
    _check_readable(figure, legend=False)
    axes = figure.axes[0]
    shown = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in axes.texts}
    assert shown == {(r, c): str(matrix[r, c]) for r in range(4) for c in range(4) if matrix[r, c]}
    assert [t.get_text() for t in axes.get_xticklabels()] == ["circle", "square", "triangle", "background"]
    assert len(figure.axes) == 2  # the heat map and its colour bar
    normalised = plot_confusion_matrix(matrix, NAMES, normalize=True)
    texts = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in normalised.axes[0].texts}
    assert texts[(0, 0)] == f"{3 / 6:.2f}"  # column "circle" holds 6 true boxes


def test_label_statistics_equal_the_dataset() -> None:
    config = load_data_config(str(DATA))
    records, _ = scan_split(list_image_files(config.splits["train"]), 4, "train", "train", use_cache=False)
    stats = label_statistics([(r.classes, r.boxes) for r in records], 4)
    # Counted independently from the label files.
    counts, images = np.zeros(4, dtype=int), np.zeros(4, dtype=int)
    for label_file in sorted((DATA.parent / "labels" / "train").glob("*.txt")):
        classes = [int(line.split()[0]) for line in label_file.read_text().splitlines() if line.strip()]
        counts += np.bincount(classes, minlength=4)
        images += np.bincount(sorted(set(classes)), minlength=4)
    assert stats.instances.tolist() == counts.tolist() and stats.instances.sum() == 243
    assert stats.images.tolist() == images.tolist()
    figure = plot_label_statistics(stats, config.names)
    _check_readable(figure)
    bars = [patch.get_height() for patch in figure.axes[0].patches]
    assert bars == counts.tolist()


def test_batch_figures() -> None:
    images = torch.randint(0, 255, (3, 3, 96, 128), dtype=torch.uint8)
    targets = torch.tensor([[0, 1, 0.5, 0.5, 0.2, 0.3], [2, 0, 0.3, 0.3, 0.1, 0.1]])
    figure = plot_batch(images, targets, NAMES, ["a.jpg", "b.jpg", "c.jpg"])
    _check_readable(figure)
    assert [t.get_text() for t in figure.legends[0].get_texts()] == ["circle", "square"]
    assert figure.axes[0].get_title() == "a.jpg (1 boxes)"
    gt = [torch.tensor([[10.0, 10, 50, 50]]), torch.zeros(0, 4), torch.zeros(0, 4)]
    gt_classes = [torch.tensor([2]), torch.zeros(0).long(), torch.zeros(0).long()]
    predictions = [
        torch.tensor([[12.0, 10, 50, 52, 0.9, 2], [0, 0, 5, 5, 0.1, 1]]),
        torch.zeros(0, 6),
        torch.zeros(0, 6),
    ]
    figure = plot_labels_vs_predictions(images, gt, gt_classes, predictions, NAMES, ["a.jpg", "b.jpg", "c.jpg"])
    _check_readable(figure)
    assert figure.axes[1].get_title() == "a.jpg: 1 predictions (score >= 0.25)"  # the 0.1 one is not drawn


def test_results_figure() -> None:
    rows = [{"epoch": str(e), "train/box_loss": str(2 - e * 0.1), "val/mAP50-95": str(e * 0.05)} for e in range(6)]
    figure = plot_results(rows)
    _check_readable(figure)
    panels = [axes for axes in figure.axes if axes.get_lines()]
    assert [axes.get_title() for axes in panels] == ["Training box loss", "Validation mAP50-95"]
    assert panels[1].get_lines()[0].get_ydata().tolist() == [e * 0.05 for e in range(6)]
