"""``train.py`` that marks every training batch, for the signal tests (run as a subprocess).

Usage: ``python tests/training/marked_fit.py MARKER_DIR STEP_SECONDS <train.py arguments>``.

After each training batch the script creates ``MARKER_DIR/e<epoch>-b<batch>`` and sleeps
``STEP_SECONDS`` (so a test can aim a signal at a known point of the run); sleeping changes no
number, so a marked run trains exactly like ``train.py``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from yolo11_lightning.training.cli import main  # noqa: E402
from yolo11_lightning.training.module import YOLOModule  # noqa: E402


def _install(marker_dir: Path, step_seconds: float) -> None:
    marker_dir.mkdir(parents=True, exist_ok=True)
    original = YOLOModule.training_step

    def marked(self: YOLOModule, batch, batch_idx: int):  # noqa: ANN001, ANN202 - same signature as the original
        loss = original(self, batch, batch_idx)
        (marker_dir / f"e{self.current_epoch}-b{batch_idx}").touch()
        time.sleep(step_seconds)
        return loss

    YOLOModule.training_step = marked  # type: ignore[method-assign]


if __name__ == "__main__":
    _install(Path(sys.argv[1]), float(sys.argv[2]))
    raise SystemExit(main(sys.argv[3:]))
