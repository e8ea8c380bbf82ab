"""Column kinds: how a source column maps to Arrow and how a filter string becomes a value.

DMS filter values are strings; they are converted to the column's kind before they are
bound, so '10' compares as a number on an integer column and '2024-01-01 10:00:00.5'
as an instant on a timestamp column, on every engine.

A column's Arrow type is the S3 Parquet type DMS writes for the DMS data type the source
type maps to (the per-engine "Source data types" pages, then "Target data types for S3
Parquet" of https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Target.S3.html); the
table with every row and its page is in docs/engine.md. ``lob`` is the DMS LOB type
(BLOB, CLOB, NCLOB) the column maps to, which decides how limited LOB mode truncates it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from enum import Enum

import pyarrow as pa
import pyarrow.compute as pc

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
    lob: str | None = None  # the DMS LOB type (BLOB, CLOB, NCLOB), None for other types

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
        # DMS maps time-zone timestamps to DATETIME (no zone) -> Parquet TIMESTAMP: UTC values.
        Kind.TIMESTAMPTZ: pa.timestamp("us"),
        Kind.BOOL: pa.bool_(),
        Kind.BINARY: pa.binary(),
        Kind.TEXT: pa.string(),
    }[kind]


# The DMS LOB data types (https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Reference.DataTypes.html).
BLOB, CLOB, NCLOB = "BLOB", "CLOB", "NCLOB"

_DECL_PRECISION = re.compile(r"\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\)")


def sqlite_column(name: str, declared: str) -> Column:
    """Type a SQLite column from its declared type (SQLite itself stores any value anywhere).

    SQLite is no DMS source; it is typed like the nearest one, PostgreSQL with the endpoint
    settings deltaload uses: INTEGER/INT* -> int64, REAL/FLOAT/DOUBLE -> float64,
    NUMERIC/DECIMAL(p,s) -> decimal128(p,s) (no precision: decimal128(38,10)), DATE ->
    date32, TIMESTAMP/DATETIME (also WITH TIME ZONE, as UTC) -> timestamp[us], BOOL* ->
    bool (MapBooleanAsBoolean), BLOB -> binary (a BLOB LOB), TEXT/CLOB/JSON or no type ->
    string (an NCLOB LOB, like PostgreSQL TEXT), any other type (VARCHAR(n)...) -> string.
    """
    decl = declared.upper().strip()
    kind = _sqlite_kind(decl)
    if kind is Kind.DECIMAL:
        match = _DECL_PRECISION.search(decl)
        precision = int(match.group(1)) if match else 38
        scale = int(match.group(2) or 0) if match else 10
        return Column(name, kind, arrow_for(kind, precision, scale), declared)
    lob = None
    if kind is Kind.BINARY:
        lob = BLOB
    elif kind is Kind.TEXT and (not decl or any(t in decl for t in ("TEXT", "CLOB", "JSON"))):
        lob = NCLOB
    return Column(name, kind, arrow_for(kind), declared, lob=lob)


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


def lob_size(value: str | bytes, lob: str) -> int:
    """The size DMS measures a LOB value by against LobMaxSize, in bytes.

    BLOB: its bytes. CLOB: "each character as a UTF8 character". NCLOB: "each character as
    a double-byte character" (UTF-16: 2 bytes, 4 beyond the BMP). From "Working with LOB
    source data types for PostgreSQL",
    https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Source.PostgreSQL.html.
    """
    if isinstance(value, bytes):
        return len(value)
    return len(value.encode("utf-16-le" if lob == NCLOB else "utf-8"))


def cut_lob(value: str | bytes, lob: str, limit: int) -> str | bytes:
    """The first ``limit`` bytes of a LOB as DMS measures it, never half a character."""
    if isinstance(value, bytes):
        return value[:limit]
    encoding = "utf-16-le" if lob == NCLOB else "utf-8"
    cut = limit - limit % 2 if lob == NCLOB else limit
    return value.encode(encoding)[:cut].decode(encoding, errors="ignore")


def truncate_lobs(array: pa.Array, lob: str, limit: int) -> tuple[pa.Array, int]:
    """Limited LOB mode: cut values longer than ``limit`` bytes; (new array, values cut).

    "Any LOBs that are larger than this value is truncated to this value" (Setting LOB
    support, https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Tasks.LOBSupport.html).
    """
    if len(array) == 0 or array.null_count == len(array):
        return array, 0
    lengths = pc.binary_length(array)
    # No value can be too long unless its stored bytes (x2 for NCLOB's UTF-16) exceed it.
    factor = 2 if lob == NCLOB and pa.types.is_string(array.type) else 1
    suspects = pc.greater(pc.multiply(lengths, factor), limit)
    if not pc.any(suspects).as_py():
        return array, 0
    values = array.to_pylist()
    flags = suspects.to_pylist()
    cut = 0
    for index, (value, suspect) in enumerate(zip(values, flags, strict=True)):
        if suspect and value is not None and lob_size(value, lob) > limit:
            values[index] = cut_lob(value, lob, limit)
            cut += 1
    return (pa.array(values, type=array.type), cut) if cut else (array, 0)
