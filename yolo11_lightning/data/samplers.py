"""Samplers that carry each sample's instructions, for one process or many.

Both samplers subclass ``torch.utils.data.DistributedSampler`` (with explicit ``num_replicas`` and
``rank``, so they work without ``torch.distributed``), which also tells Lightning not to replace them.
They yield ``SampleRequest`` tuples instead of bare indices: the epoch, the mosaic switch and the
letterbox shape travel with the index from the main process to the worker that builds the sample,
so persistent workers never hold stale state. ``train_position`` tells where a (resumed) fit loop
continues, which is where the training sampler starts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from torch.utils.data import DistributedSampler

if TYPE_CHECKING:
    import lightning.pytorch as pl


class SampleRequest(NamedTuple):
    """What the dataset should build.

    Attributes:
        index: Image index in the split.
        epoch: Epoch number (seeds the sample's augmentation together with the seed and index).
        mosaic: Whether mosaic is enabled for this epoch.
        shape: Letterbox ``(height, width)`` for evaluation samples; ``None`` means ``imgsz`` square.
        partners: The three other images of a mosaic; ``None`` lets the dataset draw them from the
            whole split.
    """

    index: int
    epoch: int = 0
    mosaic: bool = True
    shape: tuple[int, int] | None = None
    partners: tuple[int, int, int] | None = None


class TrainingSampler(DistributedSampler):
    """Seeded shuffling sampler, sharded across ``num_replicas`` processes (padding by repetition).

    The order of an epoch is a permutation drawn from ``(seed, epoch)`` only. It is cut into windows
    of ``window`` consecutive positions; ranks take whole windows in turn (the last, incomplete round
    of windows is split evenly), and each sample's three mosaic partners are drawn from its own
    window. With ``window`` equal to the batch size, a batch's mosaics reuse the batch's own images,
    so a worker decodes about one image per sample (the reference gets the same effect from its
    buffer of recently loaded images), and the partners do not depend on the number of processes.
    Call ``set_epoch`` before each epoch (Lightning does).

    Args:
        num_images: Size of the split.
        seed: Base seed of the shuffle and of the partner choice.
        shuffle: Shuffle (otherwise index order).
        num_replicas: Number of processes.
        rank: This process's rank.
        drop_last: Drop the tail instead of padding it to a multiple of ``num_replicas``.
        mosaic_for_epoch: Returns whether mosaic is on in a given epoch (default: always).
        window: Positions per window (mosaic partners come from the same window).
    """

    def __init__(
        self,
        num_images: int,
        seed: int = 0,
        shuffle: bool = True,
        num_replicas: int = 1,
        rank: int = 0,
        drop_last: bool = False,
        mosaic_for_epoch: Callable[[int], bool] | None = None,
        window: int = 16,
    ) -> None:
        super().__init__(
            range(num_images), num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last
        )
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.mosaic_for_epoch = mosaic_for_epoch
        self.window = window
        self.start = 0

    def set_start(self, num_samples: int) -> None:
        """Skip this rank's first ``num_samples`` samples in the next iteration only (mid-epoch resume).

        The length stays the full epoch's, so the loop's batch counting is unchanged.
        """
        if num_samples < 0:
            raise ValueError(f"num_samples must be >= 0, got {num_samples}")
        self.start = num_samples

    def epoch_order(self, epoch: int) -> np.ndarray:
        """The global order of an epoch (before sharding), length ``total_size``."""
        count = len(self.dataset)
        order = np.random.default_rng([self.seed, epoch]).permutation(count) if self.shuffle else np.arange(count)
        return order[: self.total_size] if self.drop_last else np.resize(order, self.total_size)

    def epoch_partners(self, epoch: int, order: np.ndarray) -> np.ndarray:
        """``(total_size, 3)`` mosaic partners: random members of each position's window."""
        positions = np.arange(len(order))
        starts = positions // self.window * self.window
        lengths = np.minimum(self.window, len(order) - starts)
        draws = np.random.default_rng([self.seed, epoch, 1]).random((len(order), 3))
        return order[starts[:, None] + (draws * lengths[:, None]).astype(np.int64)]

    def rank_positions(self) -> np.ndarray:
        """The global positions this rank takes, in order (``num_samples`` of them)."""
        round_size = self.window * self.num_replicas
        full = self.total_size // round_size * round_size
        whole = np.arange(full).reshape(-1, self.num_replicas, self.window)[:, self.rank].reshape(-1)
        tail = np.arange(full, self.total_size).reshape(self.num_replicas, -1)[self.rank]
        return np.concatenate([whole, tail])

    def __iter__(self) -> Iterator[SampleRequest]:  # type: ignore[override]
        epoch = self.epoch
        start, self.start = self.start, 0
        mosaic = True if self.mosaic_for_epoch is None else bool(self.mosaic_for_epoch(epoch))
        order = self.epoch_order(epoch)
        partners = self.epoch_partners(epoch, order)
        for position in self.rank_positions()[start:]:
            yield SampleRequest(int(order[position]), epoch, mosaic, None, tuple(partners[position].tolist()))

    def __len__(self) -> int:
        return self.num_samples


def rect_batch_shape(aspect_ratios: np.ndarray, imgsz: int, stride: int, pad: float) -> tuple[int, int]:
    """Letterbox shape ``(height, width)`` for a batch of images with height/width ``aspect_ratios``.

    The long side is ``imgsz``; each side is rounded up to the stride multiple after adding ``pad``
    strides (the reference's 0.5-stride pad for validation).
    """
    low, high = float(aspect_ratios.min()), float(aspect_ratios.max())
    relative = (high, 1.0) if high < 1 else (1.0, 1.0 / low) if low > 1 else (1.0, 1.0)
    return tuple(int(np.ceil(side * imgsz / stride + pad)) * stride for side in relative)  # type: ignore[return-value]


class ValidationSampler(DistributedSampler):
    """Evaluation sampler: every image exactly once across ranks (no padding, no duplicates).

    The order (sorted by aspect ratio with ``rect``) is cut into batches of ``batch_size`` first,
    and ranks get contiguous, near-equal runs of whole batches, so an image's batch, letterbox shape
    and therefore its predictions do not depend on the number of processes (exact DDP metrics).
    With ``rect`` each batch shares one letterbox shape (use the same ``batch_size`` in the
    DataLoader, no ``drop_last``); otherwise every image is letterboxed to ``imgsz`` square. With
    fewer batches than processes the batches shrink so that every rank gets images.

    Args:
        image_shapes: ``(n, 2)`` original ``(height, width)`` of each image.
        imgsz: Long side of the network input.
        batch_size: Batch size of the DataLoader that consumes this sampler.
        stride: Largest network stride; shapes are multiples of it.
        rect: Rectangular batches grouped by aspect ratio.
        pad: Extra strides added before rounding a rectangular shape up.
        num_replicas: Number of processes.
        rank: This process's rank.
    """

    def __init__(
        self,
        image_shapes: np.ndarray,
        imgsz: int,
        batch_size: int,
        stride: int = 32,
        rect: bool = True,
        pad: float = 0.5,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        image_shapes = np.asarray(image_shapes, dtype=np.float64).reshape(-1, 2)
        super().__init__(range(len(image_shapes)), num_replicas=num_replicas, rank=rank, shuffle=False)
        aspect = image_shapes[:, 0] / image_shapes[:, 1]
        order = np.argsort(aspect, kind="stable") if rect else np.arange(len(image_shapes))
        if -(-len(order) // batch_size) < num_replicas:  # too few batches to give every rank one
            batch_size = max(1, -(-len(order) // num_replicas))
        batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
        mine = [batches[b] for b in np.array_split(np.arange(len(batches)), num_replicas)[rank]]
        self.indices = np.concatenate(mine) if mine else np.zeros(0, dtype=np.int64)
        self.shapes: list[tuple[int, int]] = []
        for batch in mine:
            shape = rect_batch_shape(aspect[batch], imgsz, stride, pad) if rect else (imgsz, imgsz)
            self.shapes.extend([shape] * len(batch))

    def __iter__(self) -> Iterator[SampleRequest]:  # type: ignore[override]
        for index, shape in zip(self.indices, self.shapes):
            yield SampleRequest(int(index), 0, False, shape)

    def __len__(self) -> int:
        return len(self.indices)


class RectTrainingSampler(ValidationSampler):
    """Training with rectangular batches: images grouped by aspect ratio, one letterbox shape per batch.

    As the reference's ``rect`` training: the order is fixed (sorted by aspect ratio, not shuffled),
    each batch is letterboxed to the smallest stride-multiple shape holding its images (no extra pad)
    and mosaic is off. The epoch travels with each request, so the per-sample augmentation still
    changes every epoch. One process only (the batches are not padded to equal counts per rank).

    Args:
        image_shapes: ``(n, 2)`` original ``(height, width)`` of each image.
        imgsz: Long side of the network input.
        batch_size: Batch size of the DataLoader that consumes this sampler.
        stride: Largest network stride; shapes are multiples of it.
    """

    def __init__(self, image_shapes: np.ndarray, imgsz: int, batch_size: int, stride: int = 32) -> None:
        super().__init__(image_shapes, imgsz, batch_size, stride=stride, rect=True, pad=0.0)
        self.start = 0

    def set_start(self, num_samples: int) -> None:
        """Skip the first ``num_samples`` samples in the next iteration only (mid-epoch resume)."""
        self.start = num_samples

    def __iter__(self) -> Iterator[SampleRequest]:  # type: ignore[override]
        start, self.start = self.start, 0
        for index, shape in list(zip(self.indices, self.shapes))[start:]:
            yield SampleRequest(int(index), self.epoch, False, shape)


def train_position(trainer: pl.Trainer) -> tuple[int, int]:
    """Where the fit loop continues: ``(epoch, batches already trained in that epoch)``.

    Read from the (restored) loop progress when the training loader is built: a fresh run or a
    checkpoint between epochs continues at the start of epoch ``processed``; a checkpoint inside an
    epoch (step or validation checkpoint) after its ``processed`` batches, or at the start of the
    next epoch when the saved batch was the epoch's last.
    """
    epochs = trainer.fit_loop.epoch_progress.current
    batches = trainer.fit_loop.epoch_loop.batch_progress
    if epochs.started <= epochs.processed:
        return epochs.processed, 0
    if batches.is_last_batch:
        return epochs.processed + 1, 0
    return epochs.processed, batches.current.processed
