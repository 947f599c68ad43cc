"""Exact resume: what Lightning's ``fit(ckpt_path=...)`` does not restore by itself.

Lightning restores weights, optimizer, schedulers, the precision plugin (GradScaler), loop counters,
the data module's and callbacks' ``state_dict``. Three things are left, and :class:`ExactResume`
covers them:

* **Random number generators.** Lightning saves none, and the points where the parent RNG is used
  differ between a resumed and an uninterrupted run (a resumed run builds the training iterator
  earlier, runs the sanity check, and every ``iter(DataLoader)`` draws a worker base seed from the
  global torch generator). Restoring the states saved at checkpoint time therefore does not give
  identical streams. Instead the global generators (torch CPU and CUDA, NumPy's legacy global,
  Python's ``random``) are re-seeded before every training batch from
  ``(seed, epoch, batch index, rank)``: whatever ran in between, the randomness a training step
  sees is a function of its position only. The seed travels in the checkpoint (the checkpoint's
  wins on resume); the raw generator states are saved too and restored on load, for code that runs
  before the first batch.
* **Gradients accumulated but not yet applied.** With gradient accumulation a checkpoint taken
  between two optimizer steps would lose them; they are saved (only when present) and put back.
* **Intra-op threads.** Float sums depend on the number of threads; ``num_threads`` pins it.

The data side (``YOLODataModule``) makes the training order exact: its sampler takes the epoch and
the number of batches already trained in it from the loops' progress when the loader is built
(Lightning builds the first iterator before it calls ``set_epoch``, and replays an epoch's first
batches on a mid-epoch resume), and every augmentation is seeded from ``(seed, epoch, index)``, so
worker processes never depend on the parent RNG.
"""

from __future__ import annotations

import logging
import os
import random
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer

log = logging.getLogger(__name__)

PENDING_GRADIENTS_KEY = "pending_gradients"


def step_seed(seed: int, epoch: int, batch_index: int, rank: int = 0) -> int:
    """A 32-bit seed for one training batch, well mixed from its position.

    Args:
        seed: the run's base seed.
        epoch: epoch index.
        batch_index: batch index within the epoch.
        rank: global process rank (different ranks get different streams).

    Returns:
        An integer in ``[0, 2**32)``.
    """
    return int(np.random.SeedSequence([seed, epoch, batch_index, rank]).generate_state(1)[0])


def seed_all(seed: int) -> None:
    """Seed torch (CPU and every CUDA device), NumPy's global generator and Python's ``random``."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def capture_rng_states() -> dict[str, Any]:
    """The current states of the global generators (torch CPU/CUDA, NumPy, Python)."""
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        # Plain types and tensors only, so that ``torch.load(weights_only=True)`` accepts the checkpoint.
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    """Put back states returned by :func:`capture_rng_states` (CUDA only with the same device count)."""
    if "torch" in states:
        torch.set_rng_state(states["torch"])
    if "numpy" in states:
        saved = states["numpy"]
        keys = saved["keys"].numpy().astype(np.uint32)
        np.random.set_state((saved["kind"], keys, saved["position"], saved["has_gauss"], saved["cached_gaussian"]))
    if "python" in states:
        random.setstate(states["python"])
    cuda = states.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


class ExactResume(Callback):
    """Makes ``fit --ckpt_path`` continue as if the run had never stopped (see the module docstring).

    Args:
        seed: base seed of the per-batch generator streams; ``None`` takes the seed given to
            ``seed_everything`` (``PL_GLOBAL_SEED``), else 0. A resumed run uses the checkpoint's.
        num_threads: intra-op threads for the training process (``torch.set_num_threads``); float
            sums differ between thread counts, so pin it when runs must match bit for bit.
            ``None`` leaves torch's default.
    """

    def __init__(self, seed: int | None = None, num_threads: int | None = None) -> None:
        self.seed = seed
        self.num_threads = num_threads
        self._active_seed: int | None = None
        self._pending_gradients: dict[str, torch.Tensor] | None = None

    @property
    def active_seed(self) -> int:
        """The base seed in use (resolved at setup, replaced by a checkpoint's on resume)."""
        if self._active_seed is None:
            self._active_seed = self.seed if self.seed is not None else int(os.environ.get("PL_GLOBAL_SEED", 0))
        return self._active_seed

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Pin the intra-op thread count and resolve the seed."""
        if self.num_threads is not None:
            torch.set_num_threads(self.num_threads)
        _ = self.active_seed

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        """Re-seed the global generators from the batch's position."""
        seed_all(step_seed(self.active_seed, trainer.current_epoch, batch_idx, trainer.global_rank))

    def state_dict(self) -> dict[str, Any]:
        """The base seed and the generator states at save time."""
        return {"seed": self.active_seed, "rng": capture_rng_states()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Adopt the checkpoint's seed and restore the generator states."""
        saved = int(state_dict["seed"])
        if self._active_seed is not None and saved != self._active_seed:
            log.warning("Resuming with the checkpoint's seed %d instead of %d.", saved, self._active_seed)
        self._active_seed = saved
        restore_rng_states(state_dict.get("rng", {}))

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        """Save gradients accumulated since the last optimizer step, if any."""
        pending = {name: p.grad.detach().clone() for name, p in pl_module.named_parameters() if p.grad is not None}
        if pending:
            checkpoint[PENDING_GRADIENTS_KEY] = pending

    def on_load_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        """Keep accumulated gradients saved with the checkpoint until training starts."""
        pending = checkpoint.get(PENDING_GRADIENTS_KEY)
        self._pending_gradients = dict(pending) if pending else None
        if pending:
            unknown = sorted(set(pending) - {name for name, _ in pl_module.named_parameters()})
            if unknown:
                raise KeyError(f"checkpoint has pending gradients for unknown parameters: {unknown[:5]}")

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Put back the saved accumulated gradients (the trainer zeroes gradients after restoring)."""
        pending, self._pending_gradients = self._pending_gradients, None
        if not pending:
            return
        for name, parameter in pl_module.named_parameters():
            if name in pending:
                parameter.grad = pending[name].to(device=parameter.device, dtype=parameter.dtype)
