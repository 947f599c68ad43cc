"""The exit codes of every command (``train.py``, ``python -m yolo11_lightning``, the study tool).

====  ==========================================================================================
code  meaning
====  ==========================================================================================
0     success
1     unexpected internal error (a bug: the traceback is printed)
2     user error: a wrong path, a bad YAML, a bad label, a wrong checkpoint, incompatible options
      (at most 3 lines on stderr; ``YOLO11_LIGHTNING_DEBUG=1`` prints the traceback too)
3     training diverged or kept producing non-finite values; ``last.ckpt`` holds the last good state
4     interrupted (SIGTERM or SIGINT): a resumable checkpoint was saved; resume with ``--ckpt_path``
====  ==========================================================================================
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes; see the module docstring for their meaning."""

    OK = 0
    INTERNAL_ERROR = 1
    USER_ERROR = 2
    DIVERGED = 3
    INTERRUPTED = 4


DEBUG_ENV = "YOLO11_LIGHTNING_DEBUG"
"""Environment variable: set to 1 to print the full traceback of user errors too."""
