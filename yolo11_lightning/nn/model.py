"""DetectionModel: the layer list built from a model config, run in config order."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

# Side of the zero image used to measure the strides (a multiple of any usual max stride).
_STRIDE_PROBE_SIZE = 128

# Channels of a layer's output: one count, or one per output for a layer with several outputs.
Channels = int | tuple[int, ...]


@dataclass(frozen=True)
class LayerInfo:
    """How one layer was built (for summaries and debugging).

    Attributes:
        index: Layer index in ``DetectionModel.model``.
        source: The row's ``from`` (``-1`` previous layer, an index, or a list of them).
        repeats: Depth-scaled repeat count.
        name: Registered block name.
        args: The positional constructor arguments the builder derived.
        out_channels: Channels of the layer's output (0 for the head); a tuple with one count per
            output for a layer with several outputs (``"features"`` contract).
        kwargs: The row's keyword arguments, as passed to the constructor.
    """

    index: int
    source: int | list[int]
    repeats: int
    name: str
    args: list
    out_channels: Channels
    kwargs: dict[str, Any] = field(default_factory=dict)


class DetectionModel(nn.Module):
    """A YOLO detector: layers run in order, each reading the outputs named by its ``from``.

    Build it with :func:`yolo11_lightning.nn.builder.build_model`. The last layer is the head
    (a ``Detect``). ``self.model`` is an ``nn.Sequential`` so state-dict keys read
    ``model.<index>.<...>`` exactly as in the reference.

    Args:
        layers: The built layers, head last.
        infos: One :class:`LayerInfo` per layer.
        config: The resolved model config (kept as ``self.yaml``).
        input_channels: Image channels.

    Attributes:
        nc: Number of classes.
        reg_max: DFL bins of the head.
        stride: Float tensor of the head's strides, e.g. ``[8., 16., 32.]``.
        names: Class names, ``{index: name}`` (default ``{i: str(i)}``).
        yaml: The resolved config dict.
    """

    def __init__(
        self, layers: list[nn.Module], infos: list[LayerInfo], config: dict[str, Any], input_channels: int = 3
    ) -> None:
        super().__init__()
        if len(layers) != len(infos) or not layers:
            raise ValueError("DetectionModel needs one LayerInfo per layer and at least one layer")
        self.model = nn.Sequential(*layers)
        self.layer_infos = list(infos)
        self._sources = [info.source for info in infos]
        # Indices of layers whose output a later layer reads (besides the next one).
        self._saved = {j % i for i, info in enumerate(infos) for j in _as_list(info.source) if j != -1 and i > 0}
        self.yaml = config
        self.input_channels = input_channels
        head = self.head
        self.nc: int = int(head.nc)
        self.reg_max: int = int(getattr(head, "reg_max", 1))
        self.names: dict[int, str] = {i: str(i) for i in range(self.nc)}
        self.stride = self._measure_strides()
        head.stride = self.stride.clone()
        if hasattr(head, "bias_init"):
            head.bias_init()

    @property
    def head(self) -> nn.Module:
        """The detection head (the last layer)."""
        return self.model[-1]

    def forward(self, images: torch.Tensor) -> Any:
        """Run the network.

        Args:
            images: ``(B, C, H, W)`` float images in [0, 1], H and W multiples of the max stride.

        Returns:
            Train mode: the head's raw maps ``[(B, 4 * reg_max + nc, H / s, W / s)]`` for each
            stride ``s``. Eval mode: ``(decoded (B, 4 + nc, A), raw maps)``.
        """
        return self._run(images, stop_before_head=False)

    def _run(self, images: torch.Tensor, stop_before_head: bool) -> Any:
        outputs: list[torch.Tensor | None] = []
        x: Any = images
        last = len(self.model) - 1
        for index, (layer, source) in enumerate(zip(self.model, self._sources)):
            if source != -1:
                x = outputs[source] if isinstance(source, int) else [x if j == -1 else outputs[j] for j in source]
            if stop_before_head and index == last:
                return x
            x = layer(x)
            outputs.append(x if index in self._saved else None)
        return x

    @torch.no_grad()
    def _measure_strides(self) -> torch.Tensor:
        """Strides of the head inputs, from a forward pass of a zero image (BN in eval mode)."""
        was_training = self.training
        self.eval()
        try:
            probe = torch.zeros(1, self.input_channels, _STRIDE_PROBE_SIZE, _STRIDE_PROBE_SIZE)
            features = self._run(probe, stop_before_head=True)
        finally:
            self.train(was_training)
        features = features if isinstance(features, list) else [features]
        return torch.tensor([_STRIDE_PROBE_SIZE / f.shape[-2] for f in features], dtype=torch.float32)

    def fuse(self) -> DetectionModel:
        """Fold BatchNorm into the preceding convolutions, in place, for inference.

        Every submodule with a ``fuse()`` method (``Conv``, ``DWConv``, user blocks) is fused;
        fusing twice is harmless. Outputs in eval mode are unchanged up to float rounding.

        Returns:
            ``self``.
        """
        for module in list(self.modules()):
            if module is not self and callable(getattr(module, "fuse", None)):
                module.fuse()
        return self

    def summary(self, imgsz: int | tuple[int, int] = 640) -> str:
        """The layer table and totals line (see :func:`yolo11_lightning.nn.summary.model_summary`)."""
        from yolo11_lightning.nn.summary import model_summary

        return model_summary(self, imgsz=imgsz)


def _as_list(source: int | list[int]) -> list[int]:
    return [source] if isinstance(source, int) else list(source)
