"""docs/research.md "Add your own block": its two files, copied into a temporary folder, train for
one step through the CLI in a fresh process, without touching the package."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def _doc_files() -> dict[str, str]:
    text = (REPO_ROOT / "docs" / "research.md").read_text()
    return dict(re.findall(r"<!-- file: (\S+) -->\n```\w*\n(.*?)```", text, flags=re.DOTALL))


@pytest.mark.slow
def test_user_block_from_the_docs_trains_one_step(tmp_path: Path) -> None:
    files = _doc_files()
    assert set(files) == {"my_gate.py", "yolo11-mygate.yaml"}
    assert len(files["my_gate.py"].strip().splitlines()) <= 15
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    command = [
        sys.executable, str(REPO_ROOT / "train.py"), "fit",
        "--config", str(REPO_ROOT / "configs" / "quickstart.yaml"),
        "--model.model", "yolo11n-mygate.yaml",
        "--data.data", str(REPO_ROOT / "data" / "shapes4" / "data.yaml"),
        "--data.imgsz", "64", "--data.batch_size", "2", "--data.workers", "0", "--data.scan_cache", "false",
        "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "0",
        "--trainer.logger", "false", "--trainer.default_root_dir", str(tmp_path / "run"),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "`Trainer.fit` stopped: `max_epochs=1` reached." in output
    check = subprocess.run(
        [sys.executable, "-c", (
            "from yolo11_lightning.nn import build_model; m = build_model('yolo11n-mygate.yaml');"
            "print([type(m.model[i]).__name__ for i in (17, 21, 25)], m.model[17].fc1.out_channels)"
        )],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert check.stdout.strip() == "['MyGate', 'MyGate', 'MyGate'] 8", check.stderr[-2000:]
