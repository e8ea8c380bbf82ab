"""Athena/Glue view of a table: types, DDL, and the current-version view run by DuckDB."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from deltaload.catalog import (
    CatalogTypeError,
    add_partitions_ddl,
    athena_type,
    create_table_ddl,
    create_view_ddl,
    current_version_sql,
    glue_columns,
)


@pytest.mark.parametrize(
    ("arrow", "athena"),
    [
        ("bool", "boolean"),
        ("int8", "tinyint"),
        ("int32", "int"),
        ("int64", "bigint"),
        ("uint32", "bigint"),
        ("uint64", "decimal(20,0)"),
        ("double", "double"),
        ("string", "string"),
        ("large_string", "string"),
        ("binary", "binary"),
        ("date32[day]", "date"),
        ("timestamp[us]", "timestamp"),
        ("timestamp[ms, tz=UTC]", "timestamp"),
        ("decimal128(12, 2)", "decimal(12,2)"),
    ],
)
def test_athena_types(arrow: str, athena: str):
    assert athena_type(arrow) == athena


@pytest.mark.parametrize("arrow", ["time64[us]", "decimal256(40, 2)", "list<item: int64>"])
def test_types_athena_cannot_hold_are_refused_naming_the_column(arrow: str):
    with pytest.raises(CatalogTypeError, match="column 'x'"):
        athena_type(arrow, column="x")


def test_columns_are_lower_case_and_may_not_collide():
    assert glue_columns([{"name": "Amount", "type": "int64"}]) == [
        {"Name": "amount", "Type": "bigint"}
    ]
    with pytest.raises(CatalogTypeError, match="case-insensitive"):
        glue_columns([{"name": "a", "type": "int64"}, {"name": "A", "type": "int64"}])
    with pytest.raises(CatalogTypeError):
        glue_columns([{"name": "run", "type": "string"}])


def test_ddl():
    schema = [{"name": "id", "type": "int64"}, {"name": "amount", "type": "decimal128(12, 2)"}]
    ddl = create_table_ddl("lake", "orders", "s3://b/lake/dwh/orders/", schema)
    assert ddl == (
        "CREATE EXTERNAL TABLE IF NOT EXISTS `lake`.`orders` (\n"
        "  `id` bigint,\n  `amount` decimal(12,2)\n)\n"
        "PARTITIONED BY (`run` string)\nSTORED AS PARQUET\n"
        "LOCATION 's3://b/lake/dwh/orders/'"
    )
    assert add_partitions_ddl("lake", "orders", "s3://b/o/", ["r1"]) == (
        "ALTER TABLE `lake`.`orders` ADD IF NOT EXISTS\n"
        "  PARTITION (run = 'r1') LOCATION 's3://b/o/run=r1/'"
    )


def test_current_version_view_returns_one_row_per_key(tmp_path: Path):
    """Run by DuckDB over a lake of three runs of an updated_at item."""
    runs = {
        "t-20260101T000100Z": [
            (1, "NEW", "2026-01-01 00:00:00"),
            (2, "NEW", "2026-01-01 00:00:00"),
        ],
        "t-20260101T000200Z": [
            (2, "PAID", "2026-01-01 00:01:30"),
            (3, "NEW", "2026-01-01 00:01:40"),
        ],
        "t-20260101T000300Z": [(2, "SHIPPED", "2026-01-01 00:02:10")],
    }
    for run, rows in runs.items():
        folder = tmp_path / f"run={run}"
        folder.mkdir()
        table = pa.table(
            {
                "row_id": [r[0] for r in rows],
                "status": [r[1] for r in rows],
                "updated_at": pa.array(
                    [datetime.fromisoformat(r[2]) for r in rows], pa.timestamp("us")
                ),
            }
        )
        pq.write_table(table, folder / "LOAD00000001.parquet")
    schema = [
        {"name": "row_id", "type": "int64"},
        {"name": "status", "type": "string"},
        {"name": "updated_at", "type": "timestamp[us]"},
    ]
    sql = current_version_sql("orders", schema, ["row_id"], "updated_at")
    db = duckdb.connect()
    db.execute(
        "create view orders as select * from read_parquet("
        f"'{tmp_path}/run=*/*.parquet', union_by_name = true, hive_partitioning = true)"
    )
    rows = db.execute(sql + " order by row_id").fetchall()
    assert [(r[0], r[1]) for r in rows] == [(1, "NEW"), (2, "SHIPPED"), (3, "NEW")]
    assert db.execute("select count(*) from orders").fetchone() == (5,)
    with pytest.raises(CatalogTypeError, match="missing: id"):
        current_version_sql("orders", schema, ["id"], "updated_at")


def test_current_version_ties_are_broken_by_run_then_the_other_columns(tmp_path: Path):
    """The same updated_at for a key in two runs: the later run wins; twice in one run
    (a key that is not unique at the source): the greatest other values, every time."""
    stamp = datetime(2026, 1, 1)
    runs = {
        "t-20260101T000100Z": [(1, "A", stamp), (2, "B", stamp), (2, "C", stamp)],
        "t-20260101T000200Z": [(1, "Z0", stamp)],
    }
    for run, rows in runs.items():
        folder = tmp_path / f"run={run}"
        folder.mkdir()
        pq.write_table(
            pa.table(
                {
                    "row_id": [r[0] for r in rows],
                    "status": [r[1] for r in rows],
                    "updated_at": pa.array([r[2] for r in rows], pa.timestamp("us")),
                }
            ),
            folder / "LOAD00000001.parquet",
        )
    schema = [
        {"name": "row_id", "type": "int64"},
        {"name": "status", "type": "string"},
        {"name": "updated_at", "type": "timestamp[us]"},
    ]
    db = duckdb.connect()
    db.execute(
        "create view orders as select * from read_parquet("
        f"'{tmp_path}/run=*/*.parquet', union_by_name = true, hive_partitioning = true)"
    )
    sql = current_version_sql("orders", schema, ["row_id"], "updated_at")
    for _ in range(3):
        rows = db.execute(sql + " order by row_id").fetchall()
        assert [(r[0], r[1], r[3]) for r in rows] == [
            (1, "Z0", "t-20260101T000200Z"),
            (2, "C", "t-20260101T000100Z"),
        ]


def test_view_ddl_names_the_view_after_the_table():
    schema = [{"name": "id", "type": "int64"}, {"name": "updated_at", "type": "timestamp[us]"}]
    ddl = create_view_ddl("lake", "orders", schema, ["id"], "updated_at")
    assert ddl.startswith('CREATE OR REPLACE VIEW "lake"."orders_current" AS\nSELECT "id"')
    assert 'FROM "lake"."orders"' in ddl
