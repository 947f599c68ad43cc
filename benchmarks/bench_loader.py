"""Training-loader throughput: ours vs the reference's, same images, same run.

Mosaic training pipeline at 640, batch 16, 2 worker processes. The images are the shipped
``data/shapes4`` training set enlarged (x1.5 to x2.2, so decoding costs what real photos cost) and
replicated with flips to 256 images in a temporary folder, so neither loader holds them all in its
memory buffer. Each round builds one loader at a time (its workers shut down before the other starts), gives it
a warm-up, then times ``--batches`` batches; the two alternate for ``--rounds`` rounds and the best
round of each is reported (the machine is shared).

    .venv/bin/python benchmarks/bench_loader.py [--batches 12] [--rounds 3]

Needs the reference package (``ultralytics``) for the comparison; without it only ours is timed.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import os
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "data" / "shapes4"


def build_images(target: Path, copies: int = 4) -> Path:
    """Write the enlarged, replicated training set and its data.yaml; return the yaml path."""
    rng = np.random.default_rng(0)
    (target / "images" / "train").mkdir(parents=True)
    (target / "labels" / "train").mkdir(parents=True)
    for image_path in sorted((SOURCE / "images" / "train").glob("*.jpg")):
        image = cv2.imread(str(image_path))
        rows = [
            r.split() for r in (SOURCE / "labels" / "train" / f"{image_path.stem}.txt").read_text().splitlines() if r
        ]
        for copy in range(copies):
            scale = rng.uniform(1.5, 2.2)
            variant = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
            flipped = copy % 2 == 1
            if flipped:
                variant = variant[:, ::-1]
            name = f"{image_path.stem}_{copy}"
            cv2.imwrite(str(target / "images" / "train" / f"{name}.jpg"), variant, [cv2.IMWRITE_JPEG_QUALITY, 90])
            labels = [f"{c} {1 - float(x) if flipped else float(x)} {y} {w} {h}" for c, x, y, w, h in rows]
            (target / "labels" / "train" / f"{name}.txt").write_text("\n".join(labels) + "\n")
    yaml_path = target / "data.yaml"
    names = (SOURCE / "data.yaml").read_text().split("names:")[1]
    yaml_path.write_text(f"path: {target}\ntrain: images/train\nval: images/train\nnames:{names}")
    return yaml_path


def time_loader(iterator, batches: int, warmup: int = 2) -> float:
    """Images per second over ``batches`` batches after ``warmup`` batches."""
    for _ in range(warmup):
        next(iterator)
    start, images = time.perf_counter(), 0
    for _ in range(batches):
        batch = next(iterator)
        images += len(batch["img"] if isinstance(batch, dict) else batch)  # the reference: a dict; ours: a Batch
    return images / (time.perf_counter() - start)


def ours(yaml_path: Path, imgsz: int, batch: int, workers: int):
    from yolo11_lightning import YOLODataModule

    datamodule = YOLODataModule(str(yaml_path), imgsz=imgsz, batch_size=batch, workers=workers, pin_memory=False)
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()

    def batches():
        epoch = 0
        while True:
            loader.sampler.set_epoch(epoch)
            yield from loader
            epoch += 1

    return batches()


def reference(yaml_path: Path, imgsz: int, batch: int, workers: int):
    from ultralytics.cfg import get_cfg
    from ultralytics.data.build import build_dataloader, build_yolo_dataset
    from ultralytics.data.utils import check_det_dataset

    cfg = get_cfg(overrides={"imgsz": imgsz, "batch": batch, "workers": workers})
    data = check_det_dataset(str(yaml_path))
    dataset = build_yolo_dataset(cfg, data["train"], batch, data, mode="train")
    loader = build_dataloader(dataset, batch, workers, shuffle=True, pin_memory=False)

    def batches():
        while True:  # its iterator stops after one epoch; the workers persist
            yield from loader

    return batches()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batches", type=int, default=12, help="timed batches per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_VERBOSE", "False")
    has_reference = importlib.util.find_spec("ultralytics") is not None

    workdir = Path(tempfile.mkdtemp(prefix="bench_loader_"))
    try:
        yaml_path = build_images(workdir / "set")
        factories = {"ours": ours, "reference": reference} if has_reference else {"ours": ours}
        results: dict[str, list[float]] = {name: [] for name in factories}
        for _ in range(args.rounds):
            for name, factory in factories.items():
                # one loader alive at a time: idle workers of the other would still be filling their
                # prefetch queue, stealing CPU from the one being timed
                iterator = factory(yaml_path, args.imgsz, args.batch, args.workers)
                results[name].append(time_loader(iterator, args.batches))
                iterator.close()
                del iterator
                gc.collect()
        print(f"training loader, mosaic, imgsz {args.imgsz}, batch {args.batch}, {args.workers} workers, "
              f"{args.batches} batches x {args.rounds} rounds (images/s per round)")  # fmt: skip
        for name, values in results.items():
            print(f"  {name:9s} best {max(values):7.1f}  rounds {', '.join(f'{v:.1f}' for v in values)}")
        if has_reference:
            best = max(results["ours"]) / max(results["reference"])
            median = float(np.median(results["ours"]) / np.median(results["reference"]))
            print(f"  ratio ours/reference: best rounds {best:.2f}, median rounds {median:.2f}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
