"""User errors and the table that turns an exception into a short message and an exit code.

Every command runs inside :func:`run_with_exit_code`: a known user mistake (a wrong path, a bad
YAML, a class id out of range, a checkpoint of another model, an unknown or misspelt option,
incompatible options) prints at most three lines on stderr and exits with
:attr:`~yolo11_lightning.exit_codes.ExitCode.USER_ERROR`; the traceback is printed only when the
environment variable ``YOLO11_LIGHTNING_DEBUG`` is set to ``1`` (then the exception propagates).
Anything else is a bug: its traceback is printed and the exit code is
:attr:`~yolo11_lightning.exit_codes.ExitCode.INTERNAL_ERROR`.

Other code extends the table with :func:`register_exit_code` (e.g. the divergence error, exit 3).
This module imports neither Lightning nor the network; :class:`UserError` itself lives in the
package-level ``yolo11_lightning.errors`` (re-exported here), which the data and model code raise.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterable

from yolo11_lightning.errors import UserError
from yolo11_lightning.exit_codes import DEBUG_ENV, ExitCode

MAX_LINES = 3
"""The most lines a user error prints on stderr (message, hint, where the traceback is)."""


class CLIArgumentError(UserError):
    """An option the command line parser refused (unknown, misspelt, wrongly typed)."""


_EXIT_CODES: dict[type[BaseException], ExitCode] = {
    UserError: ExitCode.USER_ERROR,
    FileNotFoundError: ExitCode.USER_ERROR,  # a wrong data, config, weights or checkpoint path
    NotADirectoryError: ExitCode.USER_ERROR,
    IsADirectoryError: ExitCode.USER_ERROR,
    KeyboardInterrupt: ExitCode.INTERRUPTED,
}
_YAML_ERROR_REGISTERED = False


def register_exit_code(error_type: type[BaseException], code: ExitCode) -> None:
    """Map an exception type (and its subclasses) to an exit code; user errors print short messages.

    Args:
        error_type: the exception class.
        code: the process exit code for it.
    """
    _EXIT_CODES[error_type] = code


def exit_code_of(error: BaseException) -> ExitCode:
    """The exit code of an exception: the most specific registered base class, else INTERNAL_ERROR."""
    global _YAML_ERROR_REGISTERED
    if not _YAML_ERROR_REGISTERED:  # a malformed YAML file (data.yaml, model config, weights list)
        import yaml

        _EXIT_CODES.setdefault(yaml.YAMLError, ExitCode.USER_ERROR)
        _YAML_ERROR_REGISTERED = True
    for cls in type(error).__mro__:
        if cls in _EXIT_CODES:
            return _EXIT_CODES[cls]
    declared = getattr(error, "exit_code", None)  # e.g. TrainingDivergedError, TrainingInterrupted
    return ExitCode(declared) if declared in set(ExitCode) else ExitCode.INTERNAL_ERROR


def debug_enabled() -> bool:
    """Whether ``YOLO11_LIGHTNING_DEBUG`` asks for full tracebacks."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def short_message(error: BaseException) -> list[str]:
    """The lines printed for a user error: ``error: <message>`` (first line), an optional hint."""
    text = str(error).strip() or type(error).__name__
    if isinstance(error, KeyError) and len(error.args) == 1:
        text = str(error.args[0])
    first, *rest = [line.strip() for line in text.splitlines() if line.strip()] or [text]
    if rest and not isinstance(error, UserError):  # e.g. jsonargparse's "Parser key ...:\n  Expected ..."
        first = f"{first} {' '.join(rest)}"
    lines = [f"error: {first}"]
    hint = getattr(error, "hint", None)
    if hint:
        lines.append(f"hint: {hint}")
    return lines


def close_spellings(unknown: str, known: Iterable[str], count: int = 3) -> list[str]:
    """Options of ``known`` spelt like ``unknown`` (closest first); the group prefix weighs in too."""
    known = list(known)
    return difflib.get_close_matches(unknown, known, n=count, cutoff=0.6)


_UNRECOGNIZED = re.compile(r"unrecognized arguments?: (.*)", re.IGNORECASE)


def unknown_option_hint(message: str, known: Iterable[str]) -> str | None:
    """For an "unrecognized arguments" parser message, the "did you mean" line (or ``None``)."""
    match = _UNRECOGNIZED.search(message)
    if not match:
        return None
    known = list(known)
    suggestions = []
    for token in match.group(1).split():
        if not token.startswith("--"):
            continue
        name = token.split("=", 1)[0]
        close = close_spellings(name, known, count=1)
        if close:
            suggestions.append(f"{name} -> {close[0]}")
    return f"did you mean: {', '.join(suggestions)}" if suggestions else None


def report_error(error: BaseException, stream=None) -> ExitCode:  # noqa: ANN001 - a text stream
    """Print ``error`` the way its exit code asks and return that code (see the module docstring)."""
    stream = stream if stream is not None else sys.stderr
    code = exit_code_of(error)
    if code == ExitCode.INTERNAL_ERROR:
        traceback.print_exception(type(error), error, error.__traceback__, file=stream)
        return code
    lines = short_message(error)
    lines.append(f"(set {DEBUG_ENV}=1 for the traceback)")
    stream.write("\n".join(lines[:MAX_LINES]) + "\n")
    stream.flush()
    return code


def run_with_exit_code(function: Callable[[], object]) -> int:
    """Run ``function`` and return the process exit code, reporting any exception (see module docstring).

    With ``YOLO11_LIGHTNING_DEBUG=1`` exceptions propagate with their full traceback.
    """
    if debug_enabled():
        function()
        return int(ExitCode.OK)
    try:
        function()
    except SystemExit as done:  # --help, --print_config, or a parser exit
        return int(done.code) if isinstance(done.code, int) else (0 if done.code is None else 1)
    except BaseException as error:  # noqa: BLE001 - every failure becomes a report and an exit code
        return int(report_error(error))
    return int(ExitCode.OK)
