"""The YOLO11 detection head: DFL decoding and the anchor-free Detect head."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from yolo11_lightning.boxes import make_anchors
from yolo11_lightning.nn.blocks.conv import Conv, DWConv
from yolo11_lightning.nn.registry import register_block


class DFL(nn.Module):
    """Distribution focal loss integral: expected value of a ``reg_max``-bin distribution.

    A frozen 1x1 convolution whose weights are ``0, 1, ..., reg_max - 1`` computes the expectation
    of the softmax over the bins, for each of the four box sides.

    Args:
        reg_max: Number of bins per side.
    """

    def __init__(self, reg_max: int = 16) -> None:
        super().__init__()
        self.reg_max = reg_max
        self.conv = nn.Conv2d(reg_max, 1, 1, bias=False).requires_grad_(False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.arange(reg_max, dtype=torch.float32).view(1, reg_max, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 4 * reg_max, A) logits -> (B, 4, A) expected distances in bins."""
        batch, _, anchors = x.shape
        bins = x.view(batch, 4, self.reg_max, anchors).transpose(1, 2).softmax(dim=1)  # (B, reg_max, 4, A)
        return self.conv(bins).view(batch, 4, anchors)


def make_anchor_grid(
    shapes: list[tuple[int, int]], strides: list[float], dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Anchor centres (in feature-map cells, offset 0.5) and their strides for every level.

    :func:`~yolo11_lightning.boxes.make_anchors` laid out for the channel-first decode.

    Args:
        shapes: ``(height, width)`` of each level's feature map.
        strides: Stride of each level, in input pixels.
        dtype: Output dtype.
        device: Output device.

    Returns:
        ``anchors`` (2, A) with rows x, y and ``strides`` (1, A); levels in order, row-major.
    """
    points, level_strides = make_anchors(shapes, strides, 0.5, dtype, device)  # (A, 2), (A, 1)
    return points.T.contiguous(), level_strides.T.contiguous()


def traced_anchor_grid(maps: list[torch.Tensor], strides: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`make_anchor_grid` computed from the maps' sizes inside the graph (export and tracing).

    The map sizes stay symbolic (no Python ints), so a graph traced at one input size computes the
    right anchors at any other: ONNX export with dynamic height/width and ``torch.jit.trace`` record
    ``Shape -> Range`` instead of constants. Same values as :func:`make_anchor_grid`.

    Args:
        maps: ``nl`` maps ``(B, C, H_i, W_i)``; only their sizes, dtype and device are read.
        strides: Stride of each level, in input pixels.

    Returns:
        ``anchors`` (2, A) with rows x, y and ``strides`` (1, A).
    """
    anchors, level_strides = [], []
    for level_map, stride in zip(maps, strides):
        height, width = level_map.shape[2], level_map.shape[3]  # symbolic while tracing
        options = {"dtype": level_map.dtype, "device": level_map.device}
        xs = torch.arange(width, **options) + 0.5
        ys = torch.arange(height, **options) + 0.5
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        points = torch.stack((grid_x, grid_y)).reshape(2, -1)  # (2, H_i * W_i), row-major
        anchors.append(points)
        level_strides.append(torch.full_like(points[:1], float(stride)))
    return torch.cat(anchors, dim=1), torch.cat(level_strides, dim=1)


@register_block("Detect", channels="head")
class Detect(nn.Module):
    """Anchor-free decoupled head: a box branch (DFL over ``reg_max`` bins) and a class branch.

    Per level ``i`` with ``in_channels[i]`` channels:

    - ``cv2[i]``: two 3x3 Convs then a 1x1 conv to ``4 * reg_max`` box logits.
    - ``cv3[i]``: (depthwise 3x3 Conv, 1x1 Conv) twice, then a 1x1 conv to ``nc`` class logits.

    Train mode returns the raw maps ``(B, 4 * reg_max + nc, H_i, W_i)``. Eval mode returns
    ``(decoded, raw_maps)`` where ``decoded`` is ``(B, 4 + nc, A)``: boxes as xywh in input pixels,
    then sigmoid class scores. ``stride`` must be set (the model does it) before eval or
    :meth:`bias_init`.

    Args:
        nc: Number of classes.
        reg_max: DFL bins per box side.
        in_channels: Channels of each input level (given by the builder).
    """

    def __init__(self, nc: int = 80, reg_max: int = 16, *, in_channels: list[int] | tuple[int, ...]) -> None:
        super().__init__()
        if not in_channels:
            raise ValueError("Detect needs at least one input level")
        self.nc = nc
        self.nl = len(in_channels)
        self.reg_max = reg_max
        self.no = nc + 4 * reg_max  # outputs per anchor
        self.stride = torch.zeros(self.nl)  # set by the model after a dummy forward
        box_channels = max(16, in_channels[0] // 4, 4 * reg_max)
        cls_channels = max(in_channels[0], min(nc, 100))
        self.cv2 = nn.ModuleList(
            nn.Sequential(
                Conv(c, box_channels, 3), Conv(box_channels, box_channels, 3), nn.Conv2d(box_channels, 4 * reg_max, 1)
            )
            for c in in_channels
        )
        self.cv3 = nn.ModuleList(
            nn.Sequential(
                nn.Sequential(DWConv(c, c, 3), Conv(c, cls_channels, 1)),
                nn.Sequential(DWConv(cls_channels, cls_channels, 3), Conv(cls_channels, cls_channels, 1)),
                nn.Conv2d(cls_channels, nc, 1),
            )
            for c in in_channels
        )
        self.dfl = DFL(reg_max) if reg_max > 1 else nn.Identity()
        self._grid_key: tuple | None = None
        self._anchors = torch.empty(0)
        self._strides = torch.empty(0)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Run both branches on every level; decode in eval mode.

        Args:
            features: ``nl`` maps ``(B, in_channels[i], H_i, W_i)``.

        Returns:
            Train mode: list of ``(B, 4 * reg_max + nc, H_i, W_i)``. Eval mode:
            ``(decoded (B, 4 + nc, A), raw maps)``.
        """
        maps = [torch.cat((self.cv2[i](x), self.cv3[i](x)), dim=1) for i, x in enumerate(features)]
        if self.training:
            return maps
        return self.decode(maps), maps

    def decode(self, maps: list[torch.Tensor]) -> torch.Tensor:
        """Raw maps -> ``(B, 4 + nc, A)``: xywh boxes in input pixels, then class probabilities."""
        batch = maps[0].shape[0]
        flat = torch.cat([m.reshape(batch, self.no, -1) for m in maps], dim=2)  # (B, no, A); any memory format
        anchors, strides = self._anchor_grid(maps)
        box_logits, cls_logits = flat.split((4 * self.reg_max, self.nc), dim=1)
        distances = self.dfl(box_logits)  # (B, 4, A) left, top, right, bottom in cells
        left_top, right_bottom = distances.chunk(2, dim=1)
        top_left = anchors - left_top
        bottom_right = anchors + right_bottom
        boxes = torch.cat(((top_left + bottom_right) / 2, bottom_right - top_left), dim=1) * strides
        return torch.cat((boxes, cls_logits.sigmoid()), dim=1)

    def _anchor_grid(self, maps: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Anchors (2, A) and strides (1, A) for these map sizes, cached per shape/device/dtype.

        While exporting or tracing, the grid is computed in the graph from the maps' symbolic sizes
        (:func:`traced_anchor_grid`): turning sizes into Python ints would bake the export size's
        grid into the graph. Eager calls use the cache.
        """
        if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            return traced_anchor_grid(maps, self.stride.tolist())
        shapes = [(int(m.shape[2]), int(m.shape[3])) for m in maps]
        if torch.compiler.is_compiling():
            # Never cache compiled values: the grid is derived from shapes on the fly.
            return make_anchor_grid(shapes, self.stride.tolist(), maps[0].dtype, maps[0].device)
        key = (tuple(shapes), maps[0].device, maps[0].dtype, tuple(self.stride.tolist()))
        if key != self._grid_key:
            self._anchors, self._strides = make_anchor_grid(shapes, self.stride.tolist(), maps[0].dtype, maps[0].device)
            self._grid_key = key
        return self._anchors, self._strides

    @torch.no_grad()
    def bias_init(self) -> None:
        """Prior biases: 1.0 for box logits; ``log(5 / nc / (640 / s)^2)`` for class logits.

        The class prior corresponds to about 5 objects per 640x640 image spread over ``nc``
        classes and the level's cells.
        """
        if not bool((self.stride > 0).all()):
            raise RuntimeError("Detect.bias_init needs the strides; build the head through the model")
        for level, stride in enumerate(self.stride.tolist()):
            self.cv2[level][-1].bias.fill_(1.0)
            self.cv3[level][-1].bias.fill_(math.log(5 / self.nc / (640 / stride) ** 2))

    def reset_class_outputs(self) -> None:
        """Re-initialise the class-branch output convs (new class count) with the prior bias."""
        for level, stride in enumerate(self.stride.tolist()):
            conv = self.cv3[level][-1]
            conv.reset_parameters()
            with torch.no_grad():
                conv.bias.fill_(math.log(5 / self.nc / (640 / stride) ** 2))
