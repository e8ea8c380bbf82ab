"""The probe tells a source it could not reach from an answer that would come again.

ProbeSource's Retry names SourceUnreachableError: a refused or dropped connection, a
server starting or out of connections, is retried by the state machine; a refused login,
an unknown database or a statement timeout is a plain ProbeError, which fails the run at
once with the message. Every case here is the drivers' own error from a real attempt:
a closed port, a login the server refuses, a statement the session's own timeout cancels.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest
import sqlalchemy as sa

from deltaload import probe
from deltaload.items import parse_item

from .conftest import unique
from .helpers import SourceDb

SERVERS = [
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mysql", marks=pytest.mark.mysql),
]
# A statement that runs longer than the one-second timeout below, per server.
SLOW = {
    "postgres": "SELECT pg_sleep(3)",
    "mysql": (
        "SELECT COUNT(*) FROM information_schema.columns a, information_schema.columns b,"
        " information_schema.columns c"
    ),
}


def _item(table: str = "orders") -> Any:
    return parse_item(
        {
            "targetTableName": table,
            "activeflag": "true",
            "sourceSchema": "dwh",
            "sourceTable": table,
            "filtercolumn": "id",
            "filteroperator": "gte",
            "filtercolumntype": "integer",
            "startvalue": "1",
            "ouputs3Prefix": "lake",
        }
    )


def _closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _probe(secret: dict[str, Any], engine: str) -> None:
    from datetime import UTC, datetime

    access = probe.source_access(secret, engine)
    probe.probe_source(access, _item(), datetime.now(UTC), timeout_seconds=1, default_safety_lag=0)


@pytest.mark.parametrize("source_db", SERVERS, indirect=True)
def test_a_closed_port_is_unreachable(source_db: SourceDb) -> None:
    secret = source_db.secret() | {"port": _closed_port()}
    with pytest.raises(probe.SourceUnreachableError, match=r"table 'orders'.*could not reach"):
        _probe(secret, secret["engine"])


@pytest.mark.parametrize("source_db", SERVERS, indirect=True)
def test_a_refused_login_or_unknown_database_is_not_retried(source_db: SourceDb) -> None:
    for change in ({"username": unique("nobody")}, {"dbname": unique("nodb")}):
        secret = source_db.secret() | change
        with pytest.raises(probe.ProbeError, match="table 'orders'") as caught:
            _probe(secret, secret["engine"])
        assert not isinstance(caught.value, probe.SourceUnreachableError), caught.value


@pytest.mark.parametrize("source_db", SERVERS, indirect=True)
def test_a_statement_timeout_is_not_retried(source_db: SourceDb) -> None:
    access = probe.source_access(source_db.secret(), source_db.secret()["engine"])
    with (
        pytest.raises(sa.exc.DBAPIError) as caught,
        probe.connect(access, timeout_seconds=1) as connection,
    ):
        connection.exec_driver_sql(SLOW[source_db.kind]).all()
    assert not caught.value.connection_invalidated
    assert not probe.unreachable(access.dialect, caught.value.orig)


@pytest.mark.parametrize(
    ("engine", "database"), [("oracle", "ORCL"), ("sqlserver", "master"), ("postgres", "test")]
)
def test_every_driver_reports_a_closed_port_as_unreachable(
    engine: str, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """python-oracledb (DPY-6005), python-tds (a socket error it does not wrap) and
    psycopg (no SQLSTATE, no server message), without any server of theirs here."""
    monkeypatch.setattr(probe, "CONNECT_TIMEOUT_SECONDS", 1)  # python-tds retries until then
    secret = {
        "engine": engine,
        "host": "127.0.0.1",
        "port": _closed_port(),
        "username": "probe",
        "password": "secret",
        "dbname": database,
    }
    with pytest.raises(probe.SourceUnreachableError, match="could not reach"):
        _probe(secret, engine)


class _Detail:
    def __init__(self, full_code: str) -> None:
        self.full_code = full_code


class _Driver(Exception):
    def __init__(self, *args: Any, sqlstate: str | None = None, number: int | None = None):
        super().__init__(*args)
        self.sqlstate, self.number = sqlstate, number


@pytest.mark.parametrize(
    ("dialect", "error", "retried"),
    [
        # PostgreSQL: SQLSTATEs (Appendix A), and psycopg's connection messages.
        ("postgresql", _Driver("terminating connection", sqlstate="57P01"), True),
        ("postgresql", _Driver("connection failure", sqlstate="08006"), True),
        ("postgresql", _Driver("too many connections", sqlstate="53300"), True),
        ("postgresql", _Driver("canceling statement", sqlstate="57014"), False),
        ("postgresql", _Driver("permission denied", sqlstate="42501"), False),
        ("postgresql", _Driver('failed: FATAL:  password authentication failed for "u"'), False),
        ("postgresql", _Driver("failed: FATAL:  the database system is starting up"), True),
        ("postgresql", _Driver("failed: FATAL:  sorry, too many clients already"), True),
        # MySQL and MariaDB error numbers.
        ("mysql", _Driver(2013, "Lost connection to MySQL server during query"), True),
        ("mysql", _Driver(1040, "Too many connections"), True),
        ("mysql", _Driver(1045, "Access denied"), False),
        ("mysql", _Driver(3024, "maximum statement execution time exceeded"), False),
        ("mysql", _Driver(1969, "max_statement_time exceeded"), False),
        # python-oracledb's error codes.
        ("oracle", _Driver(_Detail("DPY-4011")), True),
        ("oracle", _Driver(_Detail("ORA-03113")), True),
        ("oracle", _Driver(_Detail("ORA-01017")), False),
        ("oracle", _Driver(_Detail("DPY-4024")), False),
        # SQL Server error numbers.
        ("mssql", _Driver("Database is not currently available", number=40613), True),
        ("mssql", _Driver("Login failed for user", number=18456), False),
        ("mssql", _Driver("Cannot connect to server 'db': timed out"), True),
        ("sqlite", _Driver("database is locked"), False),
    ],
)
def test_which_driver_errors_are_retried(dialect: str, error: Exception, retried: bool) -> None:
    assert probe.unreachable(dialect, error) is retried
