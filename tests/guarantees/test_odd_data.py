"""Odd but legal data reaches Parquet unchanged through the whole workflow.

Quotes of every kind, newlines, unicode beyond the BMP, 100 KB of text, NULL in every
nullable column, int64 min/max, numeric(38,10) extremes, timestamps at year 1 and 9999
with microseconds: loaded by the real state machine through the local DMS engine and
compared value by value with what was inserted (SQLite and PostgreSQL).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.guarantees.conftest import Ticks, assert_clean, open_runtime, published_rows
from tests.servers import POSTGRES_URL, server_engine

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
NUM_MAX = Decimal("9999999999999999999999999999.9999999999")  # numeric(38,10)
NUM_MIN = Decimal("-9999999999999999999999999999.9999999999")  # (no arithmetic: 28-digit context)
QUOTES = "it's \"quoted\" `back` \\ backslash; '' doubled\ttab\r\nCRLF\nLF"
UNICODE = "zażółć gęślą jaźń — 日本語 — עִבְרִית — 🦆🏳️‍🌈 — e\u0301 — zero\u200bwidth"
LONG = ("0123456789abcdef" * 6400)[:102_400]  # 100 KB


def rows(kind: str) -> list[dict[str, Any]]:
    # SQLite stores NUMERIC as REAL/INTEGER: 38 digits are not representable there, so the
    # decimal extremes are PostgreSQL's; SQLite gets values a double holds exactly.
    num_max = NUM_MAX if kind == "postgres" else Decimal("123456789.5")
    num_min = NUM_MIN if kind == "postgres" else Decimal("-123456789.5")
    num_tiny = Decimal("0.0000000001") if kind == "postgres" else Decimal("0.25")
    return [
        {
            "row_id": 1,
            "txt": QUOTES,
            "big": INT64_MAX,
            "num": num_max,
            "flt": 1.7976931348623157e308,
            "ts": datetime(9999, 12, 31, 23, 59, 59, 999999),
            "d": date(9999, 12, 31),
            "flag": True,
        },
        {
            "row_id": 2,
            "txt": UNICODE,
            "big": INT64_MIN,
            "num": num_min,
            "flt": -5e-324,
            "ts": datetime(1, 1, 1, 0, 0, 0, 1),
            "d": date(1, 1, 1),
            "flag": False,
        },
        {
            "row_id": 3,
            "txt": LONG,
            "big": 0,
            "num": num_tiny,
            "flt": 0.0,
            "ts": datetime(2024, 2, 29, 12, 34, 56, 123456),
            "d": date(2024, 2, 29),
            "flag": None,
        },
        {
            "row_id": 4,
            "txt": None,
            "big": None,
            "num": None,
            "flt": None,
            "ts": None,
            "d": None,
            "flag": None,
        },
        {
            "row_id": 5,
            "txt": "'; DROP TABLE orders; -- NULL",
            "big": -1,
            "num": Decimal("-0.5"),
            "flt": -1.5,
            "ts": datetime(1970, 1, 1),
            "d": date(1970, 1, 1),
            "flag": True,
        },
        {"row_id": 6, "txt": "", "big": 1, "num": Decimal(0), "flt": 1e-300, "ts": None},
        {"row_id": 7, "txt": "NULL", "big": None, "num": None, "flt": None, "ts": None},
    ]


def table(metadata: sa.MetaData, name: str, schema: str | None) -> sa.Table:
    return sa.Table(
        name,
        metadata,
        sa.Column("row_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("txt", sa.Text),
        sa.Column("big", sa.BigInteger),
        sa.Column("num", sa.Numeric(38, 10)),
        sa.Column("flt", sa.Float(precision=53)),
        sa.Column("ts", sa.DateTime(timezone=False)),
        sa.Column("d", sa.Date),
        sa.Column("flag", sa.Boolean),
        schema=schema,
    )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def odd_source(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    kind = request.param
    name = f"odd_{uuid.uuid4().hex[:8]}"
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'source.sqlite'}"
        engine, schema = sa.create_engine(url), None
    else:
        url, schema = POSTGRES_URL, "dwh"
        engine = server_engine(url, "PostgreSQL")
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE SCHEMA IF NOT EXISTS dwh")
    metadata = sa.MetaData()
    odd = table(metadata, name, schema)
    metadata.create_all(engine)
    with engine.begin() as conn:
        for row in rows(kind):
            conn.execute(odd.insert(), [row])
    try:
        yield kind, url, name
    finally:
        metadata.drop_all(engine)
        engine.dispose()


def test_odd_values_reach_parquet_unchanged(odd_source: tuple[str, str, str], tmp_path: Path):
    kind, url, name = odd_source
    with open_runtime(tmp_path / "state", url) as rt:
        rt.put_item(
            {
                "targetTableName": "odd_s3",
                "activeflag": "true",
                "sourceSchema": "dwh",
                "sourceTable": name,
                "filtercolumn": "row_id",
                "filteroperator": "gte",
                "filtercolumntype": "integer",
                "startvalue": "1",
                "ouputs3Prefix": "lake",
            }
        )
        result = rt.tick(now=Ticks()())
        assert [e.status for e in result.executions] == ["SUCCEEDED"], result
        [loaded] = published_rows(rt, "odd_s3").values()
        assert_clean(rt)
    got = {r["row_id"]: r for r in loaded}
    expected = {r["row_id"]: r for r in rows(kind)}
    assert sorted(got) == sorted(expected)
    for row_id, want in expected.items():
        for column in ("txt", "big", "num", "flt", "ts", "d", "flag"):
            value = want.get(column)
            actual = got[row_id][column]
            assert actual == value and type(actual) is type(value), (row_id, column, actual)
