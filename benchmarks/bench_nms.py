"""NMS time: ours (inference.nms.non_max_suppression) against the reference's on the same input.

Decoded predictions (B, 4 + nc, A) with boxes jittered around 40 clusters per image (so suppression
has work to do), low background scores and higher scores on 10% of the anchors; the reference runs
without its time limit. Prints the median of the repeats for the validation setting (conf 0.001,
multi-label) and the prediction setting (conf 0.25), and the ratio ours/reference.

    .venv/bin/python benchmarks/bench_nms.py [--batch 4] [--anchors 8400] [--nc 80] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_VERBOSE", "False")


def clustered_predictions(batch: int, anchors: int, nc: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    centres = torch.rand(batch, 40, 2, generator=gen) * 640
    sizes = torch.rand(batch, 40, 2, generator=gen) * 120 + 8
    member = torch.randint(0, 40, (batch, anchors), generator=gen)[..., None].expand(-1, -1, 2)
    xy = centres.gather(1, member) + torch.randn(batch, anchors, 2, generator=gen) * 4
    wh = sizes.gather(1, member) * (1 + torch.randn(batch, anchors, 2, generator=gen) * 0.1)
    # Mostly background (scores below 0.01); 10% of the anchors see an object with higher scores.
    objects = (torch.rand(batch, anchors, 1, generator=gen) < 0.1).float()
    object_scores = torch.rand(batch, anchors, nc, generator=gen) ** 12 * objects
    scores = object_scores + torch.rand(batch, anchors, nc, generator=gen) * 0.01
    return torch.cat((xy, wh, scores), -1).transpose(1, 2).contiguous()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--anchors", type=int, default=8400)
    parser.add_argument("--nc", type=int, default=80)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from ultralytics.utils.nms import non_max_suppression as reference_nms

    from yolo11_lightning.inference.nms import non_max_suppression

    decoded = clustered_predictions(args.batch, args.anchors, args.nc)
    print(f"threads={torch.get_num_threads()} batch={args.batch} anchors={args.anchors} nc={args.nc}")
    for name, options in (
        ("val (conf 0.001, multi-label)", {"conf_thres": 0.001, "iou_thres": 0.7, "multi_label": True}),
        ("predict (conf 0.25)", {"conf_thres": 0.25, "iou_thres": 0.7}),
    ):
        times: dict[str, list[float]] = {"reference": [], "ours": []}
        for _ in range(args.repeats):
            start = time.perf_counter()
            ref_out = reference_nms(decoded.clone(), max_time_img=1e6, **options)
            times["reference"].append(time.perf_counter() - start)
            start = time.perf_counter()
            our_out = non_max_suppression(decoded.clone(), **options)
            times["ours"].append(time.perf_counter() - start)
        ref_t, our_t = statistics.median(times["reference"]), statistics.median(times["ours"])
        same = all(len(a) == len(b) for a, b in zip(ref_out, our_out))
        print(
            f"{name}: reference {ref_t * 1000:.1f} ms, ours {our_t * 1000:.1f} ms, ratio {our_t / ref_t:.3f}, "
            f"detections {sum(len(o) for o in our_out)} (same counts per image: {same})"
        )


if __name__ == "__main__":
    main()
