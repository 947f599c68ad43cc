"""Where a training step's CPU time goes: operator and Python profiles of our training loop.

Trains yolo11n (our defaults, plus ``--ours`` overrides) through Lightning on the shipped data in
one process (``workers=0``: loading is in the profile), skips ``--warmup`` batches and profiles the
next ``--batches``:

* ``torch.profiler``: the top operators by self CPU time (convolutions, their backward, copies);
* ``cProfile``: the top Python functions by own time (``--sort cumulative``: with their callees),
  which shows per-step overheads outside the operators (logging, hooks, the loss's bookkeeping,
  the optimizer).

Usage::

    .venv/bin/python benchmarks/profile_train.py --threads 1 --imgsz 320 --batch 16
    .venv/bin/python benchmarks/profile_train.py --ours channels_last=false
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import tempfile

import torch
from bench_common import ROOT, cpu_trainer, our_modules, parse_options
from lightning.pytorch import Callback, Trainer, seed_everything


class _StopProfiling(Exception):
    """Ends training once the profiled batches are done."""


class _Profile(Callback):
    """Starts both profilers after ``warmup`` batches and stops training after ``warmup + batches``."""

    def __init__(self, warmup: int, batches: int) -> None:
        self.warmup, self.batches, self.seen = warmup, batches, 0
        self.python = cProfile.Profile()
        self.operators = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])

    def on_train_batch_end(self, trainer: Trainer, *unused) -> None:
        self.seen += 1
        if self.seen == self.warmup:
            self.operators.__enter__()
            self.python.enable()
        elif self.seen == self.warmup + self.batches:
            self.python.disable()
            self.operators.__exit__(None, None, None)
            raise _StopProfiling


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads")
    parser.add_argument("--imgsz", type=int, default=320, help="image size")
    parser.add_argument("--batch", type=int, default=16, help="batch size")
    parser.add_argument("--warmup", type=int, default=3, help="batches before profiling")
    parser.add_argument("--batches", type=int, default=6, help="profiled batches")
    parser.add_argument("--top", type=int, default=20, help="rows per table")
    parser.add_argument("--sort", choices=["tottime", "cumulative"], default="tottime", help="Python table order")
    parser.add_argument("--ours", nargs="*", default=[], metavar="KEY=VALUE", help="YOLOModule options")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    seed_everything(0)
    overrides = parse_options(args.ours)
    module, data = our_modules(ROOT / "data" / "shapes4" / "data.yaml", args.imgsz, args.batch, workers=0, **overrides)
    profile = _Profile(args.warmup, args.batches)
    with tempfile.TemporaryDirectory() as root:
        trainer = cpu_trainer(root, max_epochs=100, limit_val_batches=0, callbacks=[profile])
        try:
            trainer.fit(module, data)
        except _StopProfiling:
            pass

    print(f"operators, {args.batches} batches of {args.batch} at {args.imgsz}, {args.threads} thread(s), {overrides}")
    print(profile.operators.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top))
    stream = io.StringIO()
    pstats.Stats(profile.python, stream=stream).sort_stats(args.sort).print_stats(args.top)
    print(f"Python functions by {args.sort} time (operators included where they are called from Python)")
    print(stream.getvalue())


if __name__ == "__main__":
    main()
