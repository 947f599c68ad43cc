"""Run every variant x seed of a study through the training CLI, one subprocess per run.

Each run lives in ``OUT/<variant>/seed<k>/``: ``checkpoints/`` (best.ckpt, last.ckpt), ``logs/``
(the CSV log), ``train.log`` (the run's console output) and, once ``fit`` finished,
``result.json`` (written by :class:`~yolo11_lightning.study.record.StudyRecord`). A run with a
``result.json`` is skipped; a run with a ``last.ckpt`` but no result resumes from it
(``--ckpt_path``, exact resume); any other run starts afresh.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

# The CLI entry point, as train.py calls it (LightningCLI reads sys.argv[1:]).
_CLI = "from yolo11_lightning.training.cli import main; main()"


@dataclass(frozen=True)
class Run:
    """One training run of a study.

    Attributes:
        variant: Model config (as given on the command line, e.g. ``"yolo11n-mlla.yaml"``).
        seed: The run's seed (``--seed_everything``).
        folder: The run folder.
    """

    variant: str
    seed: int
    folder: Path

    @property
    def result_file(self) -> Path:
        """The ``result.json`` of a finished run."""
        return self.folder / "result.json"

    @property
    def last_checkpoint(self) -> Path:
        """The checkpoint an interrupted run resumes from."""
        return self.folder / "checkpoints" / "last.ckpt"

    @property
    def finished(self) -> bool:
        """Whether the run has written its result."""
        return self.result_file.is_file()


def variant_label(variant: str) -> str:
    """Folder and table name of a variant: the config's file stem (``"yolo11n-mlla"``)."""
    return Path(variant).stem


def plan_runs(variants: Sequence[str], seeds: Sequence[int], out: Path) -> list[Run]:
    """Every variant x seed, variant-major, each with its folder under ``out``.

    Raises:
        ValueError: If two variants have the same label (their folders would collide) or a seed repeats.
    """
    labels = [variant_label(v) for v in variants]
    if len(set(labels)) != len(labels):
        raise ValueError(f"variants must have distinct file names, got {labels}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct, got {list(seeds)}")
    return [Run(v, int(s), out / label / f"seed{s}") for v, label in zip(variants, labels) for s in seeds]


def run_command(run: Run, config: str | None, overrides: Sequence[str], latency_runs: int = 20) -> list[str]:
    """The command line of one run (resuming from ``last.ckpt`` when it exists)."""
    record = {
        "class_path": "yolo11_lightning.study.record.StudyRecord",
        "init_args": {
            "path": str(run.result_file), "variant": run.variant, "seed": run.seed, "latency_runs": latency_runs,
        },
    }  # fmt: skip
    logger = {
        "class_path": "lightning.pytorch.loggers.CSVLogger",
        "init_args": {"save_dir": str(run.folder), "name": "logs", "version": 0},
    }
    command = [sys.executable, "-c", _CLI, "fit"]
    if config:
        command += ["--config", config]
    command += [
        "--model.model", run.variant,
        "--seed_everything", str(run.seed),
        "--trainer.default_root_dir", str(run.folder),
        "--trainer.logger", json.dumps(logger),
        "--best_checkpoint.dirpath", str(run.folder / "checkpoints"),
        "--last_checkpoint.dirpath", str(run.folder / "checkpoints"),
        *overrides,
        f"--trainer.callbacks+={json.dumps(record)}",
    ]  # fmt: skip
    if run.last_checkpoint.is_file():
        command += ["--ckpt_path", str(run.last_checkpoint)]
    return command


def execute(
    runs: Sequence[Run],
    config: str | None,
    overrides: Sequence[str],
    devices: Sequence[str] = (),
    echo: Callable[[str], None] = print,
    latency_runs: int = 20,
) -> list[Run]:
    """Run the unfinished runs; one at a time, or one per device in parallel.

    Args:
        runs: The planned runs.
        config: The training config (``--config``) shared by every run.
        overrides: Further CLI arguments for every run (``--trainer.max_epochs 1`` ...).
        devices: GPU ids; each run sees only its GPU (``CUDA_VISIBLE_DEVICES``), one run per GPU at a
            time. Empty: runs go one after the other with the config's devices.
        echo: Where progress lines go.
        latency_runs: Timed forward passes per run for the latency (0: not measured).

    Returns:
        The runs that failed (non-zero exit or no result file).
    """
    pending = [run for run in runs if not run.finished]
    for run in runs:
        if run.finished:
            echo(f"skip {run.variant} seed {run.seed}: finished ({run.result_file})")
    todo: queue.Queue[Run] = queue.Queue()
    for run in pending:
        todo.put(run)
    failed: list[Run] = []
    lock = threading.Lock()

    def train(run: Run, device: str | None) -> None:
        env = dict(os.environ)
        if device is not None:
            env["CUDA_VISIBLE_DEVICES"] = str(device)
        run.folder.mkdir(parents=True, exist_ok=True)
        command = run_command(run, config, overrides, latency_runs)
        resumed = "--ckpt_path" in command
        where = f" on GPU {device}" if device is not None else ""
        echo(f"{'resume' if resumed else 'train'} {run.variant} seed {run.seed}{where} -> {run.folder}")
        with (run.folder / "train.log").open("a") as log:
            log.write("$ " + " ".join(command) + "\n")
            log.flush()
            code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env, check=False).returncode
        if code != 0 or not run.finished:
            with lock:
                failed.append(run)
            echo(f"FAILED {run.variant} seed {run.seed} (exit {code}); see {run.folder / 'train.log'}")

    def worker(device: str | None) -> None:  # one worker per device: one run per device at a time
        while True:
            try:
                run = todo.get_nowait()
            except queue.Empty:
                return
            train(run, device)

    threads = [threading.Thread(target=worker, args=(device,)) for device in (list(devices) or [None])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failed


def load_results(runs: Sequence[Run]) -> list[dict]:
    """The ``result.json`` of every finished run, in plan order."""
    return [json.loads(run.result_file.read_text()) for run in runs if run.finished]
