"""--model.freeze and --model.weights through the CLI: frozen layers stay bitwise unchanged (their
BatchNorm statistics keep updating), a variant starts from yolo11n weights and says what it took."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from unittest import mock

import pytest
import torch

from yolo11_lightning.nn.builder import build_model
from yolo11_lightning.training.cli import YOLOCLI
from yolo11_lightning.training.module import YOLOModule

DATA = Path(__file__).resolve().parents[2] / "data" / "shapes4" / "data.yaml"


def _cli(root: Path, *extra: str) -> YOLOCLI:
    args = [
        "--model.model", "yolo11n.yaml",
        "--model.optimizer", "AdamW",
        "--model.lr0", "0.01",
        "--model.warmup_epochs", "0",
        "--model.nominal_batch_size", "4",
        "--data.data", str(DATA),
        "--data.imgsz", "64",
        "--data.batch_size", "4",
        "--data.workers", "0",
        "--data.scan_cache", "false",
        "--data.pin_memory", "false",
        "--trainer.accelerator", "cpu",
        "--trainer.max_epochs", "1",
        "--trainer.limit_train_batches", "3",
        "--trainer.limit_val_batches", "0",
        "--trainer.num_sanity_val_steps", "0",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--trainer.logger", "false",
        "--trainer.default_root_dir", str(root),
        *extra,
    ]  # fmt: skip
    with mock.patch.object(sys, "argv", ["train.py"]):
        return YOLOCLI(args=args, run=False)


@pytest.mark.slow
def test_freeze_keeps_the_first_layers_bitwise(tmp_path: Path) -> None:
    cli = _cli(tmp_path, "--model.freeze", "10")
    network = cli.model.model
    before = {k: v.clone() for k, v in network.state_dict().items()}
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    after = network.state_dict()
    parameters = {name for name, _ in network.named_parameters()}
    for key in parameters:
        layer = int(key.split(".")[1])
        if layer < 10:
            assert torch.equal(before[key], after[key]), key
            assert not dict(network.named_parameters())[key].requires_grad
    trainable = [k for k in parameters if int(k.split(".")[1]) >= 10 and "dfl" not in k]
    assert all(not torch.equal(before[k], after[k]) for k in trainable if k.endswith("conv.weight"))
    # BatchNorm running statistics of the frozen layers keep updating (as in the reference).
    assert not torch.equal(before["model.0.bn.running_mean"], after["model.0.bn.running_mean"])
    assert int(after["model.0.bn.num_batches_tracked"]) == 3


def test_freeze_list_and_errors() -> None:
    module = YOLOModule("yolo11n.yaml", num_classes=4, freeze=[0, 2, 23])
    frozen = {int(n.split(".")[1]) for n, p in module.model.named_parameters() if not p.requires_grad}
    assert frozen == {0, 2, 23}  # 23 is the head (its DFL conv is always frozen)
    with pytest.raises(ValueError, match=r"layer indices \[30\] outside the model's 24 layers"):
        YOLOModule("yolo11n.yaml", num_classes=4, freeze=[30])
    with pytest.raises(ValueError, match="freeze=25: the model has 24 layers"):
        YOLOModule("yolo11n.yaml", num_classes=4, freeze=25)


def test_weights_option_transfers_into_a_variant_and_reports(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "yolo11n_state.pt"
    source = build_model("yolo11n.yaml", nc=4).state_dict()
    torch.save(source, path)
    with caplog.at_level(logging.INFO):  # rank_zero_info: Lightning's console logger
        cli = _cli(tmp_path, "--model.model", "yolo11n-mlla.yaml", "--model.weights", str(path))
    text = caplog.text
    assert "transferred 499/511 tensors, 12 initialised" in text
    assert "not transferred: model.17 (MLLAttention), no counterpart in the file: 4 tensors" in text
    state = cli.model.model.state_dict()
    assert torch.equal(state["model.26.cv3.2.2.weight"], source["model.23.cv3.2.2.weight"])
