"""The schema of a table across runs: classifying changes, the policy, reading all runs."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from deltaload.items import SchemaPolicy
from deltaload.schema import (
    Change,
    ChangeKind,
    SchemaChangeError,
    arrow_type,
    check,
    columns_of,
    compare,
    is_widening,
    run_schema,
    to_arrow,
)


def cols(*pairs: str) -> list[dict[str, str]]:
    return [{"name": n, "type": t} for n, t in (p.split(":", 1) for p in pairs)]


TABLE = cols("id:int64", "amount:decimal128(10, 2)", "note:string")


def test_first_run_is_the_table_schema_and_no_change():
    drift = compare(None, TABLE)
    assert drift.changes == ()
    assert drift.table_schema == TABLE


def test_a_run_without_files_changes_nothing():
    assert compare(None, []).table_schema is None
    assert compare(TABLE, []).changes == ()
    assert compare(TABLE, []).table_schema == TABLE


def test_same_schema_no_change():
    assert compare(TABLE, TABLE).changes == ()


def test_added_column_is_appended():
    drift = compare(TABLE, [*TABLE, *cols("extra:string")])
    assert drift.changes == (Change(ChangeKind.ADDED, "extra", new_type="string"),)
    assert drift.table_schema == [*TABLE, *cols("extra:string")]
    assert drift.summary() == "added extra (string)"


def test_dropped_column_stays_in_the_table_and_is_reported_once():
    run = cols("id:int64", "amount:decimal128(10, 2)")
    drift = compare(TABLE, run)
    assert drift.changes == (Change(ChangeKind.DROPPED, "note", old_type="string"),)
    assert drift.table_schema[-1] == {"name": "note", "type": "string", "dropped": True}
    again = compare(drift.table_schema, run)
    assert again.changes == ()
    assert again.table_schema == drift.table_schema
    back = compare(drift.table_schema, TABLE)
    assert back.changes == (Change(ChangeKind.ADDED, "note", new_type="string"),)
    assert back.table_schema == TABLE


def test_dropped_column_back_with_another_type_is_incompatible():
    dropped = compare(TABLE, cols("id:int64", "note:string")).table_schema
    drift = compare(dropped, cols("id:int64", "note:string", "amount:string"))
    assert [c.kind for c in drift.changes] == [ChangeKind.INCOMPATIBLE]


def test_widened_type_takes_the_wider_type():
    run = cols("id:int64", "amount:decimal128(14, 2)", "note:large_string")
    drift = compare(TABLE, run)
    assert [(c.kind, c.column) for c in drift.changes] == [
        (ChangeKind.WIDENED, "amount"),
        (ChangeKind.WIDENED, "note"),
    ]
    assert drift.table_schema == run
    assert "widened amount (decimal128(10, 2) -> decimal128(14, 2))" in drift.summary()


def test_a_narrower_run_keeps_the_table_type_without_a_change():
    wide = cols("id:int64", "amount:decimal128(14, 2)", "note:string")
    drift = compare(wide, TABLE)
    assert drift.changes == ()
    assert drift.table_schema == wide


def test_incompatible_change_takes_the_new_type():
    run = cols("id:int64", "amount:string", "note:string")
    drift = compare(TABLE, run)
    assert drift.incompatible == [
        Change(ChangeKind.INCOMPATIBLE, "amount", "decimal128(10, 2)", "string")
    ]
    assert drift.table_schema == run


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("int8", "int16"),
        ("int32", "int64"),
        ("uint8", "uint16"),
        ("uint32", "int64"),
        ("float", "double"),
        ("int32", "double"),
        ("int16", "float"),
        ("int32", "decimal128(10, 0)"),
        ("int64", "decimal128(21, 2)"),
        ("decimal128(10, 2)", "decimal128(12, 4)"),
        ("decimal128(10, 2)", "decimal256(40, 2)"),
        ("string", "large_string"),
        ("binary", "large_binary"),
        ("timestamp[ms]", "timestamp[us]"),
        ("timestamp[ms, tz=UTC]", "timestamp[ns, tz=UTC]"),
        ("time32[ms]", "time64[us]"),
        ("date32[day]", "date64[ms]"),
        ("null", "string"),
    ],
)
def test_widening(old: str, new: str):
    assert is_widening(old, new)
    assert not is_widening(new, old) or old == "null"


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("int64", "double"),  # beyond 2**53 values are rounded
        ("int32", "float"),
        ("uint64", "int64"),
        ("int8", "uint16"),  # negative values
        ("int64", "decimal128(18, 0)"),
        ("decimal128(10, 2)", "decimal128(12, 1)"),  # scale lost
        ("decimal128(10, 2)", "decimal128(11, 4)"),  # integer digits lost
        ("decimal128(10, 2)", "string"),
        ("string", "int64"),
        ("double", "int64"),
        ("timestamp[us]", "timestamp[us, tz=UTC]"),
        ("timestamp[us]", "date32[day]"),
        ("bool", "int8"),
        ("list<item: int64>", "list<item: int32>"),
    ],
)
def test_not_widening(old: str, new: str):
    assert not is_widening(old, new)


def test_policy_compatible_refuses_only_incompatible_changes_naming_them():
    added = compare(TABLE, [*TABLE, *cols("extra:string")])
    check("orders", "run-2", added, SchemaPolicy.COMPATIBLE)
    changed = compare(TABLE, cols("id:int64", "amount:string", "note:string"))
    with pytest.raises(SchemaChangeError) as caught:
        check("orders", "run-2", changed, SchemaPolicy.COMPATIBLE)
    message = str(caught.value)
    assert "'orders'" in message and "run-2" in message
    assert "amount (decimal128(10, 2) -> string)" in message
    assert "nothing was published" in message and "schemachanges" in message
    check("orders", "run-2", changed, SchemaPolicy.ANY)


def test_policy_none_refuses_any_change():
    added = compare(TABLE, [*TABLE, *cols("extra:string")])
    with pytest.raises(SchemaChangeError, match=r"added extra \(string\)"):
        check("orders", "run-2", added, SchemaPolicy.NONE)
    check("orders", "run-2", compare(TABLE, TABLE), SchemaPolicy.NONE)


def test_run_schema_refuses_files_that_disagree():
    one = pa.schema([("id", pa.int64())])
    two = pa.schema([("id", pa.int32())])
    assert run_schema("t", [("a", one), ("b", one)]) == [{"name": "id", "type": "int64"}]
    assert run_schema("t", []) == []
    with pytest.raises(SchemaChangeError, match="b has id int32 but a has id int64"):
        run_schema("t", [("a", one), ("b", two)])


@pytest.mark.parametrize(
    "arrow",
    [
        pa.int8(),
        pa.uint64(),
        pa.float32(),
        pa.float64(),
        pa.bool_(),
        pa.string(),
        pa.large_string(),
        pa.binary(),
        pa.binary(16),
        pa.date32(),
        pa.date64(),
        pa.timestamp("us"),
        pa.timestamp("ms", tz="UTC"),
        pa.timestamp("ns", tz="+02:00"),
        pa.time64("us"),
        pa.time32("s"),
        pa.decimal128(38, 10),
        pa.decimal256(50, 2),
        pa.null(),
    ],
)
def test_type_text_round_trips(arrow: pa.DataType):
    assert arrow_type(str(arrow)) == arrow


def test_unknown_type_text_is_refused():
    with pytest.raises(ValueError, match="no Arrow type"):
        arrow_type("decimal(1)")


def _write(folder: Path, run: str, table: pa.Table) -> str:
    (folder / f"run={run}").mkdir(parents=True)
    path = folder / f"run={run}" / "LOAD00000001.parquet"
    pq.write_table(table, path)
    return str(path)


def test_the_table_schema_reads_every_column_of_every_run(tmp_path: Path):
    """What the README tells readers: the table schema (pyarrow) or union_by_name (DuckDB)."""
    first = pa.table(
        {
            "id": pa.array([1], pa.int32()),
            "amount": pa.array([Decimal("1.25")], pa.decimal128(10, 2)),
            "note": ["a"],
        }
    )
    second = pa.table(
        {
            "id": pa.array([2], pa.int64()),
            "amount": pa.array([Decimal("2.50")], pa.decimal128(14, 2)),
            "extra": ["x"],
        }
    )
    files = [_write(tmp_path, "r1", first), _write(tmp_path, "r2", second)]
    table = compare(columns_of(first.schema), columns_of(second.schema)).table_schema
    rows = ds.dataset(files, schema=to_arrow(table), format="parquet").to_table().to_pylist()
    expected = [
        {"id": 1, "amount": Decimal("1.25"), "note": "a", "extra": None},
        {"id": 2, "amount": Decimal("2.50"), "note": None, "extra": "x"},
    ]
    assert sorted(rows, key=lambda r: r["id"]) == expected
    unified = pa.unify_schemas([pq.read_schema(f) for f in files], promote_options="permissive")
    assert unified == to_arrow(table)
    query = f"select * from read_parquet('{tmp_path}/run=*/*.parquet', union_by_name = true)"
    result = duckdb.sql(query + " order by id")
    assert result.columns == ["id", "amount", "note", "extra", "run"]
    assert result.fetchall() == [
        (1, Decimal("1.25"), "a", None, "r1"),
        (2, Decimal("2.50"), None, "x", "r2"),
    ]
