"""Freeze the first layers of a model (or chosen ones) for fine-tuning.

Frozen parameters get ``requires_grad=False``: they receive no gradient, the recipe's optimizer
leaves them out, so they stay bitwise unchanged. BatchNorm *running statistics* of frozen layers
keep updating in train mode, as in the reference (it freezes parameters the same way and leaves the
modules in train mode); to keep them too, put those BatchNorm layers in eval mode yourself.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn as nn


def freeze_layers(model: nn.Module, freeze: int | Sequence[int] | None) -> list[int]:
    """Stop the gradients of the given layers' parameters.

    Args:
        model: A :class:`~yolo11_lightning.nn.model.DetectionModel` (layers in ``model.model``).
        freeze: ``N`` freezes layers ``0 .. N-1``; a list freezes those layer indices; ``None`` or
            ``0`` freezes nothing.

    Returns:
        The frozen layer indices, sorted.

    Raises:
        TypeError: If ``freeze`` is a bool.
        ValueError: If an index is outside the model's layers or ``N`` is negative or too large.
    """
    layers = model.model  # type: ignore[union-attr]
    count = len(layers)
    if freeze is None:
        return []
    if isinstance(freeze, bool):
        raise TypeError(f"freeze must be a layer count or a list of layer indices, got {freeze!r}")
    if isinstance(freeze, int):
        if not 0 <= freeze <= count:
            raise ValueError(f"freeze={freeze}: the model has {count} layers (0 .. {count - 1})")
        indices = list(range(freeze))
    else:
        indices = sorted({int(i) for i in freeze})
        outside = [i for i in indices if not 0 <= i < count]
        if outside:
            raise ValueError(f"freeze: layer indices {outside} outside the model's {count} layers (0 .. {count - 1})")
    for index in indices:
        for parameter in layers[index].parameters():
            parameter.requires_grad_(False)
    return indices
