"""End-to-end predict throughput: ours (``Detector.save``) against the reference's ``predict`` in one run.

Same weights (a trained checkpoint of ours, loaded into the reference's own model), same folder of
images, same thread count, batch 1, conf 0.25. Each side decodes, letterboxes, runs the model, does
NMS and writes annotated images and txt labels (ours also writes its COCO JSON and JSONL). Prints
images/s (wall) and images per CPU-second (user + system time of this process, all threads) for
both, and the ratios ours/reference. The sides alternate ``--rounds`` times; the best round counts.

    .venv/bin/python benchmarks/bench_predict.py [--weights tests/data/trained/shapes4_yolo11n_160.ckpt]
        [--images "data/shapes4/images/*/*.jpg"] [--imgsz 160] [--threads 2] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import torch

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_VERBOSE", "False")

ROOT = Path(__file__).resolve().parents[1]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(run, count: int) -> tuple[float, float]:
    """``(images/s wall, images per CPU-second)`` of ``run()``."""
    wall, cpu = time.perf_counter(), cpu_seconds()
    run()
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    return count / wall, count / max(cpu, 1e-9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=str(ROOT / "tests" / "data" / "trained" / "shapes4_yolo11n_160.ckpt"))
    parser.add_argument("--images", default=str(ROOT / "data" / "shapes4" / "images" / "*" / "*.jpg"))
    parser.add_argument("--imgsz", type=int, default=None, help="default: the checkpoint's training size")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)

    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel

    from yolo11_lightning.data.sources import list_source
    from yolo11_lightning.inference.detector import Detector

    detector = Detector.from_checkpoint(args.weights, imgsz=args.imgsz)
    imgsz = detector.imgsz
    checkpoint = torch.load(args.weights, map_location="cpu", weights_only=True)
    config = checkpoint["inference"]["model_config"]
    model = DetectionModel(config, nc=len(detector.names), verbose=False)
    model.load_state_dict({k: v.float() for k, v in checkpoint["ema_state_dict"].items()}, strict=True)
    model.names = dict(detector.names)
    work = Path(tempfile.mkdtemp(prefix="bench_predict_"))
    torch.save({"model": model, "train_args": {"imgsz": imgsz}}, work / "reference.pt")
    reference = YOLO(str(work / "reference.pt"))
    files = [item.path for item in list_source(args.images)]
    # The reference's source loader takes a folder: give both sides the same folder of the same files.
    folder = work / "images"
    folder.mkdir()
    for index, file in enumerate(files):
        shutil.copy(file, folder / f"{index:05d}{Path(file).suffix}")
    count = len(files)

    def ours(out: Path) -> None:
        detector.save(str(folder), out)

    def theirs(out: Path) -> None:
        reference.predict(str(folder), imgsz=imgsz, conf=0.25, iou=0.7, batch=1, device="cpu", save=True, save_txt=True,
                          project=str(out.parent), name=out.name, exist_ok=True, verbose=False)  # fmt: skip

    ours(work / "warm_ours")  # warm-up: first-call allocations, thread pools
    theirs(work / "warm_ref")
    best: dict[str, tuple[float, float]] = {"ours": (0.0, 0.0), "reference": (0.0, 0.0)}
    for round_index in range(args.rounds):
        for name, run in (("ours", ours), ("reference", theirs)):
            out = work / f"{name}_{round_index}"
            rate = timed(lambda run=run, out=out: run(out), count)
            best[name] = max(best[name], rate)
    print(f"{count} images, imgsz {imgsz}, {args.threads} threads, batch 1, conf 0.25, best of {args.rounds} rounds")
    for name, (wall, cpu) in best.items():
        print(f"  {name:9s} {wall:7.2f} images/s   {cpu:7.2f} images per CPU-second")
    print(
        f"ours / reference: {best['ours'][0] / best['reference'][0]:.2f} (images/s), "
        f"{best['ours'][1] / best['reference'][1]:.2f} (per CPU-second)"
    )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
