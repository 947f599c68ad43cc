"""Latency of the exported YOLO11n: onnxruntime (and TorchScript) against PyTorch eager.

One YOLO11n (80 classes, random weights: latency does not depend on them) is exported with
``export_model`` (dynamic batch and height/width, as ``train.py export`` writes it) and run at
640x640, batch 1, on CPU with the same thread count for onnxruntime (intra-op threads, one
inter-op thread) and PyTorch. The eager model is the unfused eval model (what ``predict`` runs) and
also the BatchNorm-fused one (onnxruntime folds BatchNorm itself). Runs alternate between the
backends so that machine load affects them alike; the script prints medians and ratios
backend / eager (below 1: faster than eager).

Usage:
    .venv/bin/python benchmarks/bench_export.py [--runs 30] [--imgsz 640] [--threads N] [--torchscript]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--torchscript", action="store_true", help="also time the TorchScript export")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import onnxruntime

    from yolo11_lightning import build_model
    from yolo11_lightning.export import INPUT_NAME, ExportMetadata, export_model
    from yolo11_lightning.training.checkpoint_state import architecture_of

    model = build_model("yolo11n.yaml").eval()
    fused = copy.deepcopy(model).fuse().eval()
    metadata = ExportMetadata(dict(model.names), int(model.stride.max()), args.imgsz, architecture_of(model))
    image = torch.rand(1, 3, args.imgsz, args.imgsz)
    backends = {"eager": lambda: model(image), "eager fused": lambda: fused(image)}

    with tempfile.TemporaryDirectory() as folder:
        onnx_path = export_model(model, Path(folder) / "yolo11n.onnx", "onnx", args.imgsz, metadata)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        feed = {INPUT_NAME: image.numpy()}
        backends["onnxruntime"] = lambda: session.run(None, feed)
        if args.torchscript:
            ts_path = export_model(model, Path(folder) / "yolo11n.torchscript", "torchscript", args.imgsz, metadata)
            scripted = torch.jit.load(str(ts_path))
            backends["torchscript"] = lambda: scripted(image)

        with torch.inference_mode():
            diff = (torch.from_numpy(session.run(None, feed)[0]) - model(image)[0]).abs().max().item()
            for _ in range(args.warmup):
                for run in backends.values():
                    run()
            times: dict[str, list[float]] = {name: [] for name in backends}
            for _ in range(args.runs):
                for name, run in backends.items():
                    start = time.perf_counter()
                    run()
                    times[name].append(time.perf_counter() - start)

    eager_ms = statistics.median(times["eager"]) * 1e3
    print(
        f"YOLO11n exported (dynamic axes) vs PyTorch eager, {args.imgsz}x{args.imgsz}, batch 1, CPU, "
        f"{args.threads} threads, {args.runs} alternating runs (onnxruntime {onnxruntime.__version__}, "
        f"torch {torch.__version__}; max abs output diff onnxruntime-eager {diff:.2e})"
    )
    for name, values in times.items():
        median = statistics.median(values) * 1e3
        print(
            f"  {name:<12} median {median:7.2f} ms  (min {min(values) * 1e3:7.2f})  "
            f"ratio to eager {median / eager_ms:.3f}"
        )


if __name__ == "__main__":
    main()
