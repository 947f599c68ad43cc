"""keep_freed_memory: freed tensor memory is reused instead of faulted in again from the kernel."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

# Allocates and frees a 64 MiB tensor 20 times and counts the minor page faults, before and after
# the setting. In a fresh interpreter: the setting is process-wide and cannot be undone.
_PROBE = """
import json, resource, torch
from yolo11_lightning.training.cpu_memory import keep_freed_memory

def faults_of_cycles():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        tensor = torch.empty(16 * 1024 * 1024)  # 64 MiB, above glibc's largest mmap threshold
        tensor.fill_(1.0)  # touch every page
        del tensor
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

faults_of_cycles()  # first use of the allocator and the fill kernel
default = faults_of_cycles()
applied = keep_freed_memory()
faults_of_cycles()  # the heap grows once to hold the block
kept = faults_of_cycles()
print(json.dumps({"default": default, "applied": applied, "kept": kept, "again": keep_freed_memory()}))
"""


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc malloc settings only"
)
def test_freed_tensor_memory_is_reused_instead_of_faulted_in_again() -> None:
    completed = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True)
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["applied"] is True and result["again"] is True
    # Default glibc: every cycle maps fresh pages (16,384 pages of 4 KiB per 64 MiB).
    assert result["default"] >= 20 * 16_000
    assert result["kept"] < 2_000  # the block is reused from the heap
