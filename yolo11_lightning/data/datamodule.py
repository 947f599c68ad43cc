"""``YOLODataModule``: a ``data.yaml`` in, training and evaluation batches out (one device or DDP).

``predict`` also takes a plain source (image, folder, glob, ``.txt`` list, video) without any
``data.yaml``; see :mod:`yolo11_lightning.data.sources`.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader

from yolo11_lightning.data.augment import AugmentConfig
from yolo11_lightning.data.config import (
    DataConfig,
    find_image_files,
    fraction_subset,
    list_image_files,
    load_data_config,
)
from yolo11_lightning.data.dataset import YOLODataset, collate
from yolo11_lightning.data.samplers import RectTrainingSampler, TrainingSampler, ValidationSampler, train_position
from yolo11_lightning.data.scan import ScanSummary, scan_split
from yolo11_lightning.data.sources import PredictDataset, SourceItem, collate_predict, list_source
from yolo11_lightning.data.workers import WorkerInit, WorkerPriority, default_priority, default_worker_count
from yolo11_lightning.errors import UserError

log = logging.getLogger(__name__)


class YOLODataModule(pl.LightningDataModule):
    """Training and evaluation data from a YOLO-format ``data.yaml``.

    Training uses mosaic, random affine, HSV, flips and the light albumentations extras (defaults:
    the reference's YOLO11 recipe); evaluation letterboxes to ``imgsz`` (rectangular batches by
    default). Every random choice of a training sample depends only on ``(seed, epoch, index)``.
    Under DDP both loaders shard by themselves (training: shuffled, padded; evaluation: every image
    exactly once); their samplers are ``DistributedSampler`` subclasses, so Lightning keeps them
    whatever ``use_distributed_sampler`` is set to.

    Args:
        data: Path to the ``data.yaml`` (``path`` + ``train``/``val``/``test`` as folders, ``.txt``
            lists or lists of either; Roboflow ``../train/images`` entries; ``names`` list or map).
            Needed where labels are (fit, validate, test); ``predict`` can use ``source`` instead.
        imgsz: Network input size in pixels (square training canvas; long side for evaluation).
        batch_size: Training images per batch and process (also the window of the epoch order
            that each sample's mosaic partners come from); -1: the largest batch that fits 60% of
            the GPU memory, found by trial before training (CUDA only).
        workers: DataLoader worker processes per loader (0 loads in the main process). ``None``
            (default): for training, the CPUs available to each process on this machine, at most 8;
            for validation, test and predict the same, except 0 when the model runs on the CPU,
            where a worker competes with the model's threads for the same cores (measured on 2
            cores: a 128-image validation in 2.7 s with 0 workers, 3.7 s with 8).
        worker_priority: Scheduling of the worker processes: ``"normal"``, or ``"idle"`` (Linux
            ``SCHED_IDLE``, elsewhere ``nice 19``: they run only on cores the model's threads
            leave free). ``None`` (default): ``"idle"`` when the model runs on the CPU, where the
            workers would otherwise preempt its threads (2 cores, yolo11n at 320, 2 threads: 5-7% less
            CPU and wall time per image), else ``"normal"``. See :mod:`yolo11_lightning.data.workers`.
        val_batch_size: Evaluation batch size; defaults to ``2 * batch_size``.
        rect: Rectangular evaluation batches grouped by aspect ratio (0.5-stride pad); otherwise
            every evaluation image is letterboxed to ``imgsz`` square.
        seed: Base seed of the training shuffle and of every per-sample augmentation.
        close_mosaic: Turn mosaic off for the last N epochs of ``trainer.max_epochs`` (0: never).
        cache_images: Keep all images (resized to ``imgsz``) in RAM; about ``imgsz**2 * 3 * 0.6``
            bytes per image.
        rect_train: Rectangular training batches: images grouped by aspect ratio, each batch
            letterboxed to the smallest stride-multiple shape holding it; the order is not
            shuffled and mosaic is off (both said in the log). One process only.
        disk_cache: Keep the decoded images (resized to ``imgsz``) as ``.npy`` files in a
            ``.yolo11-lightning-cache`` folder beside the images, reused by later runs and
            invalidated when an image changes (size or modification time).
        pin_memory: Page-locked batches for faster host-to-GPU copies.
        persistent_workers: Keep worker processes alive between epochs.
        scan_cache: Read/write the verification cache beside the labels.
        stride: Largest network stride; evaluation shapes are multiples of it.
        mosaic: Probability of a 4-image mosaic.
        degrees: Random rotation range (+/- degrees).
        translate: Random translation (+/- fraction of the image size).
        scale: Random scale gain range (1 +/- scale).
        shear: Random shear range (+/- degrees).
        perspective: Random perspective range (+/- fraction).
        hsv_h: Hue jitter (fraction of the hue circle).
        hsv_s: Saturation jitter (gain fraction).
        hsv_v: Value jitter (gain fraction).
        fliplr: Probability of a horizontal flip.
        flipud: Probability of a vertical flip.
        albumentations_p: Probability of each albumentations extra (Blur, MedianBlur, ToGray, CLAHE).
        predict_split: Split of ``data.yaml`` that ``predict`` runs on when no ``source`` is given.
        source: What ``predict`` runs on, no labels or ``data.yaml`` needed: an image or video file,
            a folder (recursive, sorted), a glob (sorted), or a ``.txt`` list (file order).
            Results come in this input order; nothing is written beside the source files.
        vid_stride: Predict every n-th frame of a video source.
        predict_batch_size: Images per predict batch. 1 (default) letterboxes each image with
            minimal padding to a stride multiple (as the reference's predict); above 1 every image
            is letterboxed to ``imgsz`` square so that they stack.
        single_cls: Train and evaluate one class: every label's class becomes 0 and the class
            names become ``{0: "item"}`` (the model is built with one class).
        fraction: Train on this fraction of the training images: a fixed subset of
            ``round(fraction * N)`` images drawn once from ``seed`` (the same every epoch and on every
            process; the reference takes the first files instead). Evaluation splits stay whole.
        strict_labels: Make it an error (instead of a warning) when more than half of a split's
            images have no label file, e.g. a missing or misnamed ``labels`` folder.
    """

    def __init__(
        self,
        data: str | None = None,
        imgsz: int = 640,
        batch_size: int = 16,
        workers: int | None = None,
        worker_priority: WorkerPriority | None = None,
        val_batch_size: int | None = None,
        rect: bool = True,
        seed: int = 0,
        close_mosaic: int = 10,
        cache_images: bool = False,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        scan_cache: bool = True,
        stride: int = 32,
        mosaic: float = 1.0,
        degrees: float = 0.0,
        translate: float = 0.1,
        scale: float = 0.5,
        shear: float = 0.0,
        perspective: float = 0.0,
        hsv_h: float = 0.015,
        hsv_s: float = 0.7,
        hsv_v: float = 0.4,
        fliplr: float = 0.5,
        flipud: float = 0.0,
        albumentations_p: float = 0.01,
        predict_split: str = "val",
        single_cls: bool = False,
        fraction: float = 1.0,
        disk_cache: bool = False,
        rect_train: bool = False,
        strict_labels: bool = False,
        source: str | None = None,
        vid_stride: int = 1,
        predict_batch_size: int = 1,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if imgsz % stride:
            raise UserError(f"imgsz={imgsz} must be a multiple of stride={stride}")
        if not 0.0 < fraction <= 1.0:
            raise UserError(f"fraction={fraction} must be in (0, 1]")
        if batch_size < 1 and batch_size != -1:
            raise UserError(f"batch_size={batch_size}: give a positive batch size, or -1 for the auto batch size")
        if data is None and source is None:
            raise UserError(
                "no data: give --data.data path/to/data.yaml (labels: fit, validate, test) "
                "or, for predict, --data.source (image, folder, glob, .txt list or video)"
            )
        self.config = load_data_config(data) if data is not None else None
        # Without a data.yaml (predict on a source) the model keeps its own classes and names.
        self.names: dict[int, str] | None = None
        if self.config is not None:
            self.names = {0: "item"} if single_cls else dict(self.config.names)
        self.num_classes: int | None = len(self.names) if self.names is not None else None
        self.keep_originals = False  # set by the prediction writer when it draws or crops
        self.predict_items: list[SourceItem] = []
        self.imgsz = imgsz
        self.batch_size = batch_size
        self._val_batch_size = val_batch_size
        self.val_batch_size = val_batch_size or 2 * batch_size
        self.workers = workers
        self.predict_split = predict_split
        self.augment = AugmentConfig(
            mosaic=mosaic, degrees=degrees, translate=translate, scale=scale, shear=shear, perspective=perspective,
            hsv_h=hsv_h, hsv_s=hsv_s, hsv_v=hsv_v, fliplr=fliplr, flipud=flipud, extras_p=albumentations_p,
        )  # fmt: skip
        self.datasets: dict[str, YOLODataset] = {}
        self.summaries: dict[str, ScanSummary] = {}
        self._mosaic_override: bool | None = None

    def set_batch_size(self, batch_size: int) -> None:
        """Set the training batch size (the auto batch size); evaluation follows unless it was given."""
        self.batch_size = batch_size
        self.val_batch_size = self._val_batch_size or 2 * batch_size

    # ----------------------------------------------------------------------------------------- setup
    def _require_config(self, stage: str) -> DataConfig:
        if self.config is None:
            raise UserError(f"{stage} needs labels: give --data.data path/to/data.yaml")
        return self.config

    def _dataset(self, split: str, expect_labels: bool = True) -> YOLODataset:
        if split not in self.datasets:
            self._require_config(split)
            if split not in self.config.splits:
                raise UserError(f"{self.config.yaml_path}: no '{split}' split")
            sources = self.config.splits[split]
            listing = find_image_files(sources)
            files = listing.files
            if split == "train" and self.hparams.fraction < 1.0:
                files = fraction_subset(files, self.hparams.fraction, self.hparams.seed)
            records, summary = scan_split(
                files, self.config.num_classes, split, ", ".join(map(str, sources)), use_cache=self.hparams.scan_cache,
                listed_duplicates=listing.duplicates, expect_labels=expect_labels,
                strict_labels=self.hparams.strict_labels,
            )  # fmt: skip
            if self.hparams.single_cls:
                records = [replace(r, classes=np.zeros_like(r.classes)) for r in records]
            self.summaries[split] = summary
            if not (summary.fixed or summary.corrupt):  # otherwise scan_split already warned with this line
                rank_zero_info(summary.line(split))
            self.datasets[split] = YOLODataset(
                records,
                self.imgsz,
                augment=self.augment if split == "train" else None,
                seed=self.hparams.seed,
                cache_images=self.hparams.cache_images,
                disk_cache=self.hparams.disk_cache,
            )
        return self.datasets[split]

    def setup(self, stage: str | None = None) -> None:
        """Scan (or load the cache of) the splits the stage needs."""
        if stage == "predict":
            self.predict_items = self._predict_items()
            return
        wanted = {"fit": ["train", "val"], "validate": ["val"], "test": ["test"]}.get(stage or "fit", [])
        if wanted:
            self._require_config(stage or "fit")
        for split in wanted:
            if split == "val" and stage == "fit" and "val" not in self.config.splits:
                rank_zero_info(f"{self.config.yaml_path} has no 'val' split: training without validation")
                continue
            self._dataset(split, expect_labels=stage != "predict")

    # ------------------------------------------------------------------------------ mosaic switch
    def mosaic_enabled(self, epoch: int) -> bool:
        """Whether mosaic is on in ``epoch``: the ``set_mosaic`` override if any, else on until the
        last ``close_mosaic`` epochs of ``trainer.max_epochs`` (always on without a trainer)."""
        if self.hparams.rect_train:
            return False
        if self._mosaic_override is not None:
            return self._mosaic_override
        max_epochs = getattr(self.trainer, "max_epochs", None)
        if not max_epochs or max_epochs < 0 or self.hparams.close_mosaic <= 0:
            return True
        return epoch < max_epochs - self.hparams.close_mosaic

    def set_mosaic(self, enabled: bool | None) -> None:
        """Force mosaic on/off from the next epoch's iterator on (``None``: back to the epoch rule).

        Saved in the checkpoint through ``state_dict``.
        """
        self._mosaic_override = enabled

    def state_dict(self) -> dict[str, Any]:
        """State saved in checkpoints: the mosaic override."""
        return {"mosaic_override": self._mosaic_override}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore ``state_dict``'s output."""
        self._mosaic_override = state_dict.get("mosaic_override")

    # -------------------------------------------------------------------------------- dataloaders
    def _replicas(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is not None:
            return trainer.world_size, trainer.global_rank
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_world_size(), torch.distributed.get_rank()
        return 1, 0

    def _placement(self) -> tuple[bool, int]:
        """``(the model runs on the CPU, training processes on this machine)``."""
        trainer = self.trainer
        if trainer is not None:
            return trainer.strategy.root_device.type == "cpu", trainer.num_devices
        return not torch.cuda.is_available(), 1

    def loader_workers(self, evaluation: bool) -> int:
        """Worker processes of a training (``evaluation=False``) or evaluation loader (``workers=None`` resolved)."""
        if self.workers is not None:
            return self.workers
        return default_worker_count(evaluation, *self._placement())

    def worker_init(self) -> WorkerInit:
        """The loaders' ``worker_init_fn``, with ``worker_priority`` resolved."""
        priority = self.hparams.worker_priority
        return WorkerInit(priority if priority is not None else default_priority(self._placement()[0]))

    def _loader(
        self, dataset: YOLODataset, sampler: torch.utils.data.Sampler, batch_size: int, evaluation: bool
    ) -> DataLoader:
        workers = self.loader_workers(evaluation)
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=workers,
            pin_memory=self.hparams.pin_memory and torch.cuda.is_available(),
            persistent_workers=self.hparams.persistent_workers and workers > 0,
            collate_fn=collate,
            worker_init_fn=self.worker_init() if workers > 0 else None,
            drop_last=False,
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled (seeded), sharded across processes, mosaic switched by ``mosaic_enabled``."""
        dataset = self._dataset("train")
        num_replicas, rank = self._replicas()
        if self.hparams.rect_train:
            return self._rect_train_loader(dataset, num_replicas)
        sampler = TrainingSampler(
            len(dataset),
            seed=self.hparams.seed,
            num_replicas=num_replicas,
            rank=rank,
            mosaic_for_epoch=self.mosaic_enabled,
            window=self.batch_size,
        )
        trainer = self.trainer
        if trainer is not None:
            # Lightning creates the first iterator before it calls set_epoch (a resumed run would
            # replay epoch 0's order) and replays an epoch's first batches on a mid-epoch resume:
            # start exactly where the loop continues.
            epoch, batches_done = train_position(trainer)
            sampler.set_epoch(epoch)
            sampler.set_start(batches_done * self.batch_size)
        return self._loader(dataset, sampler, self.batch_size, evaluation=False)

    def _rect_train_loader(self, dataset: YOLODataset, num_replicas: int) -> DataLoader:
        if num_replicas > 1:
            raise UserError("--data.rect_train runs on one process only: drop it or train on one device")
        rank_zero_info("rect training: batches grouped by aspect ratio, not shuffled, mosaic off")
        sampler = RectTrainingSampler(dataset.image_shapes, self.imgsz, self.batch_size, stride=self.hparams.stride)
        if self.trainer is not None:
            epoch, batches_done = train_position(self.trainer)
            sampler.set_epoch(epoch)
            sampler.set_start(batches_done * self.batch_size)
        return self._loader(dataset, sampler, self.batch_size, evaluation=False)

    def _eval_loader(self, split: str) -> DataLoader:
        dataset = self._dataset(split)
        num_replicas, rank = self._replicas()
        sampler = ValidationSampler(
            dataset.image_shapes,
            self.imgsz,
            self.val_batch_size,
            stride=self.hparams.stride,
            rect=self.hparams.rect,
            num_replicas=num_replicas,
            rank=rank,
        )
        return self._loader(dataset, sampler, self.val_batch_size, evaluation=True)

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        """Every validation image exactly once across processes, letterboxed (rect batches); no
        loader (validation skipped) when ``data.yaml`` declares no ``val`` split."""
        if "val" not in self.config.splits:
            return []
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        """Like ``val_dataloader`` for the ``test`` split."""
        return self._eval_loader("test")

    def _predict_items(self) -> list[SourceItem]:
        """The predict images in input order: ``source``, else the ``predict_split`` files (no scan)."""
        hp = self.hparams
        if hp.source is not None:
            return list_source(hp.source, vid_stride=hp.vid_stride)
        config = self._require_config("predict without --data.source")
        if self.predict_split not in config.splits:
            raise UserError(f"{config.yaml_path}: no '{self.predict_split}' split")
        return [SourceItem(str(path)) for path in list_image_files(config.splits[self.predict_split])]

    def predict_dataloader(self) -> DataLoader:
        """The source's images in input order, letterboxed (minimal padding at batch size 1), unlabelled.

        Video frames are read by at most one worker, in order.
        """
        if not self.predict_items:
            self.predict_items = self._predict_items()
        hp = self.hparams
        batch_size = hp.predict_batch_size
        dataset = PredictDataset(
            self.predict_items,
            self.imgsz,
            stride=hp.stride if batch_size == 1 else None,
            keep_originals=self.keep_originals,
        )
        workers = self.loader_workers(evaluation=True)
        if any(item.frame is not None for item in self.predict_items):
            workers = min(workers, 1)
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=False,
            num_workers=workers,
            pin_memory=hp.pin_memory and torch.cuda.is_available(),
            collate_fn=collate_predict,
            worker_init_fn=self.worker_init() if workers > 0 else None,
        )
