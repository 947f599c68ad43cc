"""``train.py`` with slow checkpoint writes, for the crash tests (run as a subprocess and killed).

Usage: ``python tests/training/slow_checkpoint_fit.py MARKER_DIR WRITE_SECONDS <train.py arguments>``.

Every checkpoint is serialised into memory and written to the temp file in 16 chunks spread over
``WRITE_SECONDS``, so a kill has a wide window to land in the middle of a write. Before each write
the script creates ``MARKER_DIR/write-<n>-<target name>.started`` and after it ``...done``, so a
test can aim its SIGKILL at a write in progress.
"""

from __future__ import annotations

import io
import os
import sys
import time
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from yolo11_lightning.training.checkpoint import AtomicCheckpointIO  # noqa: E402
from yolo11_lightning.training.cli import main  # noqa: E402

CHUNKS = 16


def _install(marker_dir: Path, write_seconds: float) -> None:
    """Replace the payload writer of ``AtomicCheckpointIO`` with a slow, announced one."""
    marker_dir.mkdir(parents=True, exist_ok=True)
    counter = {"n": 0}

    def slow_write_payload(self: AtomicCheckpointIO, checkpoint: dict[str, Any], file: IO[bytes]) -> None:
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        data = buffer.getvalue()
        counter["n"] += 1
        # The temp file is named after its target: .ckpt-tmp-<pid>-<random>-<target name>.
        target = os.readlink(f"/proc/self/fd/{file.fileno()}").rsplit("-", 1)[-1]
        marker = marker_dir / f"write-{counter['n']}-{target}"
        marker.with_suffix(".started").touch()
        step = -(-len(data) // CHUNKS)
        for start in range(0, len(data), step):
            file.write(data[start : start + step])
            file.flush()
            time.sleep(write_seconds / CHUNKS)
        marker.with_suffix(".done").touch()

    AtomicCheckpointIO.write_payload = slow_write_payload  # type: ignore[method-assign]


if __name__ == "__main__":
    _install(Path(sys.argv[1]), float(sys.argv[2]))
    raise SystemExit(main(sys.argv[3:]))
