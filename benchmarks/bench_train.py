"""Training throughput and validation time, ours vs the reference, like for like in one run.

Both sides train from scratch on the same generated set (``data/make_dataset.py``, 512 train / 128
val images, cached under ``runs/bench-data/``), CPU, fp32, mosaic on, with their own defaults
(ours: ``YOLOModule``/``YOLODataModule`` with no options but the model, ``imgsz`` and ``batch``; the
reference: ``YOLO(...).train`` with ``amp=False``). Each measurement is a fresh child process with
the same number of intra-op threads on both sides: ``torch.set_num_threads(N)`` and
``OMP_NUM_THREADS=N``; the reference resets its threads to ``cores - 1`` when its trainer starts,
so its ``NUM_THREADS`` is set to ``N`` as well. The reference's trainer loads data in the main
process on CPU (it forces ``workers=0``); ours uses its default loader workers.

* **throughput**: after ``--warmup-batches`` batches (loader start-up, first allocations), the
  next ``--batches`` batches are timed from batch end to batch end: images per wall second and per
  CPU second, where CPU seconds are those of the whole process tree (the trainer and its loader
  workers, user + system), so start-up is cancelled out and nothing is hidden in a worker.
  ``cores`` = CPU seconds / wall seconds. Ours is measured for every ``--variants`` config; the
  reference only builds its own ``yolo11n.yaml``.
* **val**: one full validation run (model set-up, loading, forward, NMS, mAP) of the generated
  val split with the same weights on both sides (``--weights``, default: the committed trained
  checkpoint), batch ``2 x batch`` on both sides, best of two, wall and process-tree CPU seconds.

Usage::

    .venv/bin/python benchmarks/bench_train.py                    # yolo11n at 320, threads 1 and 2, val
    .venv/bin/python benchmarks/bench_train.py --imgsz 320 640 --variants yolo11n.yaml yolo11n-mlla.yaml \\
        yolo11n-c2psa-mlla.yaml yolo11n-focalmodulation.yaml
    .venv/bin/python benchmarks/bench_train.py --no-reference --no-val --ab channels_last=false   # A/B, interleaved
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from bench_common import (
    ROOT,
    cpu_trainer,
    generated_dataset,
    our_modules,
    parse_options,
    pin_reference_threads,
    reference_yolo,
    run_child,
    tree_cpu_seconds,
    validate_ours,
)

DEFAULT_WEIGHTS = ROOT / "tests" / "data" / "trained" / "shapes4_yolo11n_160.ckpt"


def _median_rates(runs: list[dict]) -> dict[str, float]:
    """Per-key medians of several throughput results."""
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


class _StopBenchmark(Exception):
    """Raised from a batch-end callback once enough batches are timed."""


class _BatchClock:
    """Batch-end stamps (wall, process-tree CPU); stops training after ``stop_after`` batches."""

    def __init__(self, stop_after: int) -> None:
        self.stop_after = stop_after
        self.stamps: list[tuple[float, float]] = []

    def tick(self) -> None:
        self.stamps.append((time.perf_counter(), tree_cpu_seconds()))
        if len(self.stamps) >= self.stop_after:
            raise _StopBenchmark

    def rates(self, warmup: int, batch: int) -> dict[str, float]:
        (wall0, cpu0), (wall1, cpu1) = self.stamps[warmup - 1], self.stamps[-1]
        images = batch * (len(self.stamps) - warmup)
        return {"images_per_s": images / (wall1 - wall0), "images_per_cpu_s": images / (cpu1 - cpu0),
                "cores": (cpu1 - cpu0) / (wall1 - wall0)}  # fmt: skip


# ----------------------------------------------------------------------------------------- ours
def ours_throughput(args: argparse.Namespace) -> dict:
    import torch
    from lightning.pytorch import Callback, seed_everything

    torch.set_num_threads(args.threads)
    seed_everything(0)
    clock = _BatchClock(args.warmup_batches + args.batches)

    class Clock(Callback):
        def on_train_batch_end(self, *unused) -> None:
            clock.tick()

    module, data = our_modules(args.data, args.imgsz, args.batch, args.model, **json.loads(args.ours_json))
    with tempfile.TemporaryDirectory() as root:
        try:  # many epochs, so that the recipe keeps mosaic on; stopped after the timed batches
            cpu_trainer(root, max_epochs=100, limit_val_batches=0, callbacks=[Clock()]).fit(module, data)
        except _StopBenchmark:
            pass
    return clock.rates(args.warmup_batches, args.batch)


def ours_val(args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    options = {**json.loads(args.ours_json), "val_batch_size": 2 * args.batch}
    walls, cpus = [], []
    for _ in range(2):
        wall, cpu = time.perf_counter(), tree_cpu_seconds()
        module, data = our_modules(args.data, args.imgsz, args.batch, args.model, args.weights, **options)
        results = validate_ours(module, data)
        walls.append(time.perf_counter() - wall)
        cpus.append(tree_cpu_seconds() - cpu)
    return {"seconds": min(walls), "cpu_seconds": min(cpus), "map50_95": results.map50_95}


# ------------------------------------------------------------------------------------ reference
def reference_throughput(args: argparse.Namespace) -> dict:
    pin_reference_threads(args.threads)
    clock = _BatchClock(args.warmup_batches + args.batches)
    model = reference_yolo(None, args.model)
    model.add_callback("on_train_batch_end", lambda trainer: clock.tick())
    with tempfile.TemporaryDirectory() as project:
        try:
            model.train(data=str(args.data), epochs=100, imgsz=args.imgsz, batch=args.batch, device="cpu",
                        amp=False, plots=False, val=False, project=project, name="run", exist_ok=True, seed=0,
                        verbose=False)  # fmt: skip
        except _StopBenchmark:
            pass
    return clock.rates(args.warmup_batches, args.batch)


def reference_val(args: argparse.Namespace) -> dict:
    pin_reference_threads(args.threads)
    walls, cpus = [], []
    for _ in range(2):
        wall, cpu = time.perf_counter(), tree_cpu_seconds()
        with tempfile.TemporaryDirectory() as project:
            metrics = reference_yolo(args.weights).val(
                data=str(args.data), imgsz=args.imgsz, batch=2 * args.batch, device="cpu", plots=False, conf=0.001,
                iou=0.7, max_det=300, project=project, name="val", verbose=False,
            )  # fmt: skip
        walls.append(time.perf_counter() - wall)
        cpus.append(tree_cpu_seconds() - cpu)
    return {"seconds": min(walls), "cpu_seconds": min(cpus), "map50_95": float(metrics.box.map)}


TASKS = {
    ("ours", "throughput"): ours_throughput, ("reference", "throughput"): reference_throughput,
    ("ours", "val"): ours_val, ("reference", "val"): reference_val,
}  # fmt: skip


# ---------------------------------------------------------------------------------------- driver
def _child(args: argparse.Namespace, side: str, task: str, model: str, imgsz: int, threads: int) -> dict:
    ours_json = args.ab_json if side == "ours-ab" else args.ours_json
    side = "ours" if side == "ours-ab" else side
    arguments = ["--side", side, "--task", task, "--model", model, "--imgsz", str(imgsz), "--threads", str(threads),
                 "--data", str(args.data), "--batch", str(args.batch), "--warmup-batches", str(args.warmup_batches),
                 "--batches", str(args.batches), "--weights", str(args.weights),
                 "--ours-json", ours_json]  # fmt: skip
    return run_child(__file__, arguments, threads=threads)


def _throughput_tables(args: argparse.Namespace) -> None:
    """Training throughput of every side, interleaved ``--repeats`` times; medians and per-repeat ratio ranges."""
    print(f"medians of {args.repeats} interleaved run(s) per side; CPU ratio range: the per-repeat ratios")
    print("| model | imgsz | threads | ours img/s | ours img/CPU-s | ours cores | ref img/s | ref img/CPU-s "
          "| ref cores | wall ratio | CPU ratio | CPU ratio range |\n" + "|---" * 12 + "|")  # fmt: skip
    sides = [] if args.no_reference else [("reference", "yolo11n.yaml")]
    sides += [("reference+malloc", "yolo11n.yaml")] if args.reference_malloc else []
    ours_sides = ["ours", "ours-ab"] if args.ab_json else ["ours"]
    sides += [(side, variant) for variant in args.variants for side in ours_sides]
    for imgsz in args.imgsz:
        for threads in args.threads:
            runs: dict[str, list[dict]] = {}
            for _ in range(args.repeats):  # interleaved, so that a slow spell of the machine hits every side
                for side, model in sides:
                    result = _child(args, side, "throughput", model, imgsz, threads)
                    runs.setdefault(f"{side} {model}", []).append(result)
            reference = None if args.no_reference else _median_rates(runs["reference yolo11n.yaml"])
            for variant in args.variants:
                ours = _median_rates(runs[f"ours {variant}"])
                row = [variant, imgsz, threads, f"{ours['images_per_s']:.2f}", f"{ours['images_per_cpu_s']:.2f}",
                       f"{ours['cores']:.2f}"]  # fmt: skip
                if reference:
                    pairs = [o["images_per_cpu_s"] / r["images_per_cpu_s"]
                             for o, r in zip(runs[f"ours {variant}"], runs["reference yolo11n.yaml"])]  # fmt: skip
                    row += [f"{reference['images_per_s']:.2f}", f"{reference['images_per_cpu_s']:.2f}",
                            f"{reference['cores']:.2f}", f"{ours['images_per_s'] / reference['images_per_s']:.3f}",
                            f"**{ours['images_per_cpu_s'] / reference['images_per_cpu_s']:.3f}**",
                            f"{min(pairs):.3f}-{max(pairs):.3f}"]  # fmt: skip
                else:
                    row += ["-"] * 6
                print("| " + " | ".join(str(cell) for cell in row) + " |", flush=True)
            for variant in args.variants if args.ab_json else []:
                ab = _median_rates(runs[f"ours-ab {variant}"])
                pairs = [b["images_per_cpu_s"] / o["images_per_cpu_s"]
                         for b, o in zip(runs[f"ours-ab {variant}"], runs[f"ours {variant}"])]  # fmt: skip
                print(f"{variant} with {args.ab_json}, imgsz {imgsz}, {threads} thread(s): {ab['images_per_s']:.2f} "
                      f"img/s, {ab['images_per_cpu_s']:.2f} img/CPU-s; per CPU-second vs the row above "
                      f"{statistics.median(pairs):.3f} (pairs {min(pairs):.3f}-{max(pairs):.3f})")  # fmt: skip
            if args.reference_malloc:
                malloc = _median_rates(runs["reference+malloc yolo11n.yaml"])
                print(f"reference with our CPU malloc setting, imgsz {imgsz}, {threads} thread(s): "
                      f"{malloc['images_per_s']:.2f} img/s, {malloc['images_per_cpu_s']:.2f} img/CPU-s")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=["yolo11n.yaml"], help="our model configs (first: yolo11n)")
    parser.add_argument("--imgsz", nargs="+", type=int, default=[320], help="image sizes")
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2], help="intra-op threads (both sides)")
    parser.add_argument("--batch", type=int, default=16, help="training batch size (validation: twice this)")
    parser.add_argument("--warmup-batches", type=int, default=4, help="batches before the timed ones")
    parser.add_argument("--batches", type=int, default=16, help="timed batches (per measurement)")
    parser.add_argument("--train-images", type=int, default=512, help="generated training images")
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS, help="weights both sides validate")
    parser.add_argument("--ours", nargs="*", default=[], metavar="KEY=VALUE", help="our module/datamodule options")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved throughput runs per side (medians)")
    parser.add_argument(
        "--reference-malloc", action="store_true", help="also time the reference with our CPU malloc setting"
    )
    parser.add_argument("--ab", nargs="*", default=[], metavar="KEY=VALUE",
                        help="also time ours with these options, interleaved with the plain runs (A/B)")  # fmt: skip
    parser.add_argument("--no-reference", action="store_true", help="measure ours only")
    parser.add_argument("--no-val", action="store_true", help="skip the validation timing")
    parser.add_argument("--no-train", action="store_true", help="skip the training throughput")
    parser.add_argument("--side", choices=["ours", "reference", "reference+malloc"], help=argparse.SUPPRESS)
    parser.add_argument("--task", choices=["throughput", "val"], help=argparse.SUPPRESS)
    parser.add_argument("--model", default="yolo11n.yaml", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--ours-json", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.side:  # child process: one measurement
        args.threads = args.threads[0]
        args.imgsz = args.imgsz[0]
        args.weights = str(args.weights)
        if args.side == "reference+malloc":
            from yolo11_lightning.training.cpu_memory import keep_freed_memory

            keep_freed_memory()
        task = TASKS[(args.side.removesuffix("+malloc"), args.task)]
        print("RESULT " + json.dumps(task(args)), flush=True)
        return

    args.data = generated_dataset(args.train_images, 128, seed=1)
    args.ours_json = json.dumps(parse_options(args.ours))
    args.ab_json = json.dumps(parse_options(args.ab)) if args.ab else None
    print(f"data {args.data.parent.name}, batch {args.batch}, CPU fp32, {args.warmup_batches} warm-up + "
          f"{args.batches} timed batches, ours options {args.ours_json}")  # fmt: skip
    if not args.no_train:
        _throughput_tables(args)
    if args.no_val:
        return
    print(
        f"\nvalidation of {args.data.parent.name}/val (128 images), batch {2 * args.batch}, weights {args.weights.name}"
    )
    for imgsz in args.imgsz:
        for threads in args.threads:
            ours = _child(args, "ours", "val", "yolo11n.yaml", imgsz, threads)
            line = f"imgsz {imgsz}, {threads} thread(s): ours {ours['seconds']:.2f} s ({ours['cpu_seconds']:.2f} CPU-s)"
            if not args.no_reference:
                reference = _child(args, "reference", "val", "yolo11n.yaml", imgsz, threads)
                line += (f", reference {reference['seconds']:.2f} s ({reference['cpu_seconds']:.2f} CPU-s); ratio "
                         f"{ours['seconds'] / reference['seconds']:.3f} wall, "
                         f"{ours['cpu_seconds'] / reference['cpu_seconds']:.3f} CPU (goal <= 0.8); mAP50-95 ours "
                         f"{ours['map50_95']:.4f} (COCO), reference {reference['map50_95']:.4f} (its own)")  # fmt: skip
            print(line, flush=True)


if __name__ == "__main__":
    main()
