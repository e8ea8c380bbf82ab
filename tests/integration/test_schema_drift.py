"""Schema drift between runs, offline, from SQLite, PostgreSQL and MariaDB.

One source table changes between runs: a column added, a type widened, a column
dropped, a type changed incompatibly. Each run's manifest, the history, the item,
`deltaload status` and the notification say what happened; the incompatible change
fails the run before anything is published until the item allows it; and reading all
runs as the README says (pyarrow with the table schema, DuckDB with union_by_name)
returns every column of every run.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow.dataset as ds
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from deltaload.cli import app
from deltaload.local.runtime import LocalRuntime, Source
from deltaload.schema import to_arrow
from tests.integration.conftest import FAST, ROOT, Ticks
from tests.integration.test_offline_workflow import assert_clean, published
from tests.servers import MYSQL_URL, POSTGRES_URL, SOURCES

TARGET = "drifting"


@dataclass
class DriftingTable:
    """A source table whose columns the test alters between runs."""

    kind: str
    url: str
    engine: sa.Engine
    name: str

    @property
    def qualified(self) -> str:
        return self.name if self.kind == "sqlite" else f"dwh.{self.name}"

    def execute(self, *statements: str) -> None:
        with self.engine.begin() as conn:
            for statement in statements:
                conn.exec_driver_sql(statement)

    def insert(self, ids: range, **columns: str) -> None:
        names = ["row_id", *columns]
        for i in ids:
            values = [str(i), *(v.format(i=i) for v in columns.values())]
            self.execute(
                f"INSERT INTO {self.qualified} ({', '.join(names)}) VALUES ({', '.join(values)})"
            )

    def retype(self, column: str, declared: str) -> None:
        """Change a column's declared type as each database does it."""
        if self.kind == "postgres":
            self.execute(
                f"ALTER TABLE {self.qualified} ALTER COLUMN {column} TYPE {declared} "
                f"USING {column}::{declared}"
            )
        elif self.kind == "mysql":
            self.execute(f"ALTER TABLE {self.qualified} MODIFY {column} {declared}")
        else:  # SQLite has no ALTER COLUMN: rebuild the table with the new declaration
            with self.engine.connect() as conn:
                info = conn.exec_driver_sql(f"PRAGMA table_info({self.name})").fetchall()
            definition = ", ".join(
                f"{row[1]} {declared if row[1] == column else row[2]}"
                + (" PRIMARY KEY" if row[5] else "")
                for row in info
            )
            self.execute(
                f"CREATE TABLE {self.name}_new ({definition})",
                f"INSERT INTO {self.name}_new SELECT * FROM {self.name}",
                f"DROP TABLE {self.name}",
                f"ALTER TABLE {self.name}_new RENAME TO {self.name}",
            )


@pytest.fixture(params=SOURCES)
def drifting(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DriftingTable]:
    kind = request.param
    name = f"drift_{uuid.uuid4().hex[:8]}"
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'source.sqlite'}"
        engine = sa.create_engine(url)
    else:
        url = POSTGRES_URL if kind == "postgres" else MYSQL_URL
        engine = request.getfixturevalue(f"{kind}_engine")
    table = DriftingTable(kind, url, engine, name)
    table.execute(
        f"CREATE TABLE {table.qualified} (row_id BIGINT PRIMARY KEY, "
        "amount NUMERIC(10, 2), note VARCHAR(50))"
    )
    try:
        yield table
    finally:
        table.execute(f"DROP TABLE {table.qualified}")
        if kind == "sqlite":
            engine.dispose()


@pytest.fixture
def runtime(drifting: DriftingTable, tmp_path: Path) -> Iterator[LocalRuntime]:
    with LocalRuntime(
        ROOT,
        tmp_path / "state",
        Source.from_url(drifting.url, schema="dwh"),
        timing=FAST,
        environment={"POLL_INITIAL_SECONDS": "0", "POLL_MAX_SECONDS": "1"},
    ) as rt:
        yield rt


def item(drifting: DriftingTable, **changes: str) -> dict[str, str]:
    return {
        "targetTableName": TARGET,
        "activeflag": "true",
        "sourceSchema": "dwh",
        "sourceTable": drifting.name,
        "filtercolumn": "row_id",
        "filteroperator": "gte",
        "filtercolumntype": "integer",
        "startvalue": "1",
        "ouputs3Prefix": "lake",
        **changes,
    }


def manifest(rt: LocalRuntime, run_id: str) -> dict:
    key = f"lake/dwh/{TARGET}/_manifests/{run_id}.json"
    body = rt.session.client("s3").get_object(Bucket=rt.bucket, Key=key)["Body"].read()
    return json.loads(body)


def columns(document: dict, field: str = "schema") -> dict[str, str]:
    return {c["name"].lower(): c["type"] for c in document[field]}


def run_once(rt: LocalRuntime, ticks: Ticks, status: str = "SUCCEEDED") -> str:
    [execution] = rt.tick(now=ticks()).executions
    assert execution.status == status, (execution, rt.item(TARGET))
    return execution.name


def glue_columns(rt: LocalRuntime) -> list[tuple[str, str]]:
    """The item's Glue table's columns, as the catalog holds them."""
    table = rt.session.client("glue").get_table(
        DatabaseName=rt.template.physical_ids["GlueDatabase"], Name=TARGET
    )["Table"]
    return [(c["Name"], c["Type"]) for c in table["StorageDescriptor"]["Columns"]]


def glue_runs(rt: LocalRuntime) -> set[str]:
    found = rt.session.client("glue").get_partitions(
        DatabaseName=rt.template.physical_ids["GlueDatabase"], TableName=TARGET
    )["Partitions"]
    return {p["Values"][0] for p in found}


def notifications(rt: LocalRuntime) -> list[str]:
    return [n["message"] for n in rt.notifications() if TARGET in n["message"]]


def test_columns_added_widened_dropped_and_changed_between_runs(
    drifting: DriftingTable, runtime: LocalRuntime, ticks: Ticks, tmp_path: Path
):
    rt = runtime
    rt.put_item(item(drifting))
    drifting.insert(range(1, 6), amount="{i}.25", note="'n{i}'")
    first = run_once(rt, ticks)
    assert columns(manifest(rt, first)) == {
        "row_id": "int64",
        "amount": "decimal128(10, 2)",
        "note": "string",
    }
    assert manifest(rt, first)["schemaChanges"] == []
    assert rt.item(TARGET)["schemaManifestKey"].endswith(f"_manifests/{first}.json")
    assert "lastSchemaChange" not in rt.item(TARGET)
    assert glue_columns(rt) == [
        ("row_id", "bigint"),
        ("amount", "decimal(10,2)"),
        ("note", "string"),
    ]

    # 1. a column added: published, recorded, notified
    drifting.execute(f"ALTER TABLE {drifting.qualified} ADD COLUMN extra VARCHAR(20)")
    drifting.insert(range(6, 11), amount="{i}.5", note="'n{i}'", extra="'x{i}'")
    added = run_once(rt, ticks)
    document = manifest(rt, added)
    assert document["schemaChanges"] == [
        {"change": "added", "column": "extra", "newType": "string"}
    ]
    assert list(columns(document, "tableSchema")) == ["row_id", "amount", "note", "extra"]
    record = next(h for h in rt.history(TARGET) if h["runId"] == added)
    assert record["schemaChanges"] == document["schemaChanges"]
    assert rt.item(TARGET)["lastSchemaChange"] == f"run {added}: added extra (string)"
    assert any("schema changed: added extra (string)" in m for m in notifications(rt))
    assert glue_columns(rt)[-1] == ("extra", "string")

    # 2. a type widened
    drifting.retype("amount", "NUMERIC(14, 2)")
    drifting.insert(range(11, 16), amount="123456789.75", note="'n{i}'", extra="'x{i}'")
    widened = run_once(rt, ticks)
    document = manifest(rt, widened)
    assert document["schemaChanges"] == [
        {
            "change": "widened",
            "column": "amount",
            "oldType": "decimal128(10, 2)",
            "newType": "decimal128(14, 2)",
        }
    ]
    assert columns(document, "tableSchema")["amount"] == "decimal128(14, 2)"
    assert ("amount", "decimal(14,2)") in glue_columns(rt)

    # 3. a column dropped: the table schema keeps it, marked
    drifting.execute(f"ALTER TABLE {drifting.qualified} DROP COLUMN note")
    drifting.insert(range(16, 21), amount="{i}", extra="'x{i}'")
    dropped = run_once(rt, ticks)
    document = manifest(rt, dropped)
    assert document["schemaChanges"] == [
        {"change": "dropped", "column": "note", "oldType": "string"}
    ]
    assert {"name": "note", "type": "string", "dropped": True} in [
        {**c, "name": c["name"].lower()} for c in document["tableSchema"]
    ]

    # 4. a type changed incompatibly: the run fails before publishing, naming it
    drifting.retype("amount", "VARCHAR(40)")
    drifting.insert(range(21, 26), amount="'about {i}'", extra="'x{i}'")
    refused = run_once(rt, ticks, status="FAILED")
    state = rt.item(TARGET)
    assert state["watermark"] == "20"
    assert "amount (decimal128(14, 2) -> string)" in state["lastRunError"]
    assert "schemachanges" in state["lastRunError"]
    assert state["schemaManifestKey"].endswith(f"_manifests/{dropped}.json")
    assert not rt.keys(f"lake/dwh/{TARGET}/run={refused}/")
    assert not rt.keys(f"lake/dwh/{TARGET}/_manifests/{refused}")
    assert_clean(rt)
    assert glue_runs(rt) == {first, added, widened, dropped}  # the dropped column stays too
    assert [n for n, _ in glue_columns(rt)] == ["row_id", "amount", "note", "extra"]
    assert ("amount", "decimal(14,2)") in glue_columns(rt)

    # ... until the item allows it
    rt.put_item({**rt.item(TARGET), "schemachanges": "any"})  # its run state kept
    allowed = run_once(rt, ticks)
    document = manifest(rt, allowed)
    assert [c["change"] for c in document["schemaChanges"]] == ["incompatible"]
    assert columns(document, "tableSchema")["amount"] == "string"
    assert ("amount", "string") in glue_columns(rt)  # the table takes the allowed new type
    assert glue_runs(rt) == {first, added, widened, dropped, allowed}

    # Every row once, and every column of every run, as the README reads the lake.
    runs = published(rt, TARGET)
    assert sorted(r["row_id"] for rows in runs.values() for r in rows) == list(range(1, 26))
    lake = tmp_path / "state" / "s3" / rt.bucket / "lake" / "dwh" / TARGET
    files = sorted(str(p) for p in lake.glob("run=*/*.parquet"))
    schema = to_arrow(document["tableSchema"])
    rows = {r["row_id"]: r for r in ds.dataset(files, schema=schema).to_table().to_pylist()}
    assert set(rows) == set(range(1, 26))
    names = {n.lower() for n in schema.names}
    assert names == {"row_id", "amount", "note", "extra"}
    lower = {k: {n.lower(): v for n, v in r.items()} for k, r in rows.items()}
    assert (lower[1]["note"], lower[1]["extra"], lower[1]["amount"]) == ("n1", None, "1.25")
    assert (lower[12]["amount"], lower[12]["note"]) == ("123456789.75", "n12")
    assert (lower[17]["note"], lower[17]["extra"]) == (None, "x17")
    assert lower[22]["amount"] == "about 22"
    query = f"select * from read_parquet('{lake}/run=*/*.parquet', union_by_name = true)"
    result = duckdb.sql(query)
    assert {c.lower() for c in result.columns} == {"row_id", "amount", "note", "extra", "run"}
    assert len(result.fetchall()) == 25

    # deltaload status names the last change
    out = CliRunner(env={"COLUMNS": "300"}).invoke(
        app, ["--state-dir", str(tmp_path / "state"), "status"], catch_exceptions=False
    )
    assert out.exit_code == 0, out.output
    assert "schema change" in out.output
    assert f"run {allowed}: incompatible amount (decimal128(14, 2) -> string)" in out.output
    # ... and how long ago the table last succeeded
    assert rt.item(TARGET)["lastSucceededAt"] == rt.item(TARGET)["lastRunEndedAt"]
    assert "last success" in out.output and " ago" in out.output


def test_first_run_without_rows_records_no_table_schema(
    drifting: DriftingTable, runtime: LocalRuntime, ticks: Ticks
):
    runtime.put_item(item(drifting))
    run_once(runtime, ticks)
    assert "schemaManifestKey" not in runtime.item(TARGET)
    # The source probe found no row: nothing was loaded, so nothing, no manifest either,
    # was published.
    assert runtime.keys(f"lake/dwh/{TARGET}/") == []
    assert runtime.history(TARGET)[-1]["rows"] == 0
    drifting.insert(range(1, 3), amount="1", note="'a'")
    first = run_once(runtime, ticks)
    assert manifest(runtime, first)["schemaChanges"] == []
    assert runtime.item(TARGET)["schemaManifestKey"].endswith(f"_manifests/{first}.json")
    assert Decimal("1") in [
        r["amount"] for rows in published(runtime, TARGET).values() for r in rows
    ]
