"""Predict sources: images, folders, globs, ``.txt`` lists and videos, in input order, without labels.

:func:`list_source` expands a source into :class:`SourceItem` s (one per image or video frame) in
input order: sorted paths for a folder (recursive) or a glob, file order for a ``.txt`` list,
frame order for a video. :class:`PredictDataset` decodes and letterboxes them with the one
pre-processing of :mod:`yolo11_lightning.inference.preprocess`; nothing is ever written beside the
source files (no scan, no cache). An unreadable image or frame is skipped and reported by the
collate (``Batch.skipped``), never fatal.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from yolo11_lightning.data.batch import Batch
from yolo11_lightning.data.config import IMAGE_SUFFIXES
from yolo11_lightning.inference.preprocess import letterbox_with_mapping, read_image, resize_long_side, stack_images

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".m4v", ".mpeg", ".mpg", ".wmv", ".webm", ".asf", ".ts"})
"""File suffixes read as videos (every frame, or every ``vid_stride``-th)."""

_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class SourceItem:
    """One image of a predict source: an image file or one frame of a video.

    Attributes:
        path: the file.
        frame: the frame index in a video, ``None`` for an image file.
        video_frames: the frame count of the video (``None`` for an image).
        fps: the video's frame rate (``None`` for an image).
    """

    path: str
    frame: int | None = None
    video_frames: int | None = None
    fps: float | None = None

    @property
    def name(self) -> str:
        """``path`` for an image, ``"<path>#<frame>"`` for a video frame."""
        return self.path if self.frame is None else f"{self.path}#{self.frame}"


def _is_media(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES or path.suffix.lower() in VIDEO_SUFFIXES


def _expand_file(path: Path, vid_stride: int) -> list[SourceItem]:
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        return [SourceItem(str(path))]
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise ValueError(f"cannot open video {path}")
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0) or 30.0
    finally:
        capture.release()
    return [SourceItem(str(path), frame, count, fps) for frame in range(0, max(count, 0), vid_stride)]


def list_source(source: str | os.PathLike[str], vid_stride: int = 1) -> list[SourceItem]:
    """Expand a predict source into its images and video frames, in input order.

    Args:
        source: an image or video file, a folder (searched recursively, sorted), a glob pattern
            (sorted; ``**`` recurses) or a ``.txt`` list of files (file order; relative lines are
            resolved against the list's folder).
        vid_stride: keep every ``vid_stride``-th frame of a video (1: every frame).

    Returns:
        The items; video frames as ``SourceItem(path, frame)``.

    Raises:
        FileNotFoundError: if the source (or a listed file) does not exist or holds no image or video.
        ValueError: if ``vid_stride < 1`` or a video cannot be opened.
    """
    if vid_stride < 1:
        raise ValueError(f"vid_stride must be >= 1, got {vid_stride}")
    text = os.path.expanduser(str(source))
    path = Path(text)
    if path.is_dir():
        files = sorted(p.resolve() for p in path.rglob("*") if p.is_file() and _is_media(p))
    elif path.is_file() and path.suffix.lower() == ".txt":
        files = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            line = line.strip()
            if not line:
                continue
            entry = Path(os.path.expanduser(line))
            entry = (entry if entry.is_absolute() else path.parent / entry).resolve()
            if not entry.is_file():
                raise FileNotFoundError(f"{path}, line {number}: file not found: {entry}")
            files.append(entry)
    elif path.is_file():
        files = [path.resolve()]
    elif _GLOB_CHARS & set(text):
        files = sorted(
            Path(p).resolve() for p in glob.glob(text, recursive=True) if Path(p).is_file() and _is_media(Path(p))
        )
    else:
        raise FileNotFoundError(f"predict source not found: {source}")
    items = [item for file in files for item in _expand_file(file, vid_stride)]
    if not items:
        kinds = ", ".join(sorted(IMAGE_SUFFIXES | VIDEO_SUFFIXES))
        raise FileNotFoundError(f"no images or videos in predict source {source} (looked for {kinds})")
    return items


class _VideoReader:
    """Sequential frame reader that seeks only when a frame is requested out of order."""

    def __init__(self) -> None:
        self.path: str | None = None
        self.capture: Any = None
        self.next_frame = 0

    def read(self, path: str, frame: int) -> np.ndarray | None:
        if path != self.path:
            self.close()
            self.capture, self.path, self.next_frame = cv2.VideoCapture(path), path, 0
        if frame < self.next_frame or frame - self.next_frame > 64:
            self.capture.set(cv2.CAP_PROP_POS_FRAMES, frame)
            self.next_frame = frame
        while self.next_frame < frame:  # skip (vid_stride) frames without decoding them
            self.capture.grab()
            self.next_frame += 1
        ok, image = self.capture.read()
        self.next_frame += 1
        return image if ok else None

    def close(self) -> None:
        if self.capture is not None:
            self.capture.release()
        self.capture, self.path = None, None


class PredictDataset(Dataset):
    """Letterboxed, unlabelled images of a predict source.

    Args:
        items: the source's images and frames (:func:`list_source`), in input order.
        imgsz: network input size (square side; the long side is resized to it).
        stride: minimal padding: pad each image only to the next multiple of ``stride`` (as the
            reference's single-image predict); ``None`` pads to ``imgsz`` square (same-shape
            batches).
        shapes: per-item letterbox ``(height, width)`` as evaluation builds them (long side resized
            to ``imgsz`` first, never enlarged): makes predict see exactly the validation input.
        keep_originals: also return the decoded original image (for annotated outputs and crops).
    """

    def __init__(
        self,
        items: Sequence[SourceItem],
        imgsz: int,
        stride: int | None = 32,
        shapes: Sequence[tuple[int, int]] | None = None,
        keep_originals: bool = False,
    ) -> None:
        if shapes is not None and len(shapes) != len(items):
            raise ValueError(f"{len(shapes)} shapes for {len(items)} items")
        self.items = list(items)
        self.imgsz = imgsz
        self.stride = stride
        self.shapes = list(shapes) if shapes is not None else None
        self.keep_originals = keep_originals
        self._video = _VideoReader()

    def __len__(self) -> int:
        return len(self.items)

    def _decode(self, item: SourceItem) -> np.ndarray | None:
        if item.frame is not None:
            return self._video.read(item.path, item.frame)
        try:
            return read_image(item.path)
        except (FileNotFoundError, OSError, cv2.error):
            return None

    def __getitem__(self, index: int) -> dict[str, Any]:
        """One sample: the collate's fields (``image`` BGR letterboxed, ``ratio_pad``, ...) or a
        ``{"skipped": name}`` marker when the image or frame cannot be decoded."""
        item = self.items[index]
        image = self._decode(item)
        if image is None:
            return {"skipped": item.name, "image_id": index}
        shape = image.shape[:2]
        if self.shapes is not None:  # exactly the evaluation pre-processing
            boxed, ratio_pad = letterbox_with_mapping(
                resize_long_side(image, self.imgsz), shape, self.shapes[index], scaleup=False
            )
        else:
            boxed, ratio_pad = letterbox_with_mapping(image, shape, (self.imgsz, self.imgsz), True, self.stride)
        return {
            "image": boxed,
            "image_id": index,
            "orig_shape": shape,
            "ratio_pad": ratio_pad,
            "path": item.name,
            "original": image if self.keep_originals else None,
        }


def collate_predict(samples: list[dict[str, Any]]) -> Batch:
    """Stack predict samples into an unlabelled :class:`Batch` (``has_labels=False``).

    Undecodable samples are left out and named in ``Batch.skipped``; a batch may then be empty.
    """
    good = [s for s in samples if "skipped" not in s]
    skipped = [s["skipped"] for s in samples if "skipped" in s]
    if good:
        images = stack_images([s["image"] for s in good])
    else:
        images = torch.zeros((0, 3, 32, 32), dtype=torch.uint8)
    originals = [s["original"] for s in good]
    return Batch(
        images=images,
        targets=torch.zeros((0, 6), dtype=torch.float32),
        image_ids=torch.tensor([s["image_id"] for s in good], dtype=torch.int64),
        orig_shapes=torch.tensor([s["orig_shape"] for s in good], dtype=torch.int64).reshape(-1, 2),
        ratio_pad=torch.tensor([s["ratio_pad"] for s in good], dtype=torch.float32).reshape(-1, 4),
        paths=[s["path"] for s in good],
        has_labels=False,
        originals=originals if originals and all(o is not None for o in originals) else None,
        skipped=skipped,
    )
