"""Run an exported detector (``.onnx`` through onnxruntime, or TorchScript) like the PyTorch model.

:class:`ExportedModel` reads the metadata written by :func:`yolo11_lightning.export.export_model`
(class names, stride, imgsz, architecture) and maps ``images (B, 3, H, W)`` in [0, 1] to the decoded
``(B, 4 + nc, A)`` output, the layout of ``DetectionModel``'s eval output, so the same
pre-processing (:mod:`~yolo11_lightning.inference.preprocess`) and post-processing
(:func:`~yolo11_lightning.inference.postprocess.detect`) apply; :func:`predict_exported` runs them on a batch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from yolo11_lightning.data.batch import Batch
from yolo11_lightning.export import INPUT_NAME, METADATA_FILE, ExportMetadata
from yolo11_lightning.inference.postprocess import NMSSettings, detect
from yolo11_lightning.inference.preprocess import to_float_input
from yolo11_lightning.inference.results import Detections

EXPORTED_SUFFIXES = (".onnx", ".torchscript")
"""File suffixes dispatched to :class:`ExportedModel` (anything else is a PyTorch checkpoint)."""


class ExportedModel:
    """An exported detector with its metadata.

    Args:
        path: ``.onnx`` file (onnxruntime; CUDA provider when available, else CPU) or a TorchScript
            file (``.torchscript``, any other suffix is tried as TorchScript too).
        device: Device of the TorchScript module (``"cpu"`` default); ONNX picks its provider itself.

    Attributes:
        names: Class names ``{id: name}``.
        stride: Largest stride; input sides must be multiples of it.
        imgsz: Input size the model was trained at.
        model_config: The recorded architecture.
        dynamic: Whether the graph accepts any batch and size (else only ``1 x 3 x imgsz x imgsz``).

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the file is not a readable export of this package (the message names it).
    """

    def __init__(self, path: str | Path, device: str | torch.device = "cpu") -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"exported model not found: {self.path}")
        self.format = "onnx" if self.path.suffix == ".onnx" else "torchscript"
        self.device = torch.device(device)
        if self.format == "onnx":
            values = self._open_onnx()
        else:
            values = self._open_torchscript()
        metadata = ExportMetadata.from_strings(values, str(self.path))
        self.metadata = metadata
        self.names: dict[int, str] = metadata.names
        self.stride: int = metadata.stride
        self.imgsz: int = metadata.imgsz
        self.model_config: dict[str, Any] = metadata.model_config
        self.dynamic: bool = metadata.dynamic

    def _open_onnx(self) -> dict[str, str]:
        import onnxruntime

        available = onnxruntime.get_available_providers()
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        try:
            self._session = onnxruntime.InferenceSession(str(self.path), providers=providers)
        except Exception as error:  # onnxruntime raises its own exception types for bad files
            raise ValueError(f"{self.path}: not a readable ONNX model ({error})") from error
        self._output_name = self._session.get_outputs()[0].name
        return dict(self._session.get_modelmeta().custom_metadata_map)

    def _open_torchscript(self) -> dict[str, str]:
        extra = {METADATA_FILE: ""}
        try:
            self._module = torch.jit.load(str(self.path), map_location=self.device, _extra_files=extra)
        except Exception as error:  # zip/format errors of torch.jit.load
            raise ValueError(f"{self.path}: not a readable TorchScript model ({type(error).__name__})") from error
        try:
            return json.loads(extra[METADATA_FILE] or "{}")
        except json.JSONDecodeError as error:
            raise ValueError(f"{self.path}: unreadable {METADATA_FILE} ({error})") from error

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Decoded predictions.

        Args:
            images: ``float (B, 3, H, W)`` in [0, 1], H and W multiples of :attr:`stride`.

        Returns:
            ``float32 (B, 4 + nc, A)`` on the device of ``images``: xywh boxes in input pixels, then
            class probabilities.
        """
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images (B, 3, H, W), got {tuple(images.shape)}")
        if self.format == "onnx":
            array = np.ascontiguousarray(images.detach().float().cpu().numpy())
            (output,) = self._session.run([self._output_name], {INPUT_NAME: array})
            return torch.from_numpy(output).to(images.device)
        with torch.no_grad():
            return self._module(images.float().to(self.device)).to(images.device)

    def __repr__(self) -> str:
        return f"ExportedModel({str(self.path)!r}, format={self.format}, classes={len(self.names)}, imgsz={self.imgsz})"


def predict_exported(model: ExportedModel, batch: Batch, settings: NMSSettings | None = None) -> list[Detections]:
    """Detections of a prepared batch by an exported model: the steps of ``YOLOModule.predict_step``.

    The batch comes from the same pre-processing as the PyTorch path (the data module's predict
    loader: decode, resize, letterbox, stack); the decoded output goes through the same
    :func:`~yolo11_lightning.inference.postprocess.detect`.

    Args:
        model: The exported model.
        batch: A :class:`~yolo11_lightning.data.batch.Batch` (uint8 images, ``ratio_pad``, ``orig_shapes``).
        settings: NMS settings (default: predict's, conf 0.25, IoU 0.7).

    Returns:
        One :class:`Detections` per image, boxes in original pixels.
    """
    decoded = model(to_float_input(batch.images))
    predictions = detect(decoded, batch.ratio_pad, batch.orig_shapes, settings or NMSSettings())
    return [
        Detections.from_rows(rows, path, image_id, shape, model.names)
        for rows, path, image_id, shape in zip(
            predictions, batch.paths, batch.image_ids.tolist(), batch.orig_shapes.tolist()
        )
    ]
