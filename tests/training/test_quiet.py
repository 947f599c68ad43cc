"""Each known noise message is silenced, one by one, and nothing else is."""

from __future__ import annotations

import logging
import warnings

import pytest
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn

from yolo11_lightning.training.quiet import silence_evaluation_noise, silence_known_noise, silence_resume_noise


def _shown(emit) -> list[str]:  # noqa: ANN001 - a callable that warns
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        silence_known_noise()
        emit()
    return [str(w.message) for w in caught]


def test_pytree_deprecation_is_silenced() -> None:
    from lightning.pytorch.utilities._pytree import _tree_flatten

    assert _shown(lambda: _tree_flatten(1)) == []


def test_ddp_sync_dist_advice_is_silenced_for_the_global_metrics_only() -> None:
    def advice(name: str) -> None:
        rank_zero_warn(
            f"It is recommended to use `self.log({name!r}, ..., sync_dist=True)` when logging on epoch level in "
            "distributed setting to accumulate the metric across devices."
        )

    for name in ("val/mAP50-95", "val/precision", "test/recall", "mAP50-95"):
        assert _shown(lambda name=name: advice(name)) == [], name
    assert len(_shown(lambda: advice("train/other"))) == 1  # a value that does need syncing still warns


def test_resume_noise_is_silenced_only_when_resuming() -> None:
    message = "Checkpoint directory /x/checkpoints exists and is not empty."
    assert len(_shown(lambda: rank_zero_warn(message))) == 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        silence_resume_noise()
        rank_zero_warn(message)
    assert caught == []


def test_dirpath_change_is_silenced_only_when_evaluating() -> None:
    message = "The dirpath has changed from '/a/checkpoints' to '/b/checkpoints', therefore ..."
    assert (
        len(_shown(lambda: warnings.warn(message, stacklevel=1))) == 1
    )  # in fit it means the best score is lost: shown
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        silence_evaluation_noise()
        warnings.warn(message, stacklevel=1)
    assert caught == []


def test_other_warnings_still_show() -> None:
    assert len(_shown(lambda: warnings.warn("something else", UserWarning, stacklevel=1))) == 1


def test_litlogger_tip_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    silence_known_noise()
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(level=logging.INFO)
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        rank_zero_info("💡 Tip: For seamless cloud logging and experiment tracking, try installing [litlogger]")
        rank_zero_info("GPU available: False")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert [r.getMessage() for r in records] == ["GPU available: False"]
