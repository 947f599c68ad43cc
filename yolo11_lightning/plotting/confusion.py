"""The confusion matrix figure (counts or normalised per true class), with background row and column."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from yolo11_lightning.plotting.style import class_name, new_figure

_ANNOTATE_UP_TO = 30  # classes; beyond, the cells are too small for numbers


def plot_confusion_matrix(
    matrix: np.ndarray,
    names: dict[int, str],
    normalize: bool = False,
    title: str = "Confusion matrix (conf 0.25, IoU 0.45)",
) -> Figure:
    """Heat map of ``matrix`` (rows predicted, columns true; last row/column "background").

    Args:
        matrix: ``(nc + 1, nc + 1)`` counts from :func:`~yolo11_lightning.training.matching.confusion_matrix`.
        names: class id -> name.
        normalize: divide each column by its total (the share of each true class's boxes).
        title: figure title ("normalised" is appended when ``normalize``).
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    size = matrix.shape[0]
    labels = [class_name(names, k) for k in range(size - 1)] + ["background"]
    values = matrix / np.maximum(matrix.sum(0, keepdims=True), 1e-9) if normalize else matrix
    side = min(max(10.0, 0.5 * size + 4), 30.0)
    figure = new_figure(side, side * 0.8)
    axes = figure.add_subplot()
    image = axes.imshow(values, cmap="Blues", vmin=0, vmax=1 if normalize else max(values.max(), 1))
    colour_bar = figure.colorbar(image, ax=axes, shrink=0.8)
    colour_bar.set_label("share of the true class" if normalize else "boxes")
    axes.set_xticks(range(size), labels, rotation=90 if size > 10 else 45, ha="right" if size <= 10 else "center")
    axes.set_yticks(range(size), labels)
    axes.set_xlabel("True class", fontsize=12)
    axes.set_ylabel("Predicted class", fontsize=12)
    axes.set_title(title + (", normalised per true class" if normalize else ", counts"), fontsize=14)
    if size <= _ANNOTATE_UP_TO:
        threshold = 0.5 * (1 if normalize else max(values.max(), 1))
        for row in range(size):
            for column in range(size):
                value = values[row, column]
                if value == 0:
                    continue
                text = f"{value:.2f}" if normalize else f"{int(value)}"
                colour = "white" if value > threshold else "black"
                axes.text(column, row, text, ha="center", va="center", color=colour, fontsize=10)
    return figure
