"""The command line's parser: compact ``--help``, and refused options as one-line errors with a close spelling.

``fit --help`` keeps one sentence per option (with its type and default) and short subclass lists
(a few hundred lines instead of ~1,700). A refused option raises
:class:`~yolo11_lightning.training.errors.CLIArgumentError` (reported in at most 3 lines by
``main``) instead of printing the whole usage: an unknown option or subcommand gets "did you mean",
and Lightning's ``--optimizer``/``--lr_scheduler`` (not offered: the recipe owns the optimizer and
its schedule) get a message naming ``--model.optimizer`` and ``--model.lr0``.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from jsonargparse import DefaultHelpFormatter
from lightning.pytorch.cli import LightningArgumentParser

from yolo11_lightning.training.errors import CLIArgumentError, close_spellings, unknown_option_hint

OPTIMIZER_REFUSAL = (
    "--optimizer and --lr_scheduler are not options of this command: the YOLO recipe builds its optimizer "
    "and applies its own warmup and LR schedule every step"
)
OPTIMIZER_HINT = (
    "choose the optimizer with --model.optimizer {SGD,AdamW,auto} and the learning rate with --model.lr0 "
    "(final factor --model.lrf, shape --model.schedule linear|cosine)"
)
_OPTIMIZER_OPTION = re.compile(r"(?<![\w.])-*(optimizer|lr_scheduler)\b")
_INVALID_CHOICE = re.compile(r"invalid choice: '([^']*)' \(choose from (.*)\)")


class CompactHelpFormatter(DefaultHelpFormatter):
    """``--help`` with one sentence per option (plus its type and default) and short subclass lists.

    ``fit --help`` stays readable (a few hundred lines instead of ~1,700): Lightning's long
    argument descriptions are cut to their first sentence.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("width", 120)  # the project's line length, whatever the terminal reports
        kwargs.setdefault("max_help_position", 40)
        super().__init__(*args, **kwargs)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help
        if isinstance(text, str) and text:
            first = re.split(r"(?<=[.:;])\s", " ".join(text.split()), maxsplit=1)[0]
            action.help = first if len(first) <= 160 else first[:157] + "..."
        try:
            full = super()._get_help_string(action)
        finally:
            action.help = text
        return _KNOWN_SUBCLASSES.sub(_shorten_subclasses, full)


_KNOWN_SUBCLASSES = re.compile(r"known subclasses: ([^)]*)")


def _shorten_subclasses(match: re.Match[str]) -> str:
    names = [name.strip() for name in match.group(1).split(",")]
    shown = ", ".join(names[:3])
    return f"known subclasses: {shown}" + (f", ... ({len(names)} in all)" if len(names) > 3 else "")


class YOLOArgumentParser(LightningArgumentParser):
    """The CLI's parser: compact help, and a refused option raises :class:`CLIArgumentError` (short
    message, a "did you mean" line) instead of printing the whole usage and exiting."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", CompactHelpFormatter)
        super().__init__(*args, **kwargs)
        self.usage = "%(prog)s [-h] [-c CONFIG] [--print_config[=flags]] [--<group>.<option> VALUE ...]"

    def error(self, message: str, ex: Exception | None = None) -> None:  # type: ignore[override]
        """Raise :class:`CLIArgumentError` with the message and, when useful, a close spelling."""
        if not self.exit_on_error:  # jsonargparse's inner parsers: it catches and retries
            super().error(message, ex)
        if _OPTIMIZER_OPTION.search(message):
            raise CLIArgumentError(OPTIMIZER_REFUSAL, OPTIMIZER_HINT)
        hint = unknown_option_hint(message, self._option_string_actions)
        choice = _INVALID_CHOICE.search(message)
        if hint is None and choice:
            options = re.findall(r"'([^']*)'", choice.group(2))
            close = close_spellings(choice.group(1), options, count=1)
            hint = f"did you mean: {close[0]}" if close else None
        raise CLIArgumentError(" ".join(message.split()), hint)
