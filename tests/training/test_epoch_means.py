"""``EpochLossMeans``: image-weighted epoch means that survive a checkpoint in the middle of an epoch."""

from __future__ import annotations

import pytest
import torch

from yolo11_lightning.training.epoch_means import EpochLossMeans


def test_means_are_image_weighted_and_survive_a_mid_epoch_checkpoint() -> None:
    batches = [
        (torch.tensor([1.0, 2.0, 3.0]), 4),
        (torch.tensor([3.0, 0.0, 1.0]), 2),
        (torch.tensor([2.0, 2.0, 2.0]), 4),
    ]
    whole = EpochLossMeans()
    whole.start(5)
    for components, images in batches:
        whole.update(components, images)
    expected = {"box_loss": 18 / 10, "cls_loss": 16 / 10, "dfl_loss": 22 / 10, "loss": 56 / 10}
    assert {k: float(v) for k, v in whole.means().items()} == pytest.approx(expected, rel=1e-7)

    first = EpochLossMeans()
    first.start(5)
    first.update(*batches[0])
    resumed = EpochLossMeans()
    resumed.load_state_dict(first.state_dict())
    resumed.start(5)  # the same epoch: the saved sums are kept
    for components, images in batches[1:]:
        resumed.update(components, images)
    assert {k: float(v) for k, v in resumed.means().items()} == {k: float(v) for k, v in whole.means().items()}
    resumed.start(6)  # the next epoch starts from zero
    assert resumed.means() == {}


def test_means_reduce_over_processes() -> None:
    means = EpochLossMeans()
    means.start(0)
    means.update(torch.tensor([1.0, 1.0, 1.0]), 2)
    doubled = means.means(reduce_sum=lambda t: t * 2)  # two identical processes
    assert float(doubled["loss"]) == pytest.approx(3.0)
