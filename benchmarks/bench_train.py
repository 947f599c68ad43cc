"""Training throughput, validation-epoch time and from-scratch mAP: ours vs the reference, one run.

Each measurement runs in a fresh subprocess of this script (same data, machine, threads), one side
after the other:

* ``throughput``: images/s of steady-state training (yolo11n, imgsz 320, batch 16, CPU, fp32):
  time between consecutive batch ends within an epoch (data loading included with the default
  ``--workers 0``), first epoch skipped; per wall second and per CPU second of the process (the
  machine may be shared: the CPU figure is the steadier one).
* ``val``: time of one full validation run (model set-up, data, forward, NMS, mAP) on the
  validation split, best of two; both sides load the same weights (``--weights``: a reference
  ``.pt`` or one of our ``.ckpt``; with ``--compare-map``, the reference's trained weights).
* ``--compare-map``: both train from scratch with the same recipe, epochs and data; the final (last
  epoch) EMA weights of both are then scored by the same evaluator (ours: torchmetrics COCO mAP,
  max 300 detections); the reference's own mAP50-95 is printed too.

Usage::

    .venv/bin/python benchmarks/bench_train.py                       # throughput + val time
    .venv/bin/python benchmarks/bench_train.py --compare-map --imgsz 160 --batch 8 --nbs 8 --epochs 40 \
        --close-mosaic 5 --optimizer AdamW --lr0 0.002 --momentum 0.9 --warmup-bias-lr 0.0
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "shapes4" / "data.yaml"


# ----------------------------------------------------------------------------------------- ours
def _our_modules(args: argparse.Namespace, weights: str | None = None, **model_kwargs):
    from yolo11_lightning.data.datamodule import YOLODataModule
    from yolo11_lightning.training.module import YOLOModule

    data = YOLODataModule(
        str(args.data), imgsz=args.imgsz, batch_size=args.batch, workers=args.workers, val_batch_size=args.batch,
        pin_memory=False, close_mosaic=args.close_mosaic, seed=0,
    )  # fmt: skip
    module = YOLOModule(
        "yolo11n.yaml", num_classes=data.num_classes, class_names=data.names, weights=weights,
        nominal_batch_size=args.nbs, print_class_table=False, channels_last=args.channels_last,
        optimizer=args.optimizer, lr0=args.lr0, momentum=args.momentum, warmup_bias_lr=args.warmup_bias_lr,
        warmup_epochs=args.warmup_epochs, min_warmup_iterations=100, **model_kwargs,
    )  # fmt: skip
    return module, data


def _trainer(root: str, epochs: int, **kwargs):
    from lightning.pytorch import Trainer

    return Trainer(
        accelerator="cpu", max_epochs=epochs, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        default_root_dir=root, **kwargs,
    )  # fmt: skip


def ours_throughput(args: argparse.Namespace) -> dict:
    from lightning.pytorch import Callback, seed_everything

    seed_everything(0)
    ends: list[tuple[int, float, float]] = []

    class Clock(Callback):
        def on_train_batch_end(self, trainer, *unused) -> None:
            ends.append((trainer.current_epoch, time.perf_counter(), time.process_time()))

    module, data = _our_modules(args)
    with tempfile.TemporaryDirectory() as root:
        _trainer(root, args.throughput_epochs, limit_val_batches=0, callbacks=[Clock()]).fit(module, data)
    return _images_per_second(ends, args.batch)


def ours_val(args: argparse.Namespace) -> dict:
    times, cpu_times, results = [], [], None
    for _ in range(2):
        start, cpu_start = time.perf_counter(), time.process_time()
        module, data = _our_modules(args, weights=args.weights)
        with tempfile.TemporaryDirectory() as root:
            _trainer(root, 1).validate(module, data, verbose=False)
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
        results = module.last_results
    return {"seconds": min(times), "cpu_seconds": min(cpu_times), "map50_95": results.map50_95,
            "map50": results.map50}  # fmt: skip


def ours_train(args: argparse.Namespace) -> dict:
    from lightning.pytorch import seed_everything

    seed_everything(0)
    module, data = _our_modules(args)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as root:
        _trainer(root, args.epochs).fit(module, data)
    return {"map50_95": module.last_results.map50_95, "map50": module.last_results.map50,
            "seconds": time.perf_counter() - start}  # fmt: skip


def ours_score(args: argparse.Namespace) -> dict:
    """Score a weights file (e.g. the reference's last.pt) with our evaluator."""
    return ours_val(args)


# ------------------------------------------------------------------------------------ reference
def _reference_model(weights: str | None):
    """The reference's YOLO object; ``weights`` a reference ``.pt`` or one of our ``.ckpt`` (EMA weights)."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    from ultralytics import YOLO

    if not weights or not weights.endswith(".ckpt"):
        return YOLO(weights or "yolo11n.yaml")
    import torch
    from ultralytics.nn.tasks import DetectionModel

    checkpoint = torch.load(weights, map_location="cpu", weights_only=False)
    names = checkpoint["class_names"]
    network = DetectionModel("yolo11n.yaml", nc=len(names), verbose=False)
    network.load_state_dict(checkpoint["ema_state_dict"])  # same keys by design
    network.names = names
    with tempfile.NamedTemporaryFile(suffix=".pt", delete=False) as handle:
        torch.save({"model": network.float(), "train_args": {}}, handle.name)  # the reference's own format
    return YOLO(handle.name)


def _reference_train_args(args: argparse.Namespace, project: str, epochs: int, val: bool) -> dict:
    return dict(
        data=str(args.data), epochs=epochs, imgsz=args.imgsz, batch=args.batch, workers=args.workers, device="cpu",
        amp=False, plots=False, val=val, project=project, name="run", exist_ok=True, optimizer=args.optimizer,
        lr0=args.lr0, momentum=args.momentum, warmup_bias_lr=args.warmup_bias_lr, warmup_epochs=args.warmup_epochs,
        weight_decay=5e-4, nbs=args.nbs, close_mosaic=args.close_mosaic, seed=0, verbose=False,
    )  # fmt: skip


def reference_throughput(args: argparse.Namespace) -> dict:
    ends: list[tuple[int, float, float]] = []
    model = _reference_model(None)
    model.add_callback(
        "on_train_batch_end", lambda trainer: ends.append((trainer.epoch, time.perf_counter(), time.process_time()))
    )
    with tempfile.TemporaryDirectory() as project:
        model.train(**_reference_train_args(args, project, args.throughput_epochs, val=False))
    return _images_per_second(ends, args.batch)


def reference_val(args: argparse.Namespace) -> dict:
    times, cpu_times, metrics = [], [], None
    for _ in range(2):
        start, cpu_start = time.perf_counter(), time.process_time()
        with tempfile.TemporaryDirectory() as project:
            metrics = _reference_model(args.weights).val(
                data=str(args.data), imgsz=args.imgsz, batch=args.batch, device="cpu", plots=False, conf=0.001,
                iou=0.7, max_det=300, workers=args.workers, project=project, name="val", verbose=False,
            )  # fmt: skip
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    return {"seconds": min(times), "cpu_seconds": min(cpu_times), "map50_95": float(metrics.box.map),
            "map50": float(metrics.box.map50)}  # fmt: skip


def reference_train(args: argparse.Namespace) -> dict:
    model = _reference_model(None)
    start = time.perf_counter()
    project = args.output_dir
    model.train(**_reference_train_args(args, project, args.epochs, val=True))
    last = Path(project) / "run" / "weights" / "last.pt"
    metrics = model.trainer.metrics
    return {"own_map50_95": float(metrics["metrics/mAP50-95(B)"]), "own_map50": float(metrics["metrics/mAP50(B)"]),
            "weights": str(last), "seconds": time.perf_counter() - start}  # fmt: skip


# ---------------------------------------------------------------------------------------- driver
def _images_per_second(ends: list[tuple[int, float, float]], batch: int) -> dict:
    """Images per wall second and per CPU second (this process) over consecutive batch ends within
    each epoch, skipping the first epoch."""
    elapsed, cpu, batches = 0.0, 0.0, 0
    epochs = sorted({entry[0] for entry in ends})
    for epoch in epochs[1:] if len(epochs) > 1 else epochs:
        stamps = [entry for entry in ends if entry[0] == epoch]
        if len(stamps) > 1:
            elapsed += stamps[-1][1] - stamps[0][1]
            cpu += stamps[-1][2] - stamps[0][2]
            batches += len(stamps) - 1
    return {"images_per_s": batch * batches / elapsed, "images_per_cpu_s": batch * batches / cpu}


TASKS = {
    ("ours", "throughput"): ours_throughput, ("reference", "throughput"): reference_throughput,
    ("ours", "val"): ours_val, ("reference", "val"): reference_val,
    ("ours", "train"): ours_train, ("reference", "train"): reference_train, ("ours", "score"): ours_score,
}  # fmt: skip


def _child(side: str, task: str, args: argparse.Namespace, **extra: str) -> dict:
    command = [sys.executable, __file__, "--side", side, "--task", task, "--data", str(args.data),
               "--imgsz", str(args.imgsz), "--batch", str(args.batch), "--workers", str(args.workers),
               "--nbs", str(args.nbs), "--epochs", str(args.epochs), "--close-mosaic", str(args.close_mosaic),
               "--throughput-epochs", str(args.throughput_epochs), "--optimizer", args.optimizer,
               "--lr0", str(args.lr0), "--momentum", str(args.momentum), "--warmup-bias-lr", str(args.warmup_bias_lr),
               "--warmup-epochs", str(args.warmup_epochs)]  # fmt: skip
    if args.channels_last:
        command.append("--channels-last")
    for key, value in extra.items():
        command += [f"--{key.replace('_', '-')}", value]
    completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
    if completed.returncode or not lines:
        sys.stderr.write(completed.stdout[-3000:] + completed.stderr[-3000:])
        raise RuntimeError(f"{side}/{task} failed (exit {completed.returncode})")
    return json.loads(lines[-1][len("RESULT ") :])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA, help="data.yaml (default: the shipped data set)")
    parser.add_argument("--imgsz", type=int, default=320, help="image size")
    parser.add_argument("--batch", type=int, default=16, help="batch size")
    parser.add_argument(
        "--workers", type=int, default=0, help="dataloader workers (both sides; 0: CPU time covers loading)"
    )
    parser.add_argument("--nbs", type=int, default=64, help="nominal batch size (both sides)")
    parser.add_argument("--epochs", type=int, default=40, help="epochs of the --compare-map training")
    parser.add_argument("--close-mosaic", type=int, default=10, help="mosaic off for the last N epochs")
    parser.add_argument("--throughput-epochs", type=int, default=3, help="epochs timed for throughput")
    parser.add_argument("--optimizer", choices=["SGD", "AdamW"], default="SGD", help="both sides")
    parser.add_argument("--lr0", type=float, default=0.01, help="initial LR (both sides)")
    parser.add_argument("--momentum", type=float, default=0.937, help="SGD momentum / AdamW beta1 (both sides)")
    parser.add_argument("--warmup-bias-lr", type=float, default=0.1, help="bias LR at warmup start (both sides)")
    parser.add_argument("--warmup-epochs", type=float, default=3.0, help="warmup epochs, at least 100 iterations")
    parser.add_argument("--channels-last", action="store_true", help="ours: channels-last memory format")
    parser.add_argument("--weights", default=None, help="weights both sides validate: reference .pt or our .ckpt")
    parser.add_argument("--compare-map", action="store_true", help="train both from scratch, compare mAP50-95")
    parser.add_argument("--skip-speed", action="store_true", help="skip the throughput and val timings")
    parser.add_argument("--side", choices=["ours", "reference"], help=argparse.SUPPRESS)
    parser.add_argument("--task", choices=["throughput", "val", "train", "score"], help=argparse.SUPPRESS)
    parser.add_argument("--output-dir", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.side:  # child process: one measurement
        print("RESULT " + json.dumps(TASKS[(args.side, args.task)](args)), flush=True)
        return

    print(f"data {args.data}, imgsz {args.imgsz}, batch {args.batch}, workers {args.workers}, CPU threads "
          f"{os.cpu_count()}, channels_last {args.channels_last}")  # fmt: skip
    if args.compare_map:
        with tempfile.TemporaryDirectory() as output:
            ours = _child("ours", "train", args)
            reference = _child("reference", "train", args, output_dir=output)
            ref_scored = _child("ours", "score", args, weights=reference["weights"])
            args.weights = args.weights or reference["weights"]
            print(f"from scratch, {args.epochs} epochs, {args.optimizer} lr0 {args.lr0}, nbs {args.nbs}, "
                  f"batch {args.batch}, imgsz {args.imgsz}, close_mosaic {args.close_mosaic}:")  # fmt: skip
            print(f"  ours      mAP50-95 {ours['map50_95']:.4f}  mAP50 {ours['map50']:.4f}  "
                  f"(train {ours['seconds']:.0f} s)")  # fmt: skip
            print(f"  reference mAP50-95 {ref_scored['map50_95']:.4f}  mAP50 {ref_scored['map50']:.4f}  "
                  f"(same evaluator; its own metric: mAP50-95 {reference['own_map50_95']:.4f}, "
                  f"train {reference['seconds']:.0f} s)")  # fmt: skip
            print(f"  ratio ours/reference mAP50-95: {ours['map50_95'] / max(ref_scored['map50_95'], 1e-9):.3f}")
            if not args.skip_speed:
                _speed(args)
        return
    _speed(args)


def _speed(args: argparse.Namespace) -> None:
    ours = _child("ours", "throughput", args)
    reference = _child("reference", "throughput", args)
    print(f"training throughput: ours {ours['images_per_s']:.2f} img/s, reference {reference['images_per_s']:.2f} "
          f"img/s, ratio {ours['images_per_s'] / reference['images_per_s']:.3f} (goal >= 1.0); per CPU second: "
          f"ours {ours['images_per_cpu_s']:.2f}, reference {reference['images_per_cpu_s']:.2f}, ratio "
          f"{ours['images_per_cpu_s'] / reference['images_per_cpu_s']:.3f}")  # fmt: skip
    extra = {"weights": args.weights} if args.weights else {}
    ours_v = _child("ours", "val", args, **extra)
    reference_v = _child("reference", "val", args, **extra)
    print(
        f"validation epoch: ours {ours_v['seconds']:.2f} s, reference {reference_v['seconds']:.2f} s, ratio "
        f"{ours_v['seconds'] / reference_v['seconds']:.3f} (goal <= 1.0); CPU ours {ours_v['cpu_seconds']:.2f} s, "
        f"reference {reference_v['cpu_seconds']:.2f} s, "
        f"ratio {ours_v['cpu_seconds'] / reference_v['cpu_seconds']:.3f}; "
        f"weights {args.weights or 'untrained'}; "
        f"mAP50-95 ours {ours_v['map50_95']:.4f} (COCO), reference {reference_v['map50_95']:.4f} (its own)"
    )


if __name__ == "__main__":
    main()
