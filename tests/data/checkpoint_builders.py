"""Checkpoints and weights files made without training (random weights), for the predict tests."""

from __future__ import annotations

from pathlib import Path

import lightning
import torch

NAMES = {0: "present", 1: "logo", 2: "portrait", 3: "ball"}


def make_checkpoint(
    path: Path, imgsz: int | None = 96, inference_entry: bool = True, datamodule_imgsz: int | None = None
) -> Path:
    """A ``YOLOModule`` checkpoint (yolo11n, 4 classes, random weights) that Lightning can load.

    Args:
        path: where to write it.
        imgsz: the training size recorded in the ``inference`` entry.
        inference_entry: write the ``inference`` entry (``False``: a checkpoint of the older format).
        datamodule_imgsz: Lightning's ``datamodule_hyper_parameters["imgsz"]`` (older fallback).
    """
    from yolo11_lightning.training.module import YOLOModule

    torch.manual_seed(0)
    module = YOLOModule(model="yolo11n.yaml", num_classes=4, class_names=NAMES)
    checkpoint = {
        "pytorch-lightning_version": lightning.__version__,
        "epoch": 0,
        "global_step": 0,
        "state_dict": module.state_dict(),
        "hyper_parameters": {"model": "yolo11n.yaml", "num_classes": 4},
    }
    module.on_save_checkpoint(checkpoint)
    if inference_entry:
        checkpoint["inference"]["imgsz"] = imgsz
    else:
        del checkpoint["inference"]
    if datamodule_imgsz is not None:
        checkpoint["datamodule_hyper_parameters"] = {"imgsz": datamodule_imgsz}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)
    return path


def make_reference_weights(path: Path, nc: int = 4, imgsz: int = 96) -> Path:
    """A reference-format ``.pt`` (pickled reference model, names, ``train_args``) with random weights."""
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    model = DetectionModel("yolo11n.yaml", nc=nc, verbose=False)
    model.names = {i: NAMES.get(i, f"class{i}") for i in range(nc)}
    torch.save({"model": model.half(), "ema": None, "train_args": {"imgsz": imgsz}}, path)
    return path


TRAINED = Path(__file__).resolve().parent / "trained" / "shapes4_yolo11n_160.ckpt"
"""yolo11n trained on data/shapes4 at imgsz 160: ``train.py fit --config configs/quickstart.yaml
--data.imgsz 160 --trainer.check_val_every_n_epoch 10``, the ``last.ckpt`` of epoch 19 (of 30: the
CPU time there was; val mAP50-95 0.19, mAP50 0.35), trimmed by :func:`trim_checkpoint` (5.4 MB).
At conf 0.25 the reference's predict gives 109 boxes on the 81 shipped images with it."""


def trim_checkpoint(source: Path, target: Path) -> Path:
    """A small copy of a training checkpoint that ``predict``/``validate --ckpt_path`` still load.

    Keeps the EMA weights in float16 (the Lightning ``state_dict`` shares the same tensors, so they
    are stored once), the model config, names, ``inference`` entry and Lightning's data-module
    hyperparameters; drops optimizer and loop states.
    """
    checkpoint = torch.load(source, map_location="cpu", weights_only=True)
    ema = {
        key: value.half() if value.is_floating_point() else value for key, value in checkpoint["ema_state_dict"].items()
    }
    state_dict = {key: ema.get(key[len("model.") :], value) for key, value in checkpoint["state_dict"].items()}
    kept_keys = ("pytorch-lightning_version", "epoch", "global_step", "model_config", "class_names", "inference",
                 "ema_updates", "hyper_parameters", "datamodule_hyper_parameters")  # fmt: skip
    kept = {key: checkpoint[key] for key in kept_keys if key in checkpoint}
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save({**kept, "state_dict": state_dict, "ema_state_dict": ema}, target)
    return target
