"""The table as Athena and the Glue Data Catalog see it: column types, DDL, views (pure).

Types are Athena's DDL (Hive) names for the Arrow types of the Parquet files, as
https://docs.aws.amazon.com/athena/latest/ug/data-types.html lists them: Athena has no
unsigned integers (each maps to the next wider signed type, uint64 to decimal(20,0)),
no time of day type in DDL and decimals of at most 38 digits. Each run is one partition,
``run`` (the ``run=<runId>/`` folder), so the catalog columns are the manifest's
``tableSchema`` and the partition key ``run``.

``register`` keeps the stack's Glue Data Catalog in step with the lake after each publish:
one Glue table per controller item (``glue_table_name``), a partition per published run.
It is the only function here that calls AWS.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from deltaload.aws import Clients, error_code
from deltaload.errors import DeltaloadError
from deltaload.settings import Settings

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
    *,
    database: str | None = None,
) -> str:
    """The latest version of each row (by key) of an ``updated_at``-style table.

    Per key the row with the greatest ``order_column`` wins; on a tie the later run (run
    ids sort by their start time); on a tie within one run the greatest values of the
    other columns, in table order, so the same lake always gives the same rows (rows equal
    in every column are the same row). Standard SQL that Athena (Trino) and DuckDB both
    run; ``database`` qualifies the table for Athena.
    """
    names = [c["Name"] for c in glue_columns(table_schema)]
    missing = [k for k in [*key_columns, order_column] if k.lower() not in names]
    if not key_columns or missing:
        raise CatalogTypeError(
            f"table {table!r}: the current-version view needs key columns and the filter "
            f"column among the table's columns ({', '.join(names)}); missing: "
            f"{', '.join(missing) or 'key columns'}"
        )
    keys = [k.lower() for k in key_columns]
    order = order_column.lower()
    rest = [n for n in names if n not in keys and n != order]
    ordering = ", ".join(f"{_double(n)} DESC NULLS LAST" for n in [order, PARTITION_COLUMN, *rest])
    listed = ", ".join(_double(n) for n in [*names, PARTITION_COLUMN])
    source = f"{_double(database)}.{_double(table)}" if database else _double(table)
    return (
        f"SELECT {listed} FROM (\n"
        f"  SELECT *, row_number() OVER (\n"
        f"    PARTITION BY {', '.join(_double(k) for k in keys)}\n"
        f"    ORDER BY {ordering}\n"
        f"  ) AS deltaload_version\n"
        f"  FROM {source}\n"
        ") WHERE deltaload_version = 1"
    )


def view_name(table: str) -> str:
    """The current-version view of an item's Glue table: ``<table>_current``."""
    return f"{table}_current"


def create_view_ddl(
    database: str,
    table: str,
    table_schema: Sequence[Mapping[str, Any]],
    key_columns: Sequence[str],
    order_column: str,
) -> str:
    """Athena ``CREATE OR REPLACE VIEW`` of the current version of each row."""
    query = current_version_sql(table, table_schema, key_columns, order_column, database=database)
    return f"CREATE OR REPLACE VIEW {_double(database)}.{_double(view_name(table))} AS\n{query}"


def athena_ddl(
    database: str,
    target_table_name: str,
    location: str,
    table_schema: Sequence[Mapping[str, Any]],
    runs: Sequence[str],
    *,
    key_columns: Sequence[str] = (),
    order_column: str | None = None,
) -> str:
    """Every statement that makes an item's table in Athena as the stack keeps it: the
    table, a partition per published run and, with key columns, the current-version view;
    each ends with ``;``."""
    name = glue_table_name(target_table_name)
    statements = [create_table_ddl(database, name, location, table_schema)]
    if runs:
        statements.append(add_partitions_ddl(database, name, location, runs))
    if key_columns and order_column:
        statements.append(create_view_ddl(database, name, table_schema, key_columns, order_column))
    return "\n\n".join(f"{s};" for s in statements)


def _double(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# --- the Glue Data Catalog -------------------------------------------------------------

# Athena's Parquet SerDe and formats, as a Glue table for Parquet declares them:
# https://docs.aws.amazon.com/athena/latest/ug/parquet-serde.html
PARQUET_SERDE = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
PARQUET_INPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
PARQUET_OUTPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
# The table parameter naming the controller item a Glue table belongs to.
ITEM_PARAMETER = "deltaload.targetTableName"
# BatchCreatePartition takes at most 100 partitions per call:
# https://docs.aws.amazon.com/glue/latest/webapi/API_BatchCreatePartition.html
PARTITIONS_PER_CALL = 100


class CatalogError(DeltaloadError):
    """The Glue Data Catalog could not be brought in step with the lake."""


@dataclass(frozen=True)
class PublishedUnit:
    """One published run prefix: where it is, its partition value and the table's schema
    after it (the manifest's ``tableSchema``; None while no run of the table wrote files)."""

    run_id: str
    run_prefix: str  # <output>/<schema>/<table>/run=<runId>/
    table_schema: list[dict[str, Any]] | None = None

    @property
    def table_prefix(self) -> str:
        """The table's final prefix, ``<output>/<schema>/<table>/``."""
        return self.run_prefix[: self.run_prefix.rindex(f"{PARTITION_COLUMN}=")]


@dataclass(frozen=True)
class Registration:
    """What ``register`` changed in the catalog."""

    database: str
    table: str
    created: bool = False
    updated: bool = False
    partitions_added: list[str] = field(default_factory=list)


def glue_table_name(target_table_name: str) -> str:
    """The Glue table of a controller item: its ``targetTableName`` in lower case (the
    catalog keeps names in lower case; item names are letters, digits and ``_``)."""
    return target_table_name.lower()


def storage_descriptor(location: str, table_schema: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A Glue ``StorageDescriptor`` for Parquet files under ``location``."""
    return {
        "Columns": glue_columns(table_schema),
        "Location": location,
        "InputFormat": PARQUET_INPUT,
        "OutputFormat": PARQUET_OUTPUT,
        "SerdeInfo": {"SerializationLibrary": PARQUET_SERDE, "Parameters": {}},
    }


def table_input(
    name: str, location: str, table_schema: Sequence[Mapping[str, Any]], *, item: str
) -> dict[str, Any]:
    """The Glue ``TableInput`` of an item's table: an external Parquet table over
    ``location`` partitioned by ``run``."""
    return {
        "Name": name,
        "TableType": "EXTERNAL_TABLE",
        "Parameters": {"classification": "parquet", "EXTERNAL": "TRUE", ITEM_PARAMETER: item},
        "PartitionKeys": [{"Name": PARTITION_COLUMN, "Type": "string"}],
        "StorageDescriptor": storage_descriptor(location, table_schema),
    }


def partition_input(run_id: str, location: str, descriptor: Mapping[str, Any]) -> dict[str, Any]:
    """The Glue ``PartitionInput`` of one run: the table's descriptor at its run prefix."""
    return {
        "Values": [run_id],
        "StorageDescriptor": {**descriptor, "Location": location},
    }


def _needs_update(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    have = current.get("StorageDescriptor", {})
    want = wanted["StorageDescriptor"]
    columns = [{"Name": c["Name"], "Type": c["Type"]} for c in have.get("Columns", [])]
    return (
        columns != want["Columns"]
        or have.get("Location") != want["Location"]
        or [k.get("Name") for k in current.get("PartitionKeys", [])] != [PARTITION_COLUMN]
    )


def _published_runs(clients: Clients, bucket: str, table_prefix: str) -> set[str]:
    """The run ids of the table's manifests: every run published under its prefix."""
    prefix = f"{table_prefix}_manifests/"
    runs: set[str] = set()
    for page in clients.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for entry in page.get("Contents", []):
            name = entry["Key"][len(prefix) :]
            if "/" not in name and name.endswith(".json"):
                runs.add(name[: -len(".json")])
    return runs


def _registered_runs(clients: Clients, database: str, name: str) -> set[str]:
    runs: set[str] = set()
    paginator = clients.glue.get_paginator("get_partitions")
    for page in paginator.paginate(DatabaseName=database, TableName=name):
        runs |= {p["Values"][0] for p in page.get("Partitions", []) if p.get("Values")}
    return runs


def register(
    clients: Clients, settings: Settings, table: str, units: Sequence[PublishedUnit]
) -> Registration | None:
    """Bring the item's Glue table in step with the lake after ``units`` were published.

    Creates the table, or updates its columns when the table schema changed (a column
    added, a type widened, or a change the item allowed with ``schemachanges=any``), then
    adds a partition for every published run (manifest) the catalog lacks, so a run after
    one whose registration failed catches up. None when the stack keeps no catalog or no
    run of the table wrote files yet. CatalogError (or the AWS error) when it fails.
    """
    database = settings.glue_database
    schema = next((u.table_schema for u in reversed(units) if u.table_schema), None)
    if not database or not units or schema is None:
        return None
    name = glue_table_name(table)
    table_prefix = units[-1].table_prefix
    bucket = settings.data_bucket
    wanted = table_input(name, f"s3://{bucket}/{table_prefix}", schema, item=table)
    created = updated = False
    try:
        current = clients.glue.get_table(DatabaseName=database, Name=name)["Table"]
    except ClientError as error:
        if error_code(error) != "EntityNotFoundException":
            raise
        clients.glue.create_table(DatabaseName=database, TableInput=wanted)
        created = True
    else:
        owner = (current.get("Parameters") or {}).get(ITEM_PARAMETER)
        if owner != table:
            raise CatalogError(
                f"table {table!r}: Glue table {database}.{name} belongs to "
                f"{'item ' + repr(owner) if owner else 'something other than deltaload'}; "
                f"rename the item or drop that Glue table"
            )
        if _needs_update(current, wanted):
            clients.glue.update_table(DatabaseName=database, TableInput=wanted)
            updated = True
    runs = _published_runs(clients, bucket, table_prefix) | {u.run_id for u in units}
    missing = sorted(runs - (set() if created else _registered_runs(clients, database, name)))
    descriptor = wanted["StorageDescriptor"]
    for start in range(0, len(missing), PARTITIONS_PER_CALL):
        chunk = missing[start : start + PARTITIONS_PER_CALL]
        answer = clients.glue.batch_create_partition(
            DatabaseName=database,
            TableName=name,
            PartitionInputList=[
                partition_input(run, f"s3://{bucket}/{table_prefix}run={run}/", descriptor)
                for run in chunk
            ],
        )
        _check_partition_errors(table, answer.get("Errors", []))
    return Registration(database, name, created, updated, missing)


def _check_partition_errors(table: str, errors: Iterable[Mapping[str, Any]]) -> None:
    # A partition another attempt added already is what this call wanted.
    refused = [
        e for e in errors if e.get("ErrorDetail", {}).get("ErrorCode") != "AlreadyExistsException"
    ]
    if refused:
        detail = "; ".join(
            f"run={(e.get('PartitionValues') or ['?'])[0]}: "
            f"{e.get('ErrorDetail', {}).get('ErrorCode')}: "
            f"{e.get('ErrorDetail', {}).get('ErrorMessage')}"
            for e in refused
        )
        raise CatalogError(f"table {table!r}: Glue refused partitions: {detail}")


def table_schema_of(clients: Clients, bucket: str, manifest_key: str | None) -> Any:
    """The ``tableSchema`` of the manifest ``manifest_key`` (None without one)."""
    if not manifest_key:
        return None
    body = clients.s3.get_object(Bucket=bucket, Key=manifest_key)["Body"].read()
    return json.loads(body).get("tableSchema")
