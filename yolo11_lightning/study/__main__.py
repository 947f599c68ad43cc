"""``python -m yolo11_lightning.study``: train every variant x seed and compare the variants.

Example (the seed variants against YOLO11n, 3 seeds, the quickstart recipe)::

    python -m yolo11_lightning.study \\
        --variants yolo11n.yaml yolo11n-mlla.yaml yolo11n-c2psa-mlla.yaml yolo11n-focalmodulation.yaml \\
        --seeds 0 1 2 --config configs/quickstart.yaml --out runs/study

Arguments the study does not know (``--trainer.max_epochs 10``, ``--data.imgsz 256`` ...) go to
every run's ``fit`` command. Rerunning the same command skips finished runs and resumes an
interrupted one; the outputs are rewritten from all finished runs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from yolo11_lightning.study.report import write_reports
from yolo11_lightning.study.runner import execute, load_results, plan_runs


def main(argv: Sequence[str] | None = None) -> int:
    """Run a study; returns the exit code (1 when a run failed)."""
    parser = argparse.ArgumentParser(
        prog="python -m yolo11_lightning.study",
        description="Train every variant x seed (one run folder each, resumable) and write study.csv, "
        "study.md and study.png. Unknown arguments are passed to every run's fit command.",
    )
    parser.add_argument("--variants", nargs="+", required=True, help="model configs; the first is the reference")
    parser.add_argument("--seeds", nargs="+", type=int, required=True, help="seeds, e.g. 0 1 2")
    parser.add_argument("--config", default=None, help="training config shared by every run (--config of fit)")
    parser.add_argument("--out", required=True, type=Path, help="study folder")
    parser.add_argument("--devices", nargs="*", default=[], help="GPU ids: one run per GPU in parallel")
    parser.add_argument("--latency-runs", type=int, default=20, help="timed forward passes per run (0: skip)")
    parser.add_argument("--report-only", action="store_true", help="only rewrite the outputs from finished runs")
    args, overrides = parser.parse_known_args(argv)

    runs = plan_runs(args.variants, args.seeds, args.out)
    failed = (
        [] if args.report_only else execute(runs, args.config, overrides, args.devices, latency_runs=args.latency_runs)
    )
    rows = load_results(runs)
    if not rows:
        print("no finished runs: nothing to report", file=sys.stderr)
        return 1
    write_reports(rows, args.variants, args.out)
    print(f"{len(rows)}/{len(runs)} runs finished; wrote {args.out / 'study.csv'}, study.md, study.png")
    if failed:
        print(f"{len(failed)} runs failed: " + ", ".join(f"{r.variant} seed {r.seed}" for r in failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
