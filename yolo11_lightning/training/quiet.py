"""Silence the known noise of every run, one message at a time (never all warnings).

* Lightning's "Tip: ... try installing litlogger" advert, printed at every trainer construction.
* PyTorch's ``LeafSpec`` deprecation (a ``FutureWarning``) triggered by Lightning's own pytree
  helper: nothing in this project can act on it.
* Under DDP, Lightning's recommendation to log with ``sync_dist=True``: the figures of
  :class:`~yolo11_lightning.training.metrics.DetectionMetrics` are computed once over all
  processes' images and are already global (an all-reduce would only add rounding).
* When resuming into the run's own folder: "Checkpoint directory ... exists and is not empty"
  (that is the point of resuming there); see :func:`silence_resume_noise`.
* In ``validate``/``test``/``predict`` with a checkpoint: "The dirpath has changed ..." (the
  checkpoint callbacks' best scores only matter when training); see :func:`silence_evaluation_noise`.
"""

from __future__ import annotations

import logging
import warnings

_RANK_ZERO_LOGGER = "lightning.pytorch.utilities.rank_zero"
_GLOBAL_METRICS = r"((val|test)/)?(mAP50-95|mAP50|mAP75|precision|recall)"


class _DropMessages(logging.Filter):
    """Rejects log records whose message starts with one of ``prefixes``."""

    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(self.prefixes)


_TIP_FILTER = _DropMessages(("💡 Tip: For seamless cloud logging",))


def silence_known_noise() -> None:
    """Install the filters (idempotent)."""
    logger = logging.getLogger(_RANK_ZERO_LOGGER)
    if _TIP_FILTER not in logger.filters:
        logger.addFilter(_TIP_FILTER)
    warnings.filterwarnings(
        "ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning
    )
    warnings.filterwarnings(
        "ignore", message=rf"It is recommended to use `self\.log\('{_GLOBAL_METRICS}', \.\.\., sync_dist=True\)`"
    )


def silence_resume_noise() -> None:
    """Resuming into the run's own folder: its checkpoint directory is expectedly not empty."""
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")


def silence_evaluation_noise() -> None:
    """Evaluating or predicting: the checkpoint callbacks' restored state is irrelevant."""
    warnings.filterwarnings("ignore", message=r"The dirpath has changed from ")
