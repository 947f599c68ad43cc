"""End to end on CPU with the shipped dataset: fit -> best/last checkpoints -> validate -> test -> predict."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from unittest import mock

import pytest
import torch
from PIL import Image

from yolo11_lightning.training.cli import YOLOCLI
from yolo11_lightning.training.optim import settings_at, warmup_iterations

pytestmark = pytest.mark.slow

DATA = Path(__file__).resolve().parents[2] / "data" / "shapes4" / "data.yaml"
IMGSZ = 160
EPOCHS, TRAIN_BATCHES, BATCH = 3, 2, 8


def _run(args: list[str]) -> YOLOCLI:
    """Run the CLI in-process, as ``python train.py <args>`` would."""
    with mock.patch.object(sys, "argv", ["train.py"]):
        return YOLOCLI(args=args)


def _common(root: Path) -> list[str]:
    return [
        "--model.model", "yolo11n.yaml",
        "--data.data", str(DATA),
        "--data.imgsz", str(IMGSZ),
        "--data.batch_size", str(BATCH),
        "--data.workers", "0",
        "--data.scan_cache", "false",
        "--data.pin_memory", "false",
        "--trainer.accelerator", "cpu",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--trainer.logger.init_args.save_dir", str(root),
        "--trainer.default_root_dir", str(root),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("run")
    cli = _run(
        [
            "fit",
            *_common(root),
            "--trainer.max_epochs",
            str(EPOCHS),
            "--trainer.limit_train_batches",
            str(TRAIN_BATCHES),
            "--trainer.num_sanity_val_steps",
            "0",
            "--model.nominal_batch_size",
            "16",
            "--model.min_warmup_iterations",
            "3",
            "--model.warmup_epochs",
            "1",
            "--data.close_mosaic",
            "1",
        ]  # fmt: skip
    )
    log_dir = Path(cli.trainer.log_dir)
    with (log_dir / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    val_rows = [r for r in rows if r.get("val/mAP50-95")]
    return {"root": root, "cli": cli, "log_dir": log_dir, "val_rows": val_rows}


def test_fit_writes_best_and_true_last(fitted: dict) -> None:
    checkpoints = fitted["log_dir"] / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["best.ckpt", "last.ckpt"]
    last = torch.load(checkpoints / "last.ckpt", map_location="cpu", weights_only=False)
    best = torch.load(checkpoints / "best.ckpt", map_location="cpu", weights_only=False)
    assert last["epoch"] == EPOCHS - 1  # the final epoch, not the best one
    # The recipe's optimizer steps: accumulate ramps 1 -> 16/8 over the warmup.
    warmup = warmup_iterations(1.0, TRAIN_BATCHES, 3)
    steps, last_step = 0, -1
    for iteration in range(EPOCHS * TRAIN_BATCHES):
        accumulate = settings_at(
            iteration,
            iteration // TRAIN_BATCHES,
            epochs=EPOCHS,
            warmup_iters=warmup,
            lr0=0.01,
            lrf=0.01,
            schedule="linear",
            momentum=0.937,
            warmup_momentum=0.8,
            warmup_bias_lr=0.1,
            batch_size=BATCH,
            nominal_batch_size=16,
        ).accumulate
        if iteration - last_step >= accumulate:
            steps, last_step = steps + 1, iteration
    assert last["global_step"] == steps
    assert last["ema_updates"] == steps
    assert set(last["ema_state_dict"]) == {k[len("model.") :] for k in last["state_dict"] if k.startswith("model.")}
    assert last["model_config"]["nc"] == 4 and last["class_names"][3] == "ball"
    # Metrics were logged every epoch and best.ckpt holds the best one.
    maps = [float(r["val/mAP50-95"]) for r in fitted["val_rows"]]
    assert len(maps) == EPOCHS
    assert all(float(r["val/box_loss"]) > 0 for r in fitted["val_rows"])
    assert maps[best["epoch"]] == max(maps)


def test_validate_reproduces_logged_metrics(fitted: dict) -> None:
    last_path = fitted["log_dir"] / "checkpoints" / "last.ckpt"
    cli = _run(["validate", *_common(fitted["root"]), "--ckpt_path", str(last_path)])
    metrics = cli.trainer.callback_metrics
    logged = fitted["val_rows"][-1]
    # The EMA weights are evaluated: the loss (sensitive to every weight) and mAP match the last epoch.
    for key in ("val/mAP50-95", "val/mAP50", "val/precision", "val/recall", "val/box_loss", "val/cls_loss"):
        assert float(metrics[key]) == pytest.approx(float(logged[key]), rel=1e-5, abs=1e-7), key


def test_test_subcommand_evaluates_the_test_split(fitted: dict, tmp_path: Path) -> None:
    # The shipped data set has no test split: declare its validation images as the test split.
    shapes = DATA.parent
    data_yaml = tmp_path / "data.yaml"
    data_yaml.write_text(
        f"path: {shapes}\ntrain: images/train\nval: images/val\ntest: images/val\n"
        "names: {0: present, 1: logo, 2: portrait, 3: ball}\n"
    )
    args = [a if a != str(DATA) else str(data_yaml) for a in _common(fitted["root"])]
    last_path = fitted["log_dir"] / "checkpoints" / "last.ckpt"
    cli = _run(["test", *args, "--ckpt_path", str(last_path)])
    metrics = cli.trainer.callback_metrics
    logged = fitted["val_rows"][-1]
    for stage_key in ("mAP50-95", "mAP50", "precision", "recall"):
        assert float(metrics[f"test/{stage_key}"]) == pytest.approx(
            float(logged[f"val/{stage_key}"]), rel=1e-5, abs=1e-7
        )


class _OneKnownBox(torch.nn.Module):
    """Stands in for the trained network in predict: one box per image, at a known place of the input.

    The box (40 x 30 input pixels, class 2, score 0.9) sits just off the centre of the network
    input, inside the letterboxed image, so its mapping back to original pixels is not clipped.
    """

    @staticmethod
    def input_box(height: int, width: int) -> torch.Tensor:
        """The box in input pixels, ``xyxy``."""
        cx, cy = width / 2 + 10, height / 2 - 5
        return torch.tensor([cx - 20, cy - 15, cx + 20, cy + 15])

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        height, width = images.shape[2:]
        x1, y1, x2, y2 = self.input_box(height, width).tolist()
        decoded = torch.zeros(images.shape[0], 4 + 4, 1)
        decoded[:, :4, 0] = torch.tensor([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1])
        decoded[:, 4 + 2, 0] = 0.9
        return decoded, []


def _predict(fitted: dict, monkeypatch: pytest.MonkeyPatch) -> tuple[list[dict], dict[int, tuple[int, int]]]:
    """Predict with the known-box network; the records and each image's network-input ``(height, width)``."""
    from yolo11_lightning.training.module import YOLOModule

    network = _OneKnownBox()
    input_shapes: dict[int, tuple[int, int]] = {}
    real_step = YOLOModule.predict_step

    def recording_step(self: YOLOModule, batch, batch_idx: int, dataloader_idx: int = 0):  # type: ignore[no-untyped-def]
        for image_id in batch.image_ids.tolist():
            input_shapes[image_id] = tuple(batch.images.shape[2:])
        return real_step(self, batch, batch_idx, dataloader_idx)

    monkeypatch.setattr(YOLOModule, "eval_model", property(lambda self: network))
    monkeypatch.setattr(YOLOModule, "predict_step", recording_step)
    last_path = fitted["log_dir"] / "checkpoints" / "last.ckpt"
    # Batches of 4 are letterboxed to imgsz square (batch size 1 pads minimally): large pads to get right.
    cli = _run(["predict", *_common(fitted["root"]), "--ckpt_path", str(last_path), "--model.predict_conf", "0.0001",
                "--data.predict_batch_size", "4"])  # fmt: skip
    path = Path(cli.trainer.log_dir) / "predictions.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()], input_shapes


def _check_predictions_in_original_pixels(records: list[dict], input_shapes: dict[int, tuple[int, int]]) -> None:
    """Each written box is the known input box mapped back with a gain and pad computed here.

    The letterbox of each image is re-derived from its original and input sizes (the long side
    resized to ``imgsz``, the rest of the rectangular batch shape padded evenly on both sides),
    independently of the ``ratio_pad`` the data carries; the tolerance (3 original pixels, about
    1 input pixel) covers the resize's rounding.
    """
    assert len(records) == 17 and sorted(r["image_id"] for r in records) == list(range(17))
    padded = 0
    for record in records:
        width, height = Image.open(record["path"]).size  # original pixels, 300-500 px
        input_h, input_w = input_shapes[record["image_id"]]
        gain = IMGSZ / max(height, width)  # long side to imgsz; the input (rect batch) can be larger
        pad = torch.tensor([(input_w - width * gain) / 2, (input_h - height * gain) / 2])
        padded += bool((pad > 4).any())
        expected = (_OneKnownBox.input_box(input_h, input_w) - pad.repeat(2)) / gain
        assert record["class_ids"] == [2] and record["scores"] == [0.9]
        torch.testing.assert_close(torch.tensor(record["boxes"][0]), expected, rtol=0, atol=3.0)
    assert padded >= 10  # most of the validation images are letterboxed with a visible pad


def test_predict_writes_boxes_in_original_pixels(fitted: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    _check_predictions_in_original_pixels(*_predict(fitted, monkeypatch))


def test_predict_with_a_wrong_letterbox_mapping_is_caught(fitted: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above fails when predict maps boxes back without the letterbox padding."""
    import yolo11_lightning.inference.postprocess as postprocess

    real = postprocess.scale_boxes_to_original
    monkeypatch.setattr(
        postprocess,
        "scale_boxes_to_original",
        lambda boxes, ratio_pad, shape: real(boxes, ratio_pad * torch.tensor([1.0, 1.0, 0.0, 0.0]), shape),
    )
    records, input_shapes = _predict(fitted, monkeypatch)
    with pytest.raises(AssertionError):
        _check_predictions_in_original_pixels(records, input_shapes)


def test_checkpoint_of_another_model_fails_clearly(fitted: dict) -> None:
    last_path = fitted["log_dir"] / "checkpoints" / "last.ckpt"
    args = [a if a != "yolo11n.yaml" else "yolo11s.yaml" for a in _common(fitted["root"])]
    with pytest.raises(ValueError, match="checkpoint does not match the model.*yolo11n.yaml"):
        _run(["validate", *args, "--ckpt_path", str(last_path)])
