"""Helpers shared by the training benchmarks: generated data, process-tree CPU time, child runs.

Every measurement runs in a fresh child process that prints one ``RESULT {json}`` line; the parent
collects the results and prints the comparison. Nothing here imports the reference at module level.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def generated_dataset(train: int, val: int, seed: int) -> Path:
    """The ``data.yaml`` of a generated shapes4-style set (``data/make_dataset.py``), made once and cached.

    Cached under ``runs/bench-data/``; the generator is deterministic for a seed, so both sides and
    every rerun read the same images.
    """
    out = ROOT / "runs" / "bench-data" / f"shapes4-{train}-{val}-seed{seed}"
    if not (out / "data.yaml").is_file():
        command = [sys.executable, str(ROOT / "data" / "make_dataset.py"), "--out", str(out), "--train", str(train),
                   "--val", str(val), "--seed", str(seed), "--backgrounds", str(max(train // 20, 1))]  # fmt: skip
        subprocess.run(command, check=True, cwd=ROOT)
    return out / "data.yaml"


def tree_cpu_seconds() -> float:
    """CPU seconds (user + system) of this process, its live descendants (loader workers) and its reaped children."""
    import psutil  # a dependency of the reference (test-only extra), which the benchmarks need anyway

    total = sum(os.times()[:4])  # self user/system + reaped children user/system
    for child in psutil.Process().children(recursive=True):
        try:
            times = child.cpu_times()
        except psutil.Error:  # exited between listing and reading: counted once reaped
            continue
        total += times.user + times.system
    return total


def run_child(script: str, arguments: list[str], threads: int | None = None) -> dict:
    """Run ``script`` with ``arguments`` in a fresh interpreter and return its ``RESULT`` json.

    Args:
        script: path of the benchmark script (it must handle its own child arguments).
        arguments: command-line arguments of the child.
        threads: intra-op threads (also exported as ``OMP_NUM_THREADS``/``MKL_NUM_THREADS``).
    """
    environment = dict(os.environ, YOLO_OFFLINE="1")
    if threads is not None:
        environment.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    completed = subprocess.run(
        [sys.executable, script, *arguments], cwd=ROOT, capture_output=True, text=True, env=environment
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
    if completed.returncode or not lines:
        sys.stderr.write(completed.stdout[-3000:] + completed.stderr[-3000:])
        raise RuntimeError(f"{Path(script).name} {' '.join(arguments)} failed (exit {completed.returncode})")
    return json.loads(lines[-1][len("RESULT ") :])


def reference_yolo(weights: str | None, model_config: str = "yolo11n.yaml"):
    """The reference's ``YOLO`` object from a reference ``.pt``, one of our ``.ckpt`` (its EMA weights), or a config.

    Our checkpoints load into the reference's network directly: the state-dict keys match by design.
    """
    os.environ.setdefault("YOLO_OFFLINE", "1")
    from ultralytics import YOLO

    if not weights or not weights.endswith(".ckpt"):
        return YOLO(weights or model_config)
    import torch
    from ultralytics.nn.tasks import DetectionModel

    checkpoint = torch.load(weights, map_location="cpu", weights_only=False)
    names = checkpoint["class_names"]
    network = DetectionModel(model_config, nc=len(names), verbose=False)
    network.load_state_dict(checkpoint["ema_state_dict"])
    network.names = names
    with tempfile.NamedTemporaryFile(suffix=".pt", delete=False) as handle:
        torch.save({"model": network.float(), "train_args": {}}, handle.name)  # the reference's own format
    return YOLO(handle.name)


def pin_reference_threads(threads: int) -> None:
    """Make the reference's trainer use ``threads`` intra-op threads (it resets them to cores - 1 on CPU)."""
    import torch
    import ultralytics.utils.torch_utils as reference_torch_utils

    reference_torch_utils.NUM_THREADS = threads
    torch.set_num_threads(threads)


def parse_options(pairs: list[str]) -> dict:
    """``--ours``-style ``KEY=VALUE`` pairs as a dict, values parsed as YAML scalars (``false``, ``0.5``)."""
    import yaml

    parsed = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator:
            raise SystemExit(f"expected KEY=VALUE, got {pair!r}")
        parsed[key] = yaml.safe_load(value)
    return parsed


def cpu_trainer(root: str, **kwargs):
    """A quiet CPU ``Trainer`` (no logger, checkpoints, progress bar, summary or sanity steps)."""
    from lightning.pytorch import Trainer

    return Trainer(
        accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=root, **kwargs,
    )  # fmt: skip


def our_modules(data_yaml: Path | str, imgsz: int, batch: int, model: str = "yolo11n.yaml", weights=None, **options):
    """Our ``YOLOModule`` and ``YOLODataModule`` with their defaults; ``options`` go to whichever takes them."""
    import inspect

    from yolo11_lightning.data.datamodule import YOLODataModule
    from yolo11_lightning.training.module import YOLOModule

    data_keys = set(inspect.signature(YOLODataModule.__init__).parameters)
    data = YOLODataModule(str(data_yaml), imgsz=imgsz, batch_size=batch,
                          **{key: value for key, value in options.items() if key in data_keys})  # fmt: skip
    model_options = {"print_class_table": False, **{k: v for k, v in options.items() if k not in data_keys}}
    module = YOLOModule(model, num_classes=data.num_classes, class_names=data.names, weights=weights, **model_options)
    return module, data


def validate_ours(module, data):
    """Run one validation of ``module`` on ``data`` and return its ``DetectionResults``."""
    with tempfile.TemporaryDirectory() as root:
        cpu_trainer(root).validate(module, data, verbose=False)
    return module.last_results
