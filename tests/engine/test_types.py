"""Values and Arrow types survive the trip source -> Parquet in S3 on every source."""

from __future__ import annotations

from datetime import UTC, datetime, time
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest

from .conftest import SOURCES, unique
from .data import COLUMNS, ROWS
from .helpers import SourceDb, Text, Workflow, mappings, selection

# The DMS mapping of the shared table's columns per source engine (docs/engine.md, "Data
# types"): the DMS "Source data types" page of the engine, then "Target data types for S3
# Parquet". SQLite is no DMS source: it is typed like PostgreSQL with MapBooleanAsBoolean.
EXPECTED_TYPES = {
    "id": pa.int64(),  # BIGINT -> INT8 -> INT64
    "amount": pa.decimal128(12, 2),  # NUMERIC/DECIMAL(12,2) -> NUMERIC -> DECIMAL
    "note": pa.string(),  # TEXT -> NCLOB (PostgreSQL) / WSTRING (MySQL) -> STRING
    "d": pa.date32(),  # DATE -> DATE -> DATE32
    "ts": pa.timestamp("us"),  # TIMESTAMP / DATETIME -> DATETIME -> TIMESTAMP
    "tstz": pa.timestamp("us"),  # TIMESTAMP WITH TIME ZONE / MySQL TIMESTAMP -> DATETIME (UTC)
    "payload": pa.binary(),  # BYTEA -> BLOB, MySQL BLOB -> BYTES(65535) -> BINARY
}
# PostgreSQL BOOLEAN -> CHAR(5) 'true'/'false' (no MapBooleanAsBoolean on this endpoint);
# MySQL BOOLEAN is TINYINT(1) -> INT1 -> INT8.
FLAG_TYPES = {"sqlite": pa.bool_(), "postgres": pa.string(), "mysql": pa.int8()}


def _flag(kind: str, value: object) -> object:
    if value is None or kind == "sqlite":
        return value
    if kind == "postgres":
        return "true" if value else "false"
    return int(bool(value))


def _expected(value: object) -> object:
    if isinstance(value, Text):
        value = datetime.fromisoformat(str(value))
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)  # DATETIME holds the UTC time
    return value


@pytest.mark.parametrize("source_db", SOURCES, indirect=True)
def test_round_trip_follows_the_dms_mapping(source_db, aws, dms) -> None:  # type: ignore[no-untyped-def]
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
    assert {f.name: f.type for f in loaded.schema} == {
        **EXPECTED_TYPES,
        "flag": FLAG_TYPES[source_db.kind],
    }
    rows = sorted(loaded.to_pylist(), key=lambda r: r["id"])
    names = [c for c, _ in COLUMNS]
    expected = [
        {
            n: _flag(source_db.kind, v) if n == "flag" else _expected(v)
            for n, v in zip(names, row, strict=True)
        }
        for row in ROWS
    ]
    assert rows == expected
    assert rows[1]["amount"] == Decimal("12.34")
    assert rows[2]["note"] == "line1\nline2"


@pytest.mark.postgres
@pytest.mark.parametrize("source_db", ["postgres"], indirect=True)
def test_postgres_booleans_are_booleans_with_map_boolean_as_boolean(source_db, aws, dms) -> None:  # type: ignore[no-untyped-def]
    """The endpoint setting deltaload's template sets: BOOLEAN lands as BOOL."""
    table = unique("flags")
    source_db.create_table(table, [("id", "bigint"), ("flag", "bool")], [(1, True), (2, None)])
    flow = Workflow(aws, dms)
    source = flow.source_endpoint(source_db, PostgreSQLSettings={"MapBooleanAsBoolean": True})
    task = flow.task(
        source, flow.target_endpoint("stage/b"), flow.instance(), mappings(selection(table))
    )
    assert flow.start_and_wait(task)["Status"] == "stopped"
    loaded = flow.read_all(f"stage/b/dwh/{table}/")
    assert loaded is not None and loaded.schema.field("flag").type == pa.bool_()
    assert sorted(loaded.to_pylist(), key=lambda r: r["id"]) == [
        {"id": 1, "flag": True},
        {"id": 2, "flag": None},
    ]


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


@pytest.mark.postgres
def test_postgres_types_follow_the_dms_table(postgres_engine, aws, dms) -> None:  # type: ignore[no-untyped-def]
    """One column per row of the PostgreSQL table in docs/engine.md that our engine reads."""
    table = unique("pgmap")
    with postgres_engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TYPE IF EXISTS dwh.{table}_mood")
        conn.exec_driver_sql(f"CREATE TYPE dwh.{table}_mood AS ENUM ('sad', 'happy')")
    columns = (
        "i2 smallint, i4 integer, i8 bigint, n numeric(10,2), wide numeric(50,5), r real, "
        "dbl double precision, m money, c char(3), vc varchar(10), t text, b bytea, "
        "ts timestamp, tz timestamptz, d date, tm time, iv interval, flag boolean, "
        f"mood dwh.{table}_mood, ip inet, net cidr, mac macaddr, bits bit(3), vb varbit, "
        "u uuid, tv tsvector, x xml, pt point, j json, jb jsonb, arr int[], rng int4range"
    )
    values = (
        "(1, 2, 3, 4.50, 12345678901234567890123456789012345678901234.56789, 1.5, 2.5, "
        "1234.5, 'ab', 'v', 'long', '\\x0102', '2024-01-01 10:00:00.5', "
        "'2024-01-01 12:00:00+02', '2024-02-29', '10:11:12.345678', '1 day 02:00:00', true, "
        "'happy', '10.0.0.1', '10.0.0.0/8', '08:00:2b:01:02:03', B'101', B'11', "
        "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'a fat cat', '<a>1</a>', '(1,2)', "
        "'{\"k\": 1}', '{\"k\": 1}', '{1,2}', '[1,5)')"
    )
    try:
        _, final, loaded = _load_postgres_table(
            postgres_engine, Workflow(aws, dms), columns, values
        )
    finally:
        with postgres_engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TYPE IF EXISTS dwh.{table}_mood CASCADE")
    assert final["Status"] == "stopped", final.get("LastFailureMessage")
    assert loaded is not None
    strings = ("c", "vc", "t", "iv", "flag", "mood", "ip", "net", "mac", "bits", "vb", "u")
    strings += ("tv", "x", "pt", "j", "jb", "arr", "rng")
    assert {f.name: f.type for f in loaded.schema} == {
        "i2": pa.int16(),  # SMALLINT -> INT2
        "i4": pa.int32(),  # INTEGER -> INT4
        "i8": pa.int64(),  # BIGINT -> INT8
        "n": pa.decimal128(10, 2),  # NUMERIC(p,s), p <= 38 -> NUMERIC
        "wide": pa.string(),  # NUMERIC(p,s), p >= 39 -> STRING
        "r": pa.float32(),  # REAL -> REAL4 -> FLOAT
        "dbl": pa.float64(),  # DOUBLE -> REAL8 -> DOUBLE
        "m": pa.decimal128(38, 4),  # MONEY -> NUMERIC(38,4)
        "b": pa.binary(),  # BYTEA -> BLOB -> BINARY
        "ts": pa.timestamp("us"),  # TIMESTAMP -> DATETIME
        "tz": pa.timestamp("us"),  # TIMESTAMP WITH TIME ZONE -> DATETIME
        "d": pa.date32(),  # DATE -> DATE -> DATE32
        "tm": pa.time32("ms"),  # TIME -> TIME -> TIME32
        **dict.fromkeys(strings, pa.string()),  # STRING, WSTRING, CLOB, NCLOB -> STRING
    }
    row = loaded.to_pylist()[0]
    assert row["m"] == Decimal("1234.5000") and row["n"] == Decimal("4.50")
    assert row["wide"] == "12345678901234567890123456789012345678901234.56789"
    assert row["tz"] == datetime(2024, 1, 1, 10, 0, 0)  # the instant, in UTC
    assert row["tm"] == time(10, 11, 12, 345000)  # TIME32 keeps milliseconds
    assert row["flag"] == "true"  # CHAR(5) 'false' or 'true'
    assert (row["mood"], row["bits"], row["u"]) == (
        "happy",
        "101",
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
    )
    assert row["b"] == b"\x01\x02" and row["arr"] == "{1,2}" and row["rng"] == "[1,5)"


@pytest.mark.mysql
def test_mysql_types_follow_the_dms_table(mysql_engine, aws, dms) -> None:  # type: ignore[no-untyped-def]
    """One column per row of the MySQL table in docs/engine.md (MariaDB server)."""
    table = unique("mymap")
    columns = (
        "ti TINYINT, tu TINYINT UNSIGNED, flag BOOLEAN, si SMALLINT, su SMALLINT UNSIGNED, "
        "mi MEDIUMINT, mu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED, bi BIGINT, "
        "bu BIGINT UNSIGNED, y YEAR, b1 BIT(1), b8 BIT(8), f FLOAT, dbl DOUBLE, "
        "dec10 DECIMAL(10,0), d DATE, dt DATETIME(6), ts TIMESTAMP(6) NULL, tm TIME, "
        "c CHAR(2), vc VARCHAR(45), tt TINYTEXT, tx TEXT, mt MEDIUMTEXT, lt LONGTEXT, "
        "j JSON, e ENUM('a','b'), st SET('x','y'), bn BINARY(2), vb VARBINARY(10), "
        "tb TINYBLOB, bl BLOB, mb MEDIUMBLOB, lb LONGBLOB"
    )
    values = (
        "(-1, 255, TRUE, -2, 65535, -3, 16777215, -4, 4294967295, -5, "
        "18446744073709551615, 2024, b'1', b'10000001', 1.5, 2.5, 42, '2024-02-29', "
        "'2024-01-01 10:00:00.5', '2024-01-01 10:00:00.25', '-10:11:12', 'ab', 'v', 'tt', "
        "'tx', 'mt', 'lt', '{\"k\": 1}', 'b', 'x,y', 'ab', 'vb', 'tb', 'bl', 'mb', 'lb')"
    )
    with mysql_engine.begin() as conn:
        conn.exec_driver_sql("SET time_zone = '+00:00'")
        conn.exec_driver_sql(f"CREATE TABLE dwh.`{table}` ({columns})")
        conn.exec_driver_sql(f"INSERT INTO dwh.`{table}` VALUES {values}")
    db = SourceDb("mysql", engine=mysql_engine, tables=[table])
    flow = Workflow(aws, dms)
    try:
        # parquet-2-0 keeps UINT32 as uint32 (Parquet 1.0 has no unsigned 32-bit annotation).
        target = flow.target_endpoint("stage/my", ParquetVersion="parquet-2-0")
        task = flow.task(
            flow.source_endpoint(db), target, flow.instance(), mappings(selection(table))
        )
        final = flow.start_and_wait(task)
        loaded = flow.read_all(f"stage/my/dwh/{table}/")
    finally:
        db.drop_all()
    assert final["Status"] == "stopped", final.get("LastFailureMessage")
    assert loaded is not None
    strings = ("tm", "c", "vc", "tt", "tx", "mt", "lt", "j", "e", "st")
    binaries = ("b8", "bn", "vb", "tb", "bl", "mb", "lb")
    assert {f.name: f.type for f in loaded.schema} == {
        "ti": pa.int8(),  # TINYINT -> INT1 -> INT8
        "tu": pa.uint8(),  # UNSIGNED TINYINT -> UINT1 -> UINT8
        "flag": pa.int8(),  # BOOLEAN is TINYINT(1) -> INT1
        "si": pa.int16(),
        "su": pa.uint16(),
        "mi": pa.int32(),  # MEDIUMINT -> INT4
        "mu": pa.uint32(),  # UNSIGNED MEDIUMINT -> UINT4
        "i": pa.int32(),
        "iu": pa.uint32(),
        "bi": pa.int64(),
        "bu": pa.uint64(),
        "y": pa.int16(),  # YEAR -> INT2
        "b1": pa.bool_(),  # BIT -> BOOLEAN -> BOOL
        "f": pa.float64(),  # FLOAT -> REAL(DOUBLE)
        "dbl": pa.float64(),
        "dec10": pa.decimal128(10, 0),  # DECIMAL(10) -> NUMERIC(10,0)
        "d": pa.date32(),
        "dt": pa.timestamp("us"),  # DATETIME -> DATETIME, not converted
        "ts": pa.timestamp("us"),  # TIMESTAMP -> DATETIME, converted to UTC
        **dict.fromkeys(strings, pa.string()),  # TIME -> STRING; text types; JSON -> CLOB
        **dict.fromkeys(binaries, pa.binary()),  # BIT(n) -> BYTES, BLOB types
    }
    row = loaded.to_pylist()[0]
    assert (row["ti"], row["tu"], row["flag"], row["bu"]) == (-1, 255, 1, 2**64 - 1)
    assert (row["b1"], row["b8"], row["f"], row["y"]) == (True, b"\x81", 1.5, 2024)
    assert row["ts"] == datetime(2024, 1, 1, 10, 0, 0, 250000)
    assert row["dt"] == datetime(2024, 1, 1, 10, 0, 0, 500000)
    assert (row["tm"], row["st"], row["lb"]) == ("-10:11:12", "x,y", b"lb")
