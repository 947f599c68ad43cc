"""YOLOModule: the YOLO11 training recipe as a LightningModule (manual optimisation)."""

from __future__ import annotations

import os
from typing import Any, Literal

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from yolo11_lightning.data.batch import Batch
from yolo11_lightning.inference.preprocess import to_float_input
from yolo11_lightning.nn.model import DetectionModel
from yolo11_lightning.training.checkpoint_hooks import CheckpointHooks
from yolo11_lightning.training.checkpoint_state import class_names_dict
from yolo11_lightning.training.compiled import CompiledNetwork
from yolo11_lightning.training.cpu_memory import keep_freed_memory
from yolo11_lightning.training.ema import ModelEMA
from yolo11_lightning.training.epoch_means import EpochLossMeans
from yolo11_lightning.training.errors import UserError
from yolo11_lightning.training.evaluation_hooks import EvaluationHooks
from yolo11_lightning.training.guards import DivergenceGuard
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
from yolo11_lightning.training.step_safety import NonFiniteTrainingError, StepSafetyHooks

__all__ = ["NonFiniteTrainingError", "YOLOModule"]


class YOLOModule(EvaluationHooks, StepSafetyHooks, CheckpointHooks, LightningModule):
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
        cpu_malloc: keep freed tensor memory in the process instead of returning it to the kernel
            (glibc malloc thresholds, process-wide, see ``training/cpu_memory.py``); ``None``
            (default): on when the trainer runs on the CPU, where page faults cost about 9% of a
            training step, off elsewhere. The process then keeps its peak memory until it exits.
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
        cpu_malloc: bool | None = None,
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
        """Resolve ``channels_last`` and ``cpu_malloc`` (``None``) for the trainer's device (model not moved yet)."""
        on_cpu = self.trainer.strategy.root_device.type == "cpu"
        if self.hparams.channels_last is None and not self._channels_last and on_cpu:
            self._channels_last = True
            self.model.to(memory_format=torch.channels_last)
            self.ema.module.to(memory_format=torch.channels_last)
        if self.hparams.cpu_malloc or (self.hparams.cpu_malloc is None and on_cpu):
            keep_freed_memory()

    def _images(self, batch: Batch) -> torch.Tensor:
        return to_float_input(batch.images, channels_last=self._channels_last)

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
