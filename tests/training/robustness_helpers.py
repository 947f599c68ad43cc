"""Shared pieces of the robustness tests (resume, crash, DDP, numerics): a tiny model and CLI args."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml
from torch.utils.data import Dataset

import yolo11_lightning
from yolo11_lightning.data.batch import Batch

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data" / "shapes4" / "data.yaml"


def tiny_model_config(directory: Path) -> Path:
    """Write YOLO11 at width 0.125 (0.8 M parameters; the full architecture) and return its path."""
    config = yaml.safe_load(
        (Path(yolo11_lightning.__file__).parent / "nn" / "cfg" / "models" / "yolo11.yaml").read_text()
    )
    config["scales"] = {"t": [0.33, 0.125, 1024]}
    config["scale"] = "t"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "yolo11t.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def tiny_cli_args(root: Path, checkpoint_dir: Path, epochs: int, batches: int = 3) -> list[str]:
    """``train.py fit`` arguments for a few-second CPU run of the tiny model on the shipped data."""
    return [
        "--model.model", str(tiny_model_config(root)),
        "--model.nominal_batch_size", "8",
        "--model.warmup_epochs", "1",
        "--model.min_warmup_iterations", "2",
        "--model.print_class_table", "false",
        "--data.data", str(DATA),
        "--data.imgsz", "64",
        "--data.batch_size", "4",
        "--data.workers", "0",
        "--data.scan_cache", "false",
        "--data.pin_memory", "false",
        "--data.close_mosaic", "1",
        "--trainer.accelerator", "cpu",
        "--trainer.devices", "1",
        "--trainer.max_epochs", str(epochs),
        "--trainer.limit_train_batches", str(batches),
        "--trainer.limit_val_batches", "1",
        "--trainer.num_sanity_val_steps", "0",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--trainer.logger.init_args.save_dir", str(root / "logs"),
        "--trainer.default_root_dir", str(root),
        "--best_checkpoint.dirpath", str(checkpoint_dir),
        "--last_checkpoint.dirpath", str(checkpoint_dir),
    ]  # fmt: skip


class SyntheticIndices(Dataset):
    """64 indices; :func:`synthetic_collate` turns a list of them into a random 64x64 batch."""

    def __len__(self) -> int:
        return 64

    def __getitem__(self, index: int) -> int:
        return index


def synthetic_collate(indices: list[int]) -> Batch:
    """A batch of random 64x64 images (seeded by the first index), one box per image, class ``i % 2``."""
    generator = torch.Generator().manual_seed(indices[0])
    size = len(indices)
    return Batch(
        images=torch.randint(0, 255, (size, 3, 64, 64), generator=generator, dtype=torch.uint8),
        targets=torch.tensor([[i, i % 2, 0.5, 0.5, 0.4, 0.3] for i in range(size)], dtype=torch.float32),
        image_ids=torch.tensor(indices),
        orig_shapes=torch.tensor([[64, 64]] * size),
        ratio_pad=torch.tensor([[1.0, 1.0, 0.0, 0.0]] * size),
        paths=[str(i) for i in indices],
    )
