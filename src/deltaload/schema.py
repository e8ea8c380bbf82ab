"""A table's schema across runs: what each run wrote, how it differs, what readers see (pure).

Each run's manifest records the Arrow schema of its Parquet files (``schema``) and the
table's schema after it (``tableSchema``): every column any published run of the table
wrote, with the type that reads all of them. A run is compared with the table's schema
before it and each difference is one ``Change``:

- ``added``: a column no earlier run wrote (earlier runs read it as NULL);
- ``dropped``: a column earlier runs wrote and this one lacks (it stays in the table
  schema, marked ``dropped``, and this run reads it as NULL; reported once);
- ``widened``: a type every old value converts to without loss (int32 -> int64,
  decimal(10,2) -> decimal(14,2), string -> large_string, timestamp[ms] -> timestamp[us]);
  the table schema takes the wider type;
- ``incompatible``: any other type change (decimal -> string, int64 -> int32, a time zone
  added); old and new files no longer share one type.

The item's ``schemachanges`` attribute says which changes publish: ``compatible`` (the
default) publishes added, dropped and widened columns and fails the run on an
incompatible one; ``any`` publishes every change (the table schema takes the new type:
readers cast the older runs' values to it); ``none`` fails the run on any change.

Types are Arrow's own text (``str(pa.DataType)``), so a manifest reads as it prints.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import pyarrow as pa

from deltaload.errors import DeltaloadError
from deltaload.items import SchemaPolicy


class ChangeKind(StrEnum):
    """How one column of a run differs from the table's schema."""

    ADDED = "added"
    DROPPED = "dropped"
    WIDENED = "widened"
    INCOMPATIBLE = "incompatible"


class SchemaChangeError(DeltaloadError):
    """A run's schema changed in a way its item does not allow; nothing was published."""


@dataclass(frozen=True)
class Change:
    """One column's difference between the table's schema and a run's."""

    kind: ChangeKind
    column: str
    old_type: str | None = None
    new_type: str | None = None

    def __str__(self) -> str:
        if self.kind is ChangeKind.ADDED:
            return f"added {self.column} ({self.new_type})"
        if self.kind is ChangeKind.DROPPED:
            return f"dropped {self.column} ({self.old_type})"
        return f"{self.kind.value} {self.column} ({self.old_type} -> {self.new_type})"

    def to_dict(self) -> dict[str, str]:
        """JSON form for manifests and history."""
        plain = {"change": self.kind.value, "column": self.column}
        if self.old_type is not None:
            plain["oldType"] = self.old_type
        if self.new_type is not None:
            plain["newType"] = self.new_type
        return plain


@dataclass(frozen=True)
class Drift:
    """A run compared with its table: the changes, and the table's schema after the run."""

    changes: tuple[Change, ...]
    table_schema: list[dict[str, Any]] | None  # None: no run of the table wrote files yet

    @property
    def incompatible(self) -> list[Change]:
        """The changes old and new files cannot share one type for."""
        return [c for c in self.changes if c.kind is ChangeKind.INCOMPATIBLE]

    def summary(self) -> str:
        """One line naming every change, e.g. ``added note (string); widened qty (...)``."""
        return "; ".join(str(c) for c in self.changes)


def columns_of(schema: pa.Schema) -> list[dict[str, str]]:
    """An Arrow schema as manifest columns: ``[{"name": ..., "type": ...}]`` in file order."""
    return [{"name": field.name, "type": str(field.type)} for field in schema]


def run_schema(table: str, schemas: Iterable[tuple[str, pa.Schema]]) -> list[dict[str, str]]:
    """The one schema of a run's files (key, Arrow schema); files that disagree are refused."""
    first: tuple[str, list[dict[str, str]]] | None = None
    for key, schema in schemas:
        columns = columns_of(schema)
        if first is None:
            first = (key, columns)
        elif columns != first[1]:
            raise SchemaChangeError(
                f"table {table!r}: the run's files disagree on their schema: {key} has "
                f"{_describe(columns)} but {first[0]} has {_describe(first[1])}; "
                "nothing was published"
            )
    return first[1] if first else []


def _describe(columns: Sequence[Mapping[str, Any]]) -> str:
    return ", ".join(f"{c['name']} {c['type']}" for c in columns)


Columns = Sequence[Mapping[str, Any]]


def compare(previous: Columns | None, run: Columns) -> Drift:
    """Classify how ``run`` (a run's columns) differs from ``previous`` (the table's schema,
    None for a table's first run) and give the table's schema after the run."""
    if not run:  # a run without files says nothing about the schema
        return Drift((), None if previous is None else [dict(c) for c in previous])
    if previous is None:
        return Drift((), [{"name": c["name"], "type": c["type"]} for c in run])
    by_name = {c["name"]: c["type"] for c in run}
    changes: list[Change] = []
    table: list[dict[str, Any]] = []
    for column in previous:
        name, old = column["name"], column["type"]
        was_dropped = bool(column.get("dropped"))
        new = by_name.get(name)
        if new is None:
            if not was_dropped:
                changes.append(Change(ChangeKind.DROPPED, name, old_type=old))
            table.append({"name": name, "type": old, "dropped": True})
            continue
        if new == old:
            if was_dropped:  # back again with its old type: reads as before
                changes.append(Change(ChangeKind.ADDED, name, new_type=new))
            table.append({"name": name, "type": old})
        elif is_widening(old, new):
            changes.append(Change(ChangeKind.WIDENED, name, old, new))
            table.append({"name": name, "type": new})
        elif is_widening(new, old):
            # Narrower than the table's type: old readers' type still reads every file,
            # and a later wider run needs no change; the table keeps the wider type.
            if was_dropped:
                changes.append(Change(ChangeKind.ADDED, name, new_type=new))
            table.append({"name": name, "type": old})
        else:
            changes.append(Change(ChangeKind.INCOMPATIBLE, name, old, new))
            table.append({"name": name, "type": new})
    known = {c["name"] for c in previous}
    for column in run:
        if column["name"] not in known:
            changes.append(Change(ChangeKind.ADDED, column["name"], new_type=column["type"]))
            table.append({"name": column["name"], "type": column["type"]})
    return Drift(tuple(changes), table)


def check(table: str, run_id: str, drift: Drift, policy: SchemaPolicy) -> None:
    """Raise SchemaChangeError when ``policy`` does not let ``drift`` publish."""
    refused = {
        SchemaPolicy.COMPATIBLE: drift.incompatible,
        SchemaPolicy.ANY: [],
        SchemaPolicy.NONE: list(drift.changes),
    }[policy]
    if not refused:
        return
    named = "; ".join(str(c) for c in refused)
    if policy is SchemaPolicy.NONE:
        remedy = "set schemachanges to 'compatible' or 'any' on the item to publish it"
    else:
        remedy = (
            "the published runs hold the old type; change the source column back, or set "
            "schemachanges to 'any' on the item to publish it (readers then cast older "
            "runs' values to the new type)"
        )
    raise SchemaChangeError(
        f"table {table!r}: run {run_id} changes the schema in a way schemachanges="
        f"{policy.value!r} does not allow: {named}; nothing was published; {remedy}"
    )


# --- types -----------------------------------------------------------------------------

_INT_BITS = {f"int{n}": n for n in (8, 16, 32, 64)}
_UINT_BITS = {f"uint{n}": n for n in (8, 16, 32, 64)}
_FLOAT_BITS = {"halffloat": 16, "float": 32, "double": 64}
# Decimal digits an integer type needs to hold its range exactly.
_INT_DIGITS = {"int8": 3, "int16": 5, "int32": 10, "int64": 19}
_UINT_DIGITS = {"uint8": 3, "uint16": 5, "uint32": 10, "uint64": 20}
# Float mantissa bits: an integer of at most this many bits converts exactly.
_FLOAT_MANTISSA = {"halffloat": 11, "float": 24, "double": 53}
_UNITS = ("s", "ms", "us", "ns")
_DECIMAL = re.compile(r"decimal(128|256)\((\d+), (-?\d+)\)")
_TIMESTAMP = re.compile(r"timestamp\[(s|ms|us|ns)(?:, tz=(.+))?\]")
_TIME = re.compile(r"time(32|64)\[(s|ms|us|ns)\]")
_WIDER_TEXT = {("string", "large_string"), ("binary", "large_binary")}


def is_widening(old: str, new: str) -> bool:
    """True when every value of Arrow type ``old`` converts to type ``new`` without loss."""
    if old == new or old == "null":
        return True
    if (old, new) in _WIDER_TEXT:
        return True
    for family in (_INT_BITS, _UINT_BITS, _FLOAT_BITS):
        if old in family and new in family:
            return family[new] > family[old]
    if old in _UINT_BITS and new in _INT_BITS:
        return _INT_BITS[new] > _UINT_BITS[old]
    if new in _FLOAT_MANTISSA:
        # magnitude bits of the integer type, which the mantissa must hold
        bits = _INT_BITS[old] - 1 if old in _INT_BITS else _UINT_BITS.get(old)
        return bits is not None and bits <= _FLOAT_MANTISSA[new]
    decimal_new = _DECIMAL.fullmatch(new)
    if decimal_new:
        precision, scale = int(decimal_new[2]), int(decimal_new[3])
        digits = _INT_DIGITS.get(old) or _UINT_DIGITS.get(old)
        if digits is not None:
            return precision - scale >= digits
        decimal_old = _DECIMAL.fullmatch(old)
        if decimal_old:
            old_precision, old_scale = int(decimal_old[2]), int(decimal_old[3])
            return scale >= old_scale and precision - scale >= old_precision - old_scale
        return False
    stamps = _TIMESTAMP.fullmatch(old), _TIMESTAMP.fullmatch(new)
    if stamps[0] and stamps[1]:  # a finer unit, the same zone
        return stamps[0][2] == stamps[1][2] and _finer(stamps[0][1], stamps[1][1])
    times = _TIME.fullmatch(old), _TIME.fullmatch(new)
    if times[0] and times[1]:
        return _finer(times[0][2], times[1][2])
    return (old, new) == ("date32[day]", "date64[ms]")


def _finer(old_unit: str, new_unit: str) -> bool:
    return _UNITS.index(new_unit) > _UNITS.index(old_unit)


def arrow_type(text: str) -> pa.DataType:
    """The Arrow type of a manifest type text (the scalar types DMS writes to Parquet)."""
    decimal = _DECIMAL.fullmatch(text)
    if decimal:
        make = pa.decimal128 if decimal[1] == "128" else pa.decimal256
        return make(int(decimal[2]), int(decimal[3]))
    timestamp = _TIMESTAMP.fullmatch(text)
    if timestamp:
        return pa.timestamp(timestamp[1], tz=timestamp[2])
    time = _TIME.fullmatch(text)
    if time:
        return (pa.time32 if time[1] == "32" else pa.time64)(time[2])
    fixed = re.fullmatch(r"fixed_size_binary\[(\d+)\]", text)
    if fixed:
        return pa.binary(int(fixed[1]))
    alias = {"date32[day]": "date32", "date64[ms]": "date64"}.get(text, text)
    try:
        return pa.type_for_alias(alias)
    except ValueError:
        raise ValueError(f"no Arrow type for {text!r}") from None


def to_arrow(columns: Sequence[Mapping[str, Any]]) -> pa.Schema:
    """A manifest's ``tableSchema`` as an Arrow schema, to read every run with one type per
    column: ``pyarrow.dataset.dataset(files, schema=to_arrow(manifest["tableSchema"]))``."""
    return pa.schema([pa.field(c["name"], arrow_type(c["type"])) for c in columns])
