"""Checkpoint save/load hooks of :class:`~yolo11_lightning.training.module.YOLOModule`.

A checkpoint carries, beside Lightning's state: the format version, the EMA weights and update
count, the model architecture, what inference needs (``inference``) and the recipe's counters.
A mixin: it uses the module's ``model``, ``ema``, ``guard`` and counters.
"""

from __future__ import annotations

from typing import Any

from yolo11_lightning.inference.loading import inference_entry
from yolo11_lightning.training.checkpoint import FORMAT_KEY, FORMAT_VERSION, check_format_version
from yolo11_lightning.training.checkpoint_state import architecture_of, check_architecture


class CheckpointHooks:
    """``on_save_checkpoint``/``on_load_checkpoint`` of ``YOLOModule``."""

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Add the EMA weights and count, the model architecture, what inference needs and the counters.

        ``inference`` (see :func:`~yolo11_lightning.inference.loading.inference_entry`): the resolved
        model config, class names, training ``imgsz`` and stride, so that ``validate``/``test``/
        ``predict --ckpt_path`` and ``Detector.from_checkpoint`` need nothing else.

        Raises:
            TrainingDivergedError: if the weights (raw or EMA) are not finite or beyond
                ``divergence_max_weight``: the checkpoint is not written (``last.ckpt`` keeps the
                last good state).
        """
        reason = self.guard.check_weights(self.model) or self.guard.check_weights(self.ema.module, trainable_only=False)
        if reason:
            self._stop_diverged(reason)
        checkpoint[FORMAT_KEY] = FORMAT_VERSION
        checkpoint["ema_state_dict"] = self.ema.state_dict()
        checkpoint["ema_updates"] = self.ema.updates
        checkpoint["model_config"] = architecture_of(self.model)
        checkpoint["class_names"] = dict(self.model.names)
        checkpoint["inference"] = inference_entry(self.model, self._training_imgsz())
        checkpoint["yolo_state"] = {
            "last_optimizer_iteration": self.last_optimizer_iteration,
            "nonfinite_skipped": self.nonfinite_skipped,
            "nonfinite_consecutive": self.nonfinite_consecutive,
            "guard": self.guard.state_dict(),
            "epoch_losses": self.epoch_losses.state_dict(),
        }

    def _training_imgsz(self) -> int | None:
        """The data module's ``imgsz`` (``None`` without a trainer or data module)."""
        trainer = self._trainer
        datamodule = getattr(trainer, "datamodule", None) if trainer is not None else None
        imgsz = getattr(datamodule, "imgsz", None)
        return int(imgsz) if imgsz else None

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse a checkpoint of a newer format or another architecture; restore the EMA and the counters."""
        check_format_version(checkpoint, "the checkpoint")
        check_architecture(checkpoint, self.model)
        if "ema_state_dict" in checkpoint:
            self.ema.load_state_dict(checkpoint["ema_state_dict"], checkpoint.get("ema_updates", 0))
        else:  # a checkpoint without EMA: evaluate its raw weights
            from yolo11_lightning.nn.weights import lightning_model_state

            self.ema.module.load_state_dict(lightning_model_state(checkpoint["state_dict"]))
        state = checkpoint.get("yolo_state", {})
        self.last_optimizer_iteration = int(state.get("last_optimizer_iteration", -1))
        self.nonfinite_skipped = int(state.get("nonfinite_skipped", 0))
        self.nonfinite_consecutive = int(state.get("nonfinite_consecutive", 0))
        self.guard.load_state_dict(state.get("guard", {}))
        self.epoch_losses.load_state_dict(state.get("epoch_losses", {}))
        if "class_names" in checkpoint:
            self.model.names = dict(checkpoint["class_names"])
            self.ema.module.names = dict(checkpoint["class_names"])
