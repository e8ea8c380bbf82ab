"""Filter-column value kinds: parsing, canonical text form, successors and bounds.

Canonical text is what deltaload writes into DMS filters and onto the controller
item. DMS compares filter values the way SQLite does and documents dates as
``YYYY-MM-DD`` and times as ``YYYY-MM-DD HH:MM:SS``
(https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Tasks.CustomizingTasks.Filters.html,
"Filtering by time and date"), so timestamps are written in that form, in UTC,
with a ``.ffffff`` fraction only when it is not zero.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum


class ColumnKind(StrEnum):
    """How the filter column's values order and step."""

    INTEGER = "integer"
    TIMESTAMP = "timestamp"
    DATE = "date"
    STRING = "string"


INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
MICROSECOND = timedelta(microseconds=1)

# Matched with fullmatch, never ``$`` (which also matches before a trailing newline), and
# with ASCII digits only: ``\d`` would take any Unicode digit, such as "²".
_INTEGER = re.compile(r"[+-]?[0-9]+", re.ASCII)
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)
_TIMESTAMP = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?"
    r"(Z|[+-][0-9]{2}:?[0-9]{2})?",
    re.ASCII,
)

# The far end of each kind: the end of the "notbetween" filter that excludes a window's
# exclusive upper bound and everything above it. DMS documents filter times as
# YYYY-MM-DD HH:MM:SS (CHAP_Tasks.CustomizingTasks.Filters.html, "Filtering by time and
# date"), so the timestamp far end is a whole second like every lower bound. Sources can
# hold values past it (MySQL DATETIME up to 9999-12-31 23:59:59.999999, PostgreSQL to year
# 294276), so window.py also caps bounded windows at it from below.
KIND_MAX = {
    ColumnKind.INTEGER: str(INT64_MAX),
    ColumnKind.DATE: "9999-12-31",
    ColumnKind.TIMESTAMP: "9999-12-31 23:59:59",
}


def infer_kind(value: str) -> ColumnKind:
    """The kind a published-layout start value implies when no filtercolumntype is given."""
    text = value.strip()
    if _INTEGER.fullmatch(text):
        return ColumnKind.INTEGER
    if _DATE.fullmatch(text):
        return ColumnKind.DATE
    if _TIMESTAMP.fullmatch(text):
        return ColumnKind.TIMESTAMP
    return ColumnKind.STRING


def expected_form(kind: ColumnKind) -> str:
    """A human description of the values a kind accepts, for error messages."""
    return {
        ColumnKind.INTEGER: f"a whole number between {INT64_MIN} and {INT64_MAX}",
        ColumnKind.DATE: "a date written YYYY-MM-DD, from 0001-01-01 to 9999-12-31",
        ColumnKind.TIMESTAMP: (
            "a timestamp written YYYY-MM-DD HH:MM:SS[.ffffff], optionally with an offset "
            "such as +02:00 or Z (without one it is taken as UTC), that lies between "
            "0001-01-01 00:00:00 and 9999-12-31 23:59:59.999999 once converted to UTC"
        ),
        ColumnKind.STRING: "any text",
    }[kind]


def parse_integer(text: str) -> int:
    """Parse an integer filter value; ValueError if it is not a 64-bit whole number."""
    if not _INTEGER.fullmatch(text.strip()):
        raise ValueError(text)
    value = int(text)
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(text)
    return value


def parse_date(text: str) -> date:
    """Parse a YYYY-MM-DD date."""
    if not _DATE.fullmatch(text.strip()):
        raise ValueError(text)
    return date.fromisoformat(text.strip())


def parse_timestamp(text: str) -> datetime:
    """Parse a timestamp into an aware UTC datetime; values without an offset are UTC."""
    stripped = text.strip()
    if not _TIMESTAMP.fullmatch(stripped):
        raise ValueError(text)
    # Python keeps microseconds only; a longer fraction would silently move the bound.
    fraction = re.search(r"\.(\d+)", stripped)
    if fraction and len(fraction.group(1)) > 6 and set(fraction.group(1)[6:]) != {"0"}:
        raise ValueError(text)
    if fraction and len(fraction.group(1)) > 6:
        stripped = stripped.replace(fraction.group(0), "." + fraction.group(1)[:6])
    parsed = datetime.fromisoformat(stripped.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        # 0001-01-01 00:00:00+01:00 is a valid text but lies before the first UTC instant.
        raise ValueError(text) from None


def format_timestamp(value: datetime) -> str:
    """Canonical UTC text of a timestamp: YYYY-MM-DD HH:MM:SS[.ffffff]."""
    utc = value.astimezone(UTC) if value.tzinfo else value
    # Not strftime("%Y"): it does not pad years before 1000 to four digits on every platform.
    text = utc.replace(microsecond=0, tzinfo=None).isoformat(sep=" ")
    return f"{text}.{utc.microsecond:06d}" if utc.microsecond else text


def canonical(kind: ColumnKind, text: str) -> str:
    """The canonical text of a value of the given kind; ValueError if it is not one."""
    if kind is ColumnKind.INTEGER:
        return str(parse_integer(text))
    if kind is ColumnKind.DATE:
        return parse_date(text).isoformat()
    if kind is ColumnKind.TIMESTAMP:
        return format_timestamp(parse_timestamp(text))
    return text


def sort_key(kind: ColumnKind, text: str) -> int | date | datetime | str:
    """A Python value that orders like the column does."""
    if kind is ColumnKind.INTEGER:
        return parse_integer(text)
    if kind is ColumnKind.DATE:
        return parse_date(text)
    if kind is ColumnKind.TIMESTAMP:
        return parse_timestamp(text)
    return text


def successor(kind: ColumnKind, text: str) -> str:
    """The smallest value after ``text``: +1, +1 day or +1 microsecond. Strings have none,
    nor has the largest value of a kind (ValueError saying so)."""
    if kind in KIND_MAX and sort_key(kind, text) == sort_key(kind, KIND_MAX[kind]):
        raise ValueError(f"{text} is the largest {kind.value} value: no value follows it")
    if kind is ColumnKind.INTEGER:
        return str(parse_integer(text) + 1)
    if kind is ColumnKind.DATE:
        return (parse_date(text) + timedelta(days=1)).isoformat()
    if kind is ColumnKind.TIMESTAMP:
        return format_timestamp(parse_timestamp(text) + MICROSECOND)
    raise ValueError("string values have no successor")


def predecessor(kind: ColumnKind, text: str) -> str:
    """The largest value before ``text`` (integer, date and timestamp kinds)."""
    if kind is ColumnKind.INTEGER:
        return str(parse_integer(text) - 1)
    if kind is ColumnKind.DATE:
        return (parse_date(text) - timedelta(days=1)).isoformat()
    if kind is ColumnKind.TIMESTAMP:
        return format_timestamp(parse_timestamp(text) - MICROSECOND)
    raise ValueError("string values have no predecessor")
