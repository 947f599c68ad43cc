"""The command line: ``python train.py {fit,validate,test,predict} --config ...`` (LightningCLI), and ``export``.

Defaults added to Lightning's:
    * ``best_checkpoint``: ``best.ckpt``, the epoch with the highest ``val/mAP50-95``;
    * ``last_checkpoint``: ``last.ckpt`` rewritten at the end of **every** epoch (a second
      checkpoint callback without a monitor; ``save_last`` would stay at the best epoch);
    * ``prediction_writer``: ``predict`` writes ``predictions.jsonl`` (one line per image, boxes in
      original pixels) into the run directory;
    * the data module's ``num_classes`` and ``names`` are linked into the model, and its
      ``batch_size`` into the model's nominal-batch arithmetic;
    * a CSV logger under ``runs/``;
    * ``AtomicCheckpointIO``: checkpoints written atomically (temp file in the checkpoint's
      directory, fsync, rename); resuming from an unreadable file names the previous good one;
    * ``resume`` (``ExactResume``): ``fit --ckpt_path last.ckpt`` continues bit for bit (per-batch
      RNG seeding, pending gradients; ``--resume.num_threads`` pins intra-op threads).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Sequence

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from yolo11_lightning.data.datamodule import YOLODataModule
from yolo11_lightning.training.module import YOLOModule
from yolo11_lightning.training.resume import ExactResume


class PredictionWriter(BasePredictionWriter):
    """Writes the detections of ``predict`` as JSON lines (one image per line).

    Each line: ``{"path", "image_id", "boxes": [[x1, y1, x2, y2], ...], "scores", "class_ids",
    "class_names"}`` with boxes in original-image pixels.

    Args:
        output: file to write; a relative path is placed in the run (log) directory.
    """

    def __init__(self, output: str = "predictions.jsonl") -> None:
        super().__init__(write_interval="batch")
        self.output = output
        self.path: Path | None = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Resolve and truncate the output file (rank 0 and each other rank get their own file)."""
        if stage != "predict":
            return
        path = Path(self.output)
        if not path.is_absolute():
            path = Path(trainer.log_dir or trainer.default_root_dir) / path
        if trainer.world_size > 1:
            path = path.with_name(f"{path.stem}.rank{trainer.global_rank}{path.suffix}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
        self.path = path

    def write_on_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        prediction: Any,
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        """Append one JSON line per image of the batch."""
        assert self.path is not None
        with self.path.open("a") as handle:
            for item in prediction:
                record = {
                    "path": item.path,
                    "image_id": item.image_id,
                    "boxes": [[round(v, 2) for v in box] for box in item.boxes.tolist()],
                    "scores": [round(v, 5) for v in item.scores.tolist()],
                    "class_ids": item.class_ids.tolist(),
                    "class_names": item.class_names,
                }
                handle.write(json.dumps(record) + "\n")


class YOLOCLI(LightningCLI):
    """LightningCLI for :class:`YOLOModule` and :class:`YOLODataModule` with the project's defaults.

    Args:
        args: command-line arguments (``None``: ``sys.argv``); e.g. ``["fit", "--config", "x.yaml"]``.
        run: run the subcommand (``True``) or only instantiate the classes.
        **kwargs: passed on to ``LightningCLI``.
    """

    def __init__(self, args: Sequence[str] | dict[str, Any] | None = None, run: bool = True, **kwargs: Any) -> None:
        trainer_defaults = {
            "max_epochs": 100,
            "logger": {
                "class_path": "lightning.pytorch.loggers.CSVLogger",
                "init_args": {"save_dir": "runs", "name": "yolo11"},
            },
            # Atomic, fsync'ed checkpoint writes; unreadable checkpoints name the previous good one.
            "plugins": [{"class_path": "yolo11_lightning.training.checkpoint.AtomicCheckpointIO"}],
        }
        trainer_defaults.update(kwargs.pop("trainer_defaults", {}))
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("parser_kwargs", {"default_env": False})
        super().__init__(
            YOLOModule,
            YOLODataModule,
            args=args,
            run=run,
            trainer_defaults=trainer_defaults,
            seed_everything_default=0,
            **kwargs,
        )

    def _parse_ckpt_path(self) -> None:
        """Keep the command line's model arguments when ``--ckpt_path`` is given.

        Lightning's CLI would replace every model argument by the hyperparameters stored in the
        checkpoint, silently ignoring e.g. ``--model.predict_conf``. Here the command line (or
        ``--config``) decides; ``YOLOModule.on_load_checkpoint`` then refuses, with a clear
        message, a checkpoint whose architecture differs from the model being built.
        """

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Checkpoint and prediction-writer callbacks, and the data -> model links."""
        parser.add_lightning_class_args(ModelCheckpoint, "best_checkpoint")
        parser.set_defaults(
            {
                "best_checkpoint.monitor": "val/mAP50-95",
                "best_checkpoint.mode": "max",
                "best_checkpoint.filename": "best",
                "best_checkpoint.save_top_k": 1,
                "best_checkpoint.auto_insert_metric_name": False,
                "best_checkpoint.enable_version_counter": False,
            }
        )
        parser.add_lightning_class_args(ModelCheckpoint, "last_checkpoint")
        parser.set_defaults(
            {
                "last_checkpoint.monitor": None,
                "last_checkpoint.filename": "last",
                "last_checkpoint.save_top_k": 1,
                "last_checkpoint.every_n_epochs": 1,
                "last_checkpoint.enable_version_counter": False,
            }
        )
        parser.add_lightning_class_args(ExactResume, "resume")
        parser.add_lightning_class_args(PredictionWriter, "prediction_writer")
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.names", "model.class_names", apply_on="instantiate")
        parser.link_arguments("data.batch_size", "model.batch_size", apply_on="instantiate")

    def after_fit(self) -> None:
        """Print the final validation figures and where the checkpoints are."""
        if not self.trainer.is_global_zero:
            return
        results = getattr(self.model, "last_results", None)
        best = next(
            (cb for cb in self.trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint) and cb.monitor), None
        )
        if best is not None and best.best_model_path:
            print(f"best checkpoint: {best.best_model_path} (val/mAP50-95 {float(best.best_model_score):.4f})")
        if results is None:
            print("no validation ran: no mAP to report")
            return
        print(
            f"final validation (EMA, epoch {self.trainer.current_epoch - 1}): "
            f"mAP50-95 {results.map50_95:.4f}  mAP50 {results.map50:.4f}  mAP75 {results.map75:.4f}  "
            f"P {results.precision:.4f}  R {results.recall:.4f}",
            flush=True,
        )


def main(args: Sequence[str] | None = None) -> YOLOCLI | None:
    """Entry point of ``train.py``.

    Args:
        args: command-line arguments (``None``: ``sys.argv``).

    Returns:
        The CLI object (its ``trainer`` and ``model`` after the run); ``None`` for ``export``.
    """
    argv = list(sys.argv[1:] if args is None else args)
    if argv[:1] == ["export"]:  # not a Lightning subcommand: see yolo11_lightning/export.py
        from yolo11_lightning.export import main as export_main

        export_main(argv[1:])
        return None
    return YOLOCLI(args=args)
