"""Detection metrics: COCO mAP through torchmetrics, reference-style precision/recall, exact under DDP.

Per-image results are kept keyed by image id. At :meth:`DetectionMetrics.compute` every process
sends its images once (``all_gather_object``), they are merged by id (an image seen twice, as a
padding sampler would send it, counts once; our ``ValidationSampler`` does not pad), rank 0
computes once and broadcasts the figures. This is exact for any split of the
images over the processes, unlike a per-tensor state sync, which desynchronises on uneven splits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.distributed as dist
from torchmetrics.detection import MeanAveragePrecision

from yolo11_lightning.training.curves import EvaluationCurves, confidence_curves
from yolo11_lightning.training.matching import confusion_matrix, match_at_iou

__all__ = ["ClassRow", "DetectionMetrics", "DetectionResults", "match_at_iou"]


@dataclass
class ClassRow:
    """One row of the per-class table.

    Attributes:
        class_id: class index.
        name: class name.
        images: images with at least one ground-truth box of the class.
        instances: ground-truth boxes of the class.
        ap50: COCO AP at IoU 0.5 (-1 when the class has no ground truth).
        ap50_95: COCO AP averaged over IoU 0.50:0.95 (-1 when the class has no ground truth).
        precision: precision at the confidence maximising the mean F1 (IoU 0.5; 0 without ground truth).
        recall: recall at that confidence.
    """

    class_id: int
    name: str
    images: int
    instances: int
    ap50: float
    ap50_95: float
    precision: float = 0.0
    recall: float = 0.0


@dataclass
class DetectionResults:
    """Figures of one evaluation.

    Attributes:
        map50_95: COCO mAP over IoU 0.50:0.95 (detection limit ``max_det``).
        map50: COCO mAP at IoU 0.5.
        map75: COCO mAP at IoU 0.75.
        precision: mean over classes of the precision at the confidence maximising the mean F1
            (IoU 0.5), as the reference reports it.
        recall: mean recall at that confidence.
        images: evaluated images (after de-duplication).
        instances: ground-truth boxes.
        per_class: table rows, one per class with ground truth or detections.
        curves: the curves and the confusion matrix behind the figures.
    """

    map50_95: float = 0.0
    map50: float = 0.0
    map75: float = 0.0
    precision: float = 0.0
    recall: float = 0.0
    images: int = 0
    instances: int = 0
    per_class: list[ClassRow] = field(default_factory=list)
    curves: EvaluationCurves = field(default_factory=EvaluationCurves)

    def as_log_dict(self, prefix: str) -> dict[str, float]:
        """Scalars to log, e.g. ``{"val/mAP50-95": ...}``.

        Args:
            prefix: metric name prefix (``"val"`` or ``"test"``).
        """
        return {
            f"{prefix}/mAP50-95": self.map50_95,
            f"{prefix}/mAP50": self.map50,
            f"{prefix}/mAP75": self.map75,
            f"{prefix}/precision": self.precision,
            f"{prefix}/recall": self.recall,
        }

    def table(self) -> str:
        """The per-class table as text (an ``all`` row first)."""
        header = f"{'class':>20} {'images':>8} {'instances':>10} {'P':>7} {'R':>7} {'AP50':>7} {'AP50-95':>8}"
        lines = [
            header,
            f"{'all':>20} {self.images:>8} {self.instances:>10} {self.precision:>7.3f} {self.recall:>7.3f} "
            f"{self.map50:>7.3f} {self.map50_95:>8.3f}",
        ]
        for row in self.per_class:
            if row.instances:
                pr = f"{row.precision:>7.3f} {row.recall:>7.3f}"
                ap = f"{row.ap50:>7.3f} {row.ap50_95:>8.3f}"
            else:  # detections of a class absent from the ground truth: no P, R or AP
                pr, ap = f"{'-':>7} {'-':>7}", f"{'-':>7} {'-':>8}"
            lines.append(f"{row.name[:20]:>20} {row.images:>8} {row.instances:>10} {pr} {ap}")
        return "\n".join(lines)


# Per image: (pred boxes (n, 4), pred scores (n,), pred labels (n,), gt boxes (m, 4), gt labels (m,)).
ImageRecord = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


class DetectionMetrics:
    """Accumulates per-image detections and ground truth, computes COCO mAP and P/R once.

    After :meth:`compute`, :attr:`last_records` holds the merged records it evaluated (on the
    process that evaluated them: rank 0), e.g. for writing them as COCO JSON.

    Args:
        names: class names by id (used for the per-class table).
        max_det: detection limit of the COCO evaluation (equal to the NMS limit).
        backend: torchmetrics COCO backend.
    """

    def __init__(
        self,
        names: dict[int, str],
        max_det: int = 300,
        backend: Literal["faster_coco_eval", "pycocotools"] = "faster_coco_eval",
    ) -> None:
        self.names = dict(names)
        self.max_det = max_det
        self.backend = backend
        self.records: dict[int, ImageRecord] = {}
        self.last_records: dict[int, ImageRecord] = {}

    def reset(self) -> None:
        """Forget all images."""
        self.records = {}

    def update(
        self,
        image_ids: torch.Tensor,
        predictions: list[torch.Tensor],
        gt_boxes: list[torch.Tensor],
        gt_labels: list[torch.Tensor],
    ) -> None:
        """Add a batch of images.

        Args:
            image_ids: (B,) unique image ids (an id seen again replaces the earlier record).
            predictions: B tensors (n, 6) ``x1, y1, x2, y2, score, class`` in original pixels.
            gt_boxes: B tensors (m, 4) xyxy in original pixels.
            gt_labels: B tensors (m,) class ids.
        """
        for image_id, pred, boxes, labels in zip(image_ids.tolist(), predictions, gt_boxes, gt_labels):
            pred = pred.detach().float().cpu()
            self.records[int(image_id)] = (
                pred[:, :4].clone(),
                pred[:, 4].clone(),
                pred[:, 5].long(),
                boxes.detach().float().cpu(),
                labels.detach().long().cpu(),
            )

    def _gather(self) -> dict[int, ImageRecord]:
        """All processes' records merged by image id (the local ones when not distributed)."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return self.records
        # Sent as NumPy arrays: pickling thousands of small tensors is about 30x slower.
        local = {image_id: tuple(t.numpy() for t in record) for image_id, record in self.records.items()}
        gathered: list[dict[int, tuple[np.ndarray, ...]] | None] = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, local)
        merged: dict[int, ImageRecord] = {}
        for records in gathered:
            for image_id, arrays in (records or {}).items():
                merged[image_id] = tuple(torch.from_numpy(a) for a in arrays)  # type: ignore[assignment]
        return merged

    def compute(self) -> DetectionResults:
        """Evaluate all images seen by all processes; every process gets the same results."""
        records = self._gather()
        distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        results = None
        if not distributed or dist.get_rank() == 0:
            self.last_records = dict(records)
            results = self._evaluate(records)
        if distributed:
            box = [results]
            dist.broadcast_object_list(box, src=0)
            results = box[0]
        assert results is not None
        return results

    def _evaluate(self, records: dict[int, ImageRecord]) -> DetectionResults:
        """Compute all figures from merged records (one process)."""
        if not records:
            return DetectionResults()
        image_ids = sorted(records)
        preds = [dict(boxes=records[i][0], scores=records[i][1], labels=records[i][2]) for i in image_ids]
        targets = [dict(boxes=records[i][3], labels=records[i][4]) for i in image_ids]
        gt_labels = torch.cat([t["labels"] for t in targets])
        results = DetectionResults(images=len(image_ids), instances=len(gt_labels))
        if len(gt_labels) == 0:
            return results

        coco_map = MeanAveragePrecision(
            box_format="xyxy",
            iou_type="bbox",
            backend=self.backend,
            max_detection_thresholds=[1, 10, self.max_det],
            extended_summary=True,
            sync_on_compute=False,
        )
        coco_map.update(preds, targets)
        summary = coco_map.compute()
        # COCOeval's precision table (T iou, R recall, K class, A area, M max-det) at all areas and the
        # last detection limit (max_det). mAP50-95 comes from it: pycocotools' summary line for it is
        # hard-wired to 100 detections and reads -1 for [1, 10, 300].
        precision_table = summary["precision"][:, :, :, 0, -1]  # (iou, recall, class)
        valid = precision_table[precision_table > -1]
        results.map50_95 = float(valid.mean()) if valid.numel() else 0.0
        results.map50 = max(float(summary["map_50"]), 0.0)
        results.map75 = max(float(summary["map_75"]), 0.0)

        # One pass over the stored predictions: reference-style true positives at IoU 0.5 give the
        # confidence curves and P/R; COCOeval's precision table gives AP and the PR curves.
        true_positive = [match_at_iou(p["boxes"], p["labels"], t["boxes"], t["labels"]) for p, t in zip(preds, targets)]
        curves = confidence_curves(
            torch.cat(true_positive).numpy(),
            torch.cat([p["scores"] for p in preds]).numpy(),
            torch.cat([p["labels"] for p in preds]).numpy(),
            gt_labels.numpy(),
        )
        best = curves.best_index
        class_precision = dict(zip(curves.class_ids.tolist(), curves.precision[:, best].tolist()))
        class_recall = dict(zip(curves.class_ids.tolist(), curves.recall[:, best].tolist()))
        results.precision = float(curves.precision[:, best].mean())
        results.recall = float(curves.recall[:, best].mean())

        # Per-class AP from the same precision table.
        classes = summary["classes"].reshape(-1).tolist()  # a single class comes back as a 0-d tensor
        size = max(max(self.names, default=-1), max(classes, default=-1), int(gt_labels.max())) + 1
        images_per_class = torch.zeros(size, dtype=torch.long)
        for target in targets:
            images_per_class[torch.unique(target["labels"])] += 1
        instances_per_class = torch.bincount(gt_labels, minlength=len(images_per_class))
        pr_class_ids, pr_precision = [], []
        for k, class_id in enumerate(classes):
            per_iou = precision_table[:, :, k]
            if bool((per_iou > -1).any()) and int(instances_per_class[class_id]) > 0:
                ap50_95 = float(per_iou[per_iou > -1].mean())
                ap50 = float(per_iou[0][per_iou[0] > -1].mean())
                pr_class_ids.append(class_id)
                pr_precision.append(per_iou[0].clamp(min=0).double().numpy())
            else:
                ap50_95 = ap50 = -1.0
            results.per_class.append(
                ClassRow(
                    class_id,
                    self.names.get(class_id, str(class_id)),
                    int(images_per_class[class_id]),
                    int(instances_per_class[class_id]),
                    ap50,
                    ap50_95,
                    class_precision.get(class_id, 0.0),
                    class_recall.get(class_id, 0.0),
                )
            )
        curves.pr_class_ids = np.asarray(pr_class_ids, dtype=np.int64)
        if pr_precision:
            curves.pr_precision = np.stack(pr_precision)
        curves.confusion = confusion_matrix([records[i] for i in image_ids], max(len(self.names), size))
        results.curves = curves
        return results
