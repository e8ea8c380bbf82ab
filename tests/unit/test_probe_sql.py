"""The probe's SQL per dialect: quoted identifiers, bound values, read-only and timeout set-up.

Oracle and SQL Server have no server here: their compiled statements and session rules are
checked as text; tests/engine/test_probe.py runs the probe on SQLite, PostgreSQL and MariaDB.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa

from deltaload import probe
from deltaload.items import parse_item
from deltaload.window import plan_window

NOW = datetime(2024, 3, 1, 12, tzinfo=UTC)


def _item(kind: str, start: str, **extra: str):
    return parse_item(
        {
            "targetTableName": "orders",
            "activeflag": "true",
            "sourceSchema": "Sales",
            "sourceTable": "OrderLines",
            "filtercolumn": "OrderId",
            "filteroperator": "gte",
            "filtercolumntype": kind,
            "startvalue": start,
            "ouputs3Prefix": "lake",
            **extra,
        }
    )


def _dialect(name: str) -> sa.engine.Dialect:
    url = {
        "oracle": "oracle+oracledb://u:p@h/?service_name=s",
        "mssql": "mssql+pytds://u:p@h/db",
        "postgresql": "postgresql+psycopg://u@h/db",
        "mysql": "mysql+pymysql://u@h/db",
    }[name]
    return sa.create_engine(url).dialect


@pytest.mark.parametrize(
    ("dialect", "quoted"),
    [
        ("oracle", '"Sales"."OrderLines"'),
        ("mssql", "[Sales].[OrderLines]"),
        ("postgresql", '"Sales"."OrderLines"'),
        ("mysql", "`Sales`.`OrderLines`"),
    ],
)
def test_count_is_quoted_and_bound(dialect: str, quoted: str) -> None:
    item = _item("integer", "100", watermark="199", endvalue="300")
    plan = plan_window(item, NOW, source_max="250")
    compiled = probe.count_query(item, plan, dialect).compile(dialect=_dialect(dialect))
    sql = str(compiled)
    assert quoted in sql
    assert "200" not in sql and "250" not in sql  # values are parameters, never text
    assert sorted(compiled.params.values()) == [200, 251, 9223372036854775807]
    column = {"mssql": "[OrderId]", "mysql": "`OrderId`"}.get(dialect, '"OrderId"')
    assert f"{column} >=" in sql and "NOT (" in sql
    assert "count(*)" in sql.lower()


@pytest.mark.parametrize("dialect", ["oracle", "mssql"])
def test_timestamp_window_binds_utc_datetimes(dialect: str) -> None:
    item = _item("timestamp", "2024-02-01T00:00:00+01:00", safetylagseconds="0")
    plan = plan_window(item, NOW)
    compiled = probe.count_query(item, plan, dialect).compile(dialect=_dialect(dialect))
    values = list(compiled.params.values())
    assert datetime(2024, 1, 31, 23, 0) in values  # the offset converted to UTC, naive
    assert datetime(2024, 3, 1, 12, 0) in values  # the exclusive whole-second upper bound
    assert all(isinstance(v, datetime) and v.tzinfo is None for v in values)


def test_maximum_query_reads_above_the_watermark() -> None:
    item = _item("date", "2024-01-01", watermark="2024-01-31")
    plan = plan_window(item, NOW)
    compiled = probe.maximum_query(item, plan, "oracle").compile(dialect=_dialect("oracle"))
    assert 'max("OrderId")' in str(compiled)
    assert date(2024, 2, 1) in compiled.params.values()


def test_string_window_excludes_the_watermark() -> None:
    item = _item("string", "a", watermark="m")
    plan = plan_window(item, NOW, source_max="q")
    compiled = probe.count_query(item, plan, "mssql").compile(dialect=_dialect("mssql"))
    assert sorted(compiled.params.values()) == ["m", "m", "q"]
    assert "!=" in str(compiled) or "<>" in str(compiled)


def test_session_rules_per_dialect() -> None:
    pg = probe.session_rules("postgresql", 30)
    assert pg.statements[0] == "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"
    assert "SET LOCAL statement_timeout = 30000" in pg.statements
    mysql = probe.session_rules("mysql", 30)
    assert mysql.statements[0] == "SET SESSION TRANSACTION READ ONLY"
    assert "SET SESSION max_execution_time = 30000" in mysql.statements
    mariadb = probe.session_rules("mysql", 30, mariadb=True)
    assert "SET SESSION max_statement_time = 30" in mariadb.statements
    oracle = probe.session_rules("oracle", 30)
    assert oracle.statements == ("ALTER SESSION SET TIME_ZONE = 'UTC'", "SET TRANSACTION READ ONLY")
    assert oracle.call_timeout_ms == 30000
    mssql = probe.session_rules("mssql", 30)
    assert mssql.connect_args["timeout"] == 30  # python-tds's per-query timeout, seconds
    assert mssql.statements == ("SET LOCK_TIMEOUT 30000",)
    assert probe.session_rules("sqlite", 30).statements == ("PRAGMA query_only = ON",)


def test_source_access_from_the_secret() -> None:
    secret = {"host": "db.internal", "port": "1521", "username": "etl", "password": "p@ss:/"}
    oracle = probe.source_access(secret | {"dbname": "ORCL"}, "oracle")
    assert oracle.url.drivername == "oracle+oracledb"
    assert oracle.url.query["service_name"] == "ORCL"
    assert "p@ss" not in oracle.describe()
    mssql = probe.source_access(secret | {"engine": "sqlserver-se", "port": 1433}, "postgres")
    assert (mssql.url.drivername, mssql.url.port) == ("mssql+pytds", 1433)
    mariadb = probe.source_access(secret | {"port": 3306}, "mariadb")
    assert mariadb.url.drivername == "mysql+pymysql"
    with pytest.raises(probe.ProbeError, match="no host"):
        probe.source_access({"username": "u"}, "postgres")
    with pytest.raises(probe.ProbeError, match="cannot be probed"):
        probe.source_access(secret, "db2")
