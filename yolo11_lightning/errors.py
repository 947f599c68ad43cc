"""The user-error type every package raises for a mistake in the user's input or options.

Package-level (no Lightning, no network), so ``data/``, ``nn/`` and ``training/`` raise the same
type; ``training/errors.py`` turns it into a short message and exit code 2.
"""

from __future__ import annotations


class UserError(ValueError):
    """A mistake in the user's input or options: reported in at most 3 lines, exit code 2.

    A ``ValueError`` so that callers (and tests) that catch ``ValueError`` keep working.

    Args:
        message: what is wrong, naming the file, option or value (one line).
        hint: optional second line: what to do instead.
    """

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint
