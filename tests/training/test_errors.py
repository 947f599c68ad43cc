"""User mistakes end in at most 3 lines on stderr and exit code 2; bugs keep their traceback (exit 1).

Most cases run ``main`` in-process (fast); one runs ``python -m yolo11_lightning`` in a subprocess to
check the real stderr of the console entry point.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from yolo11_lightning.exit_codes import DEBUG_ENV, ExitCode
from yolo11_lightning.training import errors
from yolo11_lightning.training.cli import main
from yolo11_lightning.training.errors import UserError, report_error

ROOT = Path(__file__).resolve().parents[2]
SHAPES4 = ROOT / "data" / "shapes4"
FAST = [
    "--data.imgsz", "64", "--data.batch_size", "2", "--data.workers", "0", "--data.scan_cache", "false",
    "--trainer.accelerator", "cpu", "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false",
]  # fmt: skip


def _stderr_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def _expect_user_error(capsys: pytest.CaptureFixture[str], args: list[str], *fragments: str) -> list[str]:
    """Run ``main(args)``: exit code 2, at most 3 stderr lines, the first naming every fragment."""
    code = main(args)
    lines = _stderr_lines(capsys)
    assert code == ExitCode.USER_ERROR, lines
    assert 1 <= len(lines) <= 3, lines
    assert lines[0].startswith("error: "), lines
    for fragment in fragments:
        assert fragment in "\n".join(lines), (fragment, lines)
    assert lines[-1] == f"(set {DEBUG_ENV}=1 for the traceback)"
    return lines


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    monkeypatch.setattr(sys, "argv", ["train.py"])  # the arguments come from main(args), not pytest's


def test_wrong_data_path(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    _expect_user_error(capsys, ["validate", "--data.data", str(tmp_path / "nope.yaml"), *FAST], "data.yaml not found")


def test_bad_data_yaml(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = tmp_path / "data.yaml"
    data.write_text("train: images/train\nnames: [a, b\nval: x\n")  # an unclosed list
    _expect_user_error(capsys, ["validate", "--data.data", str(data), *FAST], str(data))


def test_class_id_out_of_range(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    dataset = tmp_path / "ds"
    shutil.copytree(SHAPES4 / "images" / "val", dataset / "images" / "val")
    shutil.copytree(SHAPES4 / "labels" / "val", dataset / "labels" / "val")
    label = sorted((dataset / "labels" / "val").glob("*.txt"))[0]
    label.write_text("7 0.5 0.5 0.2 0.2\n")
    (dataset / "data.yaml").write_text(f"path: {dataset}\nval: images/val\nnames: [a, b, c, d]\n")
    _expect_user_error(
        capsys, ["validate", "--data.data", str(dataset / "data.yaml"), *FAST], f"{label.name}:1", "class id 7"
    )


def test_checkpoint_of_another_model(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from yolo11_lightning.nn.builder import build_model
    from yolo11_lightning.training.checkpoint_state import architecture_of

    checkpoint = tmp_path / "other.ckpt"
    torch.save(
        {"state_dict": {}, "model_config": architecture_of(build_model("yolo11s.yaml", nc=4)),
         "pytorch-lightning_version": "2.6.6", "epoch": 0, "global_step": 0},
        checkpoint,
    )  # fmt: skip
    # The checkpoint gives the model config by default; an explicit other config is the mistake.
    args = ["validate", "--data.data", str(SHAPES4 / "data.yaml"), *FAST, "--ckpt_path", str(checkpoint),
            "--model.model", "yolo11n.yaml"]  # fmt: skip
    _expect_user_error(capsys, args, "checkpoint does not match the model", "yolo11s.yaml")


def test_misspelt_option_gets_the_close_spelling(capsys: pytest.CaptureFixture[str]) -> None:
    lines = _expect_user_error(
        capsys, ["fit", "--data.data", str(SHAPES4 / "data.yaml"), "--trainer.max_epohcs", "3"], "--trainer.max_epohcs"
    )
    assert lines[1] == "hint: did you mean: --trainer.max_epohcs -> --trainer.max_epochs"


def test_misspelt_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    lines = _expect_user_error(capsys, ["fitt"], "invalid choice: 'fitt'")
    assert lines[1] == "hint: did you mean: fit"


def test_wrongly_typed_option(capsys: pytest.CaptureFixture[str]) -> None:
    _expect_user_error(capsys, ["fit", "--data.data", "x.yaml", "--data.batch_size", "many"], "data.batch_size", "many")


def test_incompatible_options(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["validate", "--data.data", str(SHAPES4 / "data.yaml"), *FAST, "--data.imgsz", "100"]
    _expect_user_error(capsys, args, "imgsz=100 must be a multiple of stride=32")


@pytest.mark.parametrize("option", [["--optimizer", "Adam", "--optimizer.lr", "0.001"], ["--lr_scheduler", "StepLR"]])
def test_lightning_optimizer_options_are_refused(capsys: pytest.CaptureFixture[str], option: list[str]) -> None:
    """``--optimizer Adam --optimizer.lr 0.001`` would train at the recipe's LR: it is refused instead."""
    lines = _expect_user_error(
        capsys, ["fit", "--data.data", str(SHAPES4 / "data.yaml"), *option], "--optimizer and --lr_scheduler"
    )
    assert "--model.optimizer" in lines[1] and "--model.lr0" in lines[1]


def test_optimizer_in_a_config_file_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("optimizer:\n  class_path: torch.optim.Adam\n  init_args:\n    lr: 0.001\n")
    args = ["fit", "--config", str(config), "--data.data", str(SHAPES4 / "data.yaml")]
    _expect_user_error(capsys, args, "--optimizer and --lr_scheduler", "--model.lr0")


def test_fit_help_is_short_and_names_the_model_type(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fit", "--help"]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert 200 < len(lines) <= 600, len(lines)
    entry = text[text.index("  --model.model MODEL") :].split("\n  --", 1)[0]
    assert "str | dict[str, Any] | DetectionModel" in " ".join(entry.split())
    assert "torch.nn.Identity" not in text  # not every nn.Module subclass
    assert "--optimizer " not in text and "--lr_scheduler " not in text


def test_debug_variable_lets_the_traceback_through(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(DEBUG_ENV, "1")
    with pytest.raises(FileNotFoundError, match="data.yaml not found"):
        main(["validate", "--data.data", str(tmp_path / "nope.yaml"), *FAST])


def test_internal_errors_keep_their_traceback() -> None:
    stream = io.StringIO()
    try:
        raise KeyError("a bug")
    except KeyError as error:
        assert report_error(error, stream) == ExitCode.INTERNAL_ERROR
    assert "Traceback" in stream.getvalue() and "KeyError" in stream.getvalue()


def test_exit_code_table_is_extensible() -> None:
    class Diverged(RuntimeError):
        pass

    assert errors.exit_code_of(Diverged()) == ExitCode.INTERNAL_ERROR
    errors.register_exit_code(Diverged, ExitCode.DIVERGED)
    try:
        assert errors.exit_code_of(Diverged()) == ExitCode.DIVERGED
        from yolo11_lightning.training.module import NonFiniteTrainingError

        assert errors.exit_code_of(NonFiniteTrainingError("x")) == ExitCode.DIVERGED
        assert errors.exit_code_of(UserError("x")) == ExitCode.USER_ERROR
    finally:
        errors._EXIT_CODES.pop(Diverged)


def test_user_error_report_is_capped_at_three_lines() -> None:
    stream = io.StringIO()
    code = report_error(UserError("first line\nsecond\nthird\nfourth", hint="do this"), stream)
    lines = stream.getvalue().splitlines()
    assert code == ExitCode.USER_ERROR and len(lines) == 3
    assert lines[:2] == ["error: first line", "hint: do this"]


def test_a_report_without_the_cap_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cap test above fails when every message line is printed."""
    monkeypatch.setattr(errors, "short_message", lambda error: [f"error: {line}" for line in str(error).splitlines()])
    with pytest.raises(AssertionError):
        test_user_error_report_is_capped_at_three_lines()


def test_console_entry_point_in_a_subprocess(tmp_path: Path) -> None:
    """``python -m yolo11_lightning`` (what the ``yolo11-lightning`` script runs): real stderr and exit code."""
    env = {k: v for k, v in os.environ.items() if k != DEBUG_ENV}
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run(
        [sys.executable, "-m", "yolo11_lightning", "validate", "--data.data", str(tmp_path / "nope.yaml"), *FAST],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == ExitCode.USER_ERROR, result.stderr
    assert len(lines) <= 3 and lines[0] == f"error: data.yaml not found: {tmp_path / 'nope.yaml'}", lines
