"""StudyRecord: the callback a study adds to each run; it writes the run's ``result.json``.

The file appears only when ``fit`` finished, so its presence marks a finished run. Training time is
kept in the callback's checkpoint state, so a resumed run reports the time of all its parts.
"""

from __future__ import annotations

import copy
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer


class StudyRecord(Callback):
    """Writes ``{variant, seed, params, gflops, map50_95, map50, epochs, seconds, latency_ms}`` at the end of fit.

    Args:
        path: The JSON file to write.
        variant: Model config of the run (recorded as given).
        seed: Seed of the run.
        latency_runs: Timed forward passes of the EMA model (batch 1, fused, eval) for the latency;
            0 skips the measurement.
        gflops_imgsz: Image size of the GFLOPs figure (640, as in model summaries).
    """

    def __init__(self, path: str, variant: str, seed: int, latency_runs: int = 20, gflops_imgsz: int = 640) -> None:
        super().__init__()
        self.path = path
        self.variant = variant
        self.seed = seed
        self.latency_runs = latency_runs
        self.gflops_imgsz = gflops_imgsz
        self.seconds = 0.0  # training time of earlier parts of a resumed run
        self._started: float | None = None

    def _elapsed(self) -> float:
        return self.seconds + (time.monotonic() - self._started if self._started is not None else 0.0)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Start the clock (after a resume, :meth:`load_state_dict` has restored the earlier time)."""
        self._started = time.monotonic()

    def state_dict(self) -> dict[str, Any]:
        """The training time so far (saved in checkpoints)."""
        return {"seconds": self._elapsed()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the training time of the earlier parts of the run."""
        self.seconds = float(state_dict.get("seconds", 0.0))

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Collect the final figures and write the result file (global rank 0, atomically)."""
        seconds = self._elapsed()
        if not trainer.is_global_zero:
            return
        from yolo11_lightning.nn.summary import count_flops

        network = pl_module.model
        results = getattr(pl_module, "last_results", None)
        metrics = trainer.callback_metrics
        map50_95 = results.map50_95 if results is not None else float(metrics.get("val/mAP50-95", float("nan")))
        map50 = results.map50 if results is not None else float(metrics.get("val/mAP50", float("nan")))
        imgsz = getattr(trainer.datamodule, "imgsz", 640) if trainer.datamodule is not None else 640
        record = {
            "variant": self.variant,
            "seed": self.seed,
            "params": sum(p.numel() for p in network.parameters()),
            "gflops": count_flops(network, self.gflops_imgsz, getattr(network, "input_channels", 3)) / 1e9,
            "map50_95": float(map50_95),
            "map50": float(map50),
            "epochs": int(trainer.current_epoch),
            "seconds": round(seconds, 2),
            "latency_ms": self._latency_ms(pl_module, int(imgsz)),
            "latency_imgsz": int(imgsz),
            "device": str(pl_module.device),
        }
        path = Path(self.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(json.dumps(record, indent=2) + "\n")
        os.replace(temporary, path)

    @torch.inference_mode()
    def _latency_ms(self, pl_module: LightningModule, imgsz: int) -> float:
        """Median milliseconds of one fused eval forward pass of a batch-1 image."""
        if self.latency_runs <= 0:
            return float("nan")
        model = copy.deepcopy(getattr(pl_module, "eval_model", pl_module.model)).eval()
        if hasattr(model, "fuse"):
            model.fuse()
        image = torch.rand(1, getattr(model, "input_channels", 3), imgsz, imgsz, device=pl_module.device)
        synchronize = torch.cuda.synchronize if image.is_cuda else (lambda: None)
        for _ in range(3):
            model(image)
        times = []
        for _ in range(self.latency_runs):
            synchronize()
            start = time.perf_counter()
            model(image)
            synchronize()
            times.append((time.perf_counter() - start) * 1000)
        return round(statistics.median(times), 3)
