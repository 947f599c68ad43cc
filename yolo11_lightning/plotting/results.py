"""Training curves from ``results.csv``: losses and metrics per epoch."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from yolo11_lightning.plotting.style import new_figure

# (column, panel title), in panel order; columns missing from every row are skipped.
PANELS = (
    ("train/box_loss", "Training box loss"),
    ("train/cls_loss", "Training class loss"),
    ("train/dfl_loss", "Training DFL loss"),
    ("val/precision", "Validation precision"),
    ("val/recall", "Validation recall"),
    ("val/box_loss", "Validation box loss"),
    ("val/cls_loss", "Validation class loss"),
    ("val/dfl_loss", "Validation DFL loss"),
    ("val/mAP50", "Validation mAP50"),
    ("val/mAP50-95", "Validation mAP50-95"),
)


def _column(rows: Sequence[dict[str, str]], key: str) -> tuple[np.ndarray, np.ndarray]:
    epochs, values = [], []
    for row in rows:
        value = row.get(key, "")
        if value not in ("", None):
            epochs.append(int(float(row["epoch"])))
            values.append(float(value))
    return np.asarray(epochs), np.asarray(values)


def plot_results(rows: Sequence[dict[str, str]], title: str = "Training results") -> Figure:
    """One panel per loss/metric: the value per epoch and, from 5 epochs, a smoothed trend.

    Args:
        rows: ``results.csv`` rows (column name -> text), one per epoch.
        title: figure title.
    """
    panels = [(key, heading) for key, heading in PANELS if len(_column(rows, key)[0])]
    columns = 5
    grid_rows = max(math.ceil(len(panels) / columns), 1)
    figure = new_figure(20, 4 * grid_rows + 1)
    grid = figure.subplots(grid_rows, columns, squeeze=False)
    for axes in grid.flat[len(panels) :]:
        axes.set_axis_off()
    for axes, (key, heading) in zip(grid.flat, panels):
        epochs, values = _column(rows, key)
        axes.plot(epochs, values, marker="o", markersize=3, linewidth=1.5, label="per epoch")
        if len(values) >= 5:
            width = max(len(values) // 5, 2)
            trend = np.convolve(np.pad(values, (width // 2, width - 1 - width // 2), mode="edge"),
                                np.ones(width) / width, mode="valid")  # fmt: skip
            axes.plot(epochs, trend, linestyle=":", linewidth=2, label="smoothed")
        axes.set_title(heading, fontsize=11)
        axes.set_xlabel("Epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_ylabel(key.split("/", 1)[1])
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    if not panels:
        grid.flat[0].set_title("no epochs logged yet")
    figure.suptitle(title, fontsize=14)
    return figure
