"""The source probe: before any DMS resource exists, ask the source what the plan needs.

Two read-only questions, through the source endpoint's own Secrets Manager secret:

* the filter column's maximum above the watermark (within ``endvalue`` and, for dates and
  timestamps, the clock's upper bound): an integer or string item's window ends there;
* the row count of each planned window, counting exactly the rows the window's DMS
  filter selects (the filters window.py writes, read with DMS's semantics: conditions of
  one filter ORed, filters ANDed, ``between`` inclusive, ``notbetween`` excluding both
  ends, NULL matching no comparison; CHAP_Tasks.CustomizingTasks.Filters.html).

Filter values are converted to the item's column kind and bound as parameters;
identifiers are always quoted. Every query runs in one read-only transaction (where the
engine has one) under a statement timeout, in the session time zone UTC (timestamps
are compared in UTC, as the window planner writes them):

============ ====================================== =======================================
engine       read only                              statement timeout
============ ====================================== =======================================
PostgreSQL   SET TRANSACTION ... READ ONLY          SET LOCAL statement_timeout (ms)
MySQL        SET SESSION TRANSACTION READ ONLY      SET SESSION max_execution_time (ms)
MariaDB      SET SESSION TRANSACTION READ ONLY      SET SESSION max_statement_time (s)
Oracle       SET TRANSACTION READ ONLY              the connection's call_timeout (ms)
SQL Server   none (a login with SELECT only)        python-tds's query timeout (s)
SQLite       PRAGMA query_only (offline only)       none (a local file)
============ ====================================== =======================================

SQLAlchemy is imported only when a source is queried, so the other functions, whose
package has no SQLAlchemy, can import this module for ``planned_windows``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from deltaload.errors import DeltaloadError
from deltaload.items import ControllerItem
from deltaload.runstate import ProbedWindowCount, WindowPlan
from deltaload.values import (
    ColumnKind,
    canonical,
    format_timestamp,
    parse_date,
    parse_integer,
    parse_timestamp,
)
from deltaload.window import plan_window, plan_windows

if TYPE_CHECKING:
    import sqlalchemy as sa

DEFAULT_TIMEOUT_SECONDS = 60
CONNECT_TIMEOUT_SECONDS = 10

# The DMS engine names (SourceEngine, and the "engine" key of an RDS-managed secret)
# -> the SQLAlchemy dialect and the driver that needs no native client.
DIALECTS = {
    "postgres": "postgresql",
    "postgresql": "postgresql",
    "aurora-postgresql": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
    "aurora": "mysql",
    "aurora-mysql": "mysql",
    "oracle": "oracle",
    "sqlserver": "mssql",
    "sqlite": "sqlite",  # the offline runtime's source only
}
DRIVERS = {
    "postgresql": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "oracle": "oracle+oracledb",  # python-oracledb in thin mode (no Instant Client)
    # python-tds is pure Python. pymssql bundles FreeTDS, OpenSSL and Kerberos (about
    # 49 MB unzipped), which would take the probe function and the layer past Lambda's
    # 250 MB unzipped quota (scripts/lint_template.sh checks it).
    "mssql": "mssql+pytds",
}
DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "oracle": 1521, "mssql": 1433}


class ProbeError(DeltaloadError):
    """The source could not be asked (secret, connection, query or timeout)."""


class SourceUnreachableError(ProbeError):
    """The probe did not reach the source, or lost it: refused, timed out connecting, the
    connection dropped, the server starting, shutting down or out of connections.

    ProbeSource's Retry names this class (its Lambda error type), so a failover or a
    restart of the source delays a run instead of failing it; an answer from the source
    (a refused login, an unknown database, a statement timeout) is a ProbeError, which the
    same probe would get again, and is not retried.
    """


ProbedWindow = ProbedWindowCount  # one planned window and the rows its filter selects


@dataclass(frozen=True)
class ProbeOutcome:
    """What the source answered: the maximum above the watermark, and each window's rows."""

    maximum: str | None
    windows: list[ProbedWindow] = field(default_factory=list)


# --- which windows (pure; PlanRun plans the same ones) ------------------------------------


def planned_windows(
    item: ControllerItem, now: datetime, maximum: str | None, default_safety_lag: int
) -> list[WindowPlan]:
    """The windows a run planned at ``now`` loads, given the probed maximum."""
    return list(plan_windows(item, now, source_max=maximum, default_safety_lag=default_safety_lag))


def nothing_new(plans: Sequence[WindowPlan], probed: Sequence[ProbedWindow]) -> bool:
    """True when the probe counted the very windows planned and found no row in any."""
    loading = [plan for plan in plans if not plan.loads_nothing]
    return (
        bool(loading)
        and [(p.lower, p.upper) for p in loading] == [(w.lower, w.upper) for w in probed]
        and all(w.rows == 0 for w in probed)
    )


# --- where the source is ------------------------------------------------------------------


@dataclass(frozen=True)
class SourceAccess:
    """How to reach the source: a SQLAlchemy URL (holds the password: never print it)."""

    dialect: str  # postgresql | mysql | oracle | mssql | sqlite
    url: sa.URL

    def describe(self) -> str:
        """A password-free description for messages."""
        if self.dialect == "sqlite":
            return f"sqlite file {(self.url.database or '').removeprefix('file:').split('?')[0]}"
        return f"{self.dialect} {self.url.render_as_string(hide_password=True)}"


def read_source_secret(clients: Any, secret_id: str) -> dict[str, Any]:
    """The source secret's JSON (the keys DMS reads: host, port, username, password)."""
    try:
        text = clients.secrets.get_secret_value(SecretId=secret_id)["SecretString"]
        secret = json.loads(text)
    except Exception as error:  # never echo the secret's text
        raise ProbeError(
            f"cannot read the source secret {secret_id!r}: {type(error).__name__}"
        ) from None
    if not isinstance(secret, dict):
        raise ProbeError(f"the source secret {secret_id!r} is not a JSON object")
    return secret


def source_access(secret: dict[str, Any], engine: str, database: str = "") -> SourceAccess:
    """The URL for a DMS source secret; ``engine`` is SourceEngine unless the secret says."""
    import sqlalchemy as sa

    name = str(secret.get("engine") or engine).lower()
    dialect = DIALECTS.get(name) or (
        "mssql" if name.startswith("sqlserver") else None
    )  # RDS writes sqlserver-se, sqlserver-ee, ...
    if dialect is None:
        raise ProbeError(
            f"the source engine {name!r} cannot be probed; expected one of "
            f"{', '.join(sorted(DIALECTS))}"
        )
    if dialect == "sqlite":
        url = sa.make_url(str(secret.get("url") or ""))
        # Read-only at the file level as well as in the session.
        path = url.database or ""
        ro = sa.URL.create("sqlite", database=f"file:{path}?mode=ro", query={"uri": "true"})
        return SourceAccess("sqlite", ro)
    missing = [key for key in ("host", "username") if not secret.get(key)]
    if missing:
        raise ProbeError(f"the source secret has no {' and no '.join(missing)}")
    try:
        port = int(secret.get("port") or DEFAULT_PORTS[dialect])
    except (TypeError, ValueError):
        raise ProbeError(f"the source secret's port {secret.get('port')!r} is no number") from None
    db = str(secret.get("dbname") or database or "")
    query: dict[str, str] = {}
    if dialect == "oracle" and db:
        query, db = {"service_name": db}, ""
    url = sa.URL.create(
        DRIVERS[dialect],
        username=str(secret["username"]),
        password=str(secret.get("password") or "") or None,
        host=str(secret["host"]),
        port=port,
        database=db or None,
        query=query,
    )
    return SourceAccess(dialect, url)


# --- the session: read only, timed out, in UTC --------------------------------------------


@dataclass(frozen=True)
class SessionRules:
    """How one engine's probe session is opened and set up."""

    connect_args: dict[str, Any]
    statements: tuple[str, ...]  # run first, in this order, before any query
    call_timeout_ms: int | None = None  # python-oracledb: Connection.call_timeout


def session_rules(dialect: str, timeout_seconds: int, *, mariadb: bool = False) -> SessionRules:
    """The connect arguments and first statements of a probe session (pure)."""
    ms = int(timeout_seconds) * 1000
    if dialect == "postgresql":
        # REPEATABLE READ: the maximum and every count read one snapshot.
        return SessionRules(
            {"connect_timeout": CONNECT_TIMEOUT_SECONDS},
            (
                "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY",
                f"SET LOCAL statement_timeout = {ms}",
                "SET LOCAL TIME ZONE 'UTC'",
            ),
        )
    if dialect == "mysql":
        timeout = (
            f"SET SESSION max_statement_time = {int(timeout_seconds)}"
            if mariadb
            else f"SET SESSION max_execution_time = {ms}"
        )
        return SessionRules(
            {"connect_timeout": CONNECT_TIMEOUT_SECONDS, "read_timeout": timeout_seconds + 5},
            (
                "SET SESSION TRANSACTION READ ONLY",
                "SET SESSION time_zone = '+00:00'",
                timeout,
            ),
        )
    if dialect == "oracle":
        return SessionRules(
            {"tcp_connect_timeout": CONNECT_TIMEOUT_SECONDS},
            ("ALTER SESSION SET TIME_ZONE = 'UTC'", "SET TRANSACTION READ ONLY"),
            call_timeout_ms=ms,
        )
    if dialect == "mssql":
        return SessionRules(
            {"login_timeout": CONNECT_TIMEOUT_SECONDS, "timeout": int(timeout_seconds)},
            (f"SET LOCK_TIMEOUT {ms}",),
        )
    if dialect == "sqlite":
        return SessionRules({"timeout": int(timeout_seconds)}, ("PRAGMA query_only = ON",))
    raise ProbeError(f"no probe session rules for the {dialect!r} dialect")


# --- the questions ------------------------------------------------------------------------


def _quoted(name: str) -> Any:
    from sqlalchemy.sql import quoted_name

    return quoted_name(name, True)  # always quoted: DMS names are case-sensitive


def _value(kind: ColumnKind, text: str, dialect: str) -> Any:
    """A filter value as the bound parameter the column compares with."""
    if kind is ColumnKind.INTEGER:
        return parse_integer(text)
    if kind is ColumnKind.DATE:
        day = parse_date(text)
        return day.isoformat() if dialect == "sqlite" else day
    if kind is ColumnKind.TIMESTAMP:
        moment = parse_timestamp(text).replace(tzinfo=None)  # UTC, as the session is
        if dialect == "sqlite":
            return moment.isoformat(sep=" ", timespec="microseconds")
        return moment
    return text


def _column(name: str, kind: ColumnKind, dialect: str) -> sa.ColumnElement:
    """The filter column as compared: SQLite's text timestamps and dates normalised."""
    import sqlalchemy as sa

    column = sa.column(_quoted(name))
    if dialect == "sqlite" and kind is ColumnKind.TIMESTAMP:
        return _sqlite_timestamp(column)
    if dialect == "sqlite" and kind is ColumnKind.DATE:
        return sa.func.date(column)
    return column


def _sqlite_timestamp(column: sa.ColumnElement) -> sa.ColumnElement:
    # The offline engine's comparison of SQLite's text timestamps (docs/engine.md, "Filters
    # to SQL"): 'YYYY-MM-DD HH:MM:SS.ffffff' in UTC, the fraction padded to six digits.
    import sqlalchemy as sa

    dot = sa.func.instr(column, ".")
    fraction = sa.case((dot > 0, sa.func.substr(column, dot + 1)), else_=sa.literal_column("''"))
    digits = sa.func.length(fraction) - sa.func.length(
        sa.func.ltrim(fraction, sa.literal_column("'0123456789'"))
    )
    padded = sa.func.substr(
        sa.func.substr(fraction, 1, digits).op("||")(sa.literal_column("'000000'")), 1, 6
    )
    seconds = sa.func.strftime(sa.literal_column("'%Y-%m-%d %H:%M:%S'"), column)
    return seconds.op("||")(sa.literal_column("'.'")).op("||")(padded)


def filter_where(
    filters: Sequence[dict[str, Any]], kind: ColumnKind, dialect: str
) -> sa.ColumnElement[bool] | None:
    """The WHERE clause of DMS source filters (filters ANDed, their conditions ORed)."""
    import sqlalchemy as sa

    clauses = []
    for source_filter in filters:
        name = source_filter["column-name"]
        raw, target = sa.column(_quoted(name)), _column(name, kind, dialect)
        conditions = []
        for condition in source_filter["filter-conditions"]:
            operator = condition["filter-operator"]
            texts = [condition[k] for k in ("value", "start-value", "end-value") if k in condition]
            values = [sa.bindparam(None, _value(kind, str(t), dialect)) for t in texts]
            if operator == "null":
                conditions.append(raw.is_(None))
            elif operator == "notnull":
                conditions.append(raw.is_not(None))
            elif operator in ("lte", "ste"):  # DMS: ste is lte
                conditions.append(target <= values[0])
            elif operator == "gte":
                conditions.append(target >= values[0])
            elif operator == "eq":
                conditions.append(target == values[0])
            elif operator == "noteq":
                conditions.append(target != values[0])
            elif operator in ("between", "notbetween"):
                between = sa.and_(target >= values[0], target <= values[1])
                conditions.append(between if operator == "between" else sa.not_(between))
            else:
                raise ProbeError(f"filter column {name!r}: unknown operator {operator!r}")
        clauses.append(sa.or_(*conditions) if len(conditions) > 1 else conditions[0])
    if not clauses:
        return None
    return sa.and_(*clauses) if len(clauses) > 1 else clauses[0]


def _table(item: ControllerItem, dialect: str) -> sa.TableClause:
    import sqlalchemy as sa

    # A SQLite file is one schema: the offline source answers to any schema name.
    schema = None if dialect == "sqlite" else _quoted(item.source_schema)
    return sa.table(_quoted(item.source_table), schema=schema)


def maximum_query(item: ControllerItem, plan: WindowPlan, dialect: str) -> sa.Select:
    """SELECT MAX(filter column) over the rows above the watermark ``plan`` selects."""
    import sqlalchemy as sa

    column = _column(item.filter_column, item.filter_column_type, dialect)
    query = sa.select(sa.func.max(column)).select_from(_table(item, dialect))
    where = filter_where(plan.filters, item.filter_column_type, dialect)
    return query if where is None else query.where(where)


def count_query(item: ControllerItem, plan: WindowPlan, dialect: str) -> sa.Select:
    """SELECT COUNT(*) of exactly the rows the window's DMS filters select."""
    import sqlalchemy as sa

    query = sa.select(sa.func.count()).select_from(_table(item, dialect))
    where = filter_where(plan.filters, item.filter_column_type, dialect)
    return query if where is None else query.where(where)


def _canonical_maximum(item: ControllerItem, value: Any) -> str | None:
    if value is None:
        return None
    kind = item.filter_column_type
    if isinstance(value, datetime):
        text = format_timestamp(value.astimezone(UTC) if value.tzinfo else value)
    elif isinstance(value, date):
        text = value.isoformat()
    else:
        text = str(value)
    try:
        return canonical(kind, text)
    except ValueError:
        raise ProbeError(
            f"table {item.target_table_name!r}: the source maximum {text!r} of filter column "
            f"{item.filter_column!r} is not {kind.value}; check filtercolumntype"
        ) from None


@contextmanager
def connect(access: SourceAccess, timeout_seconds: int) -> Iterator[sa.Connection]:
    """One read-only, timed-out connection to the source, closed afterwards."""
    import sqlalchemy as sa

    rules = session_rules(access.dialect, timeout_seconds)
    engine = sa.create_engine(
        access.url, poolclass=sa.pool.NullPool, connect_args=rules.connect_args
    )
    try:
        with engine.connect() as connection:
            if access.dialect == "mysql" and connection.dialect.is_mariadb:
                rules = session_rules(access.dialect, timeout_seconds, mariadb=True)
            if rules.call_timeout_ms is not None:
                connection.connection.driver_connection.call_timeout = rules.call_timeout_ms
            for statement in rules.statements:
                connection.exec_driver_sql(statement)
            yield connection
            connection.rollback()  # nothing to keep: the transaction only read
    finally:
        engine.dispose()


def _check_table(connection: sa.Connection, dialect: str, item: ControllerItem) -> None:
    """The source table and its filter column exist (else a message, not a SQL error)."""
    import sqlalchemy as sa

    schema = None if dialect == "sqlite" else item.source_schema
    inspector = sa.inspect(connection)
    where = f"{item.source_schema}.{item.source_table}"
    if not inspector.has_table(item.source_table, schema=schema):
        raise ProbeError(
            f"table {item.target_table_name!r}: no source table matches {where} (the probe "
            "found none); check the item's sourceSchema and sourceTable"
        )
    names = [column["name"] for column in inspector.get_columns(item.source_table, schema)]
    if item.filter_column not in names:
        raise ProbeError(
            f"table {item.target_table_name!r}: filter column {item.filter_column!r} does not "
            f"exist in {where} (columns: {', '.join(names)}); check the item's filtercolumn"
        )


def probe(
    connection: sa.Connection,
    dialect: str,
    item: ControllerItem,
    now: datetime,
    default_safety_lag: int,
) -> ProbeOutcome:
    """Ask the source for the maximum above the watermark, then count each planned window."""
    opening = plan_window(item, now, default_safety_lag=default_safety_lag)
    if opening.loads_nothing:
        return ProbeOutcome(maximum=None)
    _check_table(connection, dialect, item)
    maximum = None
    if item.is_incremental:
        found = connection.execute(maximum_query(item, opening, dialect)).scalar()
        maximum = _canonical_maximum(item, found)
    windows = []
    for plan in planned_windows(item, now, maximum, default_safety_lag):
        if plan.loads_nothing:
            continue
        if item.is_incremental and maximum is None:
            rows = 0  # every window lies inside the rows the maximum looked at: none
        else:
            rows = int(connection.execute(count_query(item, plan, dialect)).scalar() or 0)
        windows.append(ProbedWindow(lower=plan.lower, upper=plan.upper, rows=rows))
    return ProbeOutcome(maximum=maximum, windows=windows)


def probe_source(
    access: SourceAccess,
    item: ControllerItem,
    now: datetime,
    *,
    timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS,
    default_safety_lag: int,
) -> ProbeOutcome:
    """Connect, probe, close; any database error becomes a ProbeError naming the table."""
    import sqlalchemy as sa

    table = item.target_table_name
    where = f"table {table!r}: the probe of {item.source_schema}.{item.source_table}"
    try:
        with connect(access, timeout_seconds) as connection:
            return probe(connection, access.dialect, item, now, default_safety_lag)
    except sa.exc.DBAPIError as error:
        cause = error.orig if error.orig is not None else error
        reason = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        if error.connection_invalidated or unreachable(access.dialect, cause):
            raise SourceUnreachableError(
                f"{where} could not reach {access.describe()} (retried by the state "
                f"machine): {reason}"
            ) from None
        raise ProbeError(
            f"{where} on {access.describe()} failed (timeout {timeout_seconds} s): {reason}"
        ) from None
    except OSError as error:  # a driver's socket error it does not wrap (python-tds)
        raise SourceUnreachableError(
            f"{where} could not reach {access.describe()} (retried by the state machine): "
            f"{type(error).__name__}: {error or 'no answer'}"
        ) from None
    except sa.exc.SQLAlchemyError as error:
        raise ProbeError(
            f"table {table!r}: the probe on {access.describe()} failed: {error}"
        ) from None


# --- which failures are worth retrying --------------------------------------------------
#
# A failure to reach the source, or a connection it dropped, may pass (a Multi-AZ
# failover takes one to two minutes, a restart less); an answer from the source does not
# (a refused login, an unknown database or table, a statement timeout: the same probe gets
# it again). Each driver tells them apart its own way:

# PostgreSQL SQLSTATEs (Appendix A, "PostgreSQL Error Codes"): class 08 connection
# exception; 57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now;
# 53300 too_many_connections. 57014 query_canceled (the statement timeout) is not here.
_POSTGRES_TRANSIENT_CLASS = "08"
_POSTGRES_TRANSIENT = {"57P01", "57P02", "57P03", "53300"}
# psycopg reports a failed connection attempt without a SQLSTATE, with the server's
# message when the server answered ("FATAL:  role ... does not exist") and the socket's
# otherwise ("Connection refused", "timeout expired", "failed to resolve host").
_POSTGRES_TRANSIENT_FATAL = (
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "too many clients already",
    "remaining connection slots are reserved",
)
# MySQL and MariaDB error numbers (client 2002 socket, 2003 TCP connect, 2006 server gone
# away, 2013 lost connection during query; server 1040 too many connections, 1053 server
# shutdown in progress, 1927 connection killed (MariaDB)). 3024 and 1969 (the statement
# timeouts) and 1045/1698 (access denied) are not here.
_MYSQL_TRANSIENT = {2002, 2003, 2006, 2013, 1040, 1053, 1927}
# python-oracledb: DPY-6005 cannot connect, DPY-4011 connection closed, DPY-6000 listener
# refused (a service not yet registered after a failover); ORA-12170 connect timeout,
# ORA-12541 no listener, ORA-03113/03114/03135 connection lost. DPY-4024 (call timeout,
# the statement timeout) and ORA-01017 (invalid credentials) are not here.
_ORACLE_TRANSIENT = {
    "DPY-6005",
    "DPY-4011",
    "DPY-6000",
    "ORA-12170",
    "ORA-12541",
    "ORA-03113",
    "ORA-03114",
    "ORA-03135",
}
# SQL Server error numbers: 40613 database unavailable, 40197 and 40501 service busy or
# failing over, 4060 is a database that does not exist (not here), 18456 login failed
# (not here). python-tds reports a socket that did not connect as "Cannot connect to".
_MSSQL_TRANSIENT = {40613, 40197, 40501, 10928, 10929}


def unreachable(dialect: str, error: BaseException) -> bool:
    """Whether a driver's error means the source was not reached or dropped the
    connection (worth retrying), not an answer that would come again (pure)."""
    message = str(error)
    if dialect == "postgresql":
        state = getattr(error, "sqlstate", None)
        if state:
            return state.startswith(_POSTGRES_TRANSIENT_CLASS) or state in _POSTGRES_TRANSIENT
        if "FATAL:" in message:
            return any(text in message for text in _POSTGRES_TRANSIENT_FATAL)
        return True  # no SQLSTATE and no answer from the server: the connection failed
    if dialect == "mysql":
        code = error.args[0] if error.args else None
        return isinstance(code, int) and code in _MYSQL_TRANSIENT
    if dialect == "oracle":
        detail = error.args[0] if error.args else None
        return getattr(detail, "full_code", None) in _ORACLE_TRANSIENT
    if dialect == "mssql":
        number = getattr(error, "number", None)
        return number in _MSSQL_TRANSIENT or message.startswith("Cannot connect to")
    return False  # SQLite (offline): a local file, nothing to wait for
