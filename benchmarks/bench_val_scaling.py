"""How validation cost grows with the number of images: NMS + metric state + mAP at N and 10 N.

For each size a fresh subprocess feeds synthetic decoded outputs of a 4-class model at 640
(8400 anchors; a few confident boxes near the ground truth plus low-score clutter, so the
validation NMS at conf 0.001 keeps up to 300 detections per image) through the validation's own
path: ``inference.postprocess.detect`` with the validation settings, ``DetectionMetrics.update``
per batch of 16, then ``compute`` (COCO mAP, P/R). It prints the wall time and the peak resident
memory growth of the process, and the ratios between the sizes (linear growth gives 10x).

With ``--full-model`` it instead validates generated image sets of each size
(``data/make_dataset.py``, cached under ``runs/bench-data/``) with the whole model: our
``YOLOModule`` with the committed trained checkpoint, the default loader, ``imgsz`` 320, batch 32,
through ``Trainer.validate``; it prints the wall time and the peak resident memory (trainer
process growth, and the largest loader worker).

Usage::

    .venv/bin/python benchmarks/bench_val_scaling.py --images 500 5000
    .venv/bin/python benchmarks/bench_val_scaling.py --images 500 5000 --full-model
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

NC, ANCHORS, IMGSZ, BATCH = 4, 8400, 640, 16


def synthetic_batch(generator: torch.Generator) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """Decoded ``(B, 4 + nc, A)`` outputs with 5 objects per image, and the matching ground truth."""
    boxes = torch.rand(BATCH, 5, 4, generator=generator)
    centres, sizes = boxes[..., :2] * 500 + 70, boxes[..., 2:] * 100 + 20
    decoded = torch.zeros(BATCH, 4 + NC, ANCHORS)
    decoded[:, :2] = torch.rand(BATCH, 2, ANCHORS, generator=generator) * IMGSZ
    decoded[:, 2:4] = torch.rand(BATCH, 2, ANCHORS, generator=generator) * 60 + 5
    # clutter: about 5% of the (anchor, class) pairs pass conf 0.001, as for a partly trained model
    decoded[:, 4:] = torch.rand(BATCH, NC, ANCHORS, generator=generator) * 0.00105
    labels = torch.randint(0, NC, (BATCH, 5), generator=generator)
    for slot in range(5):  # 20 anchors per object near its box, with high scores
        anchors = torch.arange(slot * 20, slot * 20 + 20)
        jitter = torch.randn(BATCH, 2, 20, generator=generator) * 3
        decoded[:, :2, anchors] = centres[:, slot, :, None] + jitter
        decoded[:, 2:4, anchors] = sizes[:, slot, :, None] + jitter
        decoded[torch.arange(BATCH)[:, None], 4 + labels[:, slot, None], anchors[None]] = 0.5 + torch.rand(BATCH, 20)
    gt = torch.cat((centres - sizes / 2, centres + sizes / 2), -1)
    return decoded, list(gt), list(labels)


def run(images: int) -> dict[str, float]:
    """One measurement in this process."""
    from yolo11_lightning.inference.postprocess import NMSSettings, detect
    from yolo11_lightning.training.metrics import DetectionMetrics

    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    batches = [synthetic_batch(generator) for _ in range(images // BATCH)]
    ratio_pad = torch.tensor([[1.0, 1.0, 0.0, 0.0]] * BATCH)
    orig_shapes = torch.tensor([[IMGSZ, IMGSZ]] * BATCH)
    settings = NMSSettings(conf=0.001, iou=0.7, max_det=300, multi_label=True)
    metrics = DetectionMetrics({i: str(i) for i in range(NC)})
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    detections = 0
    for index, (decoded, gt_boxes, gt_labels) in enumerate(batches):
        predictions = detect(decoded, ratio_pad, orig_shapes, settings)
        detections += sum(len(p) for p in predictions)
        ids = torch.arange(index * BATCH, (index + 1) * BATCH)
        metrics.update(ids, predictions, gt_boxes, gt_labels)
    results = metrics.compute()
    seconds = time.perf_counter() - start
    peak_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - baseline) / 1024
    return {"images": len(batches) * BATCH, "seconds": seconds, "peak_mib": peak_mib,
            "detections": detections, "map50_95": results.map50_95}  # fmt: skip


def run_full_model(images: int) -> dict[str, float]:
    """One full-model validation of a generated ``images``-image val split in this process."""
    from bench_common import ROOT, generated_dataset, our_modules, validate_ours

    data_yaml = generated_dataset(train=16, val=images, seed=2)
    weights = ROOT / "tests" / "data" / "trained" / "shapes4_yolo11n_160.ckpt"
    module, data = our_modules(data_yaml, 320, 16, weights=str(weights), val_batch_size=32)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    results = validate_ours(module, data)
    seconds = time.perf_counter() - start
    peak_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - baseline) / 1024
    worker_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"images": images, "seconds": seconds, "peak_mib": peak_mib, "worker_peak_mib": worker_mib,
            "detections": -1, "map50_95": results.map50_95}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, nargs="+", default=[500, 5000])
    parser.add_argument("--full-model", action="store_true", help="validate generated images with the model")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_full_model(args.child) if args.full_model else run(args.child)))
        return
    figures = []
    for images in args.images:
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(images)] + (["--full-model"] if args.full_model else []),
            capture_output=True,
            text=True,
            check=True,
        )
        figures.append(json.loads(out.stdout.strip().splitlines()[-1]))
        f = figures[-1]
        extra = f"largest loader worker {f['worker_peak_mib']:.0f} MiB" if args.full_model else ""
        extra = extra or f"{f['detections']} detections"
        print(f"{f['images']:6d} images: {f['seconds']:7.2f} s, peak RSS growth {f['peak_mib']:7.1f} MiB, "
              f"{extra}, mAP50-95 {f['map50_95']:.4f}", flush=True)  # fmt: skip
    first, last = figures[0], figures[-1]
    print(
        f"ratio {last['images']}/{first['images']} images ({last['images'] / first['images']:.0f}x): "
        f"time {last['seconds'] / first['seconds']:.2f}x, memory {last['peak_mib'] / max(first['peak_mib'], 1e-9):.2f}x"
    )


if __name__ == "__main__":
    main()
