"""Seeded training shards and unpadded evaluation shards (``yolo11_lightning/data/samplers.py``)."""

from __future__ import annotations

import numpy as np
import pytest
from torch.utils.data import DistributedSampler

from yolo11_lightning.data.samplers import SampleRequest, TrainingSampler, ValidationSampler, rect_batch_shape

RNG = np.random.default_rng(0)
SHAPES = np.stack([RNG.integers(100, 900, 17), RNG.integers(100, 900, 17)], 1)  # 17 images, mixed aspect


@pytest.mark.parametrize("rect", [True, False])
@pytest.mark.parametrize("replicas", [1, 2, 3])
def test_validation_shards_cover_every_image_once(rect: bool, replicas: int) -> None:
    seen = []
    for rank in range(replicas):
        sampler = ValidationSampler(SHAPES, imgsz=640, batch_size=4, rect=rect, num_replicas=replicas, rank=rank)
        requests = list(sampler)
        assert len(requests) == len(sampler) and isinstance(sampler, DistributedSampler)
        seen += [r.index for r in requests]
    assert sorted(seen) == list(range(17))  # the union is the dataset, no repeats, no padding


def test_rect_batches_share_a_shape_that_fits_their_images() -> None:
    for rank in range(2):
        requests = list(ValidationSampler(SHAPES, imgsz=640, batch_size=4, num_replicas=2, rank=rank))
        for start in range(0, len(requests), 4):
            batch = requests[start : start + 4]
            assert len({r.shape for r in batch}) == 1
            height, width = batch[0].shape
            assert height % 32 == 0 and width % 32 == 0 and max(height, width) == 640 + 32  # 0.5-stride pad
            for r in batch:  # the image letterboxed with long side 640 fits the batch shape
                h, w = SHAPES[r.index]
                assert h * 640 / max(h, w) <= height and w * 640 / max(h, w) <= width


def test_rect_batch_shape_matches_reference_rule() -> None:
    assert rect_batch_shape(np.array([0.5, 0.75]), 640, 32, 0.5) == (512, 672)  # ceil(0.75*20+0.5)*32
    assert rect_batch_shape(np.array([1.5, 2.0]), 640, 32, 0.5) == (672, 448)  # width 1/1.5
    assert rect_batch_shape(np.array([0.8, 1.2]), 640, 32, 0.5) == (672, 672)
    assert rect_batch_shape(np.array([0.5]), 640, 32, 0.0) == (320, 640)


def test_training_order_depends_only_on_seed_and_epoch() -> None:
    sampler = TrainingSampler(10, seed=3)
    sampler.set_epoch(2)
    first = list(sampler)
    assert all(isinstance(r, SampleRequest) and r.epoch == 2 and r.mosaic for r in first)
    again = TrainingSampler(10, seed=3)
    again.set_epoch(2)
    assert list(again) == first
    sampler.set_epoch(3)
    assert [r.index for r in sampler] != [r.index for r in first]
    assert sorted(r.index for r in first) == list(range(10))


def test_training_shards_partition_the_epoch_order() -> None:
    shards = []
    for rank in range(3):
        sampler = TrainingSampler(10, seed=1, num_replicas=3, rank=rank)
        sampler.set_epoch(5)
        shards.append([r.index for r in sampler])
        assert len(shards[-1]) == len(sampler) == 4  # padded to 12
    order = TrainingSampler(10, seed=1, num_replicas=3).epoch_order(5)
    assert sorted(sum(shards, [])) == sorted(order.tolist()) and set(order.tolist()) == set(range(10))
    dropped = TrainingSampler(10, seed=1, num_replicas=3, rank=0, drop_last=True)
    assert len(list(dropped)) == len(dropped) == 3


def test_mosaic_switch_travels_with_the_request() -> None:
    sampler = TrainingSampler(4, mosaic_for_epoch=lambda epoch: epoch < 2)
    sampler.set_epoch(1)
    assert all(r.mosaic for r in sampler)
    sampler.set_epoch(2)
    assert not any(r.mosaic for r in sampler)


def test_windows_shard_and_partners_do_not_depend_on_the_process_count() -> None:
    by_index = {}
    for replicas in (1, 2, 4):
        requests = []
        for rank in range(replicas):
            sampler = TrainingSampler(100, seed=2, num_replicas=replicas, rank=rank, window=8)
            sampler.set_epoch(1)
            mine = list(sampler)
            assert len(mine) == len(sampler)
            requests += mine
        assert sorted(r.index for r in requests) == sorted(
            TrainingSampler(100, seed=2, num_replicas=replicas).epoch_order(1).tolist()
        )
        for r in requests[:64]:  # the first full windows: identical partners whatever the sharding
            assert by_index.setdefault(r.index, r.partners) == r.partners
    sampler = TrainingSampler(100, seed=2, num_replicas=2, rank=1, window=8)
    sampler.set_epoch(1)
    order, requests = sampler.epoch_order(1), list(sampler)
    window_of = {int(index): position // 8 for position, index in enumerate(order[:96])}
    for r in requests[:40]:  # rank 1 takes whole windows 1, 3, 5, ...; partners come from the same window
        assert window_of[r.index] % 2 == 1
        assert all(window_of[p] == window_of[r.index] for p in r.partners)


@pytest.mark.parametrize("replicas", [2, 3])
def test_validation_batches_do_not_depend_on_the_number_of_processes(replicas: int) -> None:
    """Each image gets the same batch and letterbox shape with 1 or N processes (exact DDP mAP)."""
    single = list(ValidationSampler(SHAPES, imgsz=640, batch_size=4, num_replicas=1, rank=0))
    sharded = [
        r for rank in range(replicas) for r in ValidationSampler(SHAPES, 640, 4, num_replicas=replicas, rank=rank)
    ]
    assert sharded == single
    tiny = [list(ValidationSampler(SHAPES[:3], 640, 4, num_replicas=3, rank=rank)) for rank in range(3)]
    assert [len(requests) for requests in tiny] == [1, 1, 1]  # fewer batches than ranks: nobody is left empty
