"""The Python API: a trained detector on file paths, folders, videos, arrays, PIL images or tensors.

Example::

    from yolo11_lightning import Detector

    det = Detector.from_checkpoint("runs/quickstart/version_0/checkpoints/best.ckpt")
    for result in det(["a.jpg", "b.jpg"]):     # or det("photos/"), det(bgr_array), det(pil_image)
        print(result.boxes, result.scores, result.class_names)   # boxes: xyxy, original pixels
        result.save("annotated.jpg")            # result.plot() gives the annotated BGR array
    det.save("photos/", "runs/predict")         # every output of the predict command

Pre- and post-processing are those of the ``predict`` command (minimal-padding letterbox per image,
:func:`~yolo11_lightning.inference.postprocess.detect`); the same checkpoint gives the same boxes.
Importing this module never imports Lightning.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import torch
from torch import nn

from yolo11_lightning.data.sources import PredictDataset, list_source
from yolo11_lightning.inference.exported import EXPORTED_SUFFIXES
from yolo11_lightning.inference.loading import load_model
from yolo11_lightning.inference.postprocess import NMSSettings, detect
from yolo11_lightning.inference.preprocess import letterbox_with_mapping, stack_images, to_float_input
from yolo11_lightning.inference.render import draw_detections
from yolo11_lightning.inference.results import Detections
from yolo11_lightning.inference.writers import OutputOptions, PredictionOutputs, yolo_label_rows

"""Files :meth:`Detector.from_path` hands to ``yolo11_lightning.inference.exported.ExportedModel``."""


@dataclass
class Prediction(Detections):
    """The detections of one image plus the image itself (see :class:`Detections` for the fields).

    Attributes:
        image: the original ``uint8 (h, w, 3)`` BGR image (``None`` when not kept).
    """

    image: np.ndarray | None = None

    def plot(self, line_width: int | None = None, labels: bool = True) -> np.ndarray:
        """The image annotated with boxes, class names and scores (``uint8 (h, w, 3)`` BGR)."""
        if self.image is None:
            raise ValueError("this prediction kept no image to draw on")
        return draw_detections(
            self.image, self.boxes.numpy(), self.class_ids.numpy(), self.names, self.scores.numpy(),
            line_width=line_width, show_labels=labels,
        )  # fmt: skip

    def save(self, path: str | Path, line_width: int | None = None) -> Path:
        """Write :meth:`plot` to ``path`` (format from the suffix; parent folders created)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(path), self.plot(line_width)):
            raise ValueError(f"cannot write an image to {path} (unknown suffix?)")
        return path

    def save_txt(self, path: str | Path, with_score: bool = False) -> Path:
        """Write YOLO txt labels (``class cx cy w h [score]``, normalised) to ``path``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(row + "\n" for row in yolo_label_rows(self, with_score)))
        return path


def _to_bgr(image: Any, channels: str) -> np.ndarray:
    """One in-memory image as ``uint8 (h, w, 3)`` BGR."""
    if isinstance(image, torch.Tensor):  # (3, H, W) RGB, uint8 or float in [0, 1]
        if image.dim() != 3 or image.shape[0] not in (1, 3):
            raise ValueError(f"an image tensor must be (3, H, W), got {tuple(image.shape)}")
        array = image.detach().cpu()
        if array.is_floating_point():
            array = (array.clamp(0, 1) * 255).round()
        array = array.to(torch.uint8).expand(3, -1, -1).permute(1, 2, 0).numpy()
        return np.ascontiguousarray(array[..., ::-1])
    if type(image).__module__.startswith("PIL."):
        return np.ascontiguousarray(np.asarray(image.convert("RGB"))[..., ::-1])
    if not isinstance(image, np.ndarray):
        raise TypeError(f"cannot read an image from {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"numpy images must be uint8, got {image.dtype}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"numpy images must be (H, W), (H, W, 3) or (H, W, 4), got {image.shape}")
    image = image[..., :3]
    return np.ascontiguousarray(image[..., ::-1] if channels == "RGB" else image)


class Detector:
    """A trained detector: pre-processing, network, NMS, boxes in original pixels.

    Args:
        backend: the network: a ``DetectionModel`` (eval mode: returns ``(decoded, maps)``) or any
            callable mapping float ``(B, 3, H, W)`` images in [0, 1] to the decoded ``(B, 4 + nc, A)``
            output (an exported model).
        names: class id -> name.
        imgsz: input size (long side resized to it).
        stride: the network's largest stride (each image is padded to a multiple of it).
        conf: confidence threshold.
        iou: NMS IoU threshold.
        max_det: maximal detections per image.
        classes: keep only these class ids (``None``: all).
        agnostic: class-agnostic NMS.
        device: where the network runs (``None``: where its parameters are, else CPU).
    """

    def __init__(
        self,
        backend: nn.Module | Callable[[torch.Tensor], Any],
        names: dict[int, str] | None = None,
        imgsz: int = 640,
        stride: int = 32,
        conf: float = 0.25,
        iou: float = 0.7,
        max_det: int = 300,
        classes: Sequence[int] | None = None,
        agnostic: bool = False,
        device: str | torch.device | None = None,
    ) -> None:
        if isinstance(backend, nn.Module):
            backend.eval()
            parameter = next(backend.parameters(), None)
            if device is not None:
                backend.to(device)
            elif parameter is not None:
                device = parameter.device
        self.backend = backend
        self.device = torch.device(device or getattr(backend, "device", None) or "cpu")
        self.names = dict(names if names is not None else getattr(backend, "names", {}) or {})
        self.imgsz = int(imgsz)
        self.stride = int(stride)
        self.settings = NMSSettings(
            conf=conf,
            iou=iou,
            max_det=max_det,
            classes=tuple(classes) if classes is not None else None,
            agnostic=agnostic,
        )

    # --------------------------------------------------------------------------------- creation
    @classmethod
    def from_checkpoint(cls, path: str | Path, fuse: bool = True, imgsz: int | None = None, **kwargs: Any) -> Detector:
        """A detector from our ``.ckpt`` (EMA weights), a reference ``.pt`` or a weights file.

        The model config, class names and training ``imgsz`` come from the file.

        Args:
            path: the checkpoint or weights file.
            fuse: fold BatchNorm into the convolutions (faster; outputs equal up to float rounding).
            imgsz: input size (``None``: the file's training size).
            **kwargs: :class:`Detector` arguments (``conf``, ``iou``, ``classes``, ``device``, ...).
        """
        model, spec = load_model(path)
        if fuse:
            model.fuse()
        return cls(model, spec.names or dict(model.names), imgsz=imgsz or spec.imgsz, stride=spec.stride, **kwargs)

    @classmethod
    def from_path(cls, path: str | Path, **kwargs: Any) -> Detector:
        """Like :meth:`from_checkpoint`; ``.onnx`` and ``.torchscript`` files load as exported models."""
        if Path(path).suffix.lower() not in EXPORTED_SUFFIXES:
            return cls.from_checkpoint(path, **kwargs)
        from yolo11_lightning.inference.exported import ExportedModel

        model = ExportedModel(path)
        kwargs.pop("fuse", None)
        kwargs.setdefault("imgsz", model.imgsz)
        return cls(model, model.names, stride=model.stride, **kwargs)

    # ---------------------------------------------------------------------------------- running
    def _images(self, source: Any, channels: str, vid_stride: int) -> Iterator[tuple[str, np.ndarray | None]]:
        """``(name, BGR image or None if unreadable)`` for every image of ``source``, in order."""
        if isinstance(source, (str, Path)):
            dataset = PredictDataset(list_source(source, vid_stride), self.imgsz)
            for item in dataset.items:
                yield item.name, dataset._decode(item)
        elif isinstance(source, torch.Tensor) and source.dim() == 4:
            for image in source:
                yield "", _to_bgr(image, channels)
        elif isinstance(source, (list, tuple)):
            for element in source:
                yield from self._images(element, channels, vid_stride)
        else:
            yield "", _to_bgr(source, channels)

    @torch.inference_mode()
    def _run(self, batch: list[tuple[str, int, np.ndarray]], settings: NMSSettings) -> list[Prediction]:
        inputs, ratio_pads, shapes = [], [], []
        for _, _, image in batch:
            boxed, ratio_pad = letterbox_with_mapping(
                image, image.shape[:2], (self.imgsz, self.imgsz), True, self.stride
            )
            inputs.append(boxed)
            ratio_pads.append(ratio_pad)
            shapes.append(image.shape[:2])
        images = to_float_input(stack_images(inputs).to(self.device))
        output = self.backend(images)
        decoded = output[0] if isinstance(output, (tuple, list)) else output
        rows = detect(decoded, torch.tensor(ratio_pads), torch.tensor(shapes), settings)
        return [
            _prediction(r, name, index, shape, self.names, image)
            for r, (name, index, image), shape in zip(rows, batch, shapes)
        ]

    def stream(
        self,
        source: Any,
        batch_size: int = 1,
        channels: Literal["BGR", "RGB"] = "BGR",
        vid_stride: int = 1,
        keep_images: bool = True,
        **overrides: Any,
    ) -> Iterator[Prediction]:
        """Predict image by image (a generator: videos and large folders in constant memory).

        Args:
            source: a path (image, video, folder, glob, ``.txt`` list), a numpy array (``uint8``
                HWC), a PIL image, a ``(3, H, W)`` or ``(B, 3, H, W)`` RGB tensor (``uint8`` or float
                in [0, 1]), or a list of any of these.
            batch_size: images per forward pass; consecutive images of the same letterbox shape
                are batched (1: one image at a time).
            channels: channel order of numpy arrays (``"BGR"`` as OpenCV, or ``"RGB"``).
            vid_stride: every n-th video frame.
            keep_images: keep the original image in each result (for :meth:`Prediction.plot`).
            **overrides: ``conf``, ``iou``, ``max_det``, ``classes``, ``agnostic`` for this call.

        Yields:
            One :class:`Prediction` per readable image, in input order (``image_id`` = input index;
            unreadable files are skipped, see :attr:`skipped`).
        """
        settings = replace(self.settings, **overrides) if overrides else self.settings
        if settings.classes is not None:
            settings = replace(settings, classes=tuple(settings.classes))
        self.skipped: list[str] = []
        pending: list[tuple[str, int, np.ndarray]] = []
        pending_shape = None
        for index, (name, image) in enumerate(self._images(source, channels, vid_stride)):
            if image is None:
                self.skipped.append(name)
                continue
            shape = self._input_shape(image.shape[:2])
            if pending and (shape != pending_shape or len(pending) >= batch_size):
                yield from self._finish(pending, settings, keep_images)
                pending = []
            pending.append((name, index, image))
            pending_shape = shape
        if pending:
            yield from self._finish(pending, settings, keep_images)

    def _finish(
        self, pending: list[tuple[str, int, np.ndarray]], settings: NMSSettings, keep: bool
    ) -> Iterator[Prediction]:
        for prediction in self._run(pending, settings):
            if not keep:
                prediction.image = None
            yield prediction

    def _input_shape(self, shape: tuple[int, int]) -> tuple[int, int]:
        """The letterboxed ``(height, width)`` of an image of ``shape``."""
        ratio = min(self.imgsz / shape[0], self.imgsz / shape[1])
        height, width = round(shape[0] * ratio), round(shape[1] * ratio)
        return height + (self.imgsz - height) % self.stride, width + (self.imgsz - width) % self.stride

    def __call__(self, source: Any, **kwargs: Any) -> list[Prediction]:
        """Predict on ``source`` and return every result, in input order (see :meth:`stream`)."""
        return list(self.stream(source, **kwargs))

    def save(self, source: Any, run_dir: str | Path, options: OutputOptions | None = None, **kwargs: Any) -> Path:
        """Predict on ``source`` and write the outputs of the ``predict`` command into ``run_dir``.

        Args:
            source: as for :meth:`stream`.
            run_dir: output folder (annotated images, labels, ``predictions.json``/``.jsonl``, crops).
            options: which outputs (default: images, txt labels, COCO JSON, JSONL).
            **kwargs: passed to :meth:`stream`.

        Returns:
            ``run_dir``.
        """
        options = options or OutputOptions()
        root = source if isinstance(source, (str, Path)) and Path(source).is_dir() else None
        outputs = PredictionOutputs(run_dir, options, source_root=root)
        for prediction in self.stream(source, keep_images=options.needs_pixels, **kwargs):
            outputs.write(prediction, prediction.image)
        for name in self.skipped:
            outputs.skip(name)
        self.summary = outputs.close()
        return Path(run_dir)


def _prediction(
    rows: torch.Tensor, name: str, index: int, shape: tuple[int, int], names: dict[int, str], image: np.ndarray
) -> Prediction:
    base = Detections.from_rows(rows, name, index, shape, names)
    return Prediction(**vars(base), image=image)
