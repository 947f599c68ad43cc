"""Many-trial version of ``tests/training/test_crash.py``: SIGKILL ``train.py fit`` again and again.

A chain of tiny ``train.py fit`` runs (``tests/training/slow_checkpoint_fit.py``: every checkpoint
write spread over ``--write-seconds``) is killed ``--trials`` times; odd trials aim at a checkpoint
write in progress (write markers), even trials at a uniformly random moment. After every kill the
script records whether ``last.ckpt`` loads and how many temp files the kill left; the next link
resumes with ``fit --ckpt_path last.ckpt``. A final run finishes the training. Prints a summary:

    .venv/bin/python scripts/crash_trials.py --trials 20
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "training"))

import torch  # noqa: E402
from robustness_helpers import tiny_cli_args  # noqa: E402

from yolo11_lightning.training.checkpoint import is_temp_file  # noqa: E402

DRIVER = ROOT / "tests" / "training" / "slow_checkpoint_fit.py"


def _start(work: Path, markers: Path, write_seconds: float, epochs: int, resume: bool) -> subprocess.Popen:
    args = ["fit", *tiny_cli_args(work, work / "checkpoints", epochs)]
    if resume:
        args += ["--ckpt_path", str(work / "checkpoints" / "last.ckpt")]
    env = dict(os.environ, TMPDIR=str(work / "tmpdir"), OMP_NUM_THREADS="1")
    return subprocess.Popen(
        [sys.executable, str(DRIVER), str(markers), str(write_seconds), *args],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def _loads(path: Path) -> bool:
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception:  # noqa: BLE001
        return False
    return "state_dict" in checkpoint and "loops" in checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20, help="number of kills")
    parser.add_argument("--write-seconds", type=float, default=0.6, help="duration of each checkpoint write")
    parser.add_argument("--epochs", type=int, default=60, help="max_epochs of the chained run (long enough)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill times")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="crash-trials-"))
    (work / "tmpdir").mkdir()
    checkpoints = work / "checkpoints"
    stats = {"kills": 0, "mid_write": 0, "loadable": 0, "missing_before_first_save": 0, "temp_left_by_kill": 0}
    resume = False
    for trial in range(args.trials):
        markers = work / f"markers{trial}"
        proc = _start(work, markers, args.write_seconds, args.epochs, resume)
        while not list(markers.glob("*.started")) and proc.poll() is None:  # wait until it is training
            time.sleep(0.02)
        aim_at_write = trial % 2 == 1
        if aim_at_write:
            started = len(list(markers.glob("*.started")))
            while len(list(markers.glob("*.started"))) <= started and proc.poll() is None:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.05, 0.95) * args.write_seconds)
        else:
            time.sleep(rng.uniform(0.0, 4.0))
        done_before = len(list(markers.glob("*.done")))
        started_before = len(list(markers.glob("*.started")))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if proc.returncode != -signal.SIGKILL:
            raise SystemExit(f"trial {trial}: the run ended before the kill (exit {proc.returncode}); raise --epochs")
        stats["kills"] += 1
        stats["mid_write"] += int(started_before > done_before)
        last = checkpoints / "last.ckpt"
        ok = last.exists() and _loads(last)
        if last.exists():
            stats["loadable"] += int(ok)
            if not ok:
                print(f"trial {trial}: last.ckpt does not load")
            resume = True
        else:
            stats["missing_before_first_save"] += 1
        stats["temp_left_by_kill"] += sum(is_temp_file(p) for p in checkpoints.iterdir()) if checkpoints.exists() else 0
        print(f"trial {trial}: killed {'mid-write' if started_before > done_before else 'outside a write'}, "
              f"last.ckpt {'loads' if ok else 'absent'}", flush=True)  # fmt: skip

    # Final link: resume and finish a few more epochs.
    epoch = torch.load(checkpoints / "last.ckpt", map_location="cpu", weights_only=False)["epoch"]
    final_args = ["fit", *tiny_cli_args(work, checkpoints, epoch + 3), "--ckpt_path", str(checkpoints / "last.ckpt")]
    env = dict(os.environ, TMPDIR=str(work / "tmpdir"), OMP_NUM_THREADS="1")
    final = subprocess.run([sys.executable, "train.py", *final_args], cwd=ROOT, env=env, capture_output=True, text=True)
    leftovers = [p.name for p in checkpoints.iterdir() if is_temp_file(p)]
    tmpdir_files = list((work / "tmpdir").iterdir())
    print(
        f"kills: {stats['kills']} (mid-write: {stats['mid_write']}); last.ckpt loadable after "
        f"{stats['loadable']} of {stats['kills'] - stats['missing_before_first_save']} kills that followed a save; "
        f"temp files left by the kills: {stats['temp_left_by_kill']} (removed by the next run); final resume exit "
        f"{final.returncode}; temp files after it: {len(leftovers)}; files in TMPDIR: {len(tmpdir_files)}"
    )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
