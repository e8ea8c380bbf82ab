"""The table as Athena and the Glue Data Catalog see it: column types, DDL, views (pure).

Types are Athena's DDL (Hive) names for the Arrow types of the Parquet files, as
https://docs.aws.amazon.com/athena/latest/ug/data-types.html lists them: Athena has no
unsigned integers (each maps to the next wider signed type, uint64 to decimal(20,0)),
no time of day type in DDL and decimals of at most 38 digits. Each run is one partition,
``run`` (the ``run=<runId>/`` folder), so the catalog columns are the manifest's
``tableSchema`` and the partition key ``run``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from deltaload.errors import DeltaloadError

PARTITION_COLUMN = "run"

_SIMPLE = {
    "bool": "boolean",
    "int8": "tinyint",
    "int16": "smallint",
    "int32": "int",
    "int64": "bigint",
    "uint8": "smallint",
    "uint16": "int",
    "uint32": "bigint",
    "uint64": "decimal(20,0)",
    "float": "float",
    "double": "double",
    "string": "string",
    "large_string": "string",
    "binary": "binary",
    "large_binary": "binary",
    "date32[day]": "date",
    "null": "string",  # an all-NULL column reads as NULL whatever its declared type
}
_DECIMAL = re.compile(r"decimal(?:128|256)\((\d+), (-?\d+)\)")
_TIMESTAMP = re.compile(r"timestamp\[(?:s|ms|us|ns)(?:, tz=.+)?\]")
_FIXED = re.compile(r"fixed_size_binary\[\d+\]")


class CatalogTypeError(DeltaloadError):
    """A column's Arrow type has no Athena type; the table cannot be catalogued as is."""


def athena_type(arrow: str, *, column: str = "?") -> str:
    """The Athena DDL type of a manifest column type (Arrow's text of it)."""
    if arrow in _SIMPLE:
        return _SIMPLE[arrow]
    decimal = _DECIMAL.fullmatch(arrow)
    if decimal and 0 < int(decimal[1]) <= 38 and 0 <= int(decimal[2]) <= int(decimal[1]):
        return f"decimal({decimal[1]},{decimal[2]})"
    if _TIMESTAMP.fullmatch(arrow):
        return "timestamp"
    if _FIXED.fullmatch(arrow):
        return "binary"
    raise CatalogTypeError(
        f"column {column!r}: Arrow type {arrow} has no Athena type (Athena DDL types: "
        "https://docs.aws.amazon.com/athena/latest/ug/data-types.html)"
    )


def glue_columns(table_schema: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Glue ``StorageDescriptor.Columns`` of a manifest's ``tableSchema`` (names lower case,
    as the catalog stores them; Parquet columns are matched by name)."""
    columns = []
    seen: dict[str, str] = {}
    for column in table_schema:
        name = str(column["name"]).lower()
        if name in seen or name == PARTITION_COLUMN:
            raise CatalogTypeError(
                f"column {column['name']!r}: the catalog is case-insensitive and already has "
                f"{seen.get(name, PARTITION_COLUMN)!r}"
            )
        seen[name] = str(column["name"])
        columns.append({"Name": name, "Type": athena_type(column["type"], column=name)})
    return columns


def _quoted(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def create_table_ddl(
    database: str, table: str, location: str, table_schema: Sequence[Mapping[str, Any]]
) -> str:
    """Athena ``CREATE EXTERNAL TABLE`` over ``location`` (``s3://.../<table>/``), one
    partition per run."""
    columns = ",\n".join(f"  {_quoted(c['Name'])} {c['Type']}" for c in glue_columns(table_schema))
    return (
        f"CREATE EXTERNAL TABLE IF NOT EXISTS {_quoted(database)}.{_quoted(table)} (\n"
        f"{columns}\n)\n"
        f"PARTITIONED BY ({_quoted(PARTITION_COLUMN)} string)\n"
        "STORED AS PARQUET\n"
        f"LOCATION '{location}'"
    )


def add_partitions_ddl(database: str, table: str, location: str, runs: Sequence[str]) -> str:
    """Athena ``ALTER TABLE ADD PARTITION`` for published runs (their manifests' run ids)."""
    parts = "\n".join(
        f"  PARTITION ({PARTITION_COLUMN} = '{run}') LOCATION '{location}run={run}/'"
        for run in runs
    )
    return f"ALTER TABLE {_quoted(database)}.{_quoted(table)} ADD IF NOT EXISTS\n{parts}"


def current_version_sql(
    table: str,
    table_schema: Sequence[Mapping[str, Any]],
    key_columns: Sequence[str],
    order_column: str,
) -> str:
    """The latest version of each row (by key) of an ``updated_at``-style table: the row
    with the greatest ``order_column``, a later run winning a tie. Standard SQL that
    Athena (Trino) and DuckDB both run."""
    names = [c["Name"] for c in glue_columns(table_schema)]
    missing = [k for k in [*key_columns, order_column] if k.lower() not in names]
    if not key_columns or missing:
        raise CatalogTypeError(
            f"table {table!r}: the current-version view needs key columns and the filter "
            f"column among the table's columns ({', '.join(names)}); missing: "
            f"{', '.join(missing) or 'key columns'}"
        )
    keys = ", ".join(_double(k.lower()) for k in key_columns)
    listed = ", ".join(_double(n) for n in names)
    return (
        f"SELECT {listed} FROM (\n"
        f"  SELECT *, row_number() OVER (\n"
        f"    PARTITION BY {keys}\n"
        f"    ORDER BY {_double(order_column.lower())} DESC, {_double(PARTITION_COLUMN)} DESC\n"
        f"  ) AS deltaload_version\n"
        f"  FROM {_double(table)}\n"
        ") WHERE deltaload_version = 1"
    )


def _double(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
