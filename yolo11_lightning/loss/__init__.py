"""Training loss and label assignment (plain PyTorch)."""

from yolo11_lightning.loss.assigner import Assignment, TaskAlignedAssigner
from yolo11_lightning.loss.detection import DetectionLoss

__all__ = ["Assignment", "DetectionLoss", "TaskAlignedAssigner"]
