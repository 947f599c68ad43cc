"""Weight transfer across variants: copy every tensor of a weights file that has a counterpart.

:func:`~yolo11_lightning.nn.weights.load_weights` is strict (same architecture). Transfer is what
``--model.weights`` uses to start a *variant* from, e.g., ``yolo11n.pt``: its layers are aligned to
the file's even where the variant inserts layers (``yolo11n-mlla``: three MLLAttention rows shift
every later index by up to three) or replaces one (FocalModulation for SPPF).

Policy:
    * Tensors are grouped by layer (``model.<i>.<name>``). The layers of the file and of the model
      are aligned in order (a sequence alignment, like a diff) so that the number of floating-point
      tensors with the same name *and* shape in aligned layers is maximal; layers may be skipped on
      either side (inserted or removed rows).
    * In an aligned pair, a module's tensors (e.g. a convolution's ``weight`` and ``bias``, or a
      BatchNorm's four tensors and its counter) are copied together when the file's aligned layer
      has every one of them under the same name and shape, exactly, cast to the model's dtype (the
      reference stores float16, which float32 holds exactly). A module without a weight matrix (a
      normalisation layer) is copied only when the module of the weight matrix before it was, so
      BatchNorm statistics never come from a convolution of another shape.
    * Nothing is sliced, padded or interpolated: a tensor with another shape keeps its
      initialisation. So a replaced block whose inside differs starts fresh (FocalModulation for
      SPPF: no name matches), a block that keeps part of its predecessor's structure keeps that part
      (C2PSAMLLA for C2PSA: ``cv1``, ``cv2`` and the PSABlocks' ``ffn``), another class count
      re-initialises the head's class outputs only, and **another scale** (``yolo11s.pt`` into
      yolo11n) transfers almost nothing: every width differs. A warning says so when less than half
      of the model's tensors were transferred.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from yolo11_lightning.nn.weights import read_state_dict

logger = logging.getLogger(__name__)

_LAYER_KEY = re.compile(r"^model\.(\d+)\.(.+)$")
_MAX_LISTED = 20


@dataclass(frozen=True)
class TransferReport:
    """What :func:`transfer_weights` did.

    Attributes:
        source: The weights file (or ``"<state dict>"``).
        total: Number of tensors in the model's state dict.
        transferred: Model keys whose tensor was copied from the file.
        initialised: Model keys left at their initialisation (no counterpart, or another shape).
        shape_mismatches: Model key -> (file shape, model shape) for counterparts of another shape.
        unused: File keys that were not copied anywhere.
        layer_map: Model layer index -> file layer index, for the aligned layers.
        layer_names: Model layer index -> block name (for the listing).
    """

    source: str
    total: int
    transferred: tuple[str, ...]
    initialised: tuple[str, ...]
    shape_mismatches: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)
    unused: tuple[str, ...] = ()
    layer_map: dict[int, int] = field(default_factory=dict)
    layer_names: dict[int, str] = field(default_factory=dict)

    def headline(self) -> str:
        """``transferred N/M tensors, K initialised`` (and the unused count)."""
        return (
            f"transferred {len(self.transferred)}/{self.total} tensors, {len(self.initialised)} initialised "
            f"({len(self.unused)} tensors of {self.source} unused)"
        )

    def summary(self) -> str:
        """The headline, then what was not transferred, per model layer."""
        lines = [self.headline()]
        by_layer: dict[str, list[str]] = defaultdict(list)
        for key in self.initialised:
            match = _LAYER_KEY.match(key)
            by_layer[match[1] if match else ""].append(key)
        for layer, keys in sorted(by_layer.items(), key=lambda item: int(item[0]) if item[0] else -1):
            name = self.layer_names.get(int(layer), "?") if layer else "(outside the layers)"
            mismatched = [k for k in keys if k in self.shape_mismatches]
            where = f"model.{layer} ({name})" if layer else name
            source = self.layer_map.get(int(layer)) if layer else None
            origin = f"aligned with file layer {source}" if source is not None else "no counterpart in the file"
            lines.append(f"  not transferred: {where}, {origin}: {len(keys)} tensors" + (":" if mismatched else ""))
            for key in mismatched[:_MAX_LISTED]:
                file_shape, model_shape = self.shape_mismatches[key]
                lines.append(f"    {key}: file {tuple(file_shape)} vs model {tuple(model_shape)}")
            if len(mismatched) > _MAX_LISTED:
                lines.append(f"    ... ({len(mismatched) - _MAX_LISTED} more)")
        return "\n".join(lines)


def transfer_weights(model: nn.Module, weights: str | Path | dict[str, torch.Tensor]) -> TransferReport:
    """Copy into ``model`` every tensor of ``weights`` that has a counterpart (see the module docstring).

    Args:
        model: A :class:`~yolo11_lightning.nn.model.DetectionModel` (any module whose state-dict
            keys read ``model.<layer>.<name>`` works).
        weights: A weights file :func:`~yolo11_lightning.nn.weights.read_state_dict` reads
            (reference ``.pt``, our ``.ckpt``, state dict, safetensors) or a state dict.

    Returns:
        The :class:`TransferReport` (also logged: headline at INFO, listing at DEBUG).
    """
    source_name = str(weights) if not isinstance(weights, dict) else "<state dict>"
    source = read_state_dict(weights) if not isinstance(weights, dict) else dict(weights)
    own = model.state_dict()
    file_layers, file_rest = _group(source)
    model_layers, model_rest = _group(own)
    pairs = align_layers(file_layers, model_layers)

    copies: dict[str, str] = {}  # model key -> file key
    mismatches: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
    for model_index, file_index in pairs.items():
        theirs = file_layers[file_index]
        follows_weight = True  # whether the module holding the last weight matrix was transferred
        for names in _modules(model_layers[model_index]).values():
            mine = {name: model_layers[model_index][name] for name in names}
            has_weight = any(t.is_floating_point() and t.dim() >= 2 for t in mine.values())
            shapes_match = True
            for name, tensor in mine.items():
                other = theirs.get(name)
                if other is None or tuple(other.shape) != tuple(tensor.shape):
                    shapes_match = False
                    if other is not None:
                        mismatches[f"model.{model_index}.{name}"] = (tuple(other.shape), tuple(tensor.shape))
            take = shapes_match and (has_weight or follows_weight)
            if has_weight:
                follows_weight = take
            if take:
                copies.update({f"model.{model_index}.{n}": f"model.{file_index}.{n}" for n in names})
    for key, tensor in model_rest.items():  # keys outside model.<i>. (none in a DetectionModel)
        if key in file_rest and tuple(file_rest[key].shape) == tuple(tensor.shape):
            copies[key] = key
    with torch.no_grad():
        for model_key, file_key in copies.items():
            own[model_key].copy_(source[file_key].to(own[model_key].dtype))
    used = set(copies.values())
    infos = getattr(model, "layer_infos", [])
    report = TransferReport(
        source=source_name,
        total=len(own),
        transferred=tuple(k for k in own if k in copies),
        initialised=tuple(k for k in own if k not in copies),
        shape_mismatches=mismatches,
        unused=tuple(k for k in source if k not in used),
        layer_map=dict(sorted(pairs.items())),
        layer_names={info.index: info.name for info in infos},
    )
    logger.info("%s", report.headline())
    logger.debug("%s", report.summary())
    if len(report.transferred) < len(own) / 2:
        logger.warning(
            "%s: only %d of %d tensors transferred; is it another scale or architecture? Shapes must match exactly.",
            source_name,
            len(report.transferred),
            len(own),
        )
    return report


def align_layers(
    file_layers: dict[int, dict[str, torch.Tensor]], model_layers: dict[int, dict[str, torch.Tensor]]
) -> dict[int, int]:
    """Order-preserving alignment of layers maximising the number of shape-matching weight matrices.

    Args:
        file_layers: File layer index -> ``{name within the layer: tensor}``.
        model_layers: Model layer index -> ``{name within the layer: tensor}``.

    Returns:
        Model layer index -> file layer index, for pairs sharing at least one floating-point tensor
        of two or more dimensions (a convolution or linear weight) of the same name and shape.
    """
    file_ids, model_ids = sorted(file_layers), sorted(model_layers)
    n, m = len(file_ids), len(model_ids)
    score = [[_match_score(file_layers[f], model_layers[t]) for t in model_ids] for f in file_ids]
    best = [[0] * (m + 1) for _ in range(n + 1)]  # best[i][j]: first i file layers vs first j model layers
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            best[i][j] = max(best[i - 1][j], best[i][j - 1], best[i - 1][j - 1] + score[i - 1][j - 1])
    pairs: dict[int, int] = {}
    i, j = n, m
    while i > 0 and j > 0:
        gain = score[i - 1][j - 1]
        if gain > 0 and best[i][j] == best[i - 1][j - 1] + gain:
            pairs[model_ids[j - 1]] = file_ids[i - 1]
            i, j = i - 1, j - 1
        elif best[i][j] == best[i - 1][j]:
            i -= 1
        else:
            j -= 1
    return pairs


def _match_score(theirs: dict[str, torch.Tensor], mine: dict[str, torch.Tensor]) -> int:
    """Weight matrices (floating point, two or more dimensions) of the same name and shape in two layers."""
    return sum(
        1
        for name, tensor in mine.items()
        if tensor.is_floating_point()
        and tensor.dim() >= 2
        and name in theirs
        and tuple(theirs[name].shape) == tuple(tensor.shape)
    )


def _modules(layer: dict[str, torch.Tensor]) -> dict[str, list[str]]:
    """A layer's tensor names grouped by owning module (``cv1.bn.weight`` -> ``cv1.bn``), in order."""
    modules: dict[str, list[str]] = defaultdict(list)
    for name in layer:
        modules[name.rpartition(".")[0]].append(name)
    return dict(modules)


def _group(state: dict[str, torch.Tensor]) -> tuple[dict[int, dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
    """``model.<i>.<name>`` keys grouped by layer, and the other keys."""
    layers: dict[int, dict[str, torch.Tensor]] = defaultdict(dict)
    rest: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        match = _LAYER_KEY.match(key)
        if match:
            layers[int(match[1])][match[2]] = tensor
        else:
            rest[key] = tensor
    return dict(layers), rest
