"""Keep freed tensor memory inside the process on CPU (glibc ``malloc`` thresholds).

PyTorch's CPU tensors come from the C library's ``malloc``. glibc serves every block above its
mmap threshold (dynamic, 128 KiB up to 32 MiB) with fresh ``mmap`` pages, unmaps them on
``free`` and gives the heap's free top back to the kernel past its trim threshold. A training
step allocates and frees its activations every step, so the kernel faults in and zeroes the same
hundreds of MiB again and again: measured on yolo11n at 320, batch 16, 2 threads, about 72,000
minor page faults and 0.15 s of system time per batch (9% of the CPU time), see
``benchmarks/bench_train.py --ours cpu_malloc=false``.

:func:`keep_freed_memory` fixes the thresholds (so they no longer adapt), serves large blocks from
the heap as well and never trims it: freed memory is reused by the next step. The price is that
the process keeps its peak memory until it exits, which a training or evaluation process reaches
every step anyway. The setting is process-wide (loader workers forked later inherit it) and is
not undone. It applies to glibc only (Linux); elsewhere it does nothing.
"""

from __future__ import annotations

import ctypes
import platform
from functools import cache

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4
_MAX_MMAP_THRESHOLD = 32 * 1024 * 1024  # the largest threshold glibc accepts on 64-bit
_NEVER_TRIM = 2**31 - 1  # the parameter is a C int


@cache
def keep_freed_memory() -> bool:
    """Set glibc's malloc to keep freed memory for reuse (once per process).

    Returns:
        True when the settings were applied (glibc), False where they do not apply.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    applied = [
        mallopt(_M_MMAP_THRESHOLD, _MAX_MMAP_THRESHOLD),  # a fixed threshold: no adaptive trimming
        mallopt(_M_TRIM_THRESHOLD, _NEVER_TRIM),
        mallopt(_M_MMAP_MAX, 0),  # blocks above the threshold (e.g. activations at 640) from the heap too
    ]
    return all(result == 1 for result in applied)
