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
from torchvision.ops import box_iou


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
    """

    class_id: int
    name: str
    images: int
    instances: int
    ap50: float
    ap50_95: float


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
    """

    map50_95: float = 0.0
    map50: float = 0.0
    map75: float = 0.0
    precision: float = 0.0
    recall: float = 0.0
    images: int = 0
    instances: int = 0
    per_class: list[ClassRow] = field(default_factory=list)

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
            lines.append(
                f"{row.name[:20]:>20} {row.images:>8} {row.instances:>10} {'':>7} {'':>7} "
                f"{row.ap50:>7.3f} {row.ap50_95:>8.3f}"
            )
        return "\n".join(lines)


# Per image: (pred boxes (n, 4), pred scores (n,), pred labels (n,), gt boxes (m, 4), gt labels (m,)).
ImageRecord = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def match_at_iou(
    pred_boxes: torch.Tensor,
    pred_labels: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_labels: torch.Tensor,
    iou_threshold: float = 0.5,
) -> torch.Tensor:
    """Mark predictions matched one-to-one to a same-class ground truth with IoU >= threshold.

    Pairs are taken greedily by decreasing IoU (the reference's validator matching).

    Args:
        pred_boxes: (n, 4) xyxy.
        pred_labels: (n,) class ids.
        gt_boxes: (m, 4) xyxy.
        gt_labels: (m,) class ids.
        iou_threshold: the IoU a match needs.

    Returns:
        (n,) bool, True for true positives.
    """
    correct = torch.zeros(len(pred_boxes), dtype=torch.bool)
    if len(pred_boxes) == 0 or len(gt_boxes) == 0:
        return correct
    iou = box_iou(gt_boxes.float(), pred_boxes.float())  # (m, n)
    iou = iou * (gt_labels[:, None] == pred_labels[None, :])
    gt_index, pred_index = torch.nonzero(iou >= iou_threshold, as_tuple=True)
    if len(gt_index) == 0:
        return correct
    order = torch.argsort(iou[gt_index, pred_index], descending=True, stable=True)
    gt_index, pred_index = gt_index[order].numpy(), pred_index[order].numpy()
    # Keep the best pair per prediction, then the best remaining pair per ground truth.
    _, first = np.unique(pred_index, return_index=True)
    first.sort()
    gt_index, pred_index = gt_index[first], pred_index[first]
    _, first = np.unique(gt_index, return_index=True)
    correct[torch.from_numpy(pred_index[first])] = True
    return correct


def _smooth(values: np.ndarray, fraction: float = 0.1) -> np.ndarray:
    """Box-filter ``values`` over ``fraction`` of its length (edges padded with the end values)."""
    width = round(len(values) * fraction * 2) // 2 + 1
    pad = np.ones(width // 2)
    padded = np.concatenate((pad * values[0], values, pad * values[-1]))
    return np.convolve(padded, np.ones(width) / width, mode="valid")


def precision_recall_at_best_f1(
    true_positive: np.ndarray,
    confidence: np.ndarray,
    pred_classes: np.ndarray,
    target_classes: np.ndarray,
) -> tuple[float, float]:
    """Mean precision and recall over classes at the confidence maximising the (smoothed) mean F1.

    Args:
        true_positive: (N,) bool, per prediction, matched at IoU 0.5.
        confidence: (N,) scores.
        pred_classes: (N,) predicted class ids.
        target_classes: (M,) class id of every ground-truth box.

    Returns:
        (mean precision, mean recall); (0, 0) without ground truth.
    """
    classes, counts = np.unique(target_classes, return_counts=True)
    if len(classes) == 0:
        return 0.0, 0.0
    order = np.argsort(-confidence, kind="stable")
    true_positive, confidence, pred_classes = true_positive[order], confidence[order], pred_classes[order]
    grid = np.linspace(0, 1, 1000)
    precision = np.zeros((len(classes), len(grid)))
    recall = np.zeros((len(classes), len(grid)))
    for row, (class_id, count) in enumerate(zip(classes, counts)):
        selected = pred_classes == class_id
        if not selected.any():
            continue
        tp_cum = np.cumsum(true_positive[selected])
        fp_cum = np.cumsum(~true_positive[selected])
        recall[row] = np.interp(-grid, -confidence[selected], tp_cum / (count + 1e-16), left=0)
        precision[row] = np.interp(-grid, -confidence[selected], tp_cum / (tp_cum + fp_cum), left=1)
    f1 = 2 * precision * recall / (precision + recall + 1e-16)
    best = int(_smooth(f1.mean(0), 0.1).argmax())
    return float(precision[:, best].mean()), float(recall[:, best].mean())


class DetectionMetrics:
    """Accumulates per-image detections and ground truth, computes COCO mAP and P/R once.

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
        results.map50_95 = max(float(summary["map"]), 0.0)
        results.map50 = max(float(summary["map_50"]), 0.0)
        results.map75 = max(float(summary["map_75"]), 0.0)

        # Per-class AP from the precision table (T iou, R recall, K class, A area, M max-det).
        precision_table = summary["precision"][:, :, :, 0, -1]
        classes = summary["classes"].reshape(-1).tolist()  # a single class comes back as a 0-d tensor
        size = max(max(self.names, default=-1), max(classes, default=-1), int(gt_labels.max())) + 1
        images_per_class = torch.zeros(size, dtype=torch.long)
        for target in targets:
            images_per_class[torch.unique(target["labels"])] += 1
        instances_per_class = torch.bincount(gt_labels, minlength=len(images_per_class))
        for k, class_id in enumerate(classes):
            per_iou = precision_table[:, :, k]
            if bool((per_iou > -1).any()) and int(instances_per_class[class_id]) > 0:
                ap50_95 = float(per_iou[per_iou > -1].mean())
                ap50 = float(per_iou[0][per_iou[0] > -1].mean())
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
                )
            )

        true_positive = [match_at_iou(p["boxes"], p["labels"], t["boxes"], t["labels"]) for p, t in zip(preds, targets)]
        results.precision, results.recall = precision_recall_at_best_f1(
            torch.cat(true_positive).numpy(),
            torch.cat([p["scores"] for p in preds]).numpy(),
            torch.cat([p["labels"] for p in preds]).numpy(),
            gt_labels.numpy(),
        )
        return results
