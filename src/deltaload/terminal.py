"""How the command line reads its arguments and prints its tables.

Options that belong to the whole command line (``--state-dir``, ``--stack``...) are also
accepted after the command, as ``git -C`` or ``aws --region`` users expect; tables stay
readable at 80 columns: a value is wrapped at its spaces, never cut inside a word, and
timestamps are shown to the minute in UTC (``--json`` gives them whole).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from rich import box
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

# A word wider than this may still be folded, so one long value cannot push every other
# column off an 80-column screen.
WORD_MAX = 20
# Values up to this long are kept on one line (windows, timestamps, short filters).
SHORT = 16
# Spaces between two columns, and the narrowest a column is folded to.
GAP, FOLD_MIN = 2, 4


class GlobalOptionsAnywhere(TyperGroup):
    """A command group whose own options may also be given after the command's name."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist_options(self, args))


def hoist_options(group: Any, args: Sequence[str]) -> list[str]:
    """``args`` with the group's options found after the command moved before it.

    Only options the command does not define itself move; ``--`` ends the search.
    """
    own = _options(group.params)
    before: list[str] = []
    index = 0
    # Up to the command's name: the group's options, with their values.
    while index < len(args):
        arg = args[index]
        if not arg.startswith("-") or arg == "--":
            break
        before.append(arg)
        index += 1
        if _takes_value(own, arg) and index < len(args):
            before.append(args[index])
            index += 1
    if index >= len(args) or args[index] == "--":
        return list(args)
    name = args[index]
    command = group.commands.get(name)
    theirs = _options(command.params) if command else {}
    moved: list[str] = []
    rest: list[str] = [name]
    index += 1
    while index < len(args):
        arg = args[index]
        if arg == "--":
            rest += args[index:]
            break
        flag = arg.split("=", 1)[0]
        if flag in own and flag not in theirs:
            moved.append(arg)
            index += 1
            if "=" not in arg and own[flag] and index < len(args):
                moved.append(args[index])
                index += 1
            continue
        rest.append(arg)
        index += 1
    return before + moved + rest


def _options(params: Sequence[Any]) -> dict[str, bool]:
    """Every option name of ``params`` -> whether it takes a value."""
    found: dict[str, bool] = {}
    for param in params:
        # Typer ships its own copy of click: its options are told apart by their kind.
        if getattr(param, "param_type_name", "") == "option":
            for name in (*param.opts, *param.secondary_opts):
                found[name] = not param.is_flag and not param.count
    return found


def _takes_value(own: dict[str, bool], arg: str) -> bool:
    return "=" not in arg and own.get(arg, False)


def compact_time(value: Any) -> str:
    """An ISO timestamp as ``YYYY-MM-DD HH:MM`` in UTC; anything else as it is, ``-`` for none."""
    if value in (None, ""):
        return "-"
    text = str(value)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M")


def table_view(headers: list[str], rows: list[list[str | Text]], width: int = 80) -> Table:
    """A table that fits ``width`` columns where it can, wrapping values at their spaces.

    Plain strings are shown as they are (never read as markup); a Text keeps its style.
    The first column (the name people search for) is never wrapped. In the others a short
    value (up to SHORT characters: a window, a timestamp) stays on one line and a longer
    one wraps at its spaces; when that is too wide, short values wrap at their spaces too,
    and only when even single words do not fit are the widest folded.
    """
    texts = [[cell if isinstance(cell, Text) else Text(cell) for cell in row] for row in rows]
    columns = [
        [header, *(row[index].plain for row in texts)] for index, header in enumerate(headers)
    ]
    first = max(len(c) for c in columns[0])
    whole = [
        max(len(c) if len(c) <= SHORT else _longest_word(c) for c in cells) for cells in columns
    ]
    words = [max(_longest_word(c) for c in cells) for cells in columns]
    room = width - first - GAP * (len(headers) - 1)
    mins = [min(w, WORD_MAX) for w in whole[1:]]
    # Too wide: let the short values that save the most wrap at their spaces first.
    savings = sorted(range(len(mins)), key=lambda i: min(words[i + 1], WORD_MAX) - mins[i])
    for index in savings:
        if sum(mins) <= room:
            break
        mins[index] = min(words[index + 1], WORD_MAX)
    while sum(mins) > room and max(mins, default=0) > FOLD_MIN:
        widest = mins.index(max(mins))
        mins[widest] -= 1
    view = Table(
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
        header_style="bold",
    )
    view.add_column(headers[0], no_wrap=True, min_width=first)
    for header, least in zip(headers[1:], mins, strict=True):
        view.add_column(header, overflow="fold", min_width=least)
    for row in texts:
        view.add_row(*row)
    return view


def _longest_word(text: str) -> int:
    return max((len(word) for word in text.split()), default=0)
