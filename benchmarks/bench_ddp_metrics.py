"""Epoch-end detection-metric time: 2 processes (gather once, compute once) against 1 process.

Synthetic validation results for ``--images`` images (ground truth plus jittered true detections
and random false positives, up to 100 per image) are fed to
:class:`yolo11_lightning.training.metrics.DetectionMetrics` either by one process or split over two
CPU processes (gloo). The script times ``compute()`` (the work done at the end of a validation
epoch: gather, de-duplicate, COCO evaluation, P/R, broadcast), checks that both give the same mAP
bit for bit, and prints both times and their ratio. For context it also times torchmetrics'
own ``MeanAveragePrecision`` with its per-tensor state sync over the same two processes (even split
only: that sync desynchronises on uneven splits).

Usage::

    .venv/bin/python benchmarks/bench_ddp_metrics.py --images 1000
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from yolo11_lightning.training.metrics import DetectionMetrics  # noqa: E402

NUM_CLASSES = 20


def synthetic_batch(image_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Detections (n, 6) and ground truth (boxes (m, 4), labels (m,)) of one image, seeded by its id."""
    g = torch.Generator().manual_seed(image_id)
    m = int(torch.randint(0, 12, (1,), generator=g))
    xy = torch.rand(m, 2, generator=g) * 500
    wh = torch.rand(m, 2, generator=g) * 150 + 8
    gt_boxes = torch.cat([xy, xy + wh], 1)
    gt_labels = torch.randint(0, NUM_CLASSES, (m,), generator=g)
    # True detections: jittered copies of the ground truth (some missed), plus false positives.
    keep = torch.rand(m, generator=g) < 0.85
    true_boxes = gt_boxes[keep] + torch.randn(int(keep.sum()), 4, generator=g) * 6
    true_scores = torch.rand(len(true_boxes), generator=g) * 0.6 + 0.4
    true_labels = gt_labels[keep]
    n_false = min(100 - len(true_boxes), int(torch.randint(20, 100, (1,), generator=g)))
    fxy = torch.rand(n_false, 2, generator=g) * 500
    false_boxes = torch.cat([fxy, fxy + torch.rand(n_false, 2, generator=g) * 150 + 4], 1)
    false_scores = torch.rand(n_false, generator=g) * 0.5
    false_labels = torch.randint(0, NUM_CLASSES, (n_false,), generator=g)
    boxes = torch.cat([true_boxes, false_boxes])
    scores = torch.cat([true_scores, false_scores])
    labels = torch.cat([true_labels, false_labels])
    detections = torch.cat([boxes, scores[:, None], labels[:, None].float()], 1)
    return detections, gt_boxes, gt_labels


def fill(metric: DetectionMetrics, image_ids: list[int], batch_size: int = 16) -> None:
    """Feed the images ``image_ids`` to ``metric`` in batches."""
    for start in range(0, len(image_ids), batch_size):
        ids = image_ids[start : start + batch_size]
        batch = [synthetic_batch(i) for i in ids]
        metric.update(torch.tensor(ids), [b[0] for b in batch], [b[1] for b in batch], [b[2] for b in batch])


def fill_torchmetrics(metric: object, image_ids: list[int]) -> None:
    """Feed the images to a torchmetrics ``MeanAveragePrecision``."""
    for i in image_ids:
        detections, gt_boxes, gt_labels = synthetic_batch(i)
        metric.update(  # type: ignore[attr-defined]
            [dict(boxes=detections[:, :4], scores=detections[:, 4], labels=detections[:, 5].long())],
            [dict(boxes=gt_boxes, labels=gt_labels)],
        )


def _worker(rank: int, world_size: int, port: int, num_images: int, results: dict) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    names = {i: f"c{i}" for i in range(NUM_CLASSES)}
    # Contiguous unpadded shards, as the unpadded distributed validation sampler gives.
    ids = list(range(num_images))[rank::world_size]
    metric = DetectionMetrics(names)
    fill(metric, ids)
    dist.barrier()
    start = time.perf_counter()
    metric._gather()  # the communication part alone (compute() repeats it)
    gather_elapsed = time.perf_counter() - start
    dist.barrier()
    start = time.perf_counter()
    out = metric.compute()
    elapsed = time.perf_counter() - start
    times = [None] * world_size
    dist.all_gather_object(times, (elapsed, gather_elapsed))

    # torchmetrics' own sync of list states (needs the same number of updates on every rank).
    from torchmetrics.detection import MeanAveragePrecision

    tm = MeanAveragePrecision(box_format="xyxy", backend="faster_coco_eval", max_detection_thresholds=[1, 10, 300])
    fill_torchmetrics(tm, ids)
    dist.barrier()
    start = time.perf_counter()
    tm_map = float(tm.compute()["map"])
    tm_elapsed = time.perf_counter() - start
    tm_times = [None] * world_size
    dist.all_gather_object(tm_times, tm_elapsed)
    if rank == 0:
        results.update(
            map=out.map50_95,
            time=max(t[0] for t in times),
            gather=max(t[1] for t in times),
            tm_map=tm_map,
            tm_time=max(tm_times),
        )
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1000, help="number of synthetic validation images")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions; the best is reported")
    args = parser.parse_args()
    torch.set_num_threads(1)
    names = {i: f"c{i}" for i in range(NUM_CLASSES)}

    single_times, single_map = [], 0.0
    for _ in range(args.repeats):
        metric = DetectionMetrics(names)
        fill(metric, list(range(args.images)))
        start = time.perf_counter()
        single_map = metric.compute().map50_95
        single_times.append(time.perf_counter() - start)

    ddp_times, gather_times, tm_times, ddp_map, tm_map = [], [], [], 0.0, 0.0
    for _ in range(args.repeats):
        results = mp.Manager().dict()
        mp.spawn(_worker, args=(2, _free_port(), args.images, results), nprocs=2, join=True)
        ddp_times.append(results["time"])
        gather_times.append(results["gather"])
        tm_times.append(results["tm_time"])
        ddp_map, tm_map = results["map"], results["tm_map"]

    single, ddp, tm = min(single_times), min(ddp_times), min(tm_times)
    print(f"images: {args.images}, cpu cores: {os.cpu_count()}, best of {args.repeats}")
    print(f"1 process   DetectionMetrics.compute: {single:.3f} s  mAP50-95 {single_map:.6f}")
    print(f"2 processes DetectionMetrics.compute: {ddp:.3f} s  mAP50-95 {ddp_map:.6f}  (gather once, compute once)")
    print(f"  of which the gather of all records to every process: {min(gather_times):.3f} s")
    print(f"ratio 2-process / 1-process: {ddp / single:.2f}")
    print(
        f"2 processes torchmetrics sync+compute: {tm:.3f} s  mAP50-95 {tm_map:.6f}; ours / torchmetrics: {ddp / tm:.2f}"
    )
    print(f"mAP identical (1 vs 2 processes): {single_map == ddp_map}")


if __name__ == "__main__":
    main()
