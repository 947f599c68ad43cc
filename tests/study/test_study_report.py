"""study.csv, study.md and study.png from fixed results; run planning and resume commands."""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import pytest

from yolo11_lightning.study.report import summarise, write_reports
from yolo11_lightning.study.runner import execute, plan_runs, run_command

ROWS = [
    {"variant": "yolo11n.yaml", "seed": s, "params": 2590620, "gflops": 6.375, "map50_95": m, "map50": m + 0.2,
     "epochs": 30, "seconds": 100.0 + s, "latency_ms": 10.0 + s, "latency_imgsz": 320, "device": "cpu"}
    for s, m in zip((0, 1, 2), (0.50, 0.52, 0.54))
] + [
    {"variant": "runs/yolo11n-mlla.yaml", "seed": s, "params": 2772123, "gflops": 7.1, "map50_95": m, "map50": m + 0.2,
     "epochs": 30, "seconds": 120.0, "latency_ms": 14.0, "latency_imgsz": 320, "device": "cpu"}
    for s, m in zip((2, 0, 1), (0.61, 0.55, 0.58))
]  # fmt: skip


def test_reports_from_fixed_results(tmp_path: Path) -> None:
    summaries = write_reports(ROWS, ["yolo11n.yaml", "runs/yolo11n-mlla.yaml"], tmp_path)
    assert [s.label for s in summaries] == ["yolo11n", "yolo11n-mlla"]
    assert summaries[1].seeds == [0, 1, 2] and summaries[1].map50_95 == [0.55, 0.58, 0.61]
    assert summaries[0].latency_ms == 11.0  # median over the seeds
    with (tmp_path / "study.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == 6
    assert {"variant", "seed", "params", "gflops", "map50_95", "map50", "epochs", "seconds"} <= set(table[0])
    assert table[3]["variant"] == "runs/yolo11n-mlla.yaml" and float(table[3]["map50_95"]) == 0.61
    text = (tmp_path / "study.md").read_text()
    # Hand-computed in tests/study/test_study_stats.py: +6.00 points, CI [-0.13, +12.13], p 0.053.
    assert "| yolo11n-mlla | 3 | 58.00 ± 3.00 | +6.00 [-0.13, +12.13] | 0.053 | 78.00 ± 3.00 |" in text
    assert "| yolo11n | 3 | 52.00 ± 2.00 | (reference) |" in text
    assert "2,772,123 | 7.1 | 14.0 |" in text
    assert (tmp_path / "study.png").stat().st_size > 10_000


def test_summaries_skip_variants_without_results() -> None:
    summaries = summarise(ROWS[:3], ["yolo11n.yaml", "yolo11n-se.yaml"])
    assert [s.label for s in summaries] == ["yolo11n"]


def test_plan_and_commands(tmp_path: Path) -> None:
    runs = plan_runs(["yolo11n.yaml", "cfg/yolo11n-mlla.yaml"], [0, 1], tmp_path)
    assert [(r.folder.relative_to(tmp_path).as_posix(), r.seed) for r in runs] == [
        ("yolo11n/seed0", 0), ("yolo11n/seed1", 1), ("yolo11n-mlla/seed0", 0), ("yolo11n-mlla/seed1", 1),
    ]  # fmt: skip
    command = run_command(runs[2], "configs/quickstart.yaml", ["--trainer.max_epochs", "1"])
    assert command[command.index("--model.model") + 1] == "cfg/yolo11n-mlla.yaml"
    assert command[command.index("--seed_everything") + 1] == "0"
    assert "--ckpt_path" not in command and "--trainer.max_epochs" in command
    record = json.loads(command[-1].split("+=", 1)[1])
    assert record["init_args"]["path"] == str(runs[2].result_file)
    runs[2].last_checkpoint.parent.mkdir(parents=True)
    runs[2].last_checkpoint.write_bytes(b"")
    resumed = run_command(runs[2], None, [])
    assert resumed[-2:] == ["--ckpt_path", str(runs[2].last_checkpoint)] and "--config" not in resumed
    with pytest.raises(ValueError, match="distinct file names"):
        plan_runs(["a/yolo11n.yaml", "b/yolo11n.yaml"], [0], tmp_path)
    with pytest.raises(ValueError, match="seeds must be distinct"):
        plan_runs(["yolo11n.yaml"], [0, 0], tmp_path)


def test_finished_runs_are_skipped(tmp_path: Path) -> None:
    runs = plan_runs(["yolo11n.yaml"], [0, 1], tmp_path)
    for run in runs:
        run.folder.mkdir(parents=True)
        run.result_file.write_text("{}")
    lines: list[str] = []
    assert execute(runs, None, [], echo=lines.append) == []
    assert lines == [f"skip yolo11n.yaml seed {s}: finished ({tmp_path}/yolo11n/seed{s}/result.json)" for s in (0, 1)]


def test_one_run_per_device_with_its_own_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With --devices, each run sees only its GPU (CUDA_VISIBLE_DEVICES) and GPUs are not shared."""
    import sys

    from yolo11_lightning.study import runner

    script = (
        "import json, os, sys, time; start = time.time(); time.sleep(0.3); "
        "record = {'gpu': os.environ['CUDA_VISIBLE_DEVICES'], 'start': start, 'end': time.time()}\n"
        "json.dump(record, open(sys.argv[1], 'w'))"
    )
    monkeypatch.setattr(runner, "run_command", lambda run, *args: [sys.executable, "-c", script, str(run.result_file)])
    runs = plan_runs(["a.yaml", "b.yaml"], [0, 1], tmp_path)
    assert execute(runs, None, [], devices=["3", "5"], echo=lambda line: None) == []
    results = [json.loads(run.result_file.read_text()) for run in runs]
    assert {r["gpu"] for r in results} == {"3", "5"}
    for gpu in ("3", "5"):  # the runs on one GPU do not overlap in time
        spans = sorted((r["start"], r["end"]) for r in results if r["gpu"] == gpu)
        assert all(end <= next_start for (_, end), (next_start, _) in itertools.pairwise(spans))
