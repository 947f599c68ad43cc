"""Loader worker processes: how many a loader gets, and how they share the cores with the model.

On a CPU run the loader workers and the model's intra-op threads compete for the same cores. The
model's threads meet at a barrier after every parallel operator, so a worker that preempts one of
them stalls the others too: at 2 threads on 2 cores (yolo11n, 320, batch 16) the idle partner
thread spun through those stalls, and the whole process tree used 5-7% more CPU per image than
with workers that only take a core nobody else wants (``benchmarks/bench_train.py --threads 2
--no-reference --no-val --ab worker_priority=normal``: 0.956 per CPU-second, median of 5 pairs;
wall time fell by about as much; at 1 thread no difference). ``"idle"`` gives the workers that
lowest priority; the batches they make are the same, only their scheduling changes.
"""

from __future__ import annotations

import os
from typing import Literal

import cv2

WorkerPriority = Literal["normal", "idle"]
"""``"normal"``: the default scheduling; ``"idle"``: workers run only on cores the rest leaves free."""


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the platform has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_worker_count(evaluation: bool, on_cpu: bool, processes_here: int) -> int:
    """Workers of a loader when none were asked for.

    Args:
        evaluation: a validation, test or predict loader (else training).
        on_cpu: the model runs on the CPU.
        processes_here: training processes on this machine (each gets its share of the CPUs).

    Returns:
        0 for evaluation on the CPU (a worker slows the model's own threads more than loading in
        the main process costs); otherwise the CPUs per local process, between 1 and 8.
    """
    if evaluation and on_cpu:
        return 0
    return min(8, max(1, available_cpus() // max(processes_here, 1)))


def default_priority(on_cpu: bool) -> WorkerPriority:
    """``"idle"`` when the model trains on the CPU (workers compete with its threads), else ``"normal"``."""
    return "idle" if on_cpu else "normal"


def lower_priority() -> str:
    """Give the calling process the lowest CPU priority the platform offers; returns which one.

    ``SCHED_IDLE`` on Linux (runs only when a core would otherwise idle), ``nice 19`` where only
    ``nice`` exists, nothing elsewhere (Windows).
    """
    if hasattr(os, "sched_setscheduler") and hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            return "SCHED_IDLE"
        except OSError:  # refused by a container's seccomp profile: fall back to nice
            pass
    if hasattr(os, "nice"):
        try:
            os.nice(19)
            return "nice 19"
        except OSError:
            pass
    return "none"


class WorkerInit:
    """``worker_init_fn`` of our loaders (a picklable object, so it also works with ``spawn``).

    Args:
        priority: the scheduling of the worker processes.
    """

    def __init__(self, priority: WorkerPriority = "normal") -> None:
        if priority not in ("normal", "idle"):
            raise ValueError(f"worker_priority must be 'normal' or 'idle', not {priority!r}")
        self.priority = priority

    def __call__(self, _worker_id: int) -> None:
        cv2.setNumThreads(0)  # one OpenCV thread per worker process: workers already run in parallel
        if self.priority == "idle":
            lower_priority()
