"""Figures of a run (matplotlib, no display needed): curves, PR curves, confusion matrix, labels, batches.

Every function returns a :class:`matplotlib.figure.Figure` (at least 800x600 px, with a title, axis
labels and a legend or colour bar), so tests can check the artists; :func:`~.style.save_figure`
writes and closes it. The callback that writes them into the run folder is
:class:`yolo11_lightning.training.figures.FigureWriter`.
"""

from yolo11_lightning.plotting.batches import plot_batch, plot_labels_vs_predictions
from yolo11_lightning.plotting.confusion import plot_confusion_matrix
from yolo11_lightning.plotting.labels import LabelStatistics, label_statistics, plot_label_statistics
from yolo11_lightning.plotting.pr import plot_confidence_curve, plot_pr_curve
from yolo11_lightning.plotting.results import plot_results
from yolo11_lightning.plotting.style import new_figure, save_figure

__all__ = [
    "LabelStatistics",
    "label_statistics",
    "new_figure",
    "plot_batch",
    "plot_confidence_curve",
    "plot_confusion_matrix",
    "plot_label_statistics",
    "plot_labels_vs_predictions",
    "plot_pr_curve",
    "plot_results",
    "save_figure",
]
