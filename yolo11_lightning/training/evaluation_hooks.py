"""Validation, test and predict hooks of :class:`~yolo11_lightning.training.module.YOLOModule`.

One path for every evaluation: the EMA network (BatchNorm folded into a copy for the run), the
evaluation NMS settings, detections mapped to original pixels; validation and test also update
the COCO metric and the image-weighted losses. A mixin: it uses the module's ``model``, ``ema``,
``loss_fn``, ``metrics``, ``hparams`` and ``_images``.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from yolo11_lightning.data.batch import Batch
from yolo11_lightning.inference.postprocess import NMSSettings, detect
from yolo11_lightning.inference.results import Detections


class EvaluationHooks:
    """The evaluation half of ``YOLOModule`` (validation, test, predict)."""

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
