"""From-scratch accuracy, ours vs the reference: same generated data, recipe and seeds, one evaluator.

For every seed both sides train yolo11n from scratch on a generated set (``data/make_dataset.py``,
512 train / 128 val images, cached under ``runs/bench-data/``) with the reference's default recipe
made explicit on both sides (SGD lr0 0.01, momentum 0.937, warmup 3 epochs with bias LR 0.1, nominal
batch 64, mosaic off for the last ``--close-mosaic`` epochs, EMA, the default augmentations), batch
16, fp32, CPU:

* ours through our ``fit`` CLI (the study tool's run command), per-epoch mAP from its ``results.csv``;
* the reference through ``YOLO("yolo11n.yaml").train(...)``, per-epoch mAP from its ``results.csv``
  (its own evaluator).

Each side's final EMA weights (our ``last.ckpt``; the reference's ``last.pt``, which stores its EMA
in float16) are then scored by one evaluator: our validation path with the pycocotools backend,
conf 0.001, IoU 0.7, 300 detections, on the generated val split. The script prints the per-epoch
curves side by side (mean over seeds), the per-seed final table, means and standard deviations and
the ratio of the means.

Accuracy does not depend on speed, so ``--jobs 2`` (default) trains the two sides of a seed at the
same time, each on one intra-op thread (the reference keeps itself to one core on CPU anyway; ours
uses one loader worker). Finished runs are skipped on a rerun; an interrupted one of ours resumes
from its ``last.ckpt``, an interrupted reference run starts again.

Usage::

    .venv/bin/python benchmarks/bench_accuracy.py --seeds 1 2 3 --epochs 30 --imgsz 256
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from bench_common import ROOT, generated_dataset, our_modules, pin_reference_threads, run_child, validate_ours

RECIPE = {"lr0": 0.01, "momentum": 0.937, "warmup_epochs": 3.0, "warmup_bias_lr": 0.1, "nbs": 64}


# ----------------------------------------------------------------------------------- commands
def ours_command(args: argparse.Namespace, folder: Path, seed: int) -> list[str]:
    """Our ``fit`` of one seed: the study tool's run command (run folder, CSV log, checkpoints, resume)."""
    from yolo11_lightning.study.runner import Run, run_command

    recipe = [
        "--model.optimizer", "SGD", "--model.lr0", str(RECIPE["lr0"]), "--model.momentum", str(RECIPE["momentum"]),
        "--model.warmup_epochs", str(RECIPE["warmup_epochs"]), "--model.warmup_bias_lr", str(RECIPE["warmup_bias_lr"]),
        "--model.nominal_batch_size", str(RECIPE["nbs"]), "--data.data", str(args.data), "--data.imgsz",
        str(args.imgsz), "--data.batch_size", str(args.batch), "--data.close_mosaic", str(args.close_mosaic),
        "--data.workers", "1" if args.jobs > 1 else "2", "--trainer.accelerator", "cpu", "--trainer.devices", "1",
        "--trainer.precision", "32-true", "--trainer.max_epochs", str(args.epochs),
    ]  # fmt: skip
    return run_command(Run("yolo11n.yaml", seed, folder), None, recipe, latency_runs=0)


def reference_train(args: argparse.Namespace) -> dict:
    """Child: the reference's training of one seed into ``--folder``."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    pin_reference_threads(args.threads)
    from ultralytics import YOLO

    folder = Path(args.folder)
    YOLO("yolo11n.yaml").train(
        data=str(args.data), epochs=args.epochs, imgsz=args.imgsz, batch=args.batch, device="cpu", amp=False,
        optimizer="SGD", lr0=RECIPE["lr0"], momentum=RECIPE["momentum"], warmup_epochs=RECIPE["warmup_epochs"],
        warmup_bias_lr=RECIPE["warmup_bias_lr"], nbs=RECIPE["nbs"], close_mosaic=args.close_mosaic, seed=args.seed,
        plots=False, project=str(folder.parent), name=folder.name, exist_ok=True, verbose=False,
    )  # fmt: skip
    return {"weights": str(folder / "weights" / "last.pt")}


def score(args: argparse.Namespace) -> dict:
    """Child: mAP of a weights file's EMA weights by our validation path, pycocotools backend."""
    import torch

    torch.set_num_threads(args.threads)
    module, data = our_modules(args.data, args.imgsz, args.batch, weights=args.weights, workers=1,
                               metric_backend="pycocotools")  # fmt: skip
    results = validate_ours(module, data)
    return {"map50_95": results.map50_95, "map50": results.map50}


# ------------------------------------------------------------------------------------- driver
def _curve(results_csv: Path, column: str) -> list[float]:
    with results_csv.open() as handle:
        rows = [{key.strip(): value for key, value in row.items()} for row in csv.DictReader(handle)]
    return [float(row[column]) for row in rows if row.get(column, "") != ""]


def _child_arguments(args: argparse.Namespace, side: str, **extra: object) -> list[str]:
    arguments = ["--side", side, "--data", str(args.data), "--imgsz", str(args.imgsz), "--batch", str(args.batch),
                 "--epochs", str(args.epochs), "--close-mosaic", str(args.close_mosaic),
                 "--threads", str(args.threads)]  # fmt: skip
    for key, value in extra.items():
        arguments += [f"--{key}", str(value)]
    return arguments


def train_seed(args: argparse.Namespace, seed: int) -> None:
    """Train both sides of one seed (at the same time with ``--jobs 2``), skipping finished ones."""
    environment = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
                       YOLO_OFFLINE="1")  # fmt: skip
    ours_folder, reference_folder = args.out / f"ours-seed{seed}", args.out / f"reference-seed{seed}"
    reference_arguments = _child_arguments(args, "reference", seed=seed, folder=reference_folder)
    commands = [("ours", ours_folder, ours_command(args, ours_folder, seed)),
                ("reference", reference_folder, [sys.executable, __file__, *reference_arguments])]  # fmt: skip
    pending = [item for item in commands if not (item[1] / "finished").is_file()]
    batches = [pending] if args.jobs == 2 else [[item] for item in pending]
    for batch in batches:
        running = []
        for side, folder, command in batch:
            folder.mkdir(parents=True, exist_ok=True)
            with (folder / "train.log").open("a") as log:
                process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=environment)
            running.append((side, folder, process))
        for side, folder, process in running:
            if process.wait():
                raise RuntimeError(f"{side} seed {seed} failed (exit {process.returncode}); see {folder / 'train.log'}")
            (folder / "finished").write_text("")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3], help="seeds (both sides)")
    parser.add_argument("--epochs", type=int, default=30, help="epochs (both sides; close_mosaic included)")
    parser.add_argument("--imgsz", type=int, default=256, help="image size")
    parser.add_argument("--batch", type=int, default=16, help="batch size")
    parser.add_argument("--close-mosaic", type=int, default=10, help="mosaic off for the last N epochs")
    parser.add_argument("--train-images", type=int, default=512, help="generated training images")
    parser.add_argument("--jobs", type=int, choices=[1, 2], default=2, help="2: both sides of a seed at once")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads per training")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-accuracy", help="run folders")
    parser.add_argument("--side", choices=["reference", "score"], help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--folder", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--weights", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        print("RESULT " + json.dumps({"reference": reference_train, "score": score}[args.side](args)), flush=True)
        return

    args.data = generated_dataset(args.train_images, 128, seed=1)
    args.out = args.out / f"{args.data.parent.name}-{args.imgsz}-e{args.epochs}"
    print(f"data {args.data.parent.name}, imgsz {args.imgsz}, batch {args.batch}, {args.epochs} epochs, close_mosaic "
          f"{args.close_mosaic}, SGD {RECIPE}, seeds {args.seeds}, runs in {args.out}", flush=True)  # fmt: skip
    rows = []
    for seed in args.seeds:
        train_seed(args, seed)
        ours_ckpt = args.out / f"ours-seed{seed}" / "checkpoints" / "last.ckpt"
        reference_pt = args.out / f"reference-seed{seed}" / "weights" / "last.pt"
        threads = args.threads * args.jobs
        ours = run_child(__file__, _child_arguments(args, "score", weights=ours_ckpt), threads=threads)
        reference = run_child(__file__, _child_arguments(args, "score", weights=reference_pt), threads=threads)
        ours_csv = args.out / f"ours-seed{seed}" / "logs" / "version_0" / "results.csv"
        reference_csv = args.out / f"reference-seed{seed}" / "results.csv"
        rows.append({"seed": seed, "ours": ours, "reference": reference,
                     "ours_curve": _curve(ours_csv, "val/mAP50-95"),
                     "reference_curve": _curve(reference_csv, "metrics/mAP50-95(B)")})  # fmt: skip
        print(f"seed {seed}: final EMA mAP50-95 (pycocotools) ours {ours['map50_95']:.4f}, reference "
              f"{reference['map50_95']:.4f}", flush=True)  # fmt: skip
    report(rows)
    (args.out / "summary.json").write_text(json.dumps(rows, indent=1))


def _spread(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def report(rows: list[dict]) -> None:
    """Per-epoch curves (mean over seeds), per-seed finals, means, spreads and the ratio."""
    epochs = min(min(len(r["ours_curve"]), len(r["reference_curve"])) for r in rows)
    print("\nper-epoch mAP50-95 (mean over seeds; ours: our evaluator on EMA weights, reference: its own)")
    print("| epoch | ours | reference |\n|---|---|---|")
    for epoch in range(epochs):
        ours = statistics.fmean(r["ours_curve"][epoch] for r in rows)
        reference = statistics.fmean(r["reference_curve"][epoch] for r in rows)
        print(f"| {epoch + 1} | {ours:.4f} | {reference:.4f} |")
    print("\nfinal EMA weights, one evaluator (ours, pycocotools backend)")
    print("| seed | ours mAP50-95 | reference mAP50-95 | ours mAP50 | reference mAP50 |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['seed']} | {r['ours']['map50_95']:.4f} | {r['reference']['map50_95']:.4f} | "
              f"{r['ours']['map50']:.4f} | {r['reference']['map50']:.4f} |")  # fmt: skip
    ours = [r["ours"]["map50_95"] for r in rows]
    reference = [r["reference"]["map50_95"] for r in rows]
    print(f"mean mAP50-95: ours {statistics.fmean(ours):.4f} +- {_spread(ours):.4f}, reference "
          f"{statistics.fmean(reference):.4f} +- {_spread(reference):.4f} (std over seeds); ratio of means "
          f"{statistics.fmean(ours) / max(statistics.fmean(reference), 1e-9):.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
