"""``data.yaml`` parsing: dataset root, split sources, class names; image and label file discovery.

Accepted forms (the reference tool's and Roboflow's):

* ``path`` (optional) is the dataset root; relative to the yaml file's folder (or, failing that, the
  current directory). Without ``path`` the root is the yaml file's folder.
* ``train`` / ``val`` / ``test`` are an image folder, a ``.txt`` list of image paths, or a list of
  either; relative entries are resolved against the root. Roboflow exports write ``../train/images``
  relative to the yaml: when such an entry does not exist, the leading ``../`` is dropped.
* ``names`` is a list or an ``{id: name}`` map with ids ``0..n-1``; ``nc`` is optional and must
  equal the number of names when given (``nc`` alone gives names ``"0"``, ``"1"``, ...).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from yolo11_lightning.errors import UserError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".bmp", ".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp"})
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class DataConfig:
    """A parsed ``data.yaml``.

    Attributes:
        yaml_path: The file it was read from.
        root: The dataset root that relative entries are resolved against.
        splits: Split name -> resolved sources (image folders or ``.txt`` lists); absent splits missing.
        names: Class id -> class name, ids ``0..num_classes-1``.
    """

    yaml_path: Path
    root: Path
    splits: dict[str, list[Path]] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.names)


def _parse_names(raw: dict[str, Any], yaml_path: Path) -> dict[int, str]:
    names = raw.get("names")
    nc = raw.get("nc")
    if names is None:
        if nc is None:
            raise UserError(f"{yaml_path}: needs 'names' (list or {{id: name}} map) or 'nc'")
        names = [str(i) for i in range(_class_count(nc, yaml_path))]
    if isinstance(names, (list, tuple)):
        parsed = {i: str(name) for i, name in enumerate(names)}
    elif isinstance(names, dict):
        try:
            parsed = {int(key): str(value) for key, value in names.items()}
        except (TypeError, ValueError) as error:
            raise UserError(f"{yaml_path}: 'names' keys must be integer class ids, got {list(names)}") from error
        if sorted(parsed) != list(range(len(parsed))):
            raise UserError(f"{yaml_path}: 'names' ids must be 0..{len(parsed) - 1} without gaps, got {sorted(parsed)}")
        parsed = dict(sorted(parsed.items()))
    else:
        raise UserError(f"{yaml_path}: 'names' must be a list or a {{id: name}} map, got {type(names).__name__}")
    if not parsed:
        raise UserError(f"{yaml_path}: 'names' is empty")
    if nc is not None and _class_count(nc, yaml_path) != len(parsed):
        raise UserError(f"{yaml_path}: nc={nc} but {len(parsed)} names are given")
    return parsed


def _resolve_root(raw: dict[str, Any], yaml_path: Path) -> Path:
    path = raw.get("path")
    if not path:
        return _absolute(yaml_path.parent)
    path = Path(os.path.expanduser(str(path)))
    if path.is_absolute():
        return path
    beside_yaml = yaml_path.parent / path
    return _absolute(beside_yaml if beside_yaml.exists() or not path.exists() else path)


def _resolve_source(entry: str, root: Path) -> Path:
    path = Path(os.path.expanduser(entry))
    if path.is_absolute():
        return path
    resolved = _absolute(root / path)
    if not resolved.exists() and entry.startswith("../"):  # Roboflow: '../train/images' next to the yaml
        stripped = _absolute(root / entry[3:])
        if stripped.exists():
            return stripped
    return resolved


def _read_yaml(yaml_path: Path) -> Any:
    """Parse a YAML file; syntax errors name the file, line and column."""
    try:
        text = yaml_path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise UserError(
            f"{yaml_path}: not UTF-8 text (byte 0x{error.object[error.start]:02x} at offset {error.start})"
        ) from None
    try:
        return yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{yaml_path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(yaml_path)
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise UserError(f"{where}: invalid YAML: {problem}") from None


def _class_count(nc: Any, yaml_path: Path) -> int:
    """``nc`` as a non-negative integer; anything else names the key."""
    if isinstance(nc, bool) or not isinstance(nc, (int, float, str)):
        raise UserError(f"{yaml_path}: 'nc' must be an integer class count, got {nc!r}")
    try:
        value = float(nc)
    except ValueError:
        raise UserError(f"{yaml_path}: 'nc' must be an integer class count, got {nc!r}") from None
    if value != int(value) or value < 1:
        raise UserError(f"{yaml_path}: 'nc' must be a positive integer class count, got {nc!r}")
    return int(value)


def load_data_config(yaml_path: str | os.PathLike[str]) -> DataConfig:
    """Read and validate a ``data.yaml`` (see the module docstring for the accepted forms).

    Args:
        yaml_path: Path to the yaml file.

    Returns:
        The parsed description; sources are resolved to absolute paths but not checked for content.

    Raises:
        FileNotFoundError: If the yaml file does not exist.
        UserError: (a ValueError) If the YAML is invalid (file, line and column named), names/nc are inconsistent
            or not of the right type (the key named), or no split is given.
    """
    yaml_path = Path(yaml_path)
    if not yaml_path.is_file():
        raise FileNotFoundError(f"data.yaml not found: {yaml_path}")
    raw = _read_yaml(yaml_path)
    if not isinstance(raw, dict):
        raise UserError(f"{yaml_path}: expected a mapping, got {type(raw).__name__}")
    names = _parse_names(raw, yaml_path)
    root = _resolve_root(raw, yaml_path)
    splits: dict[str, list[Path]] = {}
    for split in SPLITS:
        entries = raw.get(split)
        if entries is None or entries == "":
            continue
        entries = entries if isinstance(entries, (list, tuple)) else [entries]
        splits[split] = [_resolve_source(str(entry), root) for entry in entries]
    if "train" not in splits and "val" not in splits:
        raise UserError(f"{yaml_path}: needs at least a 'train' or 'val' entry")
    return DataConfig(yaml_path=yaml_path.resolve(), root=root, splits=splits, names=names)


@dataclass(frozen=True)
class ImageListing:
    """The image files of a split as listed, and what the listing dropped.

    Attributes:
        files: Absolute image paths, sorted, each once. Symbolic links are kept as listed (not
            resolved), so each link's label is looked up beside the link.
        duplicates: Paths listed more than once (repeated ``.txt`` lines, overlapping sources); dropped.
        duplicate_examples: A few of them, as ``"list.txt:line: path"`` or the path.
    """

    files: list[Path]
    duplicates: int = 0
    duplicate_examples: tuple[str, ...] = ()


def _absolute(path: Path) -> Path:
    """Absolute and normalised, without resolving symbolic links (a link's label sits beside the link)."""
    return Path(os.path.abspath(path))


def _walk_images(folder: Path, ancestors: frozenset[tuple[int, int]] = frozenset()) -> Iterator[Path]:
    """Image-suffixed entries below ``folder``; symlinked folders are followed, a loop back to an
    ancestor folder is not (each folder is identified by its device and inode)."""
    try:
        info = folder.stat()
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError as error:
        log.warning("cannot list %s (%s); its images are skipped", folder, error.strerror or error)
        return
    identity = (info.st_dev, info.st_ino)
    if identity in ancestors:
        log.warning("%s links back to a folder above it; not followed again", folder)
        return
    ancestors = ancestors | {identity}
    for entry in entries:
        path = folder / entry.name
        try:
            is_dir = entry.is_dir(follow_symlinks=True)
        except OSError:
            is_dir = False
        if is_dir:
            yield from _walk_images(path, ancestors)
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            yield path  # also a broken link: the scan counts it as unreadable instead of losing it silently


def find_image_files(sources: list[Path]) -> ImageListing:
    """Expand image folders (recursively, following symlinked folders) and ``.txt`` lists.

    Relative lines of a ``.txt`` list are resolved against the list's folder; lines are decoded as
    file names (any bytes). A path listed twice is kept once and counted in ``duplicates``.

    Args:
        sources: Folders, ``.txt`` list files or single image files.

    Returns:
        The sorted absolute image paths (by suffix; content is checked later by the scan) and the
        duplicate count.

    Raises:
        FileNotFoundError: If a source does not exist.
    """
    files: set[Path] = set()
    duplicates, examples = 0, []

    def add(path: Path, where: str) -> None:
        nonlocal duplicates
        path = _absolute(path)
        if path in files:
            duplicates += 1
            if len(examples) < 3:
                examples.append(f"{where}{path}")
        files.add(path)

    for source in sources:
        if source.is_dir():
            for path in _walk_images(source):
                add(path, "")
        elif source.is_file() and source.suffix.lower() == ".txt":
            for number, raw in enumerate(source.read_bytes().splitlines(), start=1):
                line = os.fsdecode(raw.strip())
                if line:
                    path = Path(os.path.expanduser(line))
                    add(path if path.is_absolute() else source.parent / path, f"{source}:{number}: ")
        elif source.is_file():
            add(source, "")
        else:
            raise FileNotFoundError(f"dataset source not found: {source}")
    if duplicates:
        log.warning("%d image path(s) listed more than once were dropped (e.g. %s)", duplicates, "; ".join(examples))
    return ImageListing(sorted(files), duplicates, tuple(examples))


def list_image_files(sources: list[Path]) -> list[Path]:
    """The image files of :func:`find_image_files` (duplicates dropped with a warning)."""
    return find_image_files(sources).files


def label_path_for(image_path: Path) -> Path:
    """The label file of an image: the last ``images`` folder swapped for ``labels``, suffix ``.txt``."""
    parts = list(image_path.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def fraction_subset(files: list[Path], fraction: float, seed: int) -> list[Path]:
    """A fixed subset of ``round(fraction * len(files))`` files (at least one), drawn from ``seed`` alone.

    The subset depends only on the sorted file list, ``fraction`` and ``seed``: the same in every
    epoch, on every process and in a resumed run. The files keep their sorted order.
    """
    count = max(1, round(fraction * len(files)))
    chosen = np.random.default_rng([seed, 0xF4AC]).choice(len(files), size=count, replace=False)
    return [files[i] for i in np.sort(chosen)]
