"""PR curves (COCOeval's precision at IoU 0.5) and P/R/F1-confidence curves."""

from __future__ import annotations

from typing import Literal

import numpy as np
from matplotlib.figure import Figure

from yolo11_lightning.plotting.style import class_name, new_figure
from yolo11_lightning.training.curves import RECALL_POINTS, EvaluationCurves

_MAX_CLASS_LINES = 10  # more classes: thin grey lines without legend entries (10 distinct colours)


def plot_pr_curve(curves: EvaluationCurves, names: dict[int, str], title: str = "Precision-recall curve") -> Figure:
    """Precision against recall per class and over all classes, AP50 in the legend.

    The curves are COCOeval's interpolated precision at 101 recall points, IoU 0.5; a class's AP50
    (legend) is the mean of its points, and the thick "all classes" curve is the mean over classes,
    whose mean is the logged mAP50.

    Args:
        curves: the evaluation's curves.
        names: class id -> name.
        title: figure title.
    """
    figure = new_figure()
    axes = figure.add_subplot()
    many = len(curves.pr_class_ids) > _MAX_CLASS_LINES
    for class_id, precision, ap in zip(curves.pr_class_ids, curves.pr_precision, curves.pr_ap50):
        if many:
            axes.plot(RECALL_POINTS, precision, linewidth=0.8, color="grey", alpha=0.5)
        else:
            axes.plot(RECALL_POINTS, precision, linewidth=1.5, label=f"{class_name(names, class_id)}  AP50 {ap:.3f}")
    if len(curves.pr_precision):
        mean = curves.pr_precision.mean(0)
        axes.plot(RECALL_POINTS, mean, linewidth=3, color="black", label=f"all classes  mAP50 {mean.mean():.3f}")
    _finish(axes, "Recall", "Precision", title + " (IoU 0.5)")
    return figure


def plot_confidence_curve(
    curves: EvaluationCurves,
    names: dict[int, str],
    kind: Literal["F1", "Precision", "Recall"],
    title: str | None = None,
) -> Figure:
    """F1, precision or recall against the confidence threshold, per class and averaged.

    The mean curve is box-smoothed over 10% of the grid (as P and R are chosen); its maximum is
    marked in the legend.

    Args:
        curves: the evaluation's curves.
        names: class id -> name.
        kind: which curve.
        title: figure title (default: "<kind>-confidence curve").
    """
    from yolo11_lightning.training.curves import _smooth

    values = {"F1": curves.f1, "Precision": curves.precision, "Recall": curves.recall}[kind]
    figure = new_figure()
    axes = figure.add_subplot()
    many = len(curves.class_ids) > _MAX_CLASS_LINES
    for class_id, row in zip(curves.class_ids, values):
        if many:
            axes.plot(curves.confidence, row, linewidth=0.8, color="grey", alpha=0.5)
        else:
            axes.plot(curves.confidence, row, linewidth=1.5, label=class_name(names, class_id))
    if len(values):
        mean = _smooth(values.mean(0), 0.05)
        best = int(mean.argmax()) if kind != "Precision" else curves.best_index
        axes.plot(
            curves.confidence, mean, linewidth=3, color="black",
            label=f"all classes  {mean[best]:.2f} at confidence {curves.confidence[best]:.3f}",
        )  # fmt: skip
    _finish(axes, "Confidence threshold", kind, title or f"{kind}-confidence curve (IoU 0.5)")
    return figure


def _finish(axes, xlabel: str, ylabel: str, title: str) -> None:  # noqa: ANN001 - matplotlib Axes
    axes.set_xlim(0, 1)
    axes.set_ylim(-0.01, 1.02)  # a curve at 0 stays visible above the axis
    axes.set_xlabel(xlabel, fontsize=12)
    axes.set_ylabel(ylabel, fontsize=12)
    axes.set_title(title, fontsize=14)
    axes.grid(alpha=0.3)
    if not axes.get_legend_handles_labels()[0]:  # nothing evaluated: say so instead of an empty plot
        axes.plot([], [], " ", label="no ground truth evaluated")
    axes.legend(loc="lower left" if ylabel == "Precision" and xlabel == "Recall" else "best", fontsize=10)


def pr_curve_area(figure: Figure) -> float:
    """The "all classes" curve's COCO area (mean of its 101 points) read back from the figure's artists."""
    for line in figure.axes[0].get_lines():
        if str(line.get_label()).startswith("all classes"):
            return float(np.mean(line.get_ydata()))
    raise ValueError("the figure has no 'all classes' curve")
