"""The command line: ``python train.py {fit,validate,test,predict} --config ...`` (LightningCLI), and ``export``.

Defaults added to Lightning's:
    * ``best_checkpoint``: ``best.ckpt``, the epoch with the highest ``val/mAP50-95``;
    * ``last_checkpoint``: ``last.ckpt`` rewritten at the end of **every** epoch (a second
      checkpoint callback without a monitor; ``save_last`` would stay at the best epoch);
    * ``prediction_writer``: ``predict`` writes annotated images, YOLO txt labels, COCO JSON and
      ``predictions.jsonl`` (boxes in original pixels) into the run directory and prints where;
    * checkpoint-driven ``validate``/``test``/``predict --ckpt_path C``: the model config, class
      names and training ``imgsz`` come from ``C`` (and ``data.data`` from its run's
      ``config.yaml``); explicit flags and ``--config`` files override them. ``predict
      --model.weights W`` (a reference ``.pt``) takes the config, names and size from ``W``;
    * the data module's ``num_classes`` and ``names`` are linked into the model, and its
      ``batch_size`` into the model's nominal-batch arithmetic;
    * a CSV logger (:class:`~.run_folder.RunCSVLogger`) under ``--trainer.default_root_dir``
      (default ``runs/``): ``<root>/<name>/version_<n>/`` holds the logs, checkpoints and figures;
      ``fit --ckpt_path <run>/checkpoints/last.ckpt`` alone continues in that folder with its saved
      config; a logger whose package is missing is one line on stderr and exit code 2;
    * ``AtomicCheckpointIO``: checkpoints written atomically (temp file in the checkpoint's
      directory, fsync, rename); resuming from an unreadable file names the previous good one;
    * ``early_stopping`` (``EarlyStopping``): stop after ``--early_stopping.patience`` (100, as the
      reference; 0: off) epochs without a better ``val/mAP50-95``, printing the stop and best epochs;
    * ``time_budget`` (``TimeBudget``): ``--time_budget.hours 1.5`` re-plans the epochs (and so the
      LR schedule and close_mosaic) from the measured epoch time, as the reference's ``time``;
    * ``figures`` (:class:`~.figures.FigureWriter`; ``--figures.enabled false`` turns them off),
      ``results_csv`` (``results.csv``, one row per epoch), ``summary`` (the model summary with
      GFLOPs) and a progress bar with the loss parts and the last mAP50-95;
    * ``resume`` (``ExactResume``): ``fit --ckpt_path last.ckpt`` continues bit for bit (per-batch
      RNG seeding, pending gradients; ``--resume.num_threads`` pins intra-op threads);
    * ``signals`` (``SaveOnSignal``): SIGTERM/SIGINT save ``last.ckpt`` at the next step boundary
      and exit with status 4 (``yolo11_lightning.exit_codes``), so schedulers requeue.

Not offered: Lightning's automatic ``--optimizer``/``--lr_scheduler`` options. The recipe builds
its own optimizer and writes its warmup and schedule into it every step, so those options would be
silently overridden; they are refused with a message naming ``--model.optimizer`` and
``--model.lr0``.

Errors: :func:`main` reports known user mistakes (paths, YAML, labels, checkpoints, options; a
misspelt option gets the close spelling) in at most 3 lines on stderr with exit code 2; set
``YOLO11_LIGHTNING_DEBUG=1`` for the traceback (see :mod:`yolo11_lightning.training.errors`).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import yaml
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.accelerators import CUDAAccelerator
from lightning.pytorch.callbacks import BasePredictionWriter, ModelCheckpoint, ProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from yolo11_lightning.data.datamodule import YOLODataModule
from yolo11_lightning.exit_codes import ExitCode
from yolo11_lightning.inference.decode import UnreadableImageError
from yolo11_lightning.inference.loading import ModelSpec, read_spec, require_training_checkpoint
from yolo11_lightning.inference.writers import OutputOptions, PredictionOutputs
from yolo11_lightning.predict_exported import is_exported_model
from yolo11_lightning.training.auto_batch import (
    AUTO_BATCH,
    DEFAULT_FRACTION,
    cpu_auto_batch_error,
    cuda_peak_memory_probe,
    largest_fitting_batch,
)
from yolo11_lightning.training.checkpoint import NotATrainingCheckpointError
from yolo11_lightning.training.cli_parser import YOLOArgumentParser
from yolo11_lightning.training.console import ModelSummaryPrinter, YOLOProgressBar
from yolo11_lightning.training.early_stopping import EarlyStopping
from yolo11_lightning.training.errors import register_exit_code, run_with_exit_code
from yolo11_lightning.training.figures import FigureWriter
from yolo11_lightning.training.logger_check import check_logger_installed
from yolo11_lightning.training.module import NonFiniteTrainingError, YOLOModule
from yolo11_lightning.training.quiet import silence_evaluation_noise, silence_known_noise, silence_resume_noise
from yolo11_lightning.training.results_csv import ResultsCSV
from yolo11_lightning.training.resume import ExactResume
from yolo11_lightning.training.run_folder import (
    option_value,
    point_logger_at_run,
    resume_arguments,
    run_directory,
    run_folder_of,
)
from yolo11_lightning.training.signals import SaveOnSignal
from yolo11_lightning.training.time_budget import TimeBudget

register_exit_code(NonFiniteTrainingError, ExitCode.DIVERGED)
register_exit_code(NotATrainingCheckpointError, ExitCode.USER_ERROR)
register_exit_code(UnreadableImageError, ExitCode.USER_ERROR)

log = logging.getLogger(__name__)


class PredictionWriter(BasePredictionWriter):
    """Writes the outputs of ``predict`` into the run folder and prints where they are.

    Annotated images (a video source gives an annotated video), YOLO txt labels, one COCO-format
    ``predictions.json``, ``predictions.jsonl`` and optional crops; see
    :class:`~yolo11_lightning.inference.writers.PredictionOutputs`. Images come in input order;
    an unreadable image is skipped with a warning and counted in the final line.

    Args:
        output_dir: output folder; ``None`` uses the run (log) directory. Under DDP each rank
            writes into its own ``rank<N>`` sub-folder.
        save_images: write annotated images (boxes, class names, scores).
        save_txt: write YOLO txt labels (``class cx cy w h`` normalised).
        save_conf: add the score column to the txt labels.
        save_json: write the COCO-format results file ``predictions.json``.
        save_jsonl: write ``predictions.jsonl`` (one line per image, boxes in original pixels).
        save_crops: write each box cut out of the image, one folder per class.
        line_width: annotation line width (``None``: proportional to the image size).
    """

    def __init__(
        self,
        output_dir: str | None = None,
        save_images: bool = True,
        save_txt: bool = True,
        save_conf: bool = False,
        save_json: bool = True,
        save_jsonl: bool = True,
        save_crops: bool = False,
        line_width: int | None = None,
    ) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = output_dir
        self.options = OutputOptions(
            save_images=save_images, save_txt=save_txt, save_conf=save_conf, save_json=save_json,
            save_jsonl=save_jsonl, save_crops=save_crops, line_width=line_width,
        )  # fmt: skip
        self.outputs: PredictionOutputs | None = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Create the run folder's writer; ask the data module for the original images if needed."""
        if stage != "predict":
            return
        run_dir = Path(self.output_dir or trainer.log_dir or trainer.default_root_dir)
        if trainer.world_size > 1:
            run_dir = run_dir / f"rank{trainer.global_rank}"
        datamodule = getattr(trainer, "datamodule", None)
        source = getattr(getattr(datamodule, "hparams", None), "source", None)
        root = source if source and Path(source).is_dir() else None
        if datamodule is not None:
            datamodule.keep_originals = self.options.needs_pixels
        self.outputs = PredictionOutputs(run_dir, self.options, source_root=root)

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
        """Write every output of the batch's images; warn about unreadable ones."""
        assert self.outputs is not None
        for name in getattr(batch, "skipped", []):
            log.warning("predict: skipped unreadable image %s", name)
            self.outputs.skip(name)
        originals = getattr(batch, "originals", None) or [None] * len(prediction)
        for item, image in zip(prediction, originals):
            self.outputs.write(item, image)

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Finish the files and print the summary line with the results folder."""
        if self.outputs is not None:
            print(self.outputs.close(), flush=True)


class YOLOCLI(LightningCLI):
    """LightningCLI for :class:`YOLOModule` and :class:`YOLODataModule` with the project's defaults.

    Args:
        args: command-line arguments (``None``: ``sys.argv``); e.g. ``["fit", "--config", "x.yaml"]``.
        run: run the subcommand (``True``) or only instantiate the classes.
        **kwargs: passed on to ``LightningCLI``.
    """

    def __init__(self, args: Sequence[str] | dict[str, Any] | None = None, run: bool = True, **kwargs: Any) -> None:
        silence_known_noise()
        if not isinstance(args, dict):  # fit --ckpt_path <run>/checkpoints/last.ckpt: the run's own config
            given = sys.argv[1:] if args is None else list(args)
            resumed = resume_arguments(given)
            args = resumed if (args is not None or resumed != given) else None
        trainer_defaults = {
            "max_epochs": 100,
            "default_root_dir": "runs",
            "enable_model_summary": False,  # replaced by ModelSummaryPrinter (layers, parameters, GFLOPs)
            # save_dir None: the trainer's default_root_dir (filled in by before_instantiate_classes).
            "logger": {
                "class_path": "yolo11_lightning.training.run_folder.RunCSVLogger",
                "init_args": {"name": "yolo11"},
            },
            # Atomic, fsync'ed checkpoint writes; unreadable checkpoints name the previous good one.
            "plugins": [{"class_path": "yolo11_lightning.training.checkpoint.AtomicCheckpointIO"}],
        }
        trainer_defaults.update(kwargs.pop("trainer_defaults", {}))
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("parser_kwargs", {"default_env": False})
        kwargs.setdefault("parser_class", YOLOArgumentParser)
        # The recipe owns the optimizer and its schedule: no --optimizer/--lr_scheduler (see module docstring).
        kwargs.setdefault("auto_configure_optimizers", False)
        super().__init__(
            YOLOModule,
            YOLODataModule,
            args=args,
            run=run,
            trainer_defaults=trainer_defaults,
            seed_everything_default=0,
            **kwargs,
        )

    def before_instantiate_classes(self) -> None:
        """Put the logs where they belong and check that the chosen logger's package is installed.

        The default logger's ``save_dir`` follows ``--trainer.default_root_dir`` (absolute, so that
        a resumed run's checkpoint folder compares equal); ``fit --ckpt_path <run>/checkpoints/x.ckpt``
        continues in ``<run>``.
        """
        config = self.config.get(self.subcommand) if self.subcommand else self.config
        logger = config.trainer.logger
        init_args = getattr(logger, "init_args", None)
        if init_args is not None and hasattr(init_args, "save_dir"):
            if init_args.save_dir is None:
                init_args.save_dir = config.trainer.default_root_dir or "runs"
            init_args.save_dir = os.path.abspath(init_args.save_dir)
        ckpt_path = config.get("ckpt_path") if self.subcommand == "fit" else None
        run = run_folder_of(ckpt_path) if ckpt_path else None
        if run is not None and point_logger_at_run(logger, run):
            silence_resume_noise()
        if self.subcommand in ("validate", "test", "predict"):
            silence_evaluation_noise()

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """The trainer, with :class:`YOLOProgressBar` as its progress bar unless disabled or another is given."""
        trainer_config = self._get(self.config_init, "trainer", default={})
        callbacks = trainer_config.get("callbacks") or []
        callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
        wants_bar = trainer_config.get("enable_progress_bar") is not False
        if wants_bar and not any(isinstance(c, ProgressBar) for c in callbacks) and "callbacks" not in kwargs:
            kwargs["callbacks"] = [*callbacks, YOLOProgressBar()]
        return super().instantiate_trainer(**kwargs)

    def _parse_ckpt_path(self) -> None:
        """Not Lightning's rule (the checkpoint's hyperparameters replacing the command line).

        Here the checkpoint only gives *defaults* (see :meth:`parse_arguments`); the command line
        and ``--config`` files override them, and ``YOLOModule.on_load_checkpoint`` refuses, with a
        clear message, a checkpoint whose architecture differs from the model being built.
        """

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse, with the defaults of ``--ckpt_path`` (or ``predict --model.weights``) set first; then
        refuse (one line, exit code 2) a logger whose package is not installed."""
        argv = list(args) if isinstance(args, (list, tuple)) else sys.argv[1:] if args is None else None
        if argv:
            self._set_file_defaults(argv)
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        config = self.config.get(subcommand) if subcommand else self.config
        check_logger_installed(config.trainer.logger)

    def _set_file_defaults(self, argv: list[str]) -> None:
        subcommand = next((a for a in argv if not a.startswith("-")), None)
        parsers = getattr(self, "_subcommand_parsers", {})  # none with run=False
        if subcommand not in parsers:
            return
        ckpt_path, weights = option_value(argv, "--ckpt_path"), option_value(argv, "--model.weights")
        spec: ModelSpec | None = None
        if ckpt_path and Path(ckpt_path).is_file():
            try:
                spec = read_spec(ckpt_path)
            except ValueError:
                return  # unreadable: Lightning's loader reports it (naming the previous good checkpoint)
            require_training_checkpoint(spec)  # a weights file: one line pointing to --model.weights
        elif weights and subcommand == "predict" and Path(weights).is_file():
            spec = read_spec(weights)
        if spec is None or subcommand == "fit":
            return
        defaults: dict[str, Any] = {"data.imgsz": spec.imgsz}
        if spec.model_config is not None:
            defaults["model.model"] = spec.model_config
        data = _run_config_data(Path(ckpt_path)) if ckpt_path else None
        if data:
            defaults["data.data"] = data
        parsers[subcommand].set_defaults(defaults)
        name = (
            spec.model_config.get("yaml_file", "<dict>") if isinstance(spec.model_config, dict) else spec.model_config
        )
        print(
            f"{subcommand}: defaults from {spec.path}: model {name} ({spec.num_classes} classes), imgsz {spec.imgsz} "
            f"(from {spec.imgsz_source})" + (f", data {data}" if data else "") + "; explicit flags override them",
            flush=True,
        )

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
        parser.add_lightning_class_args(EarlyStopping, "early_stopping")
        parser.add_lightning_class_args(TimeBudget, "time_budget")
        parser.add_lightning_class_args(SaveOnSignal, "signals")
        parser.add_lightning_class_args(PredictionWriter, "prediction_writer")
        parser.add_lightning_class_args(FigureWriter, "figures")
        parser.add_lightning_class_args(ResultsCSV, "results_csv")
        parser.add_lightning_class_args(ModelSummaryPrinter, "summary")
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.names", "model.class_names", apply_on="instantiate")
        parser.link_arguments("data.batch_size", "model.batch_size", apply_on="instantiate")

    def after_instantiate_classes(self) -> None:
        """Resolve ``--data.batch_size -1`` (auto batch size) before anything runs."""
        super().after_instantiate_classes()
        datamodule = self.datamodule
        if getattr(datamodule, "batch_size", None) != AUTO_BATCH:
            return
        if not isinstance(self.trainer.accelerator, CUDAAccelerator):
            raise cpu_auto_batch_error()
        device = self.trainer.strategy.root_device
        network = self.model.model.to(device).train()
        probe = cuda_peak_memory_probe(network, self.model.loss_fn, datamodule.imgsz, device)
        total = torch.cuda.get_device_properties(device).total_memory
        batch = largest_fitting_batch(probe, total)
        network.to("cpu")
        torch.cuda.empty_cache()
        datamodule.set_batch_size(batch)
        self.model.hparams.batch_size = batch
        if self.trainer.is_global_zero:
            print(f"auto batch: {batch} images per batch fit {DEFAULT_FRACTION:.0%} of {total / 2**30:.1f} GiB")

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
        print(f"run folder (logs, checkpoints, figures): {run_directory(self.trainer)}", flush=True)


def _run_config_data(ckpt_path: Path) -> str | None:
    """``data.data`` of the run that wrote ``ckpt_path`` (``<run>/config.yaml``), if that file still exists."""
    for config_path in (ckpt_path.parent / "config.yaml", ckpt_path.parent.parent / "config.yaml"):
        if not config_path.is_file():
            continue
        try:
            config = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError):
            return None
        data = (config.get("data") or {}).get("data") if isinstance(config, dict) else None
        return str(data) if data and Path(str(data)).is_file() else None
    return None


def run_cli(args: Sequence[str] | None = None) -> YOLOCLI | None:
    """Run a command and return the CLI object (its ``trainer`` and ``model`` after the run).

    ``export`` is not a Lightning subcommand: it goes to :func:`yolo11_lightning.export.main`; nor is
    ``predict`` on an exported ``.onnx``/``.torchscript`` file: it goes to
    :func:`yolo11_lightning.predict_exported.main` (both return ``None``). Exceptions propagate;
    :func:`main` turns them into messages and exit codes.

    Args:
        args: command-line arguments (``None``: ``sys.argv``).
    """
    argv = list(sys.argv[1:] if args is None else args)
    if argv[:1] == ["export"]:
        from yolo11_lightning.export import main as export_main

        export_main(argv[1:])
        return None
    if argv[:1] == ["predict"] and is_exported_model(option_value(argv, "--ckpt_path")):
        from yolo11_lightning.predict_exported import main as predict_exported

        predict_exported(argv[1:])
        return None
    return YOLOCLI(args=args)


def main(args: Sequence[str] | None = None) -> int:
    """Entry point of ``train.py``, ``python -m yolo11_lightning`` and the ``yolo11-lightning`` command.

    Args:
        args: command-line arguments (``None``: ``sys.argv[1:]``).

    Returns:
        The process exit code (:class:`~yolo11_lightning.exit_codes.ExitCode`): 0 on success, 2 for a
        user error (at most 3 lines on stderr), 3 when training diverged, 1 for a bug (traceback).
    """
    _info_to_stdout()
    return run_with_exit_code(lambda: run_cli(None if args is None else list(args)))


def _info_to_stdout() -> None:
    """Send Lightning's information lines ("Seed set to 0", "GPU available: ...") to stdout.

    stderr is left to warnings and errors, so a user error is the only thing there (at most 3 lines).
    """
    for name in ("lightning.pytorch", "lightning.fabric"):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream in (sys.stderr, sys.__stderr__):
                handler.setStream(sys.stdout)
