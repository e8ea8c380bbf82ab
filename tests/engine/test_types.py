"""Values and Arrow types survive the trip source -> Parquet in S3 on every source."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest

from .conftest import SOURCES, unique
from .data import COLUMNS, ROWS
from .helpers import SourceDb, Text, Workflow, mappings, selection

EXPECTED_TYPES = {
    "id": pa.int64(),
    "amount": pa.decimal128(12, 2),
    "note": pa.string(),
    "d": pa.date32(),
    "ts": pa.timestamp("us"),
    "tstz": pa.timestamp("us", tz="UTC"),
    "flag": pa.bool_(),
    "payload": pa.binary(),
}


def _expected(value: object) -> object:
    if isinstance(value, Text):
        return datetime.fromisoformat(str(value))
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC)
    return value


@pytest.mark.parametrize("source_db", SOURCES, indirect=True)
def test_round_trip_keeps_values_and_types(source_db, aws, dms) -> None:  # type: ignore[no-untyped-def]
    table = unique("types")
    source_db.create_table(table, COLUMNS, ROWS)
    flow = Workflow(aws, dms)
    target = flow.target_endpoint("stage/types")
    task = flow.task(
        flow.source_endpoint(source_db), target, flow.instance(), mappings(selection(table))
    )
    assert flow.start_and_wait(task)["Status"] == "stopped"
    keys = flow.keys("stage/types/")
    assert keys == [f"stage/types/dwh/{table}/LOAD00000001.parquet"]
    loaded = flow.read(keys[0])
    # MySQL's BOOLEAN is TINYINT(1): it still arrives as bool.
    assert {f.name: f.type for f in loaded.schema} == EXPECTED_TYPES
    rows = sorted(loaded.to_pylist(), key=lambda r: r["id"])
    names = [c for c, _ in COLUMNS]
    expected = [{n: _expected(v) for n, v in zip(names, row, strict=True)} for row in ROWS]
    assert rows == expected
    assert rows[1]["amount"] == Decimal("12.34")
    assert rows[2]["note"] == "line1\nline2"


def _load_postgres_table(
    engine: Any, flow: Workflow, columns: str, rows: str, **source: Any
) -> tuple[str, dict[str, Any], pa.Table | None]:
    """Create dwh.<new table> (columns) with rows, load it, drop it.

    Returns the table name, the task's final description and what reached S3.
    """
    table = unique("pgtypes")
    with engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE TABLE dwh."{table}" ({columns})')
        conn.exec_driver_sql(f'INSERT INTO dwh."{table}" VALUES {rows}')
    db = SourceDb("postgres", engine=engine, tables=[table])
    try:
        task = flow.task(
            flow.source_endpoint(db, **source),
            flow.target_endpoint("stage/pg"),
            flow.instance(),
            mappings(selection(table)),
        )
        final = flow.start_and_wait(task)
        return table, final, flow.read_all(f"stage/pg/dwh/{table}/")
    finally:
        db.drop_all()


@pytest.mark.postgres
def test_postgres_specific_types(postgres_engine, aws, dms) -> None:  # type: ignore[no-untyped-def]
    """uuid/jsonb/interval arrive as text, int4/real keep their width, bare numeric fits 28,6."""
    _, final, loaded = _load_postgres_table(
        postgres_engine,
        Workflow(aws, dms),
        "id int4, u uuid, j jsonb, i interval, r real, n numeric",
        "(1, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{\"k\": [1, 2]}', '1 day 02:00:00', "
        "1.5, 123.456789)",
    )
    assert final["Status"] == "stopped"
    assert loaded is not None
    types = {f.name: f.type for f in loaded.schema}
    assert types == {
        "id": pa.int32(),
        "u": pa.string(),
        "j": pa.string(),
        "i": pa.string(),
        "r": pa.float32(),
        "n": pa.decimal128(28, 6),
    }
    row = loaded.to_pylist()[0]
    assert row["u"] == "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
    assert row["j"] == '{"k": [1, 2]}' and row["i"] == "1 day 02:00:00"
    assert row["n"] == Decimal("123.456789")


@pytest.mark.postgres
def test_postgres_numerics_keep_every_digit(postgres_engine, aws, dms) -> None:  # type: ignore[no-untyped-def]
    """Numerics come through exactly: full precision, negatives, trailing zeros, NULL."""
    _, final, loaded = _load_postgres_table(
        postgres_engine,
        Workflow(aws, dms),
        "id int4, wide numeric(38,10), money numeric(12,2), free numeric",
        "(1, 1234567890123456789012345678.0123456789, -0.01, "
        "123456789012345678901234567890.123456789012), "
        "(2, -0.0000000001, 10.50, 1e-20), (3, NULL, NULL, NULL)",
        # DMS's only switch for this is the extra connection attribute.
        ExtraConnectionAttributes="mapUnboundedNumericAsString=true",
    )
    assert final["Status"] == "stopped"
    assert loaded is not None
    assert {f.name: f.type for f in loaded.schema} == {
        "id": pa.int32(),
        "wide": pa.decimal128(38, 10),
        "money": pa.decimal128(12, 2),
        "free": pa.string(),
    }
    rows = sorted(loaded.to_pylist(), key=lambda r: r["id"])
    assert [(r["wide"], r["money"], r["free"]) for r in rows] == [
        (
            Decimal("1234567890123456789012345678.0123456789"),
            Decimal("-0.01"),
            "123456789012345678901234567890.123456789012",
        ),
        (Decimal("-0.0000000001"), Decimal("10.50"), "0.00000000000000000001"),
        (None, None, None),
    ]


@pytest.mark.postgres
def test_postgres_numeric_nan_fails_the_table(postgres_engine, aws, dms) -> None:  # type: ignore[no-untyped-def]
    """NaN has no decimal: the load fails naming the column instead of writing a guess."""
    table, final, _ = _load_postgres_table(
        postgres_engine,
        Workflow(aws, dms),
        "id int4, amount numeric(12,2)",
        "(1, 1.50), (2, 'NaN')",
    )
    assert final["Status"] == "failed"
    assert "'amount'" in final["LastFailureMessage"] and table in final["LastFailureMessage"]
