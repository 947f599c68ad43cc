"""The detection dataset: decode, augment or letterbox, and collate into a :class:`Batch`.

A sample is built from a ``SampleRequest`` (or a bare index). Training samples draw every random
choice from ``numpy.random.default_rng([seed, epoch, index])``, so a sample is the same whichever
worker or process builds it. Evaluation samples are letterboxed to the requested shape and carry
the mapping back to original pixels.

An image that passed the scan but fails to decode at run time (it changed on disk) never stops a
run: it is logged and counted in ``YOLODataset.unreadable`` (per process); a training sample is
built from the next image of the split instead, an evaluation or predict sample is left out of
its batch (``collate`` drops it; a batch left empty becomes ``None`` and is skipped).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from yolo11_lightning.data.augment import (
    AugmentConfig,
    PixelExtras,
    flip_horizontal,
    flip_vertical,
    hsv_jitter,
    mosaic4,
    random_affine,
)
from yolo11_lightning.data.batch import Batch
from yolo11_lightning.data.samplers import SampleRequest
from yolo11_lightning.data.scan import ImageRecord
from yolo11_lightning.inference.preprocess import (
    UnreadableImageError,
    letterbox,
    letterbox_with_mapping,
    read_image,
    resize_long_side,
    stack_images,
)

log = logging.getLogger(__name__)

MAX_SUBSTITUTIONS = 16
"""Training: how many following images are tried in place of one that fails to decode at run time."""


DISK_CACHE_DIR = ".yolo11-lightning-cache"
"""Folder (beside the images) of the decoded-image disk cache."""


def _to_input(boxes: np.ndarray, gain: tuple[float, float], pad: tuple[float, float]) -> np.ndarray:
    """Pixel ``xyxy`` boxes mapped as their image was letterboxed: ``input = box * gain + pad`` per axis."""
    return boxes * np.array(gain * 2, np.float32) + np.array(pad * 2, np.float32)


class YOLODataset(Dataset):
    """Images and boxes of one split.

    Args:
        records: Verified images and labels (from ``scan_split``).
        imgsz: Network input size (long side / square side).
        augment: Training augmentation settings, or ``None`` for evaluation (letterbox only).
        seed: Base seed of the per-sample random generators.
        cache_images: Keep every image, resized to ``imgsz`` on its long side, in RAM (loaded once,
            shared with forked workers copy-on-write).
        buffer_size: Per-process LRU buffer of recently decoded images (mosaic reuses them); 0 disables.
        disk_cache: Keep each decoded image (resized to ``imgsz``) as an ``.npy`` file in a
            ``.yolo11-lightning-cache`` folder beside it, reused by later runs; the file name carries
            a hash of the image's path, size and modification time and of ``imgsz``, so an edited
            image is decoded again (its stale file is removed).
    """

    def __init__(
        self,
        records: list[ImageRecord],
        imgsz: int,
        augment: AugmentConfig | None = None,
        seed: int = 0,
        cache_images: bool = False,
        buffer_size: int = 64,
        disk_cache: bool = False,
    ) -> None:
        self.records = records
        self.disk_cache = disk_cache
        self.imgsz = imgsz
        self.augment = augment
        self.seed = seed
        self.buffer_size = buffer_size
        self.extras = PixelExtras(augment.extras_p) if augment is not None else None
        self._buffer: OrderedDict[int, np.ndarray] = OrderedDict()
        self.unreadable: dict[str, str] = {}  # path -> reason, images that failed to decode at run time
        self._ram: list[np.ndarray] | None = None
        if cache_images:
            with ThreadPoolExecutor(8) as pool:
                self._ram = list(pool.map(self._decode, range(len(records))))

    def __len__(self) -> int:
        return len(self.records)

    @property
    def image_shapes(self) -> np.ndarray:
        """``int64 (n, 2)`` original ``(height, width)`` of every image."""
        return np.array([(r.height, r.width) for r in self.records], dtype=np.int64).reshape(-1, 2)

    def _decode(self, index: int) -> np.ndarray:
        path = str(self.records[index].path)
        try:
            if self.disk_cache:
                return self._decode_through_disk_cache(index)
            return resize_long_side(read_image(path), self.imgsz)
        except (UnreadableImageError, FileNotFoundError) as error:
            if path not in self.unreadable:
                self.unreadable[path] = str(error)
                log.warning(
                    "skipping %s (%d image(s) unreadable at run time in this process; changed since the scan?)",
                    error, len(self.unreadable),
                )  # fmt: skip
            if not isinstance(error, UnreadableImageError):
                raise UnreadableImageError(f"cannot read image {path}: {error.strerror or error}") from error
            raise

    def disk_cache_path(self, index: int) -> Path:
        """Where image ``index``'s decoded pixels are cached (see ``disk_cache``)."""
        path = Path(self.records[index].path)
        stat = path.stat()
        key = hashlib.sha1(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{self.imgsz}".encode()).hexdigest()
        return path.parent / DISK_CACHE_DIR / f"{path.stem}-{key[:16]}.npy"

    def _decode_through_disk_cache(self, index: int) -> np.ndarray:
        cache_path = self.disk_cache_path(index)
        if cache_path.is_file():
            try:
                return np.load(cache_path, allow_pickle=False)
            except (OSError, ValueError):  # a truncated file: decode again and rewrite it
                pass
        image = resize_long_side(read_image(str(self.records[index].path)), self.imgsz)
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        for stale in cache_path.parent.glob(f"{Path(self.records[index].path).stem}-*.npy"):
            if stale != cache_path and len(stale.stem) == len(cache_path.stem):
                stale.unlink(missing_ok=True)
        temporary = cache_path.with_name(f".{cache_path.name}.{os.getpid()}.tmp")
        with temporary.open("wb") as handle:
            np.save(handle, image, allow_pickle=False)
        os.replace(temporary, cache_path)
        return image

    def load_image(self, index: int) -> np.ndarray:
        """The image resized to ``imgsz`` on its long side (BGR uint8), from RAM, buffer or disk."""
        if self._ram is not None:
            return self._ram[index]
        image = self._buffer.get(index)
        if image is not None:
            self._buffer.move_to_end(index)
            return image
        image = self._decode(index)
        if self.buffer_size:
            self._buffer[index] = image
            if len(self._buffer) > self.buffer_size:
                self._buffer.popitem(last=False)
        return image

    def _pixel_boxes(self, index: int, width: int, height: int) -> np.ndarray:
        """The image's boxes as pixel ``xyxy`` for an image of ``width`` x ``height``."""
        cx, cy, w, h = self.records[index].boxes.T
        return np.stack(
            [(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height], 1
        ).astype(np.float32)

    def _tile(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        image = self.load_image(index)
        return image, self.records[index].classes, self._pixel_boxes(index, image.shape[1], image.shape[0])

    def _train_sample(self, request: SampleRequest) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        config = self.augment
        assert config is not None and self.extras is not None
        rng = np.random.default_rng([self.seed, request.epoch, request.index])
        size = self.imgsz
        if request.mosaic and rng.random() < config.mosaic:
            partners = request.partners or tuple(rng.integers(0, len(self.records), 3).tolist())
            tiles = [self._tile(i) for i in (request.index, *partners)]
            image, classes, boxes = mosaic4(tiles, size, rng)
            output_size = (size, size)
        else:
            height, width = request.shape or (size, size)  # a rectangular-training batch shape, or square
            image, classes, boxes = self._tile(request.index)
            image, gain, pad = letterbox(image, (height, width))
            boxes = _to_input(boxes, gain, pad)
            output_size = (width, height)
        image, classes, boxes = random_affine(image, classes, boxes, output_size, config, rng)
        image = self.extras(image, rng)
        image = hsv_jitter(image, (config.hsv_h, config.hsv_s, config.hsv_v), rng)
        if rng.random() < config.flipud:
            image, boxes = flip_vertical(image, boxes)
        if rng.random() < config.fliplr:
            image, boxes = flip_horizontal(image, boxes)
        return image, classes, boxes

    def __getitem__(self, request: int | SampleRequest) -> dict[str, Any] | None:
        """Build one sample.

        Args:
            request: An index (epoch 0, mosaic on, ``imgsz`` square) or a ``SampleRequest``.

        Returns:
            ``image`` uint8 ``(H, W, 3)`` **BGR** (the collate makes the RGB ``(B, 3, H, W)`` batch),
            ``classes`` int64 ``(n,)``, ``boxes`` float32 ``(n, 4)`` normalised ``cx, cy, w, h`` of
            the output image, ``image_id``, ``orig_shape`` ``(h, w)``, ``ratio_pad`` ``(gain_x,
            gain_y, pad_x, pad_y)`` (identity ``(1, 1, 0, 0)`` for augmented samples) and ``path``.
            ``None`` for an evaluation image that no longer decodes (see the module docstring).
        """
        if not isinstance(request, SampleRequest):
            request = SampleRequest(int(request))
        if self.augment is not None:
            for attempt in range(MAX_SUBSTITUTIONS + 1):
                try:
                    image, classes, boxes = self._train_sample(request)
                    break
                except UnreadableImageError:
                    if attempt == MAX_SUBSTITUTIONS:
                        raise
                    # the next image instead, with partners drawn from its own seed
                    request = request._replace(index=(request.index + 1) % len(self.records), partners=None)
            ratio_pad = (1.0, 1.0, 0.0, 0.0)
            record = self.records[request.index]
        else:
            record = self.records[request.index]
            shape = request.shape or (self.imgsz, self.imgsz)
            try:
                loaded = self.load_image(request.index)
            except UnreadableImageError:
                return None
            image, ratio_pad = letterbox_with_mapping(loaded, (record.height, record.width), shape, scaleup=False)
            classes = record.classes
            boxes = _to_input(
                self._pixel_boxes(request.index, record.width, record.height), ratio_pad[:2], ratio_pad[2:]
            )
        height, width = image.shape[:2]
        normalised = np.empty_like(boxes)
        normalised[:, 0] = (boxes[:, 0] + boxes[:, 2]) / (2 * width)
        normalised[:, 1] = (boxes[:, 1] + boxes[:, 3]) / (2 * height)
        normalised[:, 2] = (boxes[:, 2] - boxes[:, 0]) / width
        normalised[:, 3] = (boxes[:, 3] - boxes[:, 1]) / height
        return {
            "image": image,
            "classes": classes,
            "boxes": normalised,
            "image_id": request.index,
            "orig_shape": (record.height, record.width),
            "ratio_pad": ratio_pad,
            "path": str(record.path),
        }


def collate(samples: list[dict[str, Any] | None]) -> Batch | None:
    """Stack samples into a :class:`~yolo11_lightning.data.batch.Batch`.

    The images go from ``(H, W, 3)`` BGR to one ``uint8 (B, 3, H, W)`` RGB tensor in a single copy;
    the targets ``float32 (N, 6)`` rows ``(image_index, class, cx, cy, w, h)`` are built in one go.
    ``None`` samples (images that failed to decode) are dropped; ``None`` when none is left.
    """
    samples = [sample for sample in samples if sample is not None]
    if not samples:
        return None
    counts = [len(sample["classes"]) for sample in samples]
    targets = np.empty((sum(counts), 6), dtype=np.float32)
    targets[:, 0] = np.repeat(np.arange(len(samples)), counts)
    if targets.shape[0]:
        targets[:, 1] = np.concatenate([sample["classes"] for sample in samples])
        targets[:, 2:] = np.concatenate([sample["boxes"] for sample in samples])
    return Batch(
        images=stack_images([sample["image"] for sample in samples]),
        targets=torch.from_numpy(targets),
        image_ids=torch.tensor([sample["image_id"] for sample in samples], dtype=torch.int64),
        orig_shapes=torch.tensor([sample["orig_shape"] for sample in samples], dtype=torch.int64),
        ratio_pad=torch.tensor([sample["ratio_pad"] for sample in samples], dtype=torch.float32),
        paths=[sample["path"] for sample in samples],
    )
