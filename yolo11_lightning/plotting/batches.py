"""Image grids: augmented training batches, and validation images with labels beside predictions.

Boxes are drawn by the one box renderer (:func:`~yolo11_lightning.inference.render.draw_detections`),
the same as predict's annotated images; a legend maps the class colours to names.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from yolo11_lightning.boxes import xywh_to_xyxy
from yolo11_lightning.inference.render import class_colour, draw_detections
from yolo11_lightning.plotting.style import class_name, new_figure

TILE_SIDE = 480  # small network inputs are enlarged to this (long side) before drawing: legible labels


def _annotate(image_rgb: np.ndarray, boxes: np.ndarray, classes: np.ndarray, names: dict[int, str],
              scores: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """Boxes drawn on an RGB image (the renderer works in BGR), at no less than :data:`TILE_SIDE` pixels.

    The renderer sizes lines and labels for the image it draws on; drawing on a 128-pixel input
    that the figure then enlarges would give labels larger than the objects.
    """
    height, width = image_rgb.shape[:2]
    scale = max(TILE_SIDE / max(height, width, 1), 1.0)
    bgr = np.ascontiguousarray(image_rgb[..., ::-1])
    if scale > 1:
        bgr = cv2.resize(bgr, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_LINEAR)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * scale
    return draw_detections(bgr, boxes, classes, names, scores)[..., ::-1]


def _legend(figure: Figure, classes: np.ndarray, names: dict[int, str]) -> None:
    present = sorted({int(c) for c in classes})
    handles = [Patch(color=np.array(class_colour(c, bgr=False)) / 255, label=class_name(names, c)) for c in present]
    if not handles:
        handles = [Patch(color="white", label="no boxes")]
    figure.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 8), fontsize=11, title="Classes")


def _axes_grid(figure: Figure, count: int, columns: int) -> list:
    rows = max(math.ceil(count / columns), 1)
    grid = figure.subplots(rows, columns, squeeze=False)
    for axes in grid.flat[count:]:
        axes.set_axis_off()
    return list(grid.flat[:count])


def _image_axes(axes, image: np.ndarray, heading: str) -> None:  # noqa: ANN001 - matplotlib Axes
    axes.imshow(image)
    axes.set_title(heading, fontsize=9)
    axes.set_xticks([])
    axes.set_yticks([])
    axes.set_xlabel("x (px)", fontsize=8)
    axes.set_ylabel("y (px)", fontsize=8)


def _to_hwc(images: torch.Tensor) -> np.ndarray:
    return images.detach().cpu().permute(0, 2, 3, 1).contiguous().numpy().astype(np.uint8)


def plot_batch(
    images: torch.Tensor,
    targets: torch.Tensor,
    names: dict[int, str],
    paths: Sequence[str] = (),
    title: str = "Training batch after augmentation",
    max_images: int = 16,
) -> Figure:
    """A grid of up to ``max_images`` network inputs with their target boxes.

    Args:
        images: ``uint8 (B, 3, H, W)`` RGB network input.
        targets: ``(N, 6)`` rows ``(image index, class, cx, cy, w, h)`` normalised to the input.
        names: class id -> name.
        paths: image paths (their file names title the tiles).
        title: figure title.
        max_images: tiles at most.
    """
    count = min(len(images), max_images)
    columns = min(4, max(count, 1))
    rows = max(math.ceil(count / columns), 1)
    figure = new_figure(4 * columns + 1, 4 * rows + 1.5)
    height, width = images.shape[-2:]
    scale = torch.tensor([width, height, width, height], dtype=torch.float32)
    tiles = _to_hwc(images[:count])
    targets = targets.detach().cpu().float()
    for index, axes in enumerate(_axes_grid(figure, count, columns)):
        mine = targets[targets[:, 0] == index]
        boxes = xywh_to_xyxy(mine[:, 2:6] * scale).numpy()
        name = str(paths[index]).rsplit("/", 1)[-1] if index < len(paths) else f"image {index}"
        _image_axes(
            axes, _annotate(tiles[index], boxes, mine[:, 1].long().numpy(), names), f"{name} ({len(mine)} boxes)"
        )
    figure.suptitle(f"{title} ({width}x{height} input)", fontsize=14)
    _legend(figure, targets[targets[:, 0] < count][:, 1].long().numpy(), names)
    return figure


def plot_labels_vs_predictions(
    images: torch.Tensor,
    gt_boxes: Sequence[torch.Tensor],
    gt_classes: Sequence[torch.Tensor],
    predictions: Sequence[torch.Tensor],
    names: dict[int, str],
    paths: Sequence[str] = (),
    conf: float = 0.25,
    title: str = "Validation: labels (left) and predictions (right)",
    max_images: int = 8,
) -> Figure:
    """Pairs of tiles: each image with its labels, then with its predictions above ``conf``.

    Args:
        images: ``uint8 (B, 3, H, W)`` RGB network input.
        gt_boxes: per image ``(m, 4)`` xyxy in input pixels.
        gt_classes: per image ``(m,)`` class ids.
        predictions: per image ``(n, 6)`` ``x1, y1, x2, y2, score, class`` in input pixels.
        names: class id -> name.
        paths: image paths (titles).
        conf: the lowest score drawn.
        title: figure title.
        max_images: image pairs at most.
    """
    count = min(len(images), max_images)
    pairs_per_row = 2 if count > 1 else 1
    rows = max(math.ceil(count / pairs_per_row), 1)
    figure = new_figure(8 * pairs_per_row + 1, 4 * rows + 1.5)
    tiles = _to_hwc(images[:count])
    grid = _axes_grid(figure, 2 * count, 2 * pairs_per_row)
    shown = []
    for index in range(count):
        name = str(paths[index]).rsplit("/", 1)[-1] if index < len(paths) else f"image {index}"
        labels = gt_classes[index].detach().cpu().long().numpy()
        rows_kept = predictions[index].detach().cpu().float()
        rows_kept = rows_kept[rows_kept[:, 4] >= conf]
        label_tile = _annotate(tiles[index], gt_boxes[index].detach().cpu().numpy(), labels, names)
        pred_classes = rows_kept[:, 5].long().numpy()
        pred_tile = _annotate(tiles[index], rows_kept[:, :4].numpy(), pred_classes, names, rows_kept[:, 4].numpy())
        _image_axes(grid[2 * index], label_tile, f"{name}: {len(labels)} labels")
        _image_axes(grid[2 * index + 1], pred_tile, f"{name}: {len(rows_kept)} predictions (score >= {conf})")
        shown.extend([labels, pred_classes])
    figure.suptitle(title, fontsize=14)
    _legend(figure, np.concatenate(shown) if shown else np.zeros(0), names)
    return figure
