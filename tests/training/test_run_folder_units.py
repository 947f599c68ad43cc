"""The run-folder helpers: recognising a run's checkpoint, the resume arguments, the appending CSV logger."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from yolo11_lightning.training.run_folder import (
    RunCSVLogger,
    point_logger_at_run,
    resume_arguments,
    run_folder_of,
)


def _run(tmp_path: Path) -> Path:
    run = tmp_path / "R" / "yolo11" / "version_3"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("trainer: {}\n")
    return run


def test_resume_arguments_add_the_runs_config(tmp_path: Path) -> None:
    run = _run(tmp_path)
    ckpt = str(run / "checkpoints" / "last.ckpt")
    assert run_folder_of(ckpt) == run
    assert resume_arguments(["fit", "--ckpt_path", ckpt, "--trainer.max_epochs", "5"]) == [
        "fit", "--config", str(run / "config.yaml"), "--ckpt_path", ckpt, "--trainer.max_epochs", "5",
    ]  # fmt: skip
    assert resume_arguments(["fit", f"--ckpt_path={ckpt}"])[1:3] == ["--config", str(run / "config.yaml")]
    # An explicit config, another command or a checkpoint outside a run folder: unchanged.
    for args in (["fit", "--config", "x.yaml", "--ckpt_path", ckpt], ["validate", "--ckpt_path", ckpt],
                 ["fit", "--ckpt_path", str(tmp_path / "loose.ckpt")]):  # fmt: skip
        assert resume_arguments(args) == args
    (run / "config.yaml").unlink()
    assert run_folder_of(ckpt) is None


def test_logger_points_at_the_run(tmp_path: Path) -> None:
    run = _run(tmp_path)
    config = SimpleNamespace(init_args=SimpleNamespace(save_dir="/elsewhere", name="yolo11", version=None))
    assert point_logger_at_run(config, run)
    logger = RunCSVLogger(config.init_args.save_dir, config.init_args.name, config.init_args.version)
    assert Path(logger.log_dir) == run.resolve()
    # A run folder whose parent is not the logger's name: the name is dropped, the folder kept.
    config = SimpleNamespace(init_args=SimpleNamespace(save_dir="/elsewhere", name="other", version=None))
    assert point_logger_at_run(config, run)
    assert (
        Path(RunCSVLogger(config.init_args.save_dir, config.init_args.name, config.init_args.version).log_dir)
        == run.resolve()
    )
    assert not point_logger_at_run(SimpleNamespace(init_args=SimpleNamespace(project="x")), run)


def test_csv_logger_appends_to_an_existing_metrics_file(tmp_path: Path) -> None:
    first = RunCSVLogger(str(tmp_path), name="n", version=0)
    first.log_metrics({"a": 1.0}, step=0)
    first.save()
    second = RunCSVLogger(str(tmp_path), name="n", version=0)
    second.log_metrics({"a": 2.0, "b": 3.0}, step=1)
    second.save()
    lines = (tmp_path / "n" / "version_0" / "metrics.csv").read_text().splitlines()
    assert lines == ["a,b,step", "1.0,,0", "2.0,3.0,1"]
