"""Column kinds: how a source column maps to Arrow and how a filter string becomes a value.

DMS filter values are strings; they are converted to the column's kind before they are
bound, so '10' compares as a number on an integer column and '2024-01-01 10:00:00.5'
as an instant on a timestamp column, on every engine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from enum import Enum

import pyarrow as pa

from .errors import LoadError


class Kind(Enum):
    """The value kinds the engine distinguishes for typing and filter conversion."""

    INT = "integer"
    FLOAT = "floating point"
    DECIMAL = "decimal"
    DATE = "date"
    TIMESTAMP = "timestamp"
    TIMESTAMPTZ = "timestamp with time zone"
    BOOL = "boolean"
    BINARY = "binary"
    TEXT = "text"


@dataclass(frozen=True)
class Column:
    """A source column: its name, kind, Arrow type and declared (source) type."""

    name: str
    kind: Kind
    arrow_type: pa.DataType
    declared: str = ""
    read_as_text: bool = False  # select CAST(... AS TEXT): no Arrow type, or a slow one

    @property
    def field(self) -> pa.Field:
        """The Arrow field written to Parquet (every column nullable, as DMS writes)."""
        return pa.field(self.name, self.arrow_type, nullable=True)


def arrow_for(kind: Kind, precision: int | None = None, scale: int | None = None) -> pa.DataType:
    """The Arrow type of a kind (decimals need precision/scale; >38 digits become strings)."""
    if kind is Kind.DECIMAL:
        if precision is None or precision > 38:
            return pa.string()
        return pa.decimal128(precision, scale or 0)
    return {
        Kind.INT: pa.int64(),
        Kind.FLOAT: pa.float64(),
        Kind.DATE: pa.date32(),
        Kind.TIMESTAMP: pa.timestamp("us"),
        Kind.TIMESTAMPTZ: pa.timestamp("us", tz="UTC"),
        Kind.BOOL: pa.bool_(),
        Kind.BINARY: pa.binary(),
        Kind.TEXT: pa.string(),
    }[kind]


_DECL_PRECISION = re.compile(r"\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\)")


def sqlite_column(name: str, declared: str) -> Column:
    """Type a SQLite column from its declared type (SQLite itself stores any value anywhere).

    INTEGER/INT* -> int64, REAL/FLOAT/DOUBLE -> float64, NUMERIC/DECIMAL(p,s) ->
    decimal128(p,s) (no precision: decimal128(38,10)), DATE -> date32,
    TIMESTAMP/DATETIME -> timestamp[us] (…WITH TIME ZONE/TIMESTAMPTZ -> timestamp[us, UTC]),
    BOOL* -> bool, BLOB -> binary, anything else -> string.
    """
    decl = declared.upper().strip()
    kind = _sqlite_kind(decl)
    if kind is Kind.DECIMAL:
        match = _DECL_PRECISION.search(decl)
        precision = int(match.group(1)) if match else 38
        scale = int(match.group(2) or 0) if match else 10
        return Column(name, kind, arrow_for(kind, precision, scale), declared)
    return Column(name, kind, arrow_for(kind), declared)


def _sqlite_kind(decl: str) -> Kind:
    # Order matters: "TIMESTAMP WITH TIME ZONE" before "TIMESTAMP", "BOOLEAN" before "INT".
    if "TIMESTAMPTZ" in decl or ("TIME ZONE" in decl and "WITHOUT" not in decl):
        return Kind.TIMESTAMPTZ
    if "TIMESTAMP" in decl or "DATETIME" in decl:
        return Kind.TIMESTAMP
    if decl.startswith("DATE"):
        return Kind.DATE
    if decl.startswith("BOOL"):
        return Kind.BOOL
    if "INT" in decl:
        return Kind.INT
    if any(t in decl for t in ("REAL", "FLOA", "DOUB")):
        return Kind.FLOAT
    if any(t in decl for t in ("NUMERIC", "DECIMAL", "NUMBER")):
        return Kind.DECIMAL
    if "BLOB" in decl or "BINARY" in decl or "BYTEA" in decl:
        return Kind.BINARY
    return Kind.TEXT


_TRUE = {"true", "t", "1", "yes", "y"}
_FALSE = {"false", "f", "0", "no", "n"}


def convert_value(column: Column, raw: str, where: str) -> object:
    """Convert a DMS filter string to a Python value of the column's kind.

    ``where`` names the table and filter for the error message. Timestamps: naive values
    are taken as written; an offset on a timestamp-without-time-zone column is converted
    to UTC first; a naive value on a time-zone column is taken as UTC.
    """
    text = str(raw).strip()
    try:
        return _CONVERTERS[column.kind](text)
    except (ValueError, InvalidOperation, ArithmeticError) as exc:
        raise LoadError(
            f"{where}: filter value {raw!r} for column {column.name!r} is not a valid "
            f"{column.kind.value} ({column.declared or column.arrow_type}): {exc}"
        ) from exc


def _to_bool(text: str) -> bool:
    low = text.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError(f"expected one of {sorted(_TRUE | _FALSE)}")


def _to_int(text: str) -> int:
    value = Decimal(text)
    if value != value.to_integral_value():
        raise ValueError("expected a whole number")
    return int(value)


def _to_date(text: str) -> date:
    if len(text) > 10:
        stamp = parse_timestamp(text)
        if stamp.time() != datetime.min.time():
            raise ValueError("expected a date (YYYY-MM-DD) without a time of day")
        return stamp.date()
    return date.fromisoformat(text)


def parse_timestamp(text: str) -> datetime:
    """Parse ISO 8601 with ' ' or 'T', 1-9 fraction digits, optional Z/±HH:MM offset."""
    cleaned = text.strip().replace("Z", "+00:00").replace("z", "+00:00")
    match = re.match(r"^(.*?[T ]\d{2}:\d{2}:\d{2})\.(\d+)(.*)$", cleaned)
    if match:
        # Python parses up to 6 fraction digits; nanoseconds are truncated to micros.
        head, frac, tail = match.groups()
        cleaned = f"{head}.{frac[:6].ljust(6, '0')}{tail}"
    return datetime.fromisoformat(cleaned)


def _to_timestamp(text: str) -> datetime:
    stamp = parse_timestamp(text)
    if stamp.tzinfo is not None:
        stamp = stamp.astimezone(UTC).replace(tzinfo=None)
    return stamp


def _to_timestamptz(text: str) -> datetime:
    stamp = parse_timestamp(text)
    if stamp.tzinfo is None:
        return stamp.replace(tzinfo=UTC)
    return stamp.astimezone(UTC)


def _refuse_binary(_: str) -> object:
    raise ValueError("DMS does not filter on binary (LOB) columns")


_CONVERTERS = {
    Kind.INT: _to_int,
    Kind.FLOAT: float,
    Kind.DECIMAL: Decimal,
    Kind.DATE: _to_date,
    Kind.TIMESTAMP: _to_timestamp,
    Kind.TIMESTAMPTZ: _to_timestamptz,
    Kind.BOOL: _to_bool,
    Kind.BINARY: _refuse_binary,
    Kind.TEXT: str,
}


def canonical_timestamp_text(value: datetime) -> str:
    """The canonical text form the SQLite comparison uses: 'YYYY-MM-DD HH:MM:SS.ffffff' UTC."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")
