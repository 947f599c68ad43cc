"""FigureWriter: the run's figures, written into the run folder after fit, validate and test.

Files (``<prefix>`` is ``val_`` or ``test_``):

* ``results.png``: losses and metrics per epoch (from ``results.csv``; fit only);
* ``labels.png``: training label statistics (fit only);
* ``train_batch<k>.png``: the first training batches after augmentation (fit only);
* ``<prefix>PR_curve.png``, ``<prefix>F1_curve.png``, ``<prefix>P_curve.png``, ``<prefix>R_curve.png``;
* ``<prefix>confusion_matrix.png`` and ``<prefix>confusion_matrix_normalized.png``;
* ``<prefix>batch<k>_labels_vs_pred.png``: validation images, labels beside predictions.

With a logger whose experiment has ``add_figure`` (TensorBoard) the same figures are logged as
images. Plotting never fails a run: an error becomes one warning, and the run goes on.
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from yolo11_lightning.boxes import scale_boxes_to_input
from yolo11_lightning.data.batch import Batch
from yolo11_lightning.training.run_folder import run_directory


class FigureWriter(Callback):
    """Writes the figures listed in the module docstring (rank 0 only).

    Args:
        enabled: write figures at all.
        train_batches: how many of the first training batches to draw.
        val_batches: how many validation batches to draw (labels beside predictions).
        conf: the lowest prediction score drawn on the validation images.
    """

    def __init__(self, enabled: bool = True, train_batches: int = 3, val_batches: int = 3, conf: float = 0.25) -> None:
        self.enabled = enabled
        self.train_batches = train_batches
        self.val_batches = val_batches
        self.conf = conf
        self.written: list[Path] = []
        self._val_samples: list[tuple[Batch, list[torch.Tensor]]] = []
        self._first_epoch: int | None = None

    # ------------------------------------------------------------------------------------ helpers
    def _active(self, trainer: Trainer) -> bool:
        return self.enabled and trainer.is_global_zero and not trainer.sanity_checking

    @staticmethod
    def _folder(trainer: Trainer) -> Path:
        return run_directory(trainer)

    def _save(self, trainer: Trainer, name: str, make: Any) -> None:
        """Build a figure with ``make()``, save it as ``name``, log it to TensorBoard-like loggers."""
        from yolo11_lightning.plotting.style import save_figure

        try:
            figure = make()
            path = save_figure(figure, self._folder(trainer) / name)
            self.written.append(path)
            for logger in trainer.loggers:
                add_figure = getattr(getattr(logger, "experiment", None), "add_figure", None)
                if callable(add_figure):
                    add_figure(Path(name).stem, figure, global_step=trainer.global_step)
        except Exception as error:  # noqa: BLE001 - a figure must never fail the run
            warnings.warn(f"figure {name} could not be written: {type(error).__name__}: {error}", stacklevel=2)

    @staticmethod
    def _names(pl_module: LightningModule) -> dict[int, str]:
        return dict(getattr(getattr(pl_module, "model", None), "names", {}) or {})

    # ---------------------------------------------------------------------------------------- fit
    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Label statistics of the training split."""
        self._first_epoch = trainer.current_epoch
        if not (self.enabled and trainer.is_global_zero):
            return
        dataset = getattr(getattr(trainer, "datamodule", None), "datasets", {}).get("train")
        if dataset is None:
            return
        from yolo11_lightning.plotting.labels import label_statistics, plot_label_statistics

        names = self._names(pl_module)
        records = [(r.classes, r.boxes) for r in dataset.records]
        self._save(trainer, "labels.png", lambda: plot_label_statistics(label_statistics(records, len(names)), names))

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Batch, batch_idx: int
    ) -> None:
        """Draw the first training batches of the run (as the network saw them)."""
        if not self._active(trainer) or trainer.current_epoch != self._first_epoch or batch_idx >= self.train_batches:
            return
        from yolo11_lightning.plotting.batches import plot_batch

        names = self._names(pl_module)
        self._save(
            trainer, f"train_batch{batch_idx}.png", lambda: plot_batch(batch.images, batch.targets, names, batch.paths)
        )

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Training curves, then the last validation's figures."""
        if not (self.enabled and trainer.is_global_zero):
            return
        results_csv = self._folder(trainer) / "results.csv"
        if results_csv.is_file():
            from yolo11_lightning.plotting.results import plot_results

            with results_csv.open() as handle:
                rows = list(csv.DictReader(handle))
            self._save(trainer, "results.png", lambda: plot_results(rows))
        self._evaluation_figures(trainer, pl_module, "val")

    # ---------------------------------------------------------------------------- validate, test
    def _keep_samples(self, trainer: Trainer, outputs: Any, batch: Batch, batch_idx: int) -> None:
        if not self._active(trainer) or batch_idx >= self.val_batches or not isinstance(outputs, list):
            return
        if batch_idx == 0:
            self._val_samples = []
        self._val_samples.append((batch.to("cpu"), [o.detach().cpu() for o in outputs]))

    def on_validation_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        """Keep the first validation batches and their predictions (the latest epoch's)."""
        self._keep_samples(trainer, outputs, batch, batch_idx)

    def on_test_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        """Keep the first test batches and their predictions."""
        self._keep_samples(trainer, outputs, batch, batch_idx)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """A standalone ``validate``: its figures now (during fit they come at the end)."""
        if trainer.state.fn == "validate":
            self._evaluation_figures(trainer, pl_module, "val")

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """The test figures."""
        self._evaluation_figures(trainer, pl_module, "test")

    def _evaluation_figures(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if not (self.enabled and trainer.is_global_zero):
            return
        results = getattr(pl_module, "last_results", None)
        names = self._names(pl_module)
        prefix = f"{stage}_"
        if results is not None:
            from yolo11_lightning.plotting.confusion import plot_confusion_matrix
            from yolo11_lightning.plotting.pr import plot_confidence_curve, plot_pr_curve

            heading = "Validation" if stage == "val" else "Test"
            curves = results.curves
            self._save(trainer, f"{prefix}PR_curve.png", lambda: plot_pr_curve(curves, names, f"{heading} PR curve"))
            for kind, short in (("F1", "F1"), ("Precision", "P"), ("Recall", "R")):
                self._save(
                    trainer,
                    f"{prefix}{short}_curve.png",
                    lambda kind=kind: plot_confidence_curve(curves, names, kind, f"{heading} {kind}-confidence curve"),
                )
            if curves.confusion.size:
                for normalize, suffix in ((False, ""), (True, "_normalized")):
                    self._save(
                        trainer,
                        f"{prefix}confusion_matrix{suffix}.png",
                        lambda normalize=normalize: plot_confusion_matrix(
                            curves.confusion, names, normalize, f"{heading} confusion matrix (conf 0.25, IoU 0.45)"
                        ),
                    )
        self._batch_figures(trainer, names, prefix)

    def _batch_figures(self, trainer: Trainer, names: dict[int, str], prefix: str) -> None:
        from yolo11_lightning.plotting.batches import plot_labels_vs_predictions

        for index, (batch, predictions) in enumerate(self._val_samples):
            gt_boxes, gt_classes = [], []
            height, width = batch.input_shape
            scale = torch.tensor([width, height, width, height], dtype=torch.float32)
            targets = batch.targets.float()
            for image in range(len(batch)):
                mine = targets[targets[:, 0] == image]
                xy, wh = mine[:, 2:4] * scale[:2], mine[:, 4:6] * scale[2:]
                gt_boxes.append(torch.cat([xy - wh / 2, xy + wh / 2], 1))
                gt_classes.append(mine[:, 1].long())
            in_input = []
            for rows, ratio_pad in zip(predictions, batch.ratio_pad):
                rows = rows.clone()
                rows[:, :4] = scale_boxes_to_input(rows[:, :4], ratio_pad)
                in_input.append(rows)
            self._save(
                trainer,
                f"{prefix}batch{index}_labels_vs_pred.png",
                lambda batch=batch, gt_boxes=gt_boxes, gt_classes=gt_classes, in_input=in_input: (
                    plot_labels_vs_predictions(
                        batch.images, gt_boxes, gt_classes, in_input, names, batch.paths, conf=self.conf
                    )
                ),
            )
        self._val_samples = []
