"""The shared sample table: every value kind, with NULLs, quotes, newlines and unicode."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

from .helpers import Text

COLUMNS = [
    ("id", "bigint"),
    ("amount", "decimal"),
    ("note", "text"),
    ("d", "date"),
    ("ts", "timestamp"),
    ("tstz", "timestamptz"),
    ("flag", "bool"),
    ("payload", "binary"),
]
PLUS2 = timezone(timedelta(hours=2))

# ts of row 2 is written with a 'T' and tstz of row 2 with a +02:00 offset, so SQLite's
# text timestamps must be compared as instants, not as strings.
ROWS = [
    (
        1,
        Decimal("10.00"),
        "plain",
        date(2024, 1, 1),
        datetime(2024, 1, 1, 10, 0, 0),
        datetime(2024, 1, 1, 10, 0, 0, tzinfo=UTC),
        True,
        b"\x00\x01",
    ),
    (
        2,
        Decimal("12.34"),
        'it\'s "quoted"',
        date(2024, 1, 2),
        Text("2024-01-01T10:00:00.5"),
        datetime(2024, 1, 1, 12, 0, 0, tzinfo=PLUS2),
        False,
        b"",
    ),
    (
        3,
        Decimal("-5.50"),
        "line1\nline2",
        date(2024, 1, 3),
        datetime(2024, 1, 1, 10, 0, 0, 123456),
        datetime(2024, 1, 1, 10, 0, 0, 123456, tzinfo=UTC),
        True,
        b"\xff",
    ),
    (
        4,
        Decimal("0.00"),
        "ünïcødé ✓ 😀",
        date(2024, 2, 29),
        datetime(2024, 3, 1, 0, 0, 0),
        datetime(2024, 3, 1, 0, 0, 0, tzinfo=UTC),
        False,
        None,
    ),
    (5, None, None, None, None, None, None, None),
    (
        6,
        Decimal("99999.99"),
        "z",
        date(2023, 12, 31),
        datetime(2023, 12, 31, 23, 59, 59, 999999),
        datetime(2023, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        True,
        b"abc",
    ),
]
