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

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from yolo11_lightning.training.errors import UserError

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
        names = [str(i) for i in range(int(nc))]
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
    if nc is not None and int(nc) != len(parsed):
        raise UserError(f"{yaml_path}: nc={nc} but {len(parsed)} names are given")
    return parsed


def _resolve_root(raw: dict[str, Any], yaml_path: Path) -> Path:
    path = raw.get("path")
    if not path:
        return yaml_path.parent.resolve()
    path = Path(os.path.expanduser(str(path)))
    if path.is_absolute():
        return path
    beside_yaml = yaml_path.parent / path
    return (beside_yaml if beside_yaml.exists() or not path.exists() else path).resolve()


def _resolve_source(entry: str, root: Path) -> Path:
    path = Path(os.path.expanduser(entry))
    if path.is_absolute():
        return path
    resolved = (root / path).resolve()
    if not resolved.exists() and entry.startswith("../"):  # Roboflow: '../train/images' next to the yaml
        stripped = (root / entry[3:]).resolve()
        if stripped.exists():
            return stripped
    return resolved


def load_data_config(yaml_path: str | os.PathLike[str]) -> DataConfig:
    """Read and validate a ``data.yaml`` (see the module docstring for the accepted forms).

    Args:
        yaml_path: Path to the yaml file.

    Returns:
        The parsed description; sources are resolved to absolute paths but not checked for content.

    Raises:
        FileNotFoundError: If the yaml file does not exist.
        UserError: (a ValueError) If the file is not valid YAML, names/nc are inconsistent or no split
            is given.
    """
    yaml_path = Path(yaml_path)
    if not yaml_path.is_file():
        raise FileNotFoundError(f"data.yaml not found: {yaml_path}")
    try:
        raw = yaml.safe_load(yaml_path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise UserError(f"{yaml_path}: not valid YAML{where}: {getattr(error, 'problem', None) or error}") from error
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


def list_image_files(sources: list[Path]) -> list[Path]:
    """Expand image folders (recursively) and ``.txt`` lists into a sorted, de-duplicated file list.

    Relative lines of a ``.txt`` list are resolved against the list's folder.

    Args:
        sources: Folders, ``.txt`` list files or single image files.

    Returns:
        Absolute image paths (by suffix; content is checked later by the scan).

    Raises:
        FileNotFoundError: If a source does not exist.
    """
    files: set[Path] = set()
    for source in sources:
        if source.is_dir():
            files.update(p.resolve() for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        elif source.is_file() and source.suffix.lower() == ".txt":
            for line in source.read_text(encoding="utf-8").splitlines():
                line = line.strip()
                if line:
                    path = Path(os.path.expanduser(line))
                    files.add((path if path.is_absolute() else source.parent / path).resolve())
        elif source.is_file():
            files.add(source.resolve())
        else:
            raise FileNotFoundError(f"dataset source not found: {source}")
    return sorted(files)


def label_path_for(image_path: Path) -> Path:
    """The label file of an image: the last ``images`` folder swapped for ``labels``, suffix ``.txt``."""
    parts = list(image_path.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")
