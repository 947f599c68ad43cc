"""What the console shows: the model summary at the start and a progress bar with the loss parts.

* :class:`ModelSummaryPrinter` prints the layer table and the totals line (layers, parameters,
  gradients, GFLOPs at the data module's ``imgsz``) on rank 0 when fit, validate or test starts;
  it replaces Lightning's one-row summary (whose FLOPs column reads 0 for this model).
* :class:`YOLOProgressBar` is Lightning's TQDM bar showing ``box``, ``cls`` and ``dfl`` (the
  training loss parts of the current step) and the last validation ``mAP50-95``.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import TQDMProgressBar

# Logged name -> progress-bar name (in this order).
_BAR_METRICS = {
    "train/box_loss_step": "box",
    "train/cls_loss_step": "cls",
    "train/dfl_loss_step": "dfl",
    "mAP50-95": "mAP50-95",
}


class ModelSummaryPrinter(Callback):
    """Prints :func:`~yolo11_lightning.nn.summary.model_summary` once per run (see the module docstring).

    Args:
        enabled: print it.
        layers: print the per-layer table, not only the totals line.
    """

    def __init__(self, enabled: bool = True, layers: bool = True) -> None:
        self.enabled = enabled
        self.layers = layers
        self._printed = False

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Print the summary of ``pl_module.model`` at the training image size."""
        if not self.enabled or self._printed or not trainer.is_global_zero or stage == "predict":
            return
        model = getattr(pl_module, "model", None)
        if model is None:
            return
        from yolo11_lightning.nn.summary import model_summary

        imgsz = getattr(getattr(trainer, "datamodule", None), "imgsz", 640)
        text = model_summary(model, imgsz)
        if not self.layers:
            text = text.splitlines()[-1]
        print(f"{text} at {imgsz}x{imgsz}", flush=True)
        self._printed = True


class YOLOProgressBar(TQDMProgressBar):
    """TQDM progress bar with the loss parts and the last mAP50-95 (see the module docstring)."""

    def get_metrics(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, Any]:
        """The bar's metrics: short names, no version number."""
        logged = trainer.progress_bar_metrics
        shown: dict[str, Any] = {}
        for key, short in _BAR_METRICS.items():
            if key in logged:
                value = logged[key]
                shown[short] = f"{float(value):.3f}" if short != "mAP50-95" else f"{float(value):.4f}"
        return shown
