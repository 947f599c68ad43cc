"""Writes ``format_v1.ckpt.xz``: a checkpoint of today's format (version 1) for the compatibility test.

Run once from the repository root (``python tests/training/data/make_format_v1.py``) and commit the
result; never regenerate it to make the test pass (that would defeat its purpose). One epoch of
two batches of the 146k-parameter model; floating tensors are stored as bfloat16 and the file is
xz-compressed to keep it under 0.5 MB (loading casts the tensors back to float32).
"""

from __future__ import annotations

import io
import lzma
import sys
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT))

from yolo11_lightning.training.cli import run_cli  # noqa: E402


def _shrink(value: object) -> object:
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        return value.to(torch.bfloat16)
    if isinstance(value, dict):
        return {k: _shrink(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shrink(v) for v in value]
    return value


def format_args(root: Path) -> list[str]:
    """The tiny run's arguments (also used by the test to validate and resume the checkpoint)."""
    return [
        "--model.model", str(HERE / "yolo11-format-test.yaml"), "--model.nominal_batch_size", "8",
        "--model.warmup_epochs", "1", "--model.min_warmup_iterations", "2", "--model.print_class_table", "false",
        "--data.data", str(ROOT / "data" / "shapes4" / "data.yaml"), "--data.imgsz", "64", "--data.batch_size", "4",
        "--data.workers", "0", "--data.scan_cache", "false", "--data.pin_memory", "false",
        "--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.limit_train_batches", "2",
        "--trainer.limit_val_batches", "1", "--trainer.num_sanity_val_steps", "0",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.logger.init_args.save_dir", str(root / "logs"), "--trainer.default_root_dir", str(root),
        "--best_checkpoint.dirpath", str(root / "checkpoints"), "--last_checkpoint.dirpath", str(root / "checkpoints"),
    ]  # fmt: skip


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        run_cli(["fit", *format_args(root), "--trainer.max_epochs", "1"])
        checkpoint = torch.load(root / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    for key in ("state_dict", "ema_state_dict", "optimizer_states"):
        checkpoint[key] = _shrink(checkpoint[key])
    checkpoint.pop("pending_gradients", None)
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    target = HERE / "format_v1.ckpt.xz"
    target.write_bytes(lzma.compress(buffer.getvalue(), preset=9))
    print(f"wrote {target} ({target.stat().st_size} bytes)")
