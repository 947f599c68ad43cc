"""GPU benchmark, ours vs the reference in one run (about 5-8 minutes on one modern GPU).

Measures, on CUDA:

1. AMP training step throughput (images/s) of YOLO11n at 640, batch 64, with ``16-mixed``
   (float16 autocast + GradScaler) and ``bf16-mixed``: network forward, loss, backward, SGD step on
   synthetic images with 8 boxes each (the same batches on both sides); peak memory of each. Ours
   is measured twice, contiguous and channels-last (``ours-cl``): the figure that decides
   ``YOLOModule(channels_last=None)``'s choice on CUDA (off until measured).
2. Eval latency of the fused YOLO11n, batch 1, 640, float16 (median of ``--latency-runs``).
3. A finiteness check for every bundled config (n scale): ``--amp-steps`` AMP training steps
   (float16 and bfloat16) at 320, batch 16; every loss and every weight must stay finite.

Usage (a CUDA machine with the test extras installed)::

    python benchmarks/bench_gpu.py                      # everything, prints a summary table
    python benchmarks/bench_gpu.py --device cpu --quick # a dry run of the code paths on CPU

The data loader is not part of the step timings (it is benchmarked by ``bench_loader.py``).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext

import torch

from yolo11_lightning import DetectionLoss, build_model
from yolo11_lightning.nn.builder import bundled_configs


def synthetic_batch(batch: int, imgsz: int, nc: int, device: torch.device, seed: int = 0):
    """Random images in [0, 1] and (batch * 8, 6) normalised targets, the same for both sides."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 3, imgsz, imgsz, generator=generator)
    boxes = 8
    centres = torch.rand(batch * boxes, 2, generator=generator) * 0.6 + 0.2
    sizes = torch.rand(batch * boxes, 2, generator=generator) * 0.2 + 0.05
    classes = torch.randint(0, nc, (batch * boxes, 1), generator=generator).float()
    index = torch.arange(batch).repeat_interleave(boxes)[:, None].float()
    targets = torch.cat((index, classes, centres, sizes), 1)
    return images.to(device), targets.to(device)


def _autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def train_steps(
    network: torch.nn.Module,
    loss_fn: Callable,
    images: torch.Tensor,
    targets: torch.Tensor,
    dtype: torch.dtype | None,
    steps: int,
    warmup: int,
) -> tuple[float, float, list[float]]:
    """Run ``warmup + steps`` SGD steps; returns (images/s, peak memory GiB, losses)."""
    device = images.device
    network.train()
    optimizer = torch.optim.SGD([p for p in network.parameters() if p.requires_grad], lr=0.01, momentum=0.937)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    losses = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for step in range(warmup + steps):
        if step == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
        with _autocast(device, dtype):
            preds = network(images)
        loss = loss_fn(preds, targets)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(network.parameters(), 10.0)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return steps * images.shape[0] / seconds, peak, losses


def ours_training(nc: int, device: torch.device, config: str = "yolo11n.yaml"):
    network = build_model(config, nc=nc).to(device)
    for parameter in network.head.dfl.parameters():
        parameter.requires_grad_(False)
    loss = DetectionLoss(network)
    return network, lambda preds, targets: loss(preds, targets)[0]


def ours_channels_last_training(nc: int, device: torch.device):
    network, loss_fn = ours_training(nc, device)
    return network.to(memory_format=torch.channels_last), loss_fn


def reference_training(nc: int, device: torch.device):
    from ultralytics.nn.tasks import DetectionModel
    from ultralytics.utils import IterableSimpleNamespace
    from ultralytics.utils.loss import v8DetectionLoss

    network = DetectionModel("yolo11n.yaml", nc=nc, verbose=False).to(device)
    network.args = IterableSimpleNamespace(box=7.5, cls=0.5, dfl=1.5)
    loss = v8DetectionLoss(network)

    def loss_fn(preds, targets):
        batch = {"batch_idx": targets[:, 0], "cls": targets[:, 1:2], "bboxes": targets[:, 2:]}
        return loss(preds, batch)[0].sum()

    return network, loss_fn


@torch.no_grad()
def eval_latency(network: torch.nn.Module, imgsz: int, device: torch.device, dtype: torch.dtype, runs: int) -> float:
    """Median milliseconds of a fused eval forward, batch 1."""
    network = network.fuse().eval().to(device)
    images = torch.rand(1, 3, imgsz, imgsz, device=device)
    times = []
    for run in range(runs + 10):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        with _autocast(device, dtype if device.type == "cuda" else None):
            network(images)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if run >= 10:
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30, help="timed training steps per side and precision")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--latency-runs", type=int, default=200)
    parser.add_argument("--amp-steps", type=int, default=300, help="finiteness-check steps per config and dtype")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, a few steps (a dry run)")
    parser.add_argument("--skip-reference", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.imgsz, args.batch, args.steps, args.warmup, args.latency_runs, args.amp_steps = 64, 2, 2, 1, 3, 3
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = device.type == "cuda"
    nc = 80
    images, targets = synthetic_batch(args.batch, args.imgsz, nc, device)
    precisions = {"16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}
    if device.type == "cpu":
        precisions = {"bf16-mixed": torch.bfloat16}  # float16 autocast training is CUDA-only here
    print(f"device {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}, torch {torch.__version__}")

    rows = []
    sides = {"ours": lambda: ours_training(nc, device), "ours-cl": lambda: ours_channels_last_training(nc, device)}
    channels_last_images = images.contiguous(memory_format=torch.channels_last)
    if not args.skip_reference:
        sides["reference"] = lambda: reference_training(nc, device)
    for name, dtype in precisions.items():
        figures = {}
        for side, make in sides.items():
            torch.manual_seed(0)
            network, loss_fn = make()
            inputs = channels_last_images if side == "ours-cl" else images
            speed, peak, losses = train_steps(network, loss_fn, inputs, targets, dtype, args.steps, args.warmup)
            figures[side] = speed
            finite = all(math.isfinite(v) for v in losses)
            rows.append(f"train {name:10s} {side:9s} {speed:8.1f} img/s  peak {peak:6.2f} GiB  finite {finite}")
            del network
        rows.append(f"train {name:10s} ours channels-last/contiguous {figures['ours-cl'] / figures['ours']:.3f}")
        if "reference" in figures:
            best = max(figures["ours"], figures["ours-cl"])
            rows.append(f"train {name:10s} ours (best format)/reference throughput {best / figures['reference']:.3f}")
    for side, make in sides.items():
        if side == "ours-cl":
            continue
        network, _ = make()
        latency = eval_latency(network, args.imgsz, device, torch.float16, args.latency_runs)
        rows.append(f"eval latency fused fp16 b1 {side:9s} {latency:7.2f} ms")
    print("\n".join(rows), flush=True)

    amp_size = 64 if args.quick else 320
    amp_images, amp_targets = synthetic_batch(2 if args.quick else 16, amp_size, nc, device, seed=1)
    for config in bundled_configs():
        config_n = config.replace("yolo11", "yolo11n", 1) if "yolo11n" not in config else config
        for name, dtype in precisions.items():
            torch.manual_seed(0)
            network, loss_fn = ours_training(nc, device, config_n)
            _, _, losses = train_steps(network, loss_fn, amp_images, amp_targets, dtype, args.amp_steps, 0)
            weights_finite = all(bool(torch.isfinite(p).all()) for p in network.parameters())
            finite = all(math.isfinite(v) for v in losses) and weights_finite
            print(f"amp {config_n:32s} {name:10s} {args.amp_steps} steps: "
                  f"loss {losses[0]:.3f} -> {losses[-1]:.3f}, finite {finite}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
