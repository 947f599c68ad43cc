"""Predict outputs in a run folder: annotated images/videos, YOLO txt labels, COCO JSON, JSONL, crops.

One :class:`PredictionOutputs` receives the detections image by image in input order (from the
``predict`` command's writer callback or from ``Detector.save_all``) and writes::

    <run>/images/<name>            annotated image (boxes, names, scores; video in -> <stem>.mp4 out)
    <run>/labels/<stem>.txt        one row per box: class cx cy w h [score], normalised to the image
    <run>/predictions.json         COCO results (image_id = input index), for pycocotools' loadRes
    <run>/predictions.jsonl        one line per image: path, image_id, boxes (xyxy pixels), scores, classes
    <run>/crops/<class>/<stem>.jpg each box cut out of the original image (off by default)

Every output can be switched off (:class:`OutputOptions`). Annotations use the one renderer
(:func:`~yolo11_lightning.inference.render.draw_detections`) and the COCO file the one writer
(:mod:`~yolo11_lightning.inference.coco_json`).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from yolo11_lightning.inference.coco_json import coco_results
from yolo11_lightning.inference.render import draw_detections
from yolo11_lightning.inference.results import Detections


@dataclass(frozen=True)
class OutputOptions:
    """Which predict outputs to write.

    Attributes:
        save_images: annotated images (and annotated videos for video sources).
        save_txt: YOLO txt labels, ``class cx cy w h`` normalised to the original image.
        save_conf: add the score as a sixth column of the txt labels.
        save_json: one COCO-format results file ``predictions.json``.
        save_jsonl: ``predictions.jsonl``, one line per image (boxes in original pixels).
        save_crops: each detected box cut out of the original image, one folder per class.
        line_width: box line width of the annotations (``None``: proportional to the image).
    """

    save_images: bool = True
    save_txt: bool = True
    save_conf: bool = False
    save_json: bool = True
    save_jsonl: bool = True
    save_crops: bool = False
    line_width: int | None = None

    @property
    def needs_pixels(self) -> bool:
        """Whether the writer needs the original images (annotations or crops)."""
        return self.save_images or self.save_crops


def _split_frame(name: str) -> tuple[str, int | None]:
    """``"<video>#<frame>"`` -> ``(video, frame)``; an image path -> ``(path, None)``."""
    head, sep, tail = name.rpartition("#")
    if sep and tail.isdigit():
        return head, int(tail)
    return name, None


def yolo_label_rows(detections: Detections, with_score: bool = False) -> list[str]:
    """``class cx cy w h [score]`` rows (box normalised to the original image), one per detection."""
    height, width = detections.orig_shape
    boxes = detections.boxes.double().numpy().reshape(-1, 4)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2 / (width, height)
    size = (boxes[:, 2:] - boxes[:, :2]) / (width, height)
    rows = []
    for index, class_id in enumerate(detections.class_ids.tolist()):
        values = [*centre[index], *size[index]]
        row = f"{class_id} " + " ".join(f"{v:.6f}" for v in values)
        if with_score:
            row += f" {float(detections.scores[index]):.5f}"
        rows.append(row)
    return rows


class PredictionOutputs:
    """Writes predict results into a run folder, image by image, in input order.

    Args:
        run_dir: the output folder (created).
        options: which outputs to write.
        source_root: a folder source: annotated images keep their path relative to it (no name
            clashes between sub-folders); otherwise the file name is used (a clash gets ``_2``, ...).
    """

    def __init__(
        self, run_dir: str | Path, options: OutputOptions | None = None, source_root: str | Path | None = None
    ) -> None:
        self.run_dir = Path(run_dir)
        self.options = options or OutputOptions()
        self.source_root = Path(source_root).resolve() if source_root else None
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._jsonl = (self.run_dir / "predictions.jsonl").open("w", buffering=1) if self.options.save_jsonl else None
        self._coco: list[dict] = []
        self._names_used: dict[str, str] = {}
        self._names_taken: set[str] = set()
        self._video: tuple[str, cv2.VideoWriter] | None = None
        self.images = 0
        self.boxes: Counter[str] = Counter()
        self.skipped: list[str] = []
        self.written: dict[str, Path] = {}

    # ---------------------------------------------------------------------------------- naming
    def _relative_name(self, path: str) -> str:
        """A unique output name (relative path) for a source file."""
        if path in self._names_used:
            return self._names_used[path]
        source = Path(path)
        name = source.name
        if self.source_root is not None:
            try:
                name = source.resolve().relative_to(self.source_root).as_posix()
            except ValueError:
                pass
        stem, suffix, count = str(Path(name).with_suffix("")), Path(name).suffix, 1
        while name in self._names_taken:
            count += 1
            name = f"{stem}_{count}{suffix}"
        self._names_used[path] = name
        self._names_taken.add(name)
        return name

    # ---------------------------------------------------------------------------------- writing
    def skip(self, name: str) -> None:
        """Record a source image that could not be decoded."""
        self.skipped.append(name)

    def write(self, detections: Detections, image: np.ndarray | None = None) -> None:
        """Write every enabled output for one image.

        Args:
            detections: the image's detections (``path`` ``"<video>#<frame>"`` for a video frame).
            image: the original ``uint8 (h, w, 3)`` BGR image (needed for annotations and crops).
        """
        options = self.options
        self.images += 1
        self.boxes.update(detections.class_names)
        source, frame = _split_frame(detections.path)
        name = self._relative_name(source)
        stem = str(Path(name).with_suffix("")) + (f"_{frame}" if frame is not None else "")
        if self._jsonl is not None:
            record = {
                "path": detections.path,
                "image_id": detections.image_id,
                "boxes": [[round(v, 2) for v in box] for box in detections.boxes.tolist()],
                "scores": [round(v, 5) for v in detections.scores.tolist()],
                "class_ids": detections.class_ids.tolist(),
                "class_names": detections.class_names,
            }
            self._jsonl.write(json.dumps(record) + "\n")
        if options.save_json:
            self._coco.extend(coco_results([detections]))
        if options.save_txt:
            label = self.run_dir / "labels" / f"{stem}.txt"
            label.parent.mkdir(parents=True, exist_ok=True)
            rows = yolo_label_rows(detections, options.save_conf)
            label.write_text("".join(row + "\n" for row in rows))
        if image is None and options.needs_pixels:
            raise ValueError("annotated images and crops need the original image")
        if options.save_images and image is not None:
            annotated = draw_detections(
                image, detections.boxes.numpy(), detections.class_ids.numpy(), detections.names,
                detections.scores.numpy(), line_width=options.line_width,
            )  # fmt: skip
            if frame is None:
                target = self.run_dir / "images" / name
                target.parent.mkdir(parents=True, exist_ok=True)
                if not cv2.imwrite(str(target), annotated):  # unknown suffix: write a JPEG
                    target = target.with_suffix(".jpg")
                    cv2.imwrite(str(target), annotated)
                self.written[detections.path] = target
            else:
                self._video_frame(source, str(Path(name).with_suffix("")), annotated)
        if options.save_crops and image is not None:
            self._crops(detections, image, stem)

    def _video_frame(self, source: str, stem: str, frame: np.ndarray) -> None:
        if self._video is None or self._video[0] != source:
            self._close_video()
            capture = cv2.VideoCapture(source)
            fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0) or 30.0
            capture.release()
            target = self.run_dir / "images" / f"{stem}.mp4"
            target.parent.mkdir(parents=True, exist_ok=True)
            height, width = frame.shape[:2]
            writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
            self._video = (source, writer)
            self.written[source] = target
        self._video[1].write(frame)

    def _close_video(self) -> None:
        if self._video is not None:
            self._video[1].release()
            self._video = None

    def _crops(self, detections: Detections, image: np.ndarray, stem: str) -> None:
        height, width = image.shape[:2]
        boxes = detections.boxes.numpy().round().astype(int).reshape(-1, 4)
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
        for index, ((x1, y1, x2, y2), class_name) in enumerate(zip(boxes, detections.class_names)):
            if x2 <= x1 or y2 <= y1:
                continue
            target = self.run_dir / "crops" / class_name / f"{Path(stem).name}_{index}.jpg"
            target.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(target), image[y1:y2, x1:x2])

    def close(self) -> str:
        """Finish the files (COCO JSON, open video) and return a one-line summary."""
        self._close_video()
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None
        if self.options.save_json:
            (self.run_dir / "predictions.json").write_text(json.dumps(self._coco))
        counts = ", ".join(f"{count} {name}" for name, count in sorted(self.boxes.items())) or "none"
        skipped = f", {len(self.skipped)} unreadable skipped" if self.skipped else ""
        boxes = sum(self.boxes.values())
        return f"predict: {self.images} images{skipped}, {boxes} boxes ({counts}); results in {self.run_dir}"
