"""Statistics of a split's labels and their figure: instances per class, box centres and sizes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure

from yolo11_lightning.inference.render import class_colour
from yolo11_lightning.plotting.style import class_name, new_figure


@dataclass
class LabelStatistics:
    """The boxes of a split.

    Attributes:
        instances: ``int64 (nc,)`` boxes per class.
        images: ``int64 (nc,)`` images with at least one box of the class.
        centres: ``float (N, 2)`` normalised box centres ``(x, y)``.
        sizes: ``float (N, 2)`` normalised box ``(width, height)``.
        classes: ``int64 (N,)`` class of each box.
    """

    instances: np.ndarray
    images: np.ndarray
    centres: np.ndarray
    sizes: np.ndarray
    classes: np.ndarray


def label_statistics(labels: Sequence[tuple[np.ndarray, np.ndarray]], num_classes: int) -> LabelStatistics:
    """Count the boxes of a split.

    Args:
        labels: per image ``(classes (n,), boxes (n, 4) normalised cx, cy, w, h)``.
        num_classes: number of classes.
    """
    classes = [np.asarray(c, dtype=np.int64).reshape(-1) for c, _ in labels]
    boxes = [np.asarray(b, dtype=np.float64).reshape(-1, 4) for _, b in labels]
    all_classes = np.concatenate(classes) if classes else np.zeros(0, dtype=np.int64)
    all_boxes = np.concatenate(boxes) if boxes else np.zeros((0, 4))
    images = np.zeros(num_classes, dtype=np.int64)
    for image_classes in classes:
        images[np.unique(image_classes)] += 1
    return LabelStatistics(
        instances=np.bincount(all_classes, minlength=num_classes),
        images=images,
        centres=all_boxes[:, :2],
        sizes=all_boxes[:, 2:],
        classes=all_classes,
    )


def plot_label_statistics(stats: LabelStatistics, names: dict[int, str], title: str = "Training labels") -> Figure:
    """Three panels: boxes per class, box centres (2-D histogram), box sizes (2-D histogram)."""
    figure = new_figure(16, 6)
    counts_axes, centre_axes, size_axes = figure.subplots(1, 3)
    count = len(stats.instances)
    colours = [np.array(class_colour(k, bgr=False)) / 255 for k in range(count)]  # as in the batch figures
    bars = counts_axes.bar(range(count), stats.instances, color=colours, edgecolor="black", label="boxes")
    counts_axes.bar_label(bars, fontsize=9)
    counts_axes.set_xticks(range(count), [class_name(names, k) for k in range(count)], rotation=45 if count > 4 else 0,
                           ha="right" if count > 4 else "center")  # fmt: skip
    counts_axes.set_xlabel("Class")
    counts_axes.set_ylabel("Boxes (instances)")
    counts_axes.set_title(f"Boxes per class ({int(stats.instances.sum())} in total)")
    counts_axes.legend()
    for axes, values, (xlabel, ylabel), heading in (
        (centre_axes, stats.centres, ("x centre (fraction of width)", "y centre (fraction of height)"), "Box centres"),
        (size_axes, stats.sizes, ("Width (fraction of image)", "Height (fraction of image)"), "Box sizes"),
    ):
        histogram = axes.hist2d(values[:, 0], values[:, 1], bins=25, range=[[0, 1], [0, 1]], cmap="Blues", cmin=1)
        colour_bar = figure.colorbar(histogram[3], ax=axes)
        colour_bar.set_label("boxes per bin")
        axes.set_xlabel(xlabel)
        axes.set_ylabel(ylabel)
        axes.set_title(heading)
        axes.set_aspect("equal")
        if axes is centre_axes:
            axes.invert_yaxis()  # image convention: y grows downwards
    figure.suptitle(title, fontsize=14)
    return figure
