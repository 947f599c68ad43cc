"""YOLOModule: the YOLO11 training recipe as a LightningModule (manual optimisation)."""

from __future__ import annotations

from typing import Any, Literal

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from yolo11_lightning.training.checkpoint_state import (
    architecture_of,
    check_architecture,
    class_names_dict,
)
from yolo11_lightning.training.ema import ModelEMA
from yolo11_lightning.training.metrics import DetectionMetrics, DetectionResults
from yolo11_lightning.training.optim import (
    StepSettings,
    apply_settings,
    build_optimizer,
    nominal_accumulate,
    scaled_weight_decay,
    settings_at,
    warmup_iterations,
)
from yolo11_lightning.training.predict import batch_ground_truth, detect


class NonFiniteTrainingError(RuntimeError):
    """Raised when too many consecutive optimizer steps had a non-finite loss or gradient."""


class YOLOModule(LightningModule):
    """Trains, validates and runs a YOLO detector with the YOLO11 recipe.

    Optimisation is manual so that the recipe is exact: gradients are accumulated up to the
    nominal batch (the count ramps up during warmup), unscaled (``16-mixed``), clipped, checked
    for finiteness and stepped; the EMA is updated after every optimizer step. Validation, test and
    predict use the EMA weights.

    Args:
        model: model config (bundled name such as ``"yolo11n.yaml"`` or ``"yolo11n-mlla.yaml"``, or
            a path to a model YAML), or an already built ``DetectionModel``.
        num_classes: number of classes; overrides the config's ``nc`` (linked from the data
            module by the CLI). ``None`` keeps the config's.
        class_names: class names, ``{id: name}`` or a list (linked from the data module by the CLI).
        weights: pretrained weights to initialise from (reference ``.pt``, our ``.ckpt`` (EMA
            preferred), a state dict or safetensors file); ``None`` trains from scratch. Every
            tensor with a counterpart is transferred, also into a variant of the file's model
            (see :mod:`yolo11_lightning.nn.transfer`); the rest keeps its initialisation.
        freeze: ``N`` freezes layers ``0 .. N-1``, a list freezes those layers: their parameters
            stay unchanged, their BatchNorm statistics keep updating (see
            :mod:`yolo11_lightning.nn.freeze`). ``None`` trains every layer.
        batch_size: images per batch and process, used for the nominal-batch accumulation and the
            weight-decay scaling; ``None`` reads ``trainer.datamodule.batch_size``.
        optimizer: ``"SGD"`` (Nesterov, the recipe) or ``"AdamW"``.
        lr0: initial learning rate.
        lrf: final learning rate as a fraction of ``lr0``.
        schedule: LR decay over the epochs, ``"linear"`` or ``"cosine"``.
        momentum: SGD momentum after warmup (AdamW: beta1, constant).
        weight_decay: weight decay at the nominal batch size (scaled to the effective batch).
        nominal_batch_size: batch size the recipe is tuned for; gradients are accumulated to it.
        warmup_epochs: warmup length in epochs (fractional allowed; 0 disables warmup).
        min_warmup_iterations: the shortest warmup in iterations.
        warmup_momentum: SGD momentum at the start of warmup.
        warmup_bias_lr: bias learning rate at the start of warmup.
        grad_clip_norm: maximal total gradient norm before each optimizer step.
        ema_decay: asymptotic EMA decay.
        ema_tau: EMA decay ramp length in updates.
        box_gain: box (CIoU) loss gain.
        cls_gain: classification (BCE) loss gain.
        dfl_gain: distribution focal loss gain.
        val_conf: NMS confidence threshold in validation/test.
        val_iou: NMS IoU threshold in validation/test.
        max_det: maximal detections per image (NMS and the COCO evaluation).
        predict_conf: NMS confidence threshold in predict.
        predict_iou: NMS IoU threshold in predict.
        max_nonfinite_steps: stop the run after this many consecutive optimizer steps skipped for a
            non-finite loss or gradient.
        channels_last: run the network in channels-last memory format (faster convolutions on CPU).
        metric_backend: COCO evaluation backend of torchmetrics.
        print_class_table: print the per-class table after each validation/test (rank 0).
    """

    def __init__(
        self,
        model: str | nn.Module = "yolo11n.yaml",
        num_classes: int | None = None,
        class_names: dict[int, str] | list[str] | None = None,
        weights: str | None = None,
        freeze: int | list[int] | None = None,
        batch_size: int | None = None,
        optimizer: Literal["SGD", "AdamW"] = "SGD",
        lr0: float = 0.01,
        lrf: float = 0.01,
        schedule: Literal["linear", "cosine"] = "linear",
        momentum: float = 0.937,
        weight_decay: float = 5e-4,
        nominal_batch_size: int = 64,
        warmup_epochs: float = 3.0,
        min_warmup_iterations: int = 100,
        warmup_momentum: float = 0.8,
        warmup_bias_lr: float = 0.1,
        grad_clip_norm: float = 10.0,
        ema_decay: float = 0.9999,
        ema_tau: float = 2000.0,
        box_gain: float = 7.5,
        cls_gain: float = 0.5,
        dfl_gain: float = 1.5,
        val_conf: float = 0.001,
        val_iou: float = 0.7,
        max_det: int = 300,
        predict_conf: float = 0.25,
        predict_iou: float = 0.7,
        max_nonfinite_steps: int = 10,
        channels_last: bool = False,
        metric_backend: Literal["faster_coco_eval", "pycocotools"] = "faster_coco_eval",
        print_class_table: bool = True,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["model"] if isinstance(model, nn.Module) else None)
        self.automatic_optimization = False
        from yolo11_lightning.loss.detection import DetectionLoss
        from yolo11_lightning.nn.builder import build_model

        network = build_model(model, nc=num_classes) if isinstance(model, str) else model
        if num_classes is not None and network.nc != num_classes:
            raise ValueError(f"the given model has {network.nc} classes but num_classes={num_classes}")
        if class_names is not None:
            names = class_names_dict(class_names)
            if len(names) != network.nc:
                raise ValueError(f"{len(names)} class names given for a model with {network.nc} classes")
            network.names = names
        if weights:
            from yolo11_lightning.nn.transfer import transfer_weights

            rank_zero_info(transfer_weights(network, weights).summary())
        if freeze:
            from yolo11_lightning.nn.freeze import freeze_layers

            rank_zero_info(f"frozen layers (parameters only): {freeze_layers(network, freeze)}")
        for parameter in network.head.dfl.parameters():  # the DFL conv is a fixed projection
            parameter.requires_grad_(False)
        if channels_last:
            network = network.to(memory_format=torch.channels_last)
        self.model = network
        self.loss_fn = DetectionLoss(network, box=box_gain, cls=cls_gain, dfl=dfl_gain)
        self.ema = ModelEMA(network, decay=ema_decay, tau=ema_tau)
        self.metrics = DetectionMetrics(network.names, max_det=max_det, backend=metric_backend)
        self.last_results: DetectionResults | None = None
        # Optimisation state saved in checkpoints (see on_save_checkpoint).
        self.last_optimizer_iteration = -1
        self.nonfinite_skipped = 0
        self.nonfinite_consecutive = 0
        self._skip_current_step = False  # a loss or gradient of the current window was not finite
        self._scaler_skipped = False  # the GradScaler skips the current step (16-mixed overflow)

    # ----------------------------------------------------------------------------------- plumbing
    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> YOLOModule:
        """Move/cast the EMA copy together with the module (it is deliberately not a submodule)."""
        super()._apply(fn, *args, **kwargs)
        if getattr(self, "ema", None) is not None:
            self.ema.module._apply(fn, *args, **kwargs)
        return self

    def forward(self, images: torch.Tensor) -> Any:
        """Run the (raw, not EMA) network on float images in [0, 1]; see ``DetectionModel.forward``."""
        return self.model(images)

    def _images(self, batch: dict[str, Any]) -> torch.Tensor:
        images = batch["images"].float() / 255.0
        if self.hparams.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images

    @property
    def eval_model(self) -> nn.Module:
        """The network used for validation, test and predict: the EMA copy."""
        return self.ema.module

    def _batch_size(self) -> int:
        if self.hparams.batch_size is not None:
            return int(self.hparams.batch_size)
        datamodule = getattr(self.trainer, "datamodule", None)
        size = getattr(datamodule, "batch_size", None)
        if size is None:
            raise ValueError("YOLOModule needs batch_size (or a datamodule with a batch_size attribute)")
        return int(size)

    def _recipe_settings(self, iteration: int, epoch: int) -> StepSettings:
        epochs = self.trainer.max_epochs
        if epochs is None or epochs < 1:
            raise ValueError("the YOLO recipe schedules the LR over trainer.max_epochs: set it (e.g. 100)")
        hp = self.hparams
        return settings_at(
            iteration,
            epoch,
            epochs=epochs,
            warmup_iters=warmup_iterations(hp.warmup_epochs, self.trainer.num_training_batches, hp.min_warmup_iterations),
            lr0=hp.lr0,
            lrf=hp.lrf,
            schedule=hp.schedule,
            momentum=hp.momentum,
            warmup_momentum=hp.warmup_momentum,
            warmup_bias_lr=hp.warmup_bias_lr,
            batch_size=self._batch_size() * self.trainer.world_size,
            nominal_batch_size=hp.nominal_batch_size,
        )

    # ----------------------------------------------------------------------------------- training
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """One batch: forward, loss, backward; an optimizer step when enough batches accumulated."""
        optimizer = self.optimizers()
        iteration = batch_idx + self.trainer.num_training_batches * self.current_epoch
        settings = self._recipe_settings(iteration, self.current_epoch)
        apply_settings(optimizer.optimizer, settings)

        images = self._images(batch)
        loss, components = self.loss_fn(self.model(images), batch["targets"])
        # DDP averages gradients over processes; the recipe sums them (as the reference does).
        loss = loss * self.trainer.world_size
        if not bool(torch.isfinite(loss.detach())):
            self._skip_current_step = True
        # Backward also for a non-finite loss: under DDP every process must join the gradient
        # all-reduce; the poisoned gradients are dropped in on_before_optimizer_step.
        self.manual_backward(loss)
        if iteration - self.last_optimizer_iteration >= settings.accumulate:
            optimizer.step()  # clipping and the finiteness check run in on_before_optimizer_step
            optimizer.zero_grad(set_to_none=True)
            self._finish_step()
            self.last_optimizer_iteration = iteration

        batch_size = images.shape[0]
        log = dict(prog_bar=False, on_step=True, on_epoch=True, batch_size=batch_size)
        self.log("train/loss", components.sum(), prog_bar=True, on_step=True, on_epoch=True, batch_size=batch_size)
        self.log("train/box_loss", components[0], **log)
        self.log("train/cls_loss", components[1], **log)
        self.log("train/dfl_loss", components[2], **log)
        self.log("train/lr_bias", settings.lrs[0], on_step=True, on_epoch=False, batch_size=batch_size)
        self.log("train/lr", settings.lrs[1], on_step=True, on_epoch=False, batch_size=batch_size)
        self.log("train/momentum", settings.momentum, on_step=True, on_epoch=False, batch_size=batch_size)
        self.log(
            "train/nonfinite_skipped", float(self.nonfinite_skipped), on_step=False, on_epoch=True, reduce_fx="max",
            batch_size=batch_size,
        )  # fmt: skip
        return loss.detach()

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Clip the (already unscaled) gradients; drop them all when the step must be skipped.

        A step is skipped when a loss of its accumulation window was not finite or the total
        gradient norm is not finite; an optimizer step without gradients changes nothing. Under
        ``16-mixed`` a non-finite gradient norm is left to the GradScaler (it skips the step and
        lowers its scale, which is routine while the scale calibrates) and not counted.
        """
        parameters = [p for p in self.model.parameters() if p.grad is not None]
        total_norm = torch.nn.utils.clip_grad_norm_(parameters, max_norm=self.hparams.grad_clip_norm)
        if not bool(torch.isfinite(total_norm)):
            if getattr(self.trainer.precision_plugin, "scaler", None) is not None:
                self._scaler_skipped = True
            else:
                self._skip_current_step = True
        if self.trainer.world_size > 1:  # every process takes the same decision
            self._skip_current_step = bool(
                self.trainer.strategy.reduce_boolean_decision(self._skip_current_step, all=False)
            )
        if self._skip_current_step:
            for parameter in parameters:
                parameter.grad = None

    def _finish_step(self) -> None:
        """Bookkeeping after an optimizer step: EMA update or non-finite accounting."""
        if self._scaler_skipped and not self._skip_current_step:
            self._scaler_skipped = False
            return
        self._scaler_skipped = False
        if self._skip_current_step:
            self._skip_current_step = False
            self.nonfinite_skipped += 1
            self.nonfinite_consecutive += 1
            limit = self.hparams.max_nonfinite_steps
            if self.nonfinite_consecutive >= limit:
                raise NonFiniteTrainingError(
                    f"{self.nonfinite_consecutive} consecutive optimizer steps had a non-finite loss or gradient "
                    f"(epoch {self.current_epoch}, step {self.global_step}); stopping. The last saved checkpoint is "
                    "intact: lower lr0, check the data, or use 32-bit precision."
                )
            return
        self.nonfinite_consecutive = 0
        self.ema.update(self.model)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """The recipe's optimizer: three groups, weight decay scaled to the effective batch."""
        hp = self.hparams
        effective_batch = self._batch_size() * self.trainer.world_size
        decay = scaled_weight_decay(hp.weight_decay, effective_batch, hp.nominal_batch_size)
        self.print(
            f"optimizer: {hp.optimizer}(lr0={hp.lr0}, momentum={hp.momentum}) weight_decay={decay:.6g}, "
            f"accumulate {nominal_accumulate(effective_batch, hp.nominal_batch_size)} x batch {effective_batch}"
        )
        return build_optimizer(self.model, hp.lr0, hp.momentum, decay, hp.optimizer)

    # --------------------------------------------------------------------------- validation, test
    def on_validation_epoch_start(self) -> None:
        """Start a fresh evaluation."""
        self.metrics.reset()

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """EMA model, NMS, map to original pixels, metric update (and the validation loss)."""
        self._evaluation_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        """Compute (once, DDP-exact), log and print the results."""
        self._evaluation_end("val")

    def on_test_epoch_start(self) -> None:
        """Start a fresh evaluation."""
        self.metrics.reset()

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """As :meth:`validation_step`, logged under ``test/``."""
        self._evaluation_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        """Compute, log and print the test results."""
        self._evaluation_end("test")

    def _evaluation_step(self, batch: dict[str, Any], stage: str) -> None:
        hp = self.hparams
        images = self._images(batch)
        decoded, raw_maps = self.eval_model(images)
        if "targets" in batch:
            _, components = self.loss_fn(raw_maps, batch["targets"])
            kwargs = dict(on_step=False, on_epoch=True, batch_size=images.shape[0], sync_dist=True)
            self.log(f"{stage}/box_loss", components[0], **kwargs)
            self.log(f"{stage}/cls_loss", components[1], **kwargs)
            self.log(f"{stage}/dfl_loss", components[2], **kwargs)
        predictions = detect(
            decoded, batch, conf=hp.val_conf, iou=hp.val_iou, max_det=hp.max_det, multi_label=True
        )
        gt_boxes, gt_labels = batch_ground_truth(batch, images.shape[-2:])
        self.metrics.update(batch["image_ids"], predictions, gt_boxes, gt_labels)

    def _evaluation_end(self, stage: str) -> None:
        results = self.metrics.compute()
        self.metrics.reset()
        self.log_dict(results.as_log_dict(stage), sync_dist=False)
        if self.trainer.sanity_checking:
            return
        self.last_results = results
        if not self.trainer.is_global_zero:
            return
        epoch = f" epoch {self.current_epoch}" if self.trainer.state.fn == "fit" else ""
        if self.hparams.print_class_table:
            print(f"\n{stage}{epoch} (EMA weights, {self.ema.updates} updates):\n{results.table()}", flush=True)
        else:
            print(
                f"{stage}{epoch}: mAP50-95 {results.map50_95:.4f} mAP50 {results.map50:.4f} "
                f"P {results.precision:.3f} R {results.recall:.3f} ({self.ema.updates} EMA updates)",
                flush=True,
            )

    # ------------------------------------------------------------------------------------ predict
    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> list[dict[str, Any]]:
        """Detections per image in original pixels.

        Returns:
            One dict per image: ``path``, ``image_id``, ``boxes`` (n, 4) xyxy original pixels,
            ``scores`` (n,), ``class_ids`` (n,).
        """
        hp = self.hparams
        decoded, _ = self.eval_model(self._images(batch))
        predictions = detect(decoded, batch, conf=hp.predict_conf, iou=hp.predict_iou, max_det=hp.max_det)
        paths = batch.get("paths") or [""] * len(predictions)
        return [
            {
                "path": path,
                "image_id": int(image_id),
                "boxes": pred[:, :4].cpu(),
                "scores": pred[:, 4].cpu(),
                "class_ids": pred[:, 5].long().cpu(),
            }
            for path, image_id, pred in zip(paths, batch["image_ids"].tolist(), predictions)
        ]

    # -------------------------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Add the EMA weights and count, the model architecture and the optimisation counters."""
        checkpoint["ema_state_dict"] = self.ema.state_dict()
        checkpoint["ema_updates"] = self.ema.updates
        checkpoint["model_config"] = architecture_of(self.model)
        checkpoint["class_names"] = dict(self.model.names)
        checkpoint["yolo_state"] = {
            "last_optimizer_iteration": self.last_optimizer_iteration,
            "nonfinite_skipped": self.nonfinite_skipped,
            "nonfinite_consecutive": self.nonfinite_consecutive,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse a checkpoint of another architecture; restore the EMA and the counters."""
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
        if "class_names" in checkpoint:
            self.model.names = dict(checkpoint["class_names"])
            self.ema.module.names = dict(checkpoint["class_names"])
