"""Shared figure set-up: a non-interactive backend, a readable size and saving."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never opens a window (also on machines without a display)

from matplotlib.figure import Figure  # noqa: E402  (after choosing the backend)

DPI = 100
MIN_SIZE = (10.0, 7.5)  # inches at DPI 100: 1000 x 750 px, above the 800 x 600 minimum


def new_figure(width: float = MIN_SIZE[0], height: float = MIN_SIZE[1]) -> Figure:
    """A figure of ``width x height`` inches at :data:`DPI` (not registered with pyplot: no leaks)."""
    return Figure(figsize=(max(width, MIN_SIZE[0]), max(height, MIN_SIZE[1])), dpi=DPI, layout="constrained")


def save_figure(figure: Figure, path: str | Path) -> Path:
    """Write ``figure`` as PNG (parent folders created) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI)
    return path


def class_name(names: dict[int, str], class_id: int) -> str:
    """The class's name, or its id when unnamed."""
    return names.get(int(class_id), str(int(class_id)))
