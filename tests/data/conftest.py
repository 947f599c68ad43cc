"""Fixtures that build small YOLO-format datasets on disk for the data tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest


@pytest.fixture
def write_split(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``write_split(split, {name: (image, label_text_or_None)})`` -> the images folder."""

    def write(split: str, items: dict[str, tuple[np.ndarray | bytes, str | None]], root: Path | None = None) -> Path:
        root = root or tmp_path
        image_dir, label_dir = root / "images" / split, root / "labels" / split
        image_dir.mkdir(parents=True, exist_ok=True)
        label_dir.mkdir(parents=True, exist_ok=True)
        for name, (image, label) in items.items():
            path = image_dir / name
            if isinstance(image, bytes):
                path.write_bytes(image)
            else:
                assert cv2.imwrite(str(path), image)
            if label is not None:
                (label_dir / f"{path.stem}.txt").write_text(label)
        return image_dir

    return write
