"""Crash-safe checkpoint files: atomic writes, orphan clean-up and a clear error for unreadable files.

Lightning's own ``TorchCheckpointIO`` stages the file through an fsspec transaction in ``$TMPDIR`` and
moves it into place; across filesystems that move degrades to copy-then-delete (a process killed
mid-copy leaves a truncated checkpoint), nothing is fsync'ed, and a killed save leaves its temp file
behind. :class:`AtomicCheckpointIO` instead writes next to the target and renames:

1. serialise into a temp file **in the checkpoint's own directory** (same filesystem, so the rename
   is atomic), named ``.ckpt-tmp-<host tag>-<pid>-<random>-<target name>`` so it is recognisable as ours;
2. flush and ``fsync`` the file, ``os.replace`` it over the target, ``fsync`` the directory.

At any instant the target path holds either the complete old file or the complete new one. A temp
file is removed when its save fails; temp files left by killed runs (written on this machine by a
process id no longer alive) are removed before the first save into a directory and when a checkpoint
of that directory is loaded.

Loading an unreadable checkpoint raises :class:`UnreadableCheckpointError`, whose message names the
newest readable checkpoint in the same directory, so a user resuming with ``--ckpt_path last.ckpt``
learns what to resume from instead.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.plugins.io import TorchCheckpointIO

log = logging.getLogger(__name__)

TEMP_PREFIX = ".ckpt-tmp-"
# .ckpt-tmp-<host tag>-<pid>-<random token from tempfile>-<target file name>
_TEMP_PATTERN = re.compile(r"^\.ckpt-tmp-(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-[A-Za-z0-9_]+-.+$")


def host_tag() -> str:
    """8 hex digits identifying this machine, so that a shared directory's temp files of writers on
    other nodes (whose process ids mean nothing here) are never taken for orphans."""
    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


CHECKPOINT_SUFFIX = ".ckpt"


class UnreadableCheckpointError(RuntimeError):
    """A checkpoint file exists but cannot be deserialised (truncated, corrupt, not a checkpoint)."""


class NotATrainingCheckpointError(ValueError):
    """A readable file given as a checkpoint that is no Lightning training checkpoint (e.g. a state dict)."""


FORMAT_KEY = "yolo11_lightning_format"
FORMAT_VERSION = 1
"""Version of the checkpoint layout written by ``YOLOModule`` (EMA, ``yolo_state``, architecture).
Checkpoints without the key predate it and have the same layout as version 1. Bump it when the
layout changes, and teach :func:`check_format_version` (or a converter) to read the old one; the
committed ``tests/training/data/format_v1.ckpt`` must keep validating and resuming."""


def check_format_version(checkpoint: dict[str, Any], path: _PATH) -> None:
    """Refuse a checkpoint written in a newer layout than this code reads.

    Raises:
        NotATrainingCheckpointError: if its format version is newer than :data:`FORMAT_VERSION`.
    """
    version = checkpoint.get(FORMAT_KEY, 1)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise NotATrainingCheckpointError(
            f"{path} has checkpoint format {version!r}; this version of yolo11_lightning reads formats up to "
            f"{FORMAT_VERSION}: update the package"
        )


def _current_umask() -> int:
    """The process's file-creation mask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _is_local(path: _PATH) -> bool:
    """Whether ``path`` lives on the local filesystem (where atomic rename and fsync apply)."""
    return isinstance(get_filesystem(path), LocalFileSystem)


def _process_alive(pid: int) -> bool:
    """Whether a process with id ``pid`` exists on this machine."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def fsync_directory(directory: Path) -> None:
    """Flush a directory entry change (a rename or unlink) to disk; a no-op where unsupported."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def is_temp_file(path: Path) -> bool:
    """Whether ``path`` is a temp file written by :class:`AtomicCheckpointIO`."""
    return _TEMP_PATTERN.match(path.name) is not None


def remove_orphan_temp_files(directory: _PATH) -> list[Path]:
    """Remove temp files left in ``directory`` by killed saves (their writer process is gone).

    Only files named like ours (``.ckpt-tmp-<host tag>-<pid>-...``) written on this machine by a
    process that is no longer alive are touched; a concurrent save by a live process, or by another
    node sharing the directory, keeps its temp file.

    Args:
        directory: the checkpoint directory.

    Returns:
        The removed paths.
    """
    directory = Path(directory)
    host = host_tag()
    removed: list[Path] = []
    if not directory.is_dir():
        return removed
    for entry in directory.iterdir():
        match = _TEMP_PATTERN.match(entry.name)
        if match is None or match["host"] != host or not entry.is_file() or _process_alive(int(match["pid"])):
            continue
        try:
            entry.unlink()
            removed.append(entry)
        except FileNotFoundError:
            continue
    if removed:
        fsync_directory(directory)
        log.info("Removed %d orphaned checkpoint temp file(s) in %s", len(removed), directory)
    return removed


def _checkpoint_summary(checkpoint: dict[str, Any]) -> str:
    """A short ``epoch=.., step=..`` description of a loaded checkpoint dict."""
    return f"epoch={checkpoint.get('epoch', '?')}, global_step={checkpoint.get('global_step', '?')}"


def find_previous_good_checkpoint(
    path: _PATH, max_candidates: int = 8, weights_only: bool | None = None
) -> tuple[Path, str] | None:
    """Find the newest readable checkpoint next to ``path`` (excluding ``path`` itself).

    Candidates are the ``*.ckpt`` files of the same directory, newest modification time first; each
    is opened (memory-mapped, so it is cheap) until one loads.

    Args:
        path: the unreadable checkpoint.
        max_candidates: how many of the newest candidates to try.
        weights_only: passed to ``torch.load`` (as the failed load used it).

    Returns:
        ``(candidate path, "epoch=.., global_step=..")`` or ``None`` when none loads.
    """
    path = Path(path)
    directory = path.parent
    if not directory.is_dir():
        return None
    candidates = [
        p
        for p in directory.iterdir()
        if p.suffix == CHECKPOINT_SUFFIX and p.is_file() and not is_temp_file(p) and p.resolve() != path.resolve()
    ]
    candidates.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    for candidate in candidates[:max_candidates]:
        try:
            checkpoint = torch.load(candidate, map_location="cpu", weights_only=weights_only, mmap=True)
        except Exception:  # noqa: BLE001 - any failure means "not a good checkpoint"
            continue
        if isinstance(checkpoint, dict) and "state_dict" in checkpoint:
            return candidate, _checkpoint_summary(checkpoint)
    return None


def unreadable_checkpoint_message(path: _PATH, error: BaseException, weights_only: bool | None = None) -> str:
    """The error message for an unreadable checkpoint, naming the previous good one if any.

    Args:
        path: the checkpoint that failed to load.
        error: the load error.
        weights_only: how the failed load called ``torch.load`` (candidates are tried the same way).
    """
    message = f"Checkpoint {path} is unreadable ({type(error).__name__}: {error})."
    previous = find_previous_good_checkpoint(path, weights_only=weights_only)
    if previous is None:
        return message + f" No readable checkpoint was found in {Path(path).parent}; start a new run."
    good_path, summary = previous
    return (
        message + f" The newest readable checkpoint in the same directory is {good_path} ({summary});"
        f" resume from it with --ckpt_path {good_path}"
    )


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose saves are atomic and durable on local filesystems.

    Pass it to the trainer (``Trainer(plugins=[AtomicCheckpointIO()])``); remote paths (``s3://``,
    ...) fall back to Lightning's implementation.
    """

    def __init__(self) -> None:
        super().__init__()
        self._cleaned_directories: set[Path] = set()

    def _clean_once(self, directory: Path) -> None:
        """Remove orphaned temp files of ``directory`` the first time this process touches it."""
        resolved = directory.resolve()
        if resolved not in self._cleaned_directories:
            remove_orphan_temp_files(resolved)
            self._cleaned_directories.add(resolved)

    def write_payload(self, checkpoint: dict[str, Any], file: IO[bytes]) -> None:
        """Serialise ``checkpoint`` into the open temp file (a hook tests override to slow writes down).

        Args:
            checkpoint: the checkpoint dict.
            file: the temp file, opened for binary writing.
        """
        torch.save(checkpoint, file)

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        """Write ``checkpoint`` to ``path`` atomically: temp file in the same directory, fsync, rename.

        Args:
            checkpoint: dict containing model and trainer state.
            path: the target file.
            storage_options: not supported (must be ``None``).

        Raises:
            TypeError: if ``storage_options`` is given.
        """
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} does not support `storage_options`.")
        if not _is_local(path):
            super().save_checkpoint(checkpoint, path)
            return
        target = Path(path)
        directory = target.parent
        directory.mkdir(parents=True, exist_ok=True)
        self._clean_once(directory)
        fd, temp_name = tempfile.mkstemp(
            prefix=f"{TEMP_PREFIX}{host_tag()}-{os.getpid()}-", suffix=f"-{target.name}", dir=directory
        )
        try:
            os.fchmod(fd, 0o666 & ~_current_umask())  # mkstemp creates 0600; checkpoints follow the umask
            with os.fdopen(fd, "wb") as file:
                self.write_payload(checkpoint, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temp_name, target)
        except BaseException:
            try:
                os.unlink(temp_name)
            except FileNotFoundError:
                pass
            raise
        fsync_directory(directory)

    def load_checkpoint(
        self,
        path: _PATH,
        map_location: Callable | None = lambda storage, loc: storage,
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        """Load a checkpoint; an unreadable file raises an error naming the previous good checkpoint.

        Args:
            path: the checkpoint file.
            map_location: passed to ``torch.load``.
            weights_only: passed to ``torch.load``.

        Returns:
            The checkpoint dict.

        Raises:
            FileNotFoundError: if ``path`` does not exist (the message lists the directory's checkpoints).
            UnreadableCheckpointError: if the file cannot be deserialised.
            NotATrainingCheckpointError: if it is no Lightning checkpoint (a plain state dict) or
                has a newer format version.
        """
        if not _is_local(path):
            return super().load_checkpoint(path, map_location=map_location, weights_only=weights_only)
        target = Path(path)
        if not target.is_file():
            siblings = (
                sorted(p.name for p in target.parent.glob(f"*{CHECKPOINT_SUFFIX}") if not is_temp_file(p))
                if target.parent.is_dir()
                else []
            )
            raise FileNotFoundError(f"Checkpoint file not found: {target}. Checkpoints in that directory: {siblings}")
        self._clean_once(target.parent)
        try:
            checkpoint = super().load_checkpoint(path, map_location=map_location, weights_only=weights_only)
        except Exception as error:  # noqa: BLE001 - torch raises many types for corrupt files
            raise UnreadableCheckpointError(unreadable_checkpoint_message(path, error, weights_only)) from error
        if not isinstance(checkpoint, dict):
            error = TypeError(f"expected a dict, got {type(checkpoint).__name__}")
            raise UnreadableCheckpointError(unreadable_checkpoint_message(path, error, weights_only))
        if "state_dict" not in checkpoint or "pytorch-lightning_version" not in checkpoint:
            raise NotATrainingCheckpointError(
                f"{path} is not a training checkpoint of this package (no Lightning state: a plain state dict or "
                "weights file?). Use it as weights with --model.weights instead of --ckpt_path."
            )
        check_format_version(checkpoint, path)
        return checkpoint

    def remove_checkpoint(self, path: _PATH) -> None:
        """Remove a checkpoint file; a missing file is fine and directories are never removed.

        Args:
            path: the checkpoint file.

        Raises:
            IsADirectoryError: if ``path`` is a directory.
        """
        if not _is_local(path):
            super().remove_checkpoint(path)
            return
        target = Path(path)
        if target.is_dir() and not target.is_symlink():
            raise IsADirectoryError(f"Refusing to remove directory {target}: checkpoints are files.")
        try:
            target.unlink()
        except FileNotFoundError:
            return
        fsync_directory(target.parent)
        log.debug("Removed checkpoint: %s", target)
