"""The one COCO-results writer: predict's COCO output and validation's ``save_json``.

COCO detection results are a JSON list of ``{"image_id", "category_id", "bbox": [x, y, w, h],
"score"}`` in original-image pixels; pycocotools' ``COCO.loadRes`` reads them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from yolo11_lightning.inference.results import Detections


def coco_results(detections: Iterable[Detections], category_ids: dict[int, int] | None = None) -> list[dict]:
    """COCO result records for every box of every image.

    Args:
        detections: per-image detections; ``Detections.image_id`` becomes ``image_id``.
        category_ids: class id -> COCO category id (``None``: the class id itself).

    Returns:
        The records, image by image, boxes by decreasing score.
    """
    records = []
    for item in detections:
        boxes = item.boxes.tolist()
        for (x1, y1, x2, y2), score, class_id in zip(boxes, item.scores.tolist(), item.class_ids.tolist()):
            records.append(
                {
                    "image_id": int(item.image_id),
                    "category_id": int(category_ids[class_id] if category_ids else class_id),
                    "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)],
                    "score": round(float(score), 5),
                }
            )
    return records


def write_coco_results(
    path: str | Path, detections: Iterable[Detections], category_ids: dict[int, int] | None = None
) -> Path:
    """Write :func:`coco_results` as a JSON file (parent folders created) and return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(coco_results(detections, category_ids)))
    return path
