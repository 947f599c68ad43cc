"""YOLOModule: the YOLO11 training recipe as a LightningModule (manual optimisation)."""

from __future__ import annotations

import copy
import os
from typing import Any, Literal

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from yolo11_lightning.data.batch import Batch
from yolo11_lightning.inference.loading import inference_entry
from yolo11_lightning.inference.postprocess import NMSSettings, detect
from yolo11_lightning.inference.preprocess import to_float_input
from yolo11_lightning.inference.results import Detections
from yolo11_lightning.nn.model import DetectionModel
from yolo11_lightning.training.checkpoint import FORMAT_KEY, FORMAT_VERSION, check_format_version
from yolo11_lightning.training.checkpoint_state import (
    architecture_of,
    check_architecture,
    class_names_dict,
)
from yolo11_lightning.training.compiled import CompiledNetwork
from yolo11_lightning.training.ema import ModelEMA
from yolo11_lightning.training.epoch_means import EpochLossMeans
from yolo11_lightning.training.errors import UserError
from yolo11_lightning.training.guards import DivergenceGuard, TrainingDivergedError, last_good_checkpoint
from yolo11_lightning.training.metrics import DetectionMetrics, DetectionResults
from yolo11_lightning.training.multi_scale import multi_scale_size, resize_batch
from yolo11_lightning.training.optim import (
    OptimizerChoice,
    StepSettings,
    apply_settings,
    auto_optimizer,
    build_optimizer,
    nominal_accumulate,
    scaled_weight_decay,
    settings_at,
    training_iterations,
    warmup_iterations,
)


class NonFiniteTrainingError(TrainingDivergedError):
    """Raised when too many consecutive optimizer steps had a non-finite loss or gradient."""


class YOLOModule(LightningModule):
    """Trains, validates and runs a YOLO detector with the YOLO11 recipe.

    Optimisation is manual so that the recipe is exact: gradients are accumulated up to the
    nominal batch (the count ramps up during warmup), unscaled (``16-mixed``), clipped, checked
    for finiteness and stepped; the EMA is updated after every optimizer step. Validation, test and
    predict use the EMA weights.

    Args:
        model: model config (bundled name such as ``"yolo11n.yaml"`` or ``"yolo11n-mlla.yaml"``, or
            a path to a model YAML, or a config dict as stored in checkpoints), or an already built
            ``DetectionModel``.
        num_classes: number of classes; overrides the config's ``nc`` (linked from the data
            module by the CLI). ``None`` keeps the config's.
        class_names: class names, ``{id: name}`` or a list (linked from the data module by the CLI).
        weights: pretrained weights to initialise from (reference ``.pt``, our ``.ckpt`` (EMA
            preferred), a state dict or safetensors file); ``None`` trains from scratch. Every
            tensor with a counterpart is transferred, also into a variant of the file's model
            (see :mod:`yolo11_lightning.nn.transfer`); the rest keeps its initialisation. Without
            ``class_names``, the file's class names are used when it records them for this class count.
        freeze: ``N`` freezes layers ``0 .. N-1``, a list freezes those layers: their parameters
            stay unchanged, their BatchNorm statistics keep updating (see
            :mod:`yolo11_lightning.nn.freeze`). ``None`` trains every layer.
        batch_size: images per batch and process, used for the nominal-batch accumulation and the
            weight-decay scaling; ``None`` reads ``trainer.datamodule.batch_size``.
        optimizer: ``"SGD"`` (Nesterov, the recipe), ``"AdamW"``, or ``"auto"`` (the reference's
            rule: SGD lr 0.01 momentum 0.9 for runs over 10,000 iterations, else AdamW with
            ``lr0 = round(0.002 * 5 / (4 + nc), 6)`` and beta1 0.9; both without the warmup bias
            boost; ``lr0``, ``momentum`` and ``warmup_bias_lr`` are then ignored).
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
        predict_classes: keep only these class ids in predict (``None``: all).
        predict_agnostic: class-agnostic NMS in predict (overlapping boxes of different classes
            suppress each other).
        max_nonfinite_steps: stop the run after this many consecutive optimizer steps skipped for a
            non-finite loss or gradient.
        divergence_min_loss: stop (``TrainingDivergedError``) when a batch's loss falls to this value
            or below (saturated outputs; see ``training/guards.py`` for every divergence rule).
        divergence_spike_factor: stop when a batch's loss exceeds this multiple of its running mean.
        divergence_max_grad_norm: stop when the total gradient norm before clipping exceeds this
            value per image of the optimizer step.
        divergence_max_weight: refuse to save a checkpoint (and stop) when a trainable weight's
            absolute value exceeds this (non-finite weights are always refused).
        channels_last: run the network in channels-last memory format; ``None`` (default): on for
            CPU training, where it was measured faster (``benchmarks/bench_train.py``), off elsewhere
            (not measured on CUDA yet). Resolved in ``setup`` from the trainer's device.
        compile: run the network through ``torch.compile`` for training and evaluation (checkpoint
            keys unchanged; falls back to eager with a warning where the compiler is missing).
        compile_backend: the ``torch.compile`` backend (``"inductor"``; ``"aot_eager"`` captures
            the graphs without generating code, a quick check).
        metric_backend: COCO evaluation backend of torchmetrics.
        print_class_table: print the per-class table after each validation/test (rank 0).
        multi_scale: resize each training batch to a random stride multiple in [0.5, 1.5] x its
            size (bilinear, the reference's multi-scale training; see ``training/multi_scale.py``).
        save_json: after each validation/test, write the predictions as COCO results JSON
            (``predictions.json`` in the run folder; ``image_id`` is the image's index in its split).
    """

    def __init__(
        self,
        model: str | dict[str, Any] | DetectionModel = "yolo11n.yaml",
        num_classes: int | None = None,
        class_names: dict[int, str] | list[str] | None = None,
        weights: str | None = None,
        freeze: int | list[int] | None = None,
        batch_size: int | None = None,
        optimizer: Literal["SGD", "AdamW", "auto"] = "SGD",
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
        predict_classes: list[int] | None = None,
        predict_agnostic: bool = False,
        max_nonfinite_steps: int = 10,
        divergence_min_loss: float = 1e-6,
        divergence_spike_factor: float = 1e3,
        divergence_max_grad_norm: float = 1e4,
        divergence_max_weight: float = 1e4,
        channels_last: bool | None = None,
        compile: bool = False,
        compile_backend: str = "inductor",
        metric_backend: Literal["faster_coco_eval", "pycocotools"] = "faster_coco_eval",
        print_class_table: bool = True,
        multi_scale: bool = False,
        save_json: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["model"] if isinstance(model, nn.Module) else None)
        self.automatic_optimization = False
        from yolo11_lightning.loss.detection import DetectionLoss
        from yolo11_lightning.nn.builder import build_model

        network = build_model(model, nc=num_classes) if isinstance(model, (str, dict)) else model
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
            if class_names is None:
                from yolo11_lightning.inference.loading import read_spec

                file_names = read_spec(weights).names
                if len(file_names) == network.nc:
                    network.names = file_names
        if freeze:
            from yolo11_lightning.nn.freeze import freeze_layers

            rank_zero_info(f"frozen layers (parameters only): {freeze_layers(network, freeze)}")
        for parameter in network.head.dfl.parameters():  # the DFL conv is a fixed projection
            parameter.requires_grad_(False)
        if channels_last:
            network = network.to(memory_format=torch.channels_last)
        self._channels_last = bool(channels_last)  # "auto" (None) is resolved in setup()
        self._fused_eval: nn.Module | None = None  # BatchNorm-folded EMA copy during an evaluation
        self.model = network
        # Compiled callers are plain attributes, not submodules: state_dict keys stay unprefixed.
        self._train_network = CompiledNetwork(compile, compile_backend, "training")
        self.loss_fn = DetectionLoss(network, box=box_gain, cls=cls_gain, dfl=dfl_gain)
        self.ema = ModelEMA(network, decay=ema_decay, tau=ema_tau)
        self._eval_network = CompiledNetwork(compile, compile_backend, "evaluation")
        self.metrics = DetectionMetrics(network.names, max_det=max_det, backend=metric_backend)
        self.last_results: DetectionResults | None = None
        # Optimisation state saved in checkpoints (see on_save_checkpoint).
        self.last_optimizer_iteration = -1
        self._choice: OptimizerChoice | None = None  # resolved by configure_optimizers
        self.nonfinite_skipped = 0
        self.nonfinite_consecutive = 0
        self._skip_current_step = False  # a loss or gradient of the current window was not finite
        self._scaler_skipped = False  # the GradScaler skips the current step (16-mixed overflow)
        self.guard = DivergenceGuard(
            min_loss=divergence_min_loss, spike_factor=divergence_spike_factor,
            max_grad_norm=divergence_max_grad_norm, max_weight=divergence_max_weight,
        )  # fmt: skip
        self._diverged = ""  # why the current accumulation window diverged ("" when it did not)
        self._window_images = 0  # images in the current accumulation window (gradient-norm bound)
        self._eval_loss_sums = torch.zeros(4, dtype=torch.float64)  # box, cls, dfl (x images), images
        self.epoch_losses = EpochLossMeans()

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

    def setup(self, stage: str) -> None:
        """Resolve ``channels_last=None`` for the trainer's device (the model is not moved yet)."""
        if self.hparams.channels_last is None and not self._channels_last:
            if self.trainer.strategy.root_device.type == "cpu":
                self._channels_last = True
                self.model.to(memory_format=torch.channels_last)
                self.ema.module.to(memory_format=torch.channels_last)

    def _images(self, batch: Batch) -> torch.Tensor:
        return to_float_input(batch.images, channels_last=self._channels_last)

    @property
    def val_nms(self) -> NMSSettings:
        """NMS settings of validation and test (low threshold, multi-label, as the reference)."""
        hp = self.hparams
        return NMSSettings(conf=hp.val_conf, iou=hp.val_iou, max_det=hp.max_det, multi_label=True)

    @property
    def predict_nms(self) -> NMSSettings:
        """NMS settings of predict."""
        hp = self.hparams
        classes = tuple(hp.predict_classes) if hp.predict_classes is not None else None
        return NMSSettings(
            conf=hp.predict_conf, iou=hp.predict_iou, max_det=hp.max_det, classes=classes, agnostic=hp.predict_agnostic
        )

    @property
    def eval_model(self) -> nn.Module:
        """The network used for validation, test and predict: the EMA copy (BatchNorm folded during an evaluation)."""
        return self._fused_eval if self._fused_eval is not None else self.ema.module

    def _fold_eval_network(self) -> None:
        """Fold BatchNorm into a copy of the EMA network for this evaluation (as inference does).

        The copy is taken once per evaluation (milliseconds) and dropped at its end, so the EMA
        itself is untouched; outputs equal the unfused network's up to float rounding. Not with
        ``compile``: a new copy per evaluation would recompile each time.
        """
        self._fused_eval = None
        if self.hparams.compile:
            return
        fused = copy.deepcopy(self.ema.module).eval().fuse()
        self._fused_eval = fused.to(memory_format=torch.channels_last) if self._channels_last else fused

    def _drop_eval_network(self) -> None:
        self._fused_eval = None

    def _batch_size(self) -> int:
        if self.hparams.batch_size is not None:
            return int(self.hparams.batch_size)
        datamodule = getattr(self.trainer, "datamodule", None)
        size = getattr(datamodule, "batch_size", None)
        if size is None:
            raise ValueError("YOLOModule needs batch_size (or a datamodule with a batch_size attribute)")
        return int(size)

    def optimizer_choice(self) -> OptimizerChoice:
        """The optimizer, LR, momentum and warmup bias LR of this run (``auto`` resolved, see ``optimizer``)."""
        hp = self.hparams
        if hp.optimizer != "auto":
            return OptimizerChoice(hp.optimizer, hp.lr0, hp.momentum, hp.warmup_bias_lr)
        datamodule = getattr(self.trainer, "datamodule", None)
        train = getattr(datamodule, "datasets", {}).get("train") if datamodule is not None else None
        epochs = self.trainer.max_epochs
        if train is None or epochs is None or epochs < 1:
            raise UserError(
                "optimizer 'auto' needs the training set (YOLODataModule) and trainer.max_epochs",
                hint="choose --model.optimizer SGD or AdamW",
            )
        iterations = training_iterations(
            len(train), self._batch_size() * self.trainer.world_size, epochs, hp.nominal_batch_size
        )
        return auto_optimizer(iterations, self.model.nc)

    def _recipe_settings(self, iteration: int, epoch: int) -> StepSettings:
        epochs = self.trainer.max_epochs
        if epochs is None or epochs < 1:
            raise ValueError("the YOLO recipe schedules the LR over trainer.max_epochs: set it (e.g. 100)")
        hp = self.hparams
        choice = self._choice if self._choice is not None else self.optimizer_choice()
        return settings_at(
            iteration,
            epoch,
            epochs=epochs,
            warmup_iters=warmup_iterations(
                hp.warmup_epochs, self.trainer.num_training_batches, hp.min_warmup_iterations
            ),
            lr0=choice.lr0,
            lrf=hp.lrf,
            schedule=hp.schedule,
            momentum=choice.momentum,
            warmup_momentum=hp.warmup_momentum,
            warmup_bias_lr=choice.warmup_bias_lr,
            batch_size=self._batch_size() * self.trainer.world_size,
            nominal_batch_size=hp.nominal_batch_size,
        )

    # ----------------------------------------------------------------------------------- training
    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        """One batch: forward, loss, backward; an optimizer step when enough batches accumulated."""
        optimizer = self.optimizers()
        iteration = batch_idx + self.trainer.num_training_batches * self.current_epoch
        settings = self._recipe_settings(iteration, self.current_epoch)
        apply_settings(optimizer.optimizer, settings)

        images = self._train_input(batch, batch_idx)
        loss, components = self.loss_fn(self._train_network(self.model, images), batch.targets)
        # DDP averages gradients over processes; the recipe sums them (as the reference does).
        loss = loss * self.trainer.world_size
        if not bool(torch.isfinite(loss.detach())):
            self._skip_current_step = True
        self._diverged = self._diverged or self.guard.check_loss(float(components.total()))
        self._window_images += images.shape[0] * self.trainer.world_size
        # Backward also for a non-finite loss: under DDP every process must join the gradient
        # all-reduce; the poisoned gradients are dropped in on_before_optimizer_step.
        self.manual_backward(loss)
        if iteration - self.last_optimizer_iteration >= settings.accumulate:
            optimizer.step()  # clipping and the finiteness check run in on_before_optimizer_step
            optimizer.zero_grad(set_to_none=True)
            self._finish_step()
            self.last_optimizer_iteration = iteration

        batch_size = images.shape[0]
        self.epoch_losses.start(self.current_epoch)  # a new epoch resets; a resumed one keeps its sums
        self.epoch_losses.update(components.as_tensor(), batch_size)
        # step values here; the epoch means (exact across a mid-epoch resume) in on_train_epoch_end
        log = dict(prog_bar=True, on_step=True, on_epoch=False, batch_size=batch_size)
        self.log("train/loss_step", components.total(), **log)
        for name, value in components._asdict().items():
            self.log(f"train/{name}_loss_step", value, **log)
        self.log("train/lr_bias", settings.lrs[0], on_step=True, on_epoch=False, batch_size=batch_size)
        self.log("train/lr", settings.lrs[1], on_step=True, on_epoch=False, batch_size=batch_size)
        self.log("train/momentum", settings.momentum, on_step=True, on_epoch=False, batch_size=batch_size)
        self.log(
            "train/nonfinite_skipped", float(self.nonfinite_skipped), on_step=False, on_epoch=True, reduce_fx="max",
            batch_size=batch_size,
        )  # fmt: skip
        return loss.detach()

    def _train_input(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        """The network input of a training batch; with ``multi_scale`` resized to this batch's size."""
        images = self._images(batch)
        if not self.hparams.multi_scale:
            return images
        stride = int(self.model.stride.max())
        seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
        size = multi_scale_size(max(images.shape[2:]), stride, seed, self.current_epoch, batch_idx)
        return resize_batch(images, size, stride)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """After the epoch's last batch, log the epoch means (see :meth:`_log_epoch_losses`)."""
        if batch_idx + 1 >= self.trainer.num_training_batches:
            self._log_epoch_losses()

    def _log_epoch_losses(self) -> None:
        """Log ``train/loss_epoch`` and ``train/{box,cls,dfl}_loss_epoch`` over every image of the epoch.

        Logged at the epoch's last batch rather than in ``on_train_epoch_end``: Lightning runs the
        callbacks' epoch-end hooks (``results.csv``) before the module's, and they must see the values.
        """
        strategy = self.trainer.strategy
        reduce = (
            (lambda t: strategy.reduce(t.to(self.device), reduce_op="sum").cpu())
            if self.trainer.world_size > 1
            else None
        )
        for name, value in self.epoch_losses.means(reduce).items():
            self.log(f"train/{name}_epoch", value, on_step=False, on_epoch=True, sync_dist=False)

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
        elif parameters:
            # the norm clipping computed anyway: no extra pass over the gradients
            self._diverged = self._diverged or self.guard.check_grad_norm(float(total_norm), self._window_images)
        self._window_images = 0
        if self.trainer.world_size > 1:  # every process takes the same decision
            strategy = self.trainer.strategy
            self._skip_current_step = bool(strategy.reduce_boolean_decision(self._skip_current_step, all=False))
            if strategy.reduce_boolean_decision(bool(self._diverged), all=False) and not self._diverged:
                self._diverged = "another process diverged"
        if self._skip_current_step:
            for parameter in parameters:
                parameter.grad = None

    def _stop_diverged(self, reason: str, error: type[TrainingDivergedError] = TrainingDivergedError) -> None:
        raise error(
            f"training diverged at epoch {self.current_epoch}, step {self.global_step}: {reason}. No checkpoint is "
            f"written from these weights. {last_good_checkpoint(self.trainer)} "
            "(or check the data, or use 32-bit precision)."
        )

    def _finish_step(self) -> None:
        """Bookkeeping after an optimizer step: divergence stop, EMA update or non-finite accounting."""
        if self._diverged:
            reason, self._diverged = self._diverged, ""
            self._stop_diverged(reason)
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
                self._stop_diverged(
                    f"{self.nonfinite_consecutive} consecutive optimizer steps had a non-finite loss or gradient",
                    NonFiniteTrainingError,
                )
            return
        self.nonfinite_consecutive = 0
        self.ema.update(self.model)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """The recipe's optimizer: three groups, weight decay scaled to the effective batch."""
        hp = self.hparams
        effective_batch = self._batch_size() * self.trainer.world_size
        decay = scaled_weight_decay(hp.weight_decay, effective_batch, hp.nominal_batch_size)
        choice = self._choice = self.optimizer_choice()
        source = "auto -> " if hp.optimizer == "auto" else ""
        self.print(
            f"optimizer: {source}{choice.name}(lr0={choice.lr0}, momentum={choice.momentum}) weight_decay={decay:.6g}, "
            f"accumulate {nominal_accumulate(effective_batch, hp.nominal_batch_size)} x batch {effective_batch}"
        )
        return build_optimizer(self.model, choice.lr0, choice.momentum, decay, choice.name)

    # --------------------------------------------------------------------------- validation, test
    def on_validation_epoch_start(self) -> None:
        """Start a fresh evaluation."""
        self._start_scored_evaluation()

    def validation_step(self, batch: Batch, batch_idx: int) -> list[torch.Tensor]:
        """EMA model, NMS, map to original pixels, metric update (and the validation loss).

        Returns:
            Per image the ``(n, 6)`` detections in original pixels (for the figure callback).
        """
        return self._evaluation_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        """Compute (once, DDP-exact), log and print the results."""
        self._evaluation_end("val")

    def on_test_epoch_start(self) -> None:
        """Start a fresh evaluation."""
        self._start_scored_evaluation()

    def test_step(self, batch: Batch, batch_idx: int) -> list[torch.Tensor]:
        """As :meth:`validation_step`, logged under ``test/``."""
        return self._evaluation_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        """Compute, log and print the test results."""
        self._evaluation_end("test")

    def _start_scored_evaluation(self) -> None:
        """Validation and test: empty metric state and loss sums, the folded network."""
        self.metrics.reset()
        self._eval_loss_sums.zero_()
        self._fold_eval_network()

    def _evaluation_step(self, batch: Batch | None, stage: str) -> list[torch.Tensor]:
        if batch is None:  # every image of the batch failed to decode at run time (logged by the dataset)
            return []
        images = self._images(batch)
        decoded, raw_maps = self._eval_network(self.eval_model, images)
        if batch.has_labels:
            _, components = self.loss_fn(raw_maps, batch.targets)
            # image-weighted sums (box, cls, dfl, images), reduced over processes once at the end
            count = images.shape[0]
            self._eval_loss_sums += torch.cat(
                [components.as_tensor().double().cpu() * count, torch.tensor([count], dtype=torch.float64)]
            )
        predictions = detect(decoded, batch.ratio_pad, batch.orig_shapes, self.val_nms)
        gt_boxes, gt_labels = batch.ground_truth()
        self.metrics.update(batch.image_ids, predictions, gt_boxes, gt_labels)
        return predictions

    def _log_evaluation_losses(self, stage: str) -> None:
        """Log the image-weighted mean losses over every process's images (exact with uneven shards:
        a plain ``sync_dist`` mean would weight each process's mean equally)."""
        sums = self._eval_loss_sums.clone()
        if self.trainer.world_size > 1:
            sums = self.trainer.strategy.reduce(sums.to(self.device), reduce_op="sum").cpu()
        if float(sums[3]) > 0:
            means = (sums[:3] / sums[3]).float()
            for name, value in zip(("box", "cls", "dfl"), means):
                self.log(f"{stage}/{name}_loss", value, on_step=False, on_epoch=True, sync_dist=False)

    def _evaluation_end(self, stage: str) -> None:
        self._drop_eval_network()
        self._log_evaluation_losses(stage)
        results = self.metrics.compute()
        self.metrics.reset()
        self.log_dict(results.as_log_dict(stage), sync_dist=False)
        # The last mAP50-95 in the progress bar (already global: no sync needed).
        self.log("mAP50-95", results.map50_95, prog_bar=True, logger=False, sync_dist=False)
        if self.trainer.sanity_checking:
            return
        self.last_results = results
        if not self.trainer.is_global_zero:
            return
        if self.hparams.save_json:
            self._write_coco_json()
        epoch = f" epoch {self.current_epoch}" if self.trainer.state.fn == "fit" else ""
        if self.hparams.print_class_table:
            print(f"\n{stage}{epoch} (EMA weights, {self.ema.updates} updates):\n{results.table()}", flush=True)
        else:
            print(
                f"{stage}{epoch}: mAP50-95 {results.map50_95:.4f} mAP50 {results.map50:.4f} "
                f"P {results.precision:.3f} R {results.recall:.3f} ({self.ema.updates} EMA updates)",
                flush=True,
            )

    def _write_coco_json(self) -> None:
        """The evaluated predictions as COCO results (the same writer as predict's COCO output)."""
        from yolo11_lightning.inference.coco_json import write_coco_results
        from yolo11_lightning.training.run_folder import run_directory

        records = self.metrics.last_records
        detections = [
            Detections(path="", image_id=image_id, boxes=record[0], scores=record[1], class_ids=record[2],
                       orig_shape=(0, 0), names=dict(self.model.names))
            for image_id, record in sorted(records.items())
        ]  # fmt: skip
        path = write_coco_results(run_directory(self.trainer) / "predictions.json", detections)
        print(
            f"COCO results JSON: {path} ({sum(len(d) for d in detections)} boxes, {len(detections)} images)", flush=True
        )

    # ------------------------------------------------------------------------------------ predict
    def on_predict_epoch_start(self) -> None:
        """Fold BatchNorm into the network used for this prediction run."""
        self._fold_eval_network()

    def on_predict_epoch_end(self) -> None:
        """Drop the folded copy."""
        self._drop_eval_network()

    def predict_step(self, batch: Batch | None, batch_idx: int, dataloader_idx: int = 0) -> list[Detections]:
        """Detections per image in original pixels (the EMA weights, :attr:`predict_nms`)."""
        if batch is None or len(batch) == 0:  # every image of the batch was unreadable (logged, Batch.skipped)
            return []
        decoded, _ = self._eval_network(self.eval_model, self._images(batch))
        predictions = detect(decoded, batch.ratio_pad, batch.orig_shapes, self.predict_nms)
        names = dict(self.model.names)
        return [
            Detections.from_rows(rows, path, image_id, shape, names)
            for rows, path, image_id, shape in zip(
                predictions, batch.paths, batch.image_ids.tolist(), batch.orig_shapes.tolist()
            )
        ]

    # -------------------------------------------------------------------------------- checkpoints
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
