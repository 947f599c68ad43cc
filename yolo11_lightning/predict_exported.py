"""``train.py predict --ckpt_path model.onnx --data.source X``: check a deployed model with the same command.

An exported ``.onnx`` (run by onnxruntime) or ``.torchscript`` file has no Lightning checkpoint to
restore, so ``predict`` on such a file is handled here instead of by the LightningCLI: the same
pre-processing (decode, letterbox with minimal stride padding), the same post-processing (NMS,
boxes back to original pixels) and the same writers (annotated images, YOLO txt, COCO JSON, JSONL,
crops) as ``predict`` on a checkpoint, through :class:`~yolo11_lightning.inference.detector.Detector`.
The options keep the names of the checkpoint ``predict``; the run folder is
``<default_root_dir>/exported/version_N``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from yolo11_lightning.exit_codes import ExitCode
from yolo11_lightning.inference.exported import EXPORTED_SUFFIXES
from yolo11_lightning.inference.writers import OutputOptions


def is_exported_model(path: str | None) -> bool:
    """Whether ``path`` names an exported model file (``.onnx``, ``.torchscript``)."""
    return bool(path) and Path(str(path)).suffix.lower() in EXPORTED_SUFFIXES


def _flag(value: str) -> bool:
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def build_parser() -> argparse.ArgumentParser:
    """The options of ``predict`` on an exported model (a subset of the checkpoint ``predict``'s)."""
    parser = argparse.ArgumentParser(prog="train.py predict", description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt_path", required=True, help="the exported .onnx or .torchscript file")
    parser.add_argument("--data.source", dest="source", required=True, help="image, folder, glob, .txt list or video")
    parser.add_argument("--data.imgsz", dest="imgsz", type=int, default=None, help="default: the file's metadata")
    parser.add_argument("--data.vid_stride", dest="vid_stride", type=int, default=1)
    parser.add_argument("--model.predict_conf", dest="conf", type=float, default=0.25)
    parser.add_argument("--model.predict_iou", dest="iou", type=float, default=0.7)
    parser.add_argument("--model.max_det", dest="max_det", type=int, default=300)
    parser.add_argument("--model.predict_classes", dest="classes", type=int, nargs="+", default=None)
    parser.add_argument("--model.predict_agnostic", dest="agnostic", type=_flag, default=False)
    parser.add_argument("--trainer.default_root_dir", dest="root", default="runs")
    for name, default in vars(OutputOptions()).items():
        if name.startswith("save_"):
            parser.add_argument(f"--prediction_writer.{name}", dest=name, type=_flag, default=default)
    return parser


def _next_version(folder: Path) -> Path:
    versions = [int(p.name.split("_")[1]) for p in folder.glob("version_*") if p.name.split("_")[1].isdigit()]
    return folder / f"version_{max(versions, default=-1) + 1}"


def main(args: Sequence[str]) -> Path:
    """Run ``predict`` on an exported model; print the summary line and return the run folder.

    Args:
        args: the arguments after ``predict``.

    Raises:
        SystemExit: with :attr:`ExitCode.USER_ERROR` and one line on stderr for bad options.
    """
    parser = build_parser()
    parser.error = lambda message: _fail(message)  # type: ignore[method-assign]
    options = parser.parse_args(list(args))
    if not Path(options.ckpt_path).is_file():
        _fail(f"exported model not found: {options.ckpt_path}")
    from yolo11_lightning.inference.detector import Detector

    detector = Detector.from_path(
        options.ckpt_path,
        conf=options.conf,
        iou=options.iou,
        max_det=options.max_det,
        classes=options.classes,
        agnostic=options.agnostic,
        **({"imgsz": options.imgsz} if options.imgsz else {}),
    )
    outputs = OutputOptions(**{k: v for k, v in vars(options).items() if k.startswith("save_")})
    run_dir = _next_version(Path(options.root) / "exported")
    detector.save(options.source, run_dir, outputs, vid_stride=options.vid_stride)
    print(detector.summary, flush=True)
    return run_dir


def _fail(message: str) -> None:
    print(f"predict: error: {message}", file=sys.stderr)
    raise SystemExit(int(ExitCode.USER_ERROR))
