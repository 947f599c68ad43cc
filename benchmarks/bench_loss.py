"""Loss + backward time: ours (yolo11_lightning.DetectionLoss) against the reference's v8DetectionLoss.

Same raw predictions and targets for both, measured in the same run, alternating, median of the
repeats. Default: batch 16 at 640x640 (maps 80/40/20), nc=80, 50 boxes per image.

    .venv/bin/python benchmarks/bench_loss.py [--batch 16] [--imgsz 640] [--boxes 50] [--repeats 5] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import types

import torch

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_VERBOSE", "False")


def make_inputs(batch: int, imgsz: int, nc: int, boxes: int, seed: int = 0) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Head maps like a freshly initialised model (class logits around -5) and random targets."""
    gen = torch.Generator().manual_seed(seed)
    maps = []
    for stride in (8, 16, 32):
        side = imgsz // stride
        box_logits = torch.randn(batch, 64, side, side, generator=gen)
        cls_logits = torch.randn(batch, nc, side, side, generator=gen) - 5.0
        maps.append(torch.cat((box_logits, cls_logits), 1))
    rows = []
    for image in range(batch):
        wh = torch.rand(boxes, 2, generator=gen) * 0.3 + 0.01
        xy = torch.rand(boxes, 2, generator=gen) * (1 - wh) + wh / 2
        cls = torch.randint(0, nc, (boxes, 1), generator=gen).float()
        rows.append(torch.cat((torch.full((boxes, 1), float(image)), cls, xy, wh), 1))
    return maps, torch.cat(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--boxes", type=int, default=50)
    parser.add_argument("--nc", type=int, default=80)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: leave the default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from ultralytics.nn.tasks import DetectionModel
    from ultralytics.utils import IterableSimpleNamespace
    from ultralytics.utils.loss import v8DetectionLoss

    from yolo11_lightning.loss.detection import DetectionLoss

    device = torch.device(args.device)
    ref_model = DetectionModel("yolo11n.yaml", nc=args.nc, verbose=False).to(device)
    ref_model.args = IterableSimpleNamespace(box=7.5, cls=0.5, dfl=1.5)
    reference = v8DetectionLoss(ref_model)
    ours = DetectionLoss(types.SimpleNamespace(nc=args.nc, reg_max=16, stride=ref_model.stride))

    maps, targets = make_inputs(args.batch, args.imgsz, args.nc, args.boxes)
    maps, targets = [m.to(device) for m in maps], targets.to(device)
    ref_batch = {"batch_idx": targets[:, 0], "cls": targets[:, 1:2], "bboxes": targets[:, 2:]}

    def run_reference() -> torch.Tensor:
        preds = [m.clone().requires_grad_() for m in maps]
        total, items = reference(preds, ref_batch)
        total.sum().backward()
        return items

    def run_ours() -> torch.Tensor:
        preds = [m.clone().requires_grad_() for m in maps]
        total, items = ours(preds, targets)
        total.backward()
        return items

    def timed(fn) -> tuple[float, torch.Tensor]:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        items = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start, items

    timed(run_reference), timed(run_ours)  # warm-up
    ref_times, our_times = [], []
    for _ in range(args.repeats):
        t_ref, ref_items = timed(run_reference)
        t_ours, our_items = timed(run_ours)
        ref_times.append(t_ref)
        our_times.append(t_ours)
    ref_median, our_median = statistics.median(ref_times), statistics.median(our_times)
    print(
        f"device={device} threads={torch.get_num_threads()} batch={args.batch} imgsz={args.imgsz} "
        f"nc={args.nc} boxes/image={args.boxes} repeats={args.repeats}"
    )
    print(f"components reference={ref_items.tolist()} ours={our_items.tolist()}")
    print(f"reference loss+backward: {ref_median * 1000:.1f} ms (median)")
    print(f"ours      loss+backward: {our_median * 1000:.1f} ms (median)")
    print(f"ratio ours/reference: {our_median / ref_median:.3f}")


if __name__ == "__main__":
    main()
