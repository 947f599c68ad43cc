"""YOLOModule's guarded numerics on tiny synthetic batches (no data set needed)."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch import Trainer
from robustness_helpers import SyntheticIndices, synthetic_collate
from torch.utils.data import DataLoader

from yolo11_lightning.training.module import NonFiniteTrainingError, YOLOModule


class _PoisonedLoss:
    """Wraps the real loss and returns NaN for the chosen calls."""

    def __init__(self, loss, poisoned: set[int]) -> None:
        self.loss, self.poisoned, self.calls = loss, poisoned, 0

    def __call__(self, preds, targets):
        total, components = self.loss(preds, targets)
        poisoned = self.calls in self.poisoned
        self.calls += 1
        return (total * float("nan"), components) if poisoned else (total, components)


def _fit(module: YOLOModule, batches: int) -> None:
    trainer = Trainer(
        accelerator="cpu", max_epochs=1, limit_train_batches=batches, limit_val_batches=0, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(module, DataLoader(SyntheticIndices(), batch_size=2, collate_fn=synthetic_collate))


def _module(**kwargs) -> YOLOModule:
    return YOLOModule("yolo11n.yaml", num_classes=2, batch_size=2, nominal_batch_size=2, warmup_epochs=0, **kwargs)


def test_nonfinite_loss_skips_the_step_and_is_counted() -> None:
    module = _module()
    module.loss_fn = _PoisonedLoss(module.loss_fn, poisoned={1, 2})
    before = {k: v.clone() for k, v in module.model.state_dict().items()}
    _fit(module, batches=5)
    assert module.nonfinite_skipped == 2 and module.nonfinite_consecutive == 0
    assert module.ema.updates == 3  # one EMA update per applied step only
    assert module.trainer.global_step == 5  # the optimizer was called 5 times, 2 of them without gradients
    weights = module.model.state_dict()
    assert all(torch.isfinite(v).all() for v in weights.values() if v.dtype.is_floating_point)
    assert all(torch.isfinite(v).all() for v in module.ema.state_dict().values() if v.dtype.is_floating_point)
    assert any(not torch.equal(before[k], weights[k]) for k in before)  # the good steps did train


def test_consecutive_nonfinite_steps_stop_the_run() -> None:
    module = _module(max_nonfinite_steps=3)
    module.loss_fn = _PoisonedLoss(module.loss_fn, poisoned=set(range(100)))
    with pytest.raises(NonFiniteTrainingError, match="3 consecutive optimizer steps"):
        _fit(module, batches=6)
    assert module.nonfinite_skipped == 3


@pytest.mark.parametrize(("channels_last", "expected"), [(None, True), (False, False), (True, True)])
def test_channels_last_default_is_resolved_for_the_cpu(channels_last: bool | None, expected: bool) -> None:
    """``channels_last=None`` (the default) runs channels-last on CPU: network, EMA copy and input."""
    module = _module() if channels_last is None else _module(channels_last=channels_last)
    seen: list[torch.Tensor] = []
    module.model.model[0].register_forward_hook(lambda layer, inputs, output: seen.append(inputs[0]))
    _fit(module, batches=1)
    assert module.hparams.channels_last is channels_last  # the stored option stays "auto"
    channels_last_format = torch.channels_last
    assert module.model.model[0].conv.weight.is_contiguous(memory_format=channels_last_format) is expected
    assert module.ema.module.model[0].conv.weight.is_contiguous(memory_format=channels_last_format) is expected
    assert seen[0].is_contiguous(memory_format=channels_last_format) is expected
    assert seen[0].is_contiguous() is not expected


@pytest.mark.parametrize(("cpu_malloc", "expected"), [(None, 1), (False, 0), (True, 1)])
def test_cpu_malloc_default_is_applied_for_the_cpu(monkeypatch, cpu_malloc: bool | None, expected: int) -> None:
    """``cpu_malloc=None`` (the default) keeps freed memory when the trainer runs on the CPU."""
    calls: list[bool] = []
    monkeypatch.setattr("yolo11_lightning.training.module.keep_freed_memory", lambda: calls.append(True))
    module = _module() if cpu_malloc is None else _module(cpu_malloc=cpu_malloc)
    _fit(module, batches=1)
    assert len(calls) == expected
    assert module.hparams.cpu_malloc is cpu_malloc  # the stored option stays "auto"


def test_evaluation_runs_a_batchnorm_folded_copy_of_the_ema() -> None:
    """Validation runs a fused copy of the EMA (same outputs); the EMA keeps its BatchNorm; the copy is dropped."""
    module = _module()
    images = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        expected = module.ema.module(images)[0]
    used: list[torch.nn.Module] = []
    evaluate = module._eval_network
    module._eval_network = lambda network, batch: (used.append(network), evaluate(network, batch))[1]
    trainer = Trainer(accelerator="cpu", limit_val_batches=2, logger=False, enable_progress_bar=False,
                      enable_model_summary=False)  # fmt: skip
    trainer.validate(module, DataLoader(SyntheticIndices(), batch_size=2, collate_fn=synthetic_collate), verbose=False)
    assert len(used) == 2 and used[0] is used[1] and used[0] is not module.ema.module
    assert not any(isinstance(layer, torch.nn.BatchNorm2d) for layer in used[0].modules())
    assert sum(isinstance(layer, torch.nn.BatchNorm2d) for layer in module.ema.module.modules()) > 50
    with torch.no_grad():
        torch.testing.assert_close(used[0](images.contiguous(memory_format=torch.channels_last))[0], expected,
                                   rtol=1e-4, atol=2e-3)  # fmt: skip
    assert module.eval_model is module.ema.module  # dropped at the end of the evaluation
