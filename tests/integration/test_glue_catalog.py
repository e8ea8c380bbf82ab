"""The Glue Data Catalog, offline, from SQLite, PostgreSQL and MariaDB.

After a run the stack's Glue database (moto's Glue, provisioned from the template's
AWS::Glue::Database) holds a table for the item with the run's columns as Athena types,
Parquet's SerDe and formats, the table's prefix as location and the run as a partition;
a column added at the source between runs is appended to the table; a catalog failure
leaves the run committed, warns, and the next run registers what is missing.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from deltaload.catalog import PARQUET_INPUT, PARQUET_OUTPUT, PARQUET_SERDE
from deltaload.cli import app
from deltaload.local.runtime import LocalRuntime
from tests.integration.conftest import OrdersTable, Ticks
from tests.integration.test_offline_workflow import assert_clean, published

TARGET = "Orders_Glue"  # the Glue table is its lower-case name
GLUE_TABLE = "orders_glue"
OLD = datetime.now(UTC) - timedelta(hours=2)
# The orders columns as Athena types (catalog.athena_type of what DMS writes).
COLUMNS = [
    ("row_id", "bigint"),
    ("status", "string"),
    ("amount", "decimal(12,2)"),
    ("note", "string"),
    ("updated_at", "timestamp"),
]


def database(rt: LocalRuntime) -> str:
    return rt.template.physical_ids["GlueDatabase"]


def glue_table(rt: LocalRuntime) -> dict:
    glue = rt.session.client("glue")
    return glue.get_table(DatabaseName=database(rt), Name=GLUE_TABLE)["Table"]


def columns(table: dict) -> list[tuple[str, str]]:
    return [(c["Name"], c["Type"]) for c in table["StorageDescriptor"]["Columns"]]


def partitions(rt: LocalRuntime) -> dict[str, str]:
    glue = rt.session.client("glue")
    found = glue.get_partitions(DatabaseName=database(rt), TableName=GLUE_TABLE)["Partitions"]
    return {p["Values"][0]: p["StorageDescriptor"]["Location"] for p in found}


def run_once(rt: LocalRuntime, ticks: Ticks) -> str:
    [execution] = rt.tick(now=ticks()).executions
    assert execution.status == "SUCCEEDED", (execution, rt.item(TARGET))
    return execution.name


def qualified(orders: OrdersTable) -> str:
    return orders.name if orders.kind == "sqlite" else f"dwh.{orders.name}"


def test_a_run_registers_the_table_and_partition_and_an_added_column_updates_it(
    orders: OrdersTable, offline: LocalRuntime, ticks: Ticks
):
    rt = offline
    orders.insert(range(1, 11), OLD)
    rt.put_item(orders.item(TARGET))
    first = run_once(rt, ticks)

    table = glue_table(rt)
    assert database(rt) == "deltaload_local_lake"  # <stack name>_lake, - as _
    assert columns(table) == COLUMNS
    assert table["PartitionKeys"] == [{"Name": "run", "Type": "string"}]
    assert table["TableType"] == "EXTERNAL_TABLE"
    assert table["Parameters"]["classification"] == "parquet"
    descriptor = table["StorageDescriptor"]
    location = f"s3://{rt.bucket}/lake/dwh/{TARGET}/"
    assert descriptor["Location"] == location
    assert descriptor["InputFormat"] == PARQUET_INPUT
    assert descriptor["OutputFormat"] == PARQUET_OUTPUT
    assert descriptor["SerdeInfo"]["SerializationLibrary"] == PARQUET_SERDE
    assert partitions(rt) == {first: f"{location}run={first}/"}
    assert set(published(rt, TARGET)) == {first}  # the partition is where the files are

    # A column added at the source: appended to the table, a second partition.
    with orders.engine.begin() as conn:
        conn.exec_driver_sql(f"ALTER TABLE {qualified(orders)} ADD COLUMN extra VARCHAR(20)")
        conn.exec_driver_sql(
            f"INSERT INTO {qualified(orders)} (row_id, status, amount, note, updated_at, extra)"
            " VALUES (11, 'NEW', 2.5, 'n', '2025-01-01 00:00:00', 'x')"
        )
    second = run_once(rt, ticks)
    assert columns(glue_table(rt)) == [*COLUMNS, ("extra", "string")]
    assert partitions(rt) == {
        first: f"{location}run={first}/",
        second: f"{location}run={second}/",
    }
    assert_clean(rt)


@pytest.mark.parametrize("orders", ["sqlite"], indirect=True)
def test_a_catalog_failure_warns_and_the_next_run_registers_what_is_missing(
    orders: OrdersTable, offline: LocalRuntime, ticks: Ticks
):
    rt = offline
    orders.insert(range(1, 6), OLD)
    rt.put_item(orders.item(TARGET))
    rt.faults.fail("glue", "CreateTable", code="AccessDeniedException", status=400)
    first = run_once(rt, ticks)

    # The run is committed and its data published; the catalog failure is a warning.
    assert rt.item(TARGET)["watermark"] == "5"
    assert set(published(rt, TARGET)) == {first}
    [record] = rt.history(TARGET)
    assert any("Glue catalog not updated" in w for w in record["warnings"]), record
    assert any("Glue catalog not updated" in n["message"] for n in rt.notifications())
    glue = rt.session.client("glue")
    with pytest.raises(glue.exceptions.EntityNotFoundException):
        glue.get_table(DatabaseName=database(rt), Name=GLUE_TABLE)

    orders.insert(range(6, 9), OLD)
    second = run_once(rt, ticks)
    assert columns(glue_table(rt)) == COLUMNS
    assert set(partitions(rt)) == {first, second}
    assert not [w for w in rt.history(TARGET)[-1].get("warnings", []) if "Glue" in w]


def test_ddl_prints_the_table_and_a_current_version_view_duckdb_runs_over_the_lake(
    orders: OrdersTable, offline: LocalRuntime, ticks: Ticks, tmp_path: Path
):
    rt = offline
    target = "changes_glue"
    rt.put_item(
        orders.item(
            target,
            filtercolumn="updated_at",
            filtercolumntype="timestamp",
            startvalue="2000-01-01 00:00:00",
            safetylagseconds=0,
            keycolumns="row_id",
        )
    )
    orders.insert(range(1, 6), datetime.now(UTC) - timedelta(hours=1))
    [first] = rt.tick(now=ticks()).executions
    # Windows end at the clock's last whole second: each change lands in the next run.
    time.sleep(1.05)
    orders.update([2, 4], "PAID", datetime.now(UTC))
    orders.insert(range(6, 8), datetime.now(UTC))
    time.sleep(1.05)
    [second] = rt.tick(now=ticks()).executions
    time.sleep(1.05)
    orders.update([4], "SHIPPED", datetime.now(UTC))
    time.sleep(1.05)
    [third] = rt.tick(now=ticks()).executions
    assert [e.status for e in (first, second, third)] == ["SUCCEEDED"] * 3
    runs = published(rt, target)
    assert sum(len(rows) for rows in runs.values()) == 10  # 1-5, then 2, 4, 6, 7, then 4

    out = CliRunner(env={"COLUMNS": "300"}).invoke(
        app, ["--state-dir", str(tmp_path / "state"), "ddl", target], catch_exceptions=False
    )
    assert out.exit_code == 0, out.output
    statements = [s.strip() for s in out.output.split(";") if s.strip()]
    create, partitions_ddl, view = statements
    db = database(rt)
    assert create.startswith(f"CREATE EXTERNAL TABLE IF NOT EXISTS `{db}`.`{target}`")
    assert "PARTITIONED BY (`run` string)" in create and "STORED AS PARQUET" in create
    assert all(f"PARTITION (run = '{run}')" in partitions_ddl for run in runs)
    assert view.startswith(f'CREATE OR REPLACE VIEW "{db}"."{target}_current" AS')

    # The view, as printed, run by DuckDB over the offline lake: one row per key, the latest.
    lake = tmp_path / "state" / "s3" / rt.bucket / "lake" / "dwh" / target
    duck = duckdb.connect()
    duck.execute(f'CREATE SCHEMA "{db}"')
    duck.execute(
        f'CREATE VIEW "{db}"."{target}" AS SELECT * FROM read_parquet('
        f"'{lake}/run=*/*.parquet', union_by_name = true, hive_partitioning = true)"
    )
    duck.execute(view)
    current = duck.execute(
        f'SELECT row_id, status, run FROM "{db}"."{target}_current" ORDER BY row_id'
    ).fetchall()
    assert [r[0] for r in current] == list(range(1, 8))
    by_key = {r[0]: (r[1], r[2]) for r in current}
    assert by_key[2] == ("PAID", second.name)
    assert by_key[4] == ("SHIPPED", third.name)
    assert by_key[1] == ("NEW", first.name)


@pytest.mark.parametrize("orders", ["sqlite"], indirect=True)
def test_ddl_before_any_published_file_says_so(
    orders: OrdersTable, offline: LocalRuntime, tmp_path: Path
):
    offline.put_item(orders.item(TARGET))
    runner = CliRunner(env={"COLUMNS": "300"})
    state = ["--state-dir", str(tmp_path / "state")]
    out = runner.invoke(app, [*state, "ddl", TARGET])
    assert out.exit_code == 1
    assert "no run has published files yet" in out.output and "Traceback" not in out.output
    out = runner.invoke(app, [*state, "ddl", "nosuch"])
    assert out.exit_code == 1 and "no controller item 'nosuch'" in out.output
