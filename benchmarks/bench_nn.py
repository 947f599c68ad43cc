"""Eval forward latency: our fused YOLO11n against the reference's fused YOLO11n.

Both models carry the same weights (ours loads the reference's state dict), run at 640x640,
batch 1, on CPU with the same thread count, in one process. Runs alternate between the two
models so that machine load affects both alike; the script prints medians and the ratio
ours / reference (goal: at most 1.0).

Usage:
    .venv/bin/python benchmarks/bench_nn.py [--runs 30] [--imgsz 640] [--threads N] [--scale n]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_VERBOSE", "False")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--scale", default="n")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from ultralytics.nn.tasks import DetectionModel as ReferenceModel

    from yolo11_lightning import build_model

    reference = ReferenceModel(f"yolo11{args.scale}.yaml", verbose=False)
    ours = build_model(f"yolo11{args.scale}.yaml")
    ours.load_state_dict(reference.state_dict(), strict=True)
    reference = reference.fuse(verbose=False).eval()
    ours = ours.fuse().eval()
    image = torch.rand(1, 3, args.imgsz, args.imgsz)

    with torch.inference_mode():
        diff = (reference(image)[0] - ours(image)[0]).abs().max().item()
        for _ in range(args.warmup):
            reference(image)
            ours(image)
        times: dict[str, list[float]] = {"reference": [], "ours": []}
        for _ in range(args.runs):
            for name, model in (("reference", reference), ("ours", ours)):
                start = time.perf_counter()
                model(image)
                times[name].append(time.perf_counter() - start)

    ref_ms = statistics.median(times["reference"]) * 1e3
    our_ms = statistics.median(times["ours"]) * 1e3
    print(
        f"YOLO11{args.scale} fused eval forward, {args.imgsz}x{args.imgsz}, batch 1, CPU, {args.threads} threads, "
        f"{args.runs} alternating runs (max abs output diff {diff:.2e})"
    )
    print(f"  reference: median {ref_ms:7.2f} ms  (min {min(times['reference']) * 1e3:.2f})")
    print(f"  ours:      median {our_ms:7.2f} ms  (min {min(times['ours']) * 1e3:.2f})")
    print(
        f"  ratio ours/reference: {our_ms / ref_ms:.3f} (median), "
        f"{min(times['ours']) / min(times['reference']):.3f} (min)"
    )


if __name__ == "__main__":
    main()
