"""Tests for the atomic checkpoint IO (``yolo11_lightning/training/checkpoint.py``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

import pytest
import torch

from yolo11_lightning.training.checkpoint import (
    FORMAT_KEY,
    AtomicCheckpointIO,
    NotATrainingCheckpointError,
    UnreadableCheckpointError,
    host_tag,
    is_temp_file,
    remove_orphan_temp_files,
)


def _checkpoint(epoch: int) -> dict[str, Any]:
    """A minimal Lightning checkpoint (the keys the loader checks)."""
    return {
        "epoch": epoch, "global_step": 10 * epoch, "pytorch-lightning_version": "2.6.0",
        "state_dict": {"w": torch.full((4,), float(epoch))},
    }  # fmt: skip


def _dead_pid() -> int:
    """The id of a process that has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_save_writes_in_place_and_leaves_no_temp(tmp_path: Path) -> None:
    io = AtomicCheckpointIO()
    target = tmp_path / "sub" / "last.ckpt"
    io.save_checkpoint(_checkpoint(1), target)
    io.save_checkpoint(_checkpoint(2), target)  # overwrite
    assert sorted(p.name for p in target.parent.iterdir()) == ["last.ckpt"]
    loaded = io.load_checkpoint(target)
    assert loaded["epoch"] == 2 and torch.equal(loaded["state_dict"]["w"], torch.full((4,), 2.0))


def test_failed_write_keeps_old_file_and_removes_temp(tmp_path: Path) -> None:
    class FailingIO(AtomicCheckpointIO):
        def write_payload(self, checkpoint: dict[str, Any], file: IO[bytes]) -> None:
            file.write(b"partial bytes")
            raise OSError("disk full")

    target = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint(_checkpoint(1), target)
    with pytest.raises(OSError, match="disk full"):
        FailingIO().save_checkpoint(_checkpoint(2), target)
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]
    assert AtomicCheckpointIO().load_checkpoint(target)["epoch"] == 1


def test_temp_file_is_created_in_checkpoint_directory(tmp_path: Path) -> None:
    seen: list[str] = []

    class SpyIO(AtomicCheckpointIO):
        def write_payload(self, checkpoint: dict[str, Any], file: IO[bytes]) -> None:
            seen.extend(p.name for p in tmp_path.iterdir())  # what the directory holds mid-write
            super().write_payload(checkpoint, file)

    SpyIO().save_checkpoint(_checkpoint(1), tmp_path / "epoch=1.ckpt")
    assert len(seen) == 1 and is_temp_file(tmp_path / seen[0])
    assert [p.name for p in tmp_path.iterdir()] == ["epoch=1.ckpt"]


def test_orphans_of_dead_processes_are_removed_but_not_others(tmp_path: Path) -> None:
    host = host_tag()
    other_host = "0" * 8 if host != "0" * 8 else "1" * 8
    dead = tmp_path / f".ckpt-tmp-{host}-{_dead_pid()}-abc123-last.ckpt"
    alive = tmp_path / f".ckpt-tmp-{host}-{os.getppid()}-abc123-last.ckpt"  # a live process: maybe a concurrent save
    elsewhere = tmp_path / f".ckpt-tmp-{other_host}-{_dead_pid()}-abc123-last.ckpt"  # another node's writer
    foreign = tmp_path / ".tmp-something-else"  # not our naming: never touched
    for p in (dead, alive, elsewhere, foreign):
        p.write_bytes(b"x")
    assert remove_orphan_temp_files(tmp_path) == [dead]
    assert not dead.exists() and alive.exists() and elsewhere.exists() and foreign.exists()
    # The first save into the directory cleans it as well.
    dead.write_bytes(b"x")
    AtomicCheckpointIO().save_checkpoint(_checkpoint(1), tmp_path / "last.ckpt")
    assert not dead.exists()


def test_unreadable_checkpoint_names_previous_good_one(tmp_path: Path) -> None:
    io = AtomicCheckpointIO()
    good = tmp_path / "epoch=3-step=30.ckpt"
    io.save_checkpoint(_checkpoint(3), good)
    older = tmp_path / "epoch=1-step=10.ckpt"
    io.save_checkpoint(_checkpoint(1), older)
    os.utime(older, (1, 1))  # older modification time: the newest good one is epoch 3
    last = tmp_path / "last.ckpt"
    data = torch.save(_checkpoint(4), last) or last.read_bytes()
    last.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(UnreadableCheckpointError) as info:
        io.load_checkpoint(last)
    message = str(info.value)
    assert str(last) in message and str(good) in message and "epoch=3" in message and "--ckpt_path" in message


def test_unreadable_checkpoint_without_alternative(tmp_path: Path) -> None:
    last = tmp_path / "last.ckpt"
    last.write_bytes(b"not a checkpoint")
    with pytest.raises(UnreadableCheckpointError, match="No readable checkpoint"):
        AtomicCheckpointIO().load_checkpoint(last)


def test_missing_checkpoint_lists_siblings(tmp_path: Path) -> None:
    AtomicCheckpointIO().save_checkpoint(_checkpoint(1), tmp_path / "best.ckpt")
    with pytest.raises(FileNotFoundError, match="best.ckpt"):
        AtomicCheckpointIO().load_checkpoint(tmp_path / "last.ckpt")


def test_remove_checkpoint_is_safe(tmp_path: Path) -> None:
    io = AtomicCheckpointIO()
    target = tmp_path / "a.ckpt"
    io.save_checkpoint(_checkpoint(1), target)
    io.remove_checkpoint(target)
    assert not target.exists()
    io.remove_checkpoint(target)  # already gone: no error
    (tmp_path / "dir.ckpt").mkdir()
    with pytest.raises(IsADirectoryError):
        io.remove_checkpoint(tmp_path / "dir.ckpt")


def test_orphan_temp_files_are_never_listed_as_checkpoints(tmp_path: Path) -> None:
    """A kill during the very first checkpoint write leaves an empty temp file: no error names it."""
    orphan = tmp_path / f".ckpt-tmp-{host_tag()}-{_dead_pid()}-abc123-last.ckpt"
    orphan.write_bytes(b"")
    AtomicCheckpointIO().save_checkpoint(_checkpoint(1), tmp_path / "best.ckpt")
    orphan2 = tmp_path / f".ckpt-tmp-{host_tag()}-{os.getpid()}-def456-last.ckpt"  # a live writer's, kept
    orphan2.write_bytes(b"")
    with pytest.raises(FileNotFoundError) as info:
        AtomicCheckpointIO().load_checkpoint(tmp_path / "last.ckpt")
    assert "['best.ckpt']" in str(info.value) and ".ckpt-tmp" not in str(info.value)
    (tmp_path / "last.ckpt").write_bytes(b"truncated")
    with pytest.raises(UnreadableCheckpointError) as info:
        AtomicCheckpointIO().load_checkpoint(tmp_path / "last.ckpt")
    assert "best.ckpt" in str(info.value) and ".ckpt-tmp" not in str(info.value)


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_checkpoint_files_follow_the_umask(tmp_path: Path, umask: int) -> None:
    previous = os.umask(umask)
    try:
        AtomicCheckpointIO().save_checkpoint(_checkpoint(1), tmp_path / "last.ckpt")
    finally:
        os.umask(previous)
    assert (tmp_path / "last.ckpt").stat().st_mode & 0o777 == 0o666 & ~umask


def test_plain_state_dict_or_newer_format_is_refused_clearly(tmp_path: Path) -> None:
    plain = tmp_path / "weights.ckpt"
    torch.save({"model.0.conv.weight": torch.zeros(2)}, plain)
    with pytest.raises(NotATrainingCheckpointError, match="not a training checkpoint.*--model.weights"):
        AtomicCheckpointIO().load_checkpoint(plain)
    newer = tmp_path / "newer.ckpt"
    torch.save({**_checkpoint(1), FORMAT_KEY: 99}, newer)
    with pytest.raises(NotATrainingCheckpointError, match="format 99.*up to 1"):
        AtomicCheckpointIO().load_checkpoint(newer)
