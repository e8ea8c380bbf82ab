"""Source databases: resolve an endpoint to a connection, list tables, type columns, stream.

Every reader streams Arrow record batches that ``conform`` casts to the table's schema:
SQLite and PostgreSQL through ADBC (Arrow end to end), MySQL/MariaDB through a
SQLAlchemy server-side cursor converted chunk by chunk with an explicit schema.
"""

from __future__ import annotations

import json
import os
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import quoted_name

from .coltypes import (
    BLOB,
    CLOB,
    NCLOB,
    Column,
    Kind,
    arrow_for,
    canonical_timestamp_text,
    parse_timestamp,
    sqlite_column,
)
from .errors import LoadError
from .filters import build_where
from .mapping import Segment, SourceFilter

# What a read is narrowed by: the selection's source filters and, in a parallel load, a segment.
Conditions = Sequence[SourceFilter | Segment]

SQLITE_BATCH_ROWS = 65_536
# ADBC's PostgreSQL driver cuts batches at 16 MB by default (166,000 rows of the benchmark's
# orders table). 4 MB batches read as fast (the first one comes after 0.03 s, not 0.1 s)
# and hold a quarter of the memory: a 1M-row full run peaks 25-35 MB lower.
POSTGRES_BATCH_BYTES = 4 * 1024 * 1024
MYSQL_CHUNK_ROWS = 50_000
_MYSQL_SYSTEM_SCHEMAS = ("mysql", "information_schema", "performance_schema", "sys")
_MYSQL_COLUMNS = (
    "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, NUMERIC_PRECISION, NUMERIC_SCALE "
    "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = :s AND TABLE_NAME = :t "
    "ORDER BY ORDINAL_POSITION"
)
_MYSQL_PARTITIONS = (
    "SELECT PARTITION_NAME FROM information_schema.PARTITIONS "
    "WHERE TABLE_SCHEMA = :s AND TABLE_NAME = :t AND PARTITION_NAME IS NOT NULL "
    "ORDER BY PARTITION_ORDINAL_POSITION"
)


@dataclass(frozen=True)
class SourceConfig:
    """Where a source endpoint's data lives; ``url`` holds credentials, never print it."""

    kind: str  # sqlite | postgres | mysql
    endpoint_id: str
    url: sa.URL | None = None
    sqlite_path: str | None = None
    schema_alias: str | None = None
    unbounded_numeric_as_string: bool = False
    options: Mapping[str, str] = field(default_factory=dict)
    # PostgreSQLSettings that change DMS's type mapping (CHAP_Source.PostgreSQL.html).
    map_boolean_as_boolean: bool = False
    map_jsonb_as_clob: bool = False

    def describe(self) -> str:
        """A password-free description for messages."""
        if self.kind == "sqlite":
            return f"sqlite file {self.sqlite_path}"
        assert self.url is not None
        return f"{self.kind} {self.url.render_as_string(hide_password=True)}"


def sa_url(kind: str, host: str, port: int | None, user: str, password: str, db: str) -> sa.URL:
    """A SQLAlchemy URL for a server source (credentials escaped by SQLAlchemy)."""
    driver = "postgresql" if kind == "postgres" else "mysql+pymysql"
    return sa.URL.create(driver, user or None, password or None, host, port, db or None)


def config_from_url(endpoint_id: str, url_text: str, database: str | None) -> SourceConfig:
    """A config from the local-only secret key ``url`` (any SQLAlchemy URL)."""
    url = sa.make_url(url_text)
    backend = url.get_backend_name()
    if backend == "sqlite":
        return SourceConfig("sqlite", endpoint_id, sqlite_path=url.database)
    kind = {"postgresql": "postgres", "mysql": "mysql", "mariadb": "mysql"}.get(backend)
    if kind is None:
        raise LoadError(f"endpoint {endpoint_id}: secret url backend {backend!r} not supported")
    if database:
        url = url.set(database=database)
    return SourceConfig(kind, endpoint_id, url=url)


def read_secret(client: Any, secret_id: str, endpoint_id: str) -> dict[str, Any]:
    """Read the endpoint's Secrets Manager secret (JSON with host/port/username/password)."""
    try:
        text = client.get_secret_value(SecretId=secret_id)["SecretString"]
        secret = json.loads(text)
    except Exception as exc:
        raise LoadError(
            f"endpoint {endpoint_id}: cannot read secret {secret_id!r}: {type(exc).__name__}"
        ) from None
    if not isinstance(secret, dict):
        raise LoadError(f"endpoint {endpoint_id}: secret {secret_id!r} is not a JSON object")
    return secret


class SourceReader(ABC):
    """Base of the three readers: listing, typing and filtered streaming of tables."""

    kind = ""

    def __init__(self, config: SourceConfig) -> None:
        self.config = config

    def __enter__(self) -> SourceReader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @abstractmethod
    def close(self) -> None:
        """Release the connection."""

    @abstractmethod
    def list_tables(self, table_types: set[str]) -> list[tuple[str, str]]:
        """(schema, table) of every table (and/or view) in the source."""

    @abstractmethod
    def columns(self, schema: str, table: str) -> list[Column]:
        """The typed columns of a table, in table order."""

    @abstractmethod
    def batches(
        self, schema: str, table: str, columns: list[Column], filters: Conditions
    ) -> Iterator[pa.RecordBatch]:
        """Stream the filtered rows as driver batches; ``conform`` gives them the table schema.

        Conversion is left to the consumer so that, with the prefetch thread, reading
        and converting/encoding run on different cores.
        """

    def partitions(self, schema: str, table: str) -> list[str]:
        """The names of the table's partitions, in order (none: not partitioned)."""
        return []

    @staticmethod
    def _where(table: str, schema: str) -> str:
        return f"table {schema}.{table}"


def _types_wanted(table_types: set[str]) -> set[str]:
    wanted = set()
    for kind in table_types or {"table"}:
        wanted |= {"table", "view"} if kind == "all" else {kind}
    return wanted


def _quoted(name: str) -> quoted_name:
    # Always quote: DMS names are case-sensitive and may be reserved words.
    return quoted_name(name, True)


def _sa_table(schema: str | None, table: str, columns: Sequence[Column]) -> sa.TableClause:
    cols = [sa.column(_quoted(c.name)) for c in columns]
    return sa.table(_quoted(table), *cols, schema=_quoted(schema) if schema else None)


# --------------------------------------------------------------------------- SQLite


class _SqliteDialect:
    """SQLite compares normalised text timestamps/dates and binds plain values."""

    def raw_column(self, column: Column) -> sa.ColumnElement:
        return sa.column(_quoted(column.name))

    def column_expr(self, column: Column) -> sa.ColumnElement:
        col = self.raw_column(column)
        if column.kind in (Kind.TIMESTAMP, Kind.TIMESTAMPTZ):
            return sqlite_canonical_timestamp(col)
        if column.kind is Kind.DATE:
            return sa.func.date(col)
        return col

    def value_expr(self, column: Column, value: object) -> sa.ColumnElement:
        if column.kind in (Kind.TIMESTAMP, Kind.TIMESTAMPTZ):
            value = canonical_timestamp_text(value)  # type: ignore[arg-type]
        elif column.kind is Kind.DATE:
            value = value.isoformat()  # type: ignore[attr-defined]
        elif column.kind is Kind.DECIMAL:
            # NUMERIC affinity stores REAL/INTEGER, so compare as a number.
            value = int(value) if value == int(value) else float(value)  # type: ignore[call-overload]
        elif column.kind is Kind.BOOL:
            value = int(bool(value))
        return sa.bindparam(None, value)


def sqlite_canonical_timestamp(col: sa.ColumnElement) -> sa.ColumnElement:
    """'YYYY-MM-DD HH:MM:SS.ffffff' (UTC) of a SQLite text timestamp, for ordering.

    SQLite stores timestamps as text, so '2024-01-01 10:00:00.5' vs '2024-01-01T10:00:00'
    cannot be compared as strings: strftime() normalises the separator and any ±HH:MM
    offset (to UTC) and the fraction digits are taken from the text, padded to six.
    """
    dot = sa.func.instr(col, ".")
    fraction = sa.case((dot > 0, sa.func.substr(col, dot + 1)), else_=sa.literal_column("''"))
    digits = sa.func.length(fraction) - sa.func.length(
        sa.func.ltrim(fraction, sa.literal_column("'0123456789'"))
    )
    padded = sa.func.substr(
        sa.func.substr(fraction, 1, digits).op("||")(sa.literal_column("'000000'")), 1, 6
    )
    seconds = sa.func.strftime(sa.literal_column("'%Y-%m-%d %H:%M:%S'"), col)
    return seconds.op("||")(sa.literal_column("'.'")).op("||")(padded)


_SQLITE_READ_CAST = {
    Kind.INT: (sa.Integer, "0"),
    Kind.BOOL: (sa.Integer, "0"),
    Kind.FLOAT: (sa.REAL, "0.0"),
    Kind.BINARY: (sa.LargeBinary, "x''"),
}


class SqliteReader(SourceReader):
    """SQLite through ADBC; every column is CAST so ADBC's type inference is stable."""

    kind = "sqlite"

    def __init__(self, config: SourceConfig) -> None:
        super().__init__(config)
        path = config.sqlite_path or ""
        if not path or not os.path.isfile(path):
            raise LoadError(f"endpoint {config.endpoint_id}: SQLite file {path!r} does not exist")
        import adbc_driver_sqlite.dbapi as adbc_sqlite

        self._conn = adbc_sqlite.connect(path)
        self._schema = config.schema_alias or "main"

    def close(self) -> None:
        self._conn.close()

    def _meta(self) -> sqlite3.Connection:
        # The stdlib module reads the catalogue (declared types ADBC does not report).
        return sqlite3.connect(f"file:{self.config.sqlite_path}?mode=ro", uri=True)

    def list_tables(self, table_types: set[str]) -> list[tuple[str, str]]:
        types = sorted(_types_wanted(table_types))
        marks = ",".join("?" for _ in types)
        with self._meta() as meta:
            rows = meta.execute(
                f"SELECT name FROM sqlite_master WHERE type IN ({marks}) "
                "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
                types,
            ).fetchall()
        return [(self._schema, name) for (name,) in rows]

    def columns(self, schema: str, table: str) -> list[Column]:
        with self._meta() as meta:
            rows = meta.execute("SELECT name, type FROM pragma_table_info(?)", (table,)).fetchall()
        if not rows:
            raise LoadError(
                f"{self._where(table, schema)} does not exist in {self.config.describe()}"
            )
        return [sqlite_column(name, declared or "") for name, declared in rows]

    def batches(
        self, schema: str, table: str, columns: list[Column], filters: Conditions
    ) -> Iterator[pa.RecordBatch]:
        by_name = {c.name: c for c in columns}
        where = build_where(filters, by_name, _SqliteDialect(), self._where(table, schema))
        expected = [_storage_type(c) for c in columns]
        cursor = self._conn.cursor()
        try:
            # Fast path: ADBC infers each column's type from the first batch; every column
            # is CAST to its storage class, so the inference is right unless a column is
            # NULL throughout the first batch. That shows in the reader's schema before
            # any row is used, and then the query is run again with a typed sentinel row.
            reader = self._execute(cursor, table, columns, where, sentinel=False)
            if reader.schema.types != expected:
                cursor.close()
                cursor = self._conn.cursor()
                reader = self._execute(cursor, table, columns, where, sentinel=True)
                yield from self._without_sentinel(reader, table, schema)
                return
            for batch in reader:
                if batch.num_rows:
                    yield batch
        except OSError as exc:
            raise LoadError(f"{self._where(table, schema)}: SQLite read failed: {exc}") from exc
        finally:
            cursor.close()

    def _execute(
        self,
        cursor: Any,
        table: str,
        columns: list[Column],
        where: sa.ColumnElement | None,
        *,
        sentinel: bool,
    ) -> pa.RecordBatchReader:
        sql, params = self._compile(table, columns, where, sentinel=sentinel)
        cursor.adbc_statement.set_options(
            **{"adbc.sqlite.query.batch_rows": str(SQLITE_BATCH_ROWS)}
        )
        cursor.execute(sql, parameters=params or None)
        return cursor.fetch_record_batch()

    def _without_sentinel(
        self, reader: pa.RecordBatchReader, table: str, schema: str
    ) -> Iterator[pa.RecordBatch]:
        first = True
        for batch in reader:
            if first:
                # Row 0 is the typing sentinel (marker 1); drop it, and the marker column.
                if batch.num_rows == 0 or batch.column(0)[0].as_py() != 1:
                    raise LoadError(f"{self._where(table, schema)}: sentinel row missing")
                batch = batch.slice(1)
                first = False
            if batch.num_rows:
                yield batch.drop_columns(["__dl_marker"])

    def _compile(
        self, table: str, columns: list[Column], where: sa.ColumnElement | None, *, sentinel: bool
    ) -> tuple[str, list[Any]]:
        # A first sentinel row of the right storage class plus a CAST on every column
        # makes ADBC's inferred types the declared ones (used only when needed: the
        # UNION ALL makes SQLite's scan markedly slower).
        data = [sa.literal_column("0").label("__dl_marker")] if sentinel else []
        marker = [sa.literal_column("1").label("__dl_marker")]
        for col in columns:
            cast_type, default = _SQLITE_READ_CAST.get(col.kind, (sa.Text, "''"))
            marker.append(sa.literal_column(default).label(col.name))
            data.append(sa.cast(sa.column(_quoted(col.name)), cast_type).label(col.name))
        stmt: sa.Select | sa.CompoundSelect = sa.select(*data).select_from(
            _sa_table(None, table, columns)
        )
        if where is not None:
            stmt = stmt.where(where)
        if sentinel:
            stmt = sa.union_all(sa.select(*marker), stmt)
        compiled = stmt.compile(dialect=sqlite.dialect())
        params = [compiled.params[name] for name in compiled.positiontup or []]
        return compiled.string, params


def _storage_type(column: Column) -> pa.DataType:
    """The Arrow type ADBC reports for the CAST expression of a column."""
    cast_type = _SQLITE_READ_CAST.get(column.kind, (sa.Text, ""))[0]
    return {sa.Integer: pa.int64(), sa.REAL: pa.float64(), sa.LargeBinary: pa.binary()}.get(
        cast_type, pa.string()
    )


# ----------------------------------------------------------------------- PostgreSQL

_PG_INTS = {"smallint": pa.int16(), "integer": pa.int32(), "bigint": pa.int64()}
_PG_TEXT_UDTS = {"text", "varchar", "bpchar", "name"}


# PostgreSQL types DMS maps to a LOB; every other text-like type is a STRING/WSTRING.
_PG_NCLOB_UDTS = {"text", "json", "jsonb", "hstore"}
_PG_CLOB_UDTS = {"xml", "tsvector", "tsquery", "path", "polygon"}


def _pg_lob(data_type: str, udt: str, typtype: Any, jsonb_as_clob: bool) -> str | None:
    if udt == "jsonb" and jsonb_as_clob:
        return CLOB  # MapJsonbAsClob
    if udt in _PG_NCLOB_UDTS or data_type == "ARRAY" or typtype == "c":
        return NCLOB  # TEXT, JSON, JSONB, HSTORE, ARRAY, COMPOSITE
    if udt in _PG_CLOB_UDTS:
        return CLOB
    return None


def _pg_sa_type(column: Column) -> sa.types.TypeEngine:
    if column.kind is Kind.DECIMAL:
        if pa.types.is_decimal(column.arrow_type):
            return sa.Numeric(column.arrow_type.precision, column.arrow_type.scale)
        return sa.Numeric()
    return {
        Kind.INT: sa.BigInteger(),
        Kind.FLOAT: sa.Float(53),
        Kind.DATE: sa.Date(),
        Kind.TIMESTAMP: sa.TIMESTAMP(timezone=False),
        Kind.TIMESTAMPTZ: sa.TIMESTAMP(timezone=True),
        Kind.BOOL: sa.Boolean(),
    }.get(column.kind, sa.Text())


class _PostgresDialect:
    """Values are bound to session settings and cast back to the column's type in SQL.

    ADBC's PostgreSQL driver streams a result with COPY only when the query has no
    parameters (with parameters it materialises the whole result). So each converted
    value is bound with ``set_config($1, $2)`` and the query reads it back with
    ``CAST(current_setting('deltaload.pN') AS <column type>)``: values stay bound, the
    query text never contains them, and the result streams.
    """

    def __init__(self) -> None:
        self.settings: list[tuple[str, str]] = []

    def raw_column(self, column: Column) -> sa.ColumnElement:
        return sa.column(_quoted(column.name))

    def column_expr(self, column: Column) -> sa.ColumnElement:
        return self.raw_column(column)

    def value_expr(self, column: Column, value: object) -> sa.ColumnElement:
        name = f"deltaload.p{len(self.settings) + 1}"
        self.settings.append((name, _pg_text(value)))
        setting = sa.func.current_setting(sa.literal_column(f"'{name}'"))
        return sa.cast(setting, _pg_sa_type(column))


def _pg_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if hasattr(value, "isoformat"):
        return value.isoformat()  # type: ignore[no-any-return, attr-defined]
    return str(value)


class PostgresReader(SourceReader):
    """PostgreSQL through ADBC (binary COPY, streamed)."""

    kind = "postgres"

    def __init__(self, config: SourceConfig) -> None:
        super().__init__(config)
        import adbc_driver_postgresql.dbapi as adbc_pg

        assert config.url is not None
        uri = config.url.set(drivername="postgresql").render_as_string(hide_password=False)
        try:
            self._conn = adbc_pg.connect(uri)
        except Exception as exc:
            raise LoadError(
                f"endpoint {config.endpoint_id}: cannot connect to {config.describe()}: "
                f"{type(exc).__name__}"
            ) from None
        self._query("SET TIME ZONE 'UTC'")

    def close(self) -> None:
        self._conn.close()

    def _query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        cursor = self._conn.cursor()
        try:
            cursor.execute(sql, parameters=params)
            return cursor.fetchall() if cursor.description else []
        finally:
            cursor.close()

    def list_tables(self, table_types: set[str]) -> list[tuple[str, str]]:
        wanted = _types_wanted(table_types)
        kinds = [k for k, t in (("BASE TABLE", "table"), ("VIEW", "view")) if t in wanted]
        rows = self._query(
            "SELECT table_schema, table_name, table_type FROM information_schema.tables "
            "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') "
            "AND table_schema NOT LIKE 'pg\\_%' ORDER BY 1, 2"
        )
        return [(s, t) for s, t, kind in rows if kind in kinds]

    def columns(self, schema: str, table: str) -> list[Column]:
        # typtype tells enums ('e', DMS STRING) from composite types ('c', DMS NCLOB).
        rows = self._query(
            "SELECT c.column_name, c.data_type, c.udt_name, c.numeric_precision, "
            "c.numeric_scale, (SELECT t.typtype::text FROM pg_catalog.pg_type t "
            "JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace "
            "WHERE t.typname = c.udt_name AND n.nspname = c.udt_schema) "
            "FROM information_schema.columns c WHERE c.table_schema = $1 "
            "AND c.table_name = $2 ORDER BY c.ordinal_position",
            (schema, table),
        )
        if not rows:
            raise LoadError(
                f"{self._where(table, schema)} does not exist in {self.config.describe()}"
            )
        return [self._column(*row) for row in rows]

    def _column(
        self, name: str, data_type: str, udt: str, prec: Any, scale: Any, typtype: Any = None
    ) -> Column:
        """The DMS mapping of a PostgreSQL type ("Source data types for PostgreSQL",
        https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Source.PostgreSQL.html)."""
        if data_type in _PG_INTS:
            return Column(name, Kind.INT, _PG_INTS[data_type], data_type)
        if data_type == "numeric":
            # ADBC hands numeric over as text anyway, and its binary-numeric-to-text
            # conversion is the costliest part of a read (measured: 0.52 s of client CPU
            # per 1M values against 0.15 s for CAST(... AS TEXT) on the server), so the
            # server formats it and the writer thread parses it into the decimal.
            if prec is None:
                # Local choice: NUMERIC(28,6); text with mapUnboundedNumericAsString=true.
                if self.config.unbounded_numeric_as_string:
                    return Column(name, Kind.DECIMAL, pa.string(), "numeric", read_as_text=True)
                prec, scale = 28, 6
            arrow_type = arrow_for(Kind.DECIMAL, int(prec), int(scale))
            return Column(name, Kind.DECIMAL, arrow_type, udt, read_as_text=True)
        if data_type == "money":  # NUMERIC(38,4); read as numeric text, not '$1,234.50'
            return Column(name, Kind.DECIMAL, pa.decimal128(38, 4), "money", read_as_text=True)
        if data_type == "boolean":
            # CHAR(5) 'true'/'false' unless the endpoint sets MapBooleanAsBoolean.
            arrow_type = pa.bool_() if self.config.map_boolean_as_boolean else pa.string()
            return Column(name, Kind.BOOL, arrow_type, data_type)
        simple = {
            "real": (Kind.FLOAT, pa.float32()),
            "double precision": (Kind.FLOAT, pa.float64()),
            "date": (Kind.DATE, pa.date32()),
            "timestamp without time zone": (Kind.TIMESTAMP, pa.timestamp("us")),
            "timestamp with time zone": (Kind.TIMESTAMPTZ, pa.timestamp("us")),
            "time without time zone": (Kind.TEXT, pa.time32("ms")),  # TIME -> TIME32
        }
        if data_type == "bytea":
            return Column(name, Kind.BINARY, pa.binary(), data_type, lob=BLOB)
        if data_type in simple:
            kind, arrow_type = simple[data_type]
            return Column(name, kind, arrow_type, data_type)
        lob = _pg_lob(data_type, udt, typtype, self.config.map_jsonb_as_clob)
        as_text = udt not in _PG_TEXT_UDTS
        return Column(
            name,
            Kind.TEXT,
            pa.string(),
            udt if as_text else data_type,
            read_as_text=as_text,
            lob=lob,
        )

    def batches(
        self, schema: str, table: str, columns: list[Column], filters: Conditions
    ) -> Iterator[pa.RecordBatch]:
        dialect = _PostgresDialect()
        where = build_where(
            filters, {c.name: c for c in columns}, dialect, self._where(table, schema)
        )
        select = []
        for col in columns:
            ref = sa.column(_quoted(col.name))
            # Types ADBC has no Arrow mapping for (uuid, json, ...) and numeric come as text.
            if col.declared == "money":
                ref = sa.cast(ref, sa.Numeric)
            select.append(sa.cast(ref, sa.Text).label(col.name) if col.read_as_text else ref)
        stmt = sa.select(*select).select_from(_sa_table(schema, table, columns))
        if where is not None:
            stmt = stmt.where(where)
        sql = stmt.compile(dialect=postgresql.dialect()).string
        for name, text in dialect.settings:
            self._query("SELECT set_config($1, $2, false)", (name, text))
        cursor = self._conn.cursor()
        try:
            cursor.adbc_statement.set_options(
                **{"adbc.postgresql.batch_size_hint_bytes": str(POSTGRES_BATCH_BYTES)}
            )
            cursor.execute(sql)
            for batch in cursor.fetch_record_batch():
                if batch.num_rows:
                    yield batch
        except Exception as exc:
            if isinstance(exc, LoadError):
                raise
            raise LoadError(f"{self._where(table, schema)}: PostgreSQL read failed: {exc}") from exc
        finally:
            cursor.close()


# ---------------------------------------------------------------------------- MySQL


class _MysqlDialect:
    """MySQL binds typed values (PyMySQL escapes them); TIMESTAMP values are UTC."""

    def raw_column(self, column: Column) -> sa.ColumnElement:
        return sa.column(_quoted(column.name))

    def column_expr(self, column: Column) -> sa.ColumnElement:
        return self.raw_column(column)

    def value_expr(self, column: Column, value: object) -> sa.ColumnElement:
        if column.kind is Kind.TIMESTAMPTZ:
            value = value.astimezone(UTC).replace(tzinfo=None)  # type: ignore[attr-defined]
        elif column.kind is Kind.BOOL:
            value = int(bool(value))
        return sa.bindparam(None, value)


# (signed, unsigned) Parquet types of DMS's INTn/UINTn for each MySQL integer type.
_MYSQL_INTS = {
    "tinyint": (pa.int8(), pa.uint8()),
    "smallint": (pa.int16(), pa.uint16()),
    "mediumint": (pa.int32(), pa.uint32()),
    "int": (pa.int32(), pa.uint32()),
    "bigint": (pa.int64(), pa.uint64()),
    "year": (pa.int16(), pa.int16()),
}
_MYSQL_BINARY = {"binary", "varbinary", "tinyblob", "blob"}  # BYTES
_MYSQL_BLOB = {
    "mediumblob",
    "longblob",
    "geometry",
    "point",
    "linestring",
    "polygon",
    "multipoint",
    "multilinestring",
    "multipolygon",
    "geometrycollection",
    "geomcollection",
}


class MysqlReader(SourceReader):
    """MySQL/MariaDB through a SQLAlchemy streaming (server-side) cursor."""

    kind = "mysql"

    def __init__(self, config: SourceConfig) -> None:
        super().__init__(config)
        assert config.url is not None
        self._engine = sa.create_engine(config.url, poolclass=sa.pool.NullPool)
        try:
            self._conn = self._engine.connect()
            # TIMESTAMP columns are returned in the session zone: make that UTC.
            self._conn.exec_driver_sql("SET time_zone = '+00:00'")
        except Exception as exc:
            raise LoadError(
                f"endpoint {config.endpoint_id}: cannot connect to {config.describe()}: "
                f"{type(exc).__name__}"
            ) from None

    def close(self) -> None:
        self._conn.close()
        self._engine.dispose()

    def list_tables(self, table_types: set[str]) -> list[tuple[str, str]]:
        wanted = _types_wanted(table_types)
        kinds = [k for k, t in (("BASE TABLE", "table"), ("VIEW", "view")) if t in wanted]
        rows = self._conn.execute(
            sa.text(
                "SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES "
                "WHERE TABLE_SCHEMA NOT IN :system ORDER BY 1, 2"
            ).bindparams(sa.bindparam("system", expanding=True)),
            {"system": list(_MYSQL_SYSTEM_SCHEMAS)},
        ).all()
        return [(s, t) for s, t, kind in rows if kind in kinds]

    def columns(self, schema: str, table: str) -> list[Column]:
        rows = self._about_table(_MYSQL_COLUMNS, schema, table)
        if not rows:
            raise LoadError(
                f"{self._where(table, schema)} does not exist in {self.config.describe()}"
            )
        return [_mysql_column(*row) for row in rows]

    def partitions(self, schema: str, table: str) -> list[str]:
        rows = self._about_table(_MYSQL_PARTITIONS, schema, table)
        return [row[0] for row in rows]

    def _about_table(self, sql: str, schema: str, table: str) -> list[Any]:
        """Rows of an information_schema query bound to ``:s`` (schema) and ``:t`` (table)."""
        return list(self._conn.execute(sa.text(sql), {"s": schema, "t": table}).all())

    def batches(
        self, schema: str, table: str, columns: list[Column], filters: Conditions
    ) -> Iterator[pa.RecordBatch]:
        where = build_where(
            filters, {c.name: c for c in columns}, _MysqlDialect(), self._where(table, schema)
        )
        selected = [
            sa.cast(sa.column(_quoted(c.name)), sa.String).label(c.name)
            if c.read_as_text
            else sa.column(_quoted(c.name))
            for c in columns
        ]
        stmt = sa.select(*selected).select_from(_sa_table(schema, table, columns))
        if where is not None:
            stmt = stmt.where(where)
        schema_out = pa.schema([c.field for c in columns])
        streaming = self._conn.execution_options(stream_results=True, yield_per=MYSQL_CHUNK_ROWS)
        try:
            result = streaming.execute(stmt)
            for rows in result.partitions():
                yield _rows_to_batch(rows, columns, schema_out)
        except sa.exc.DBAPIError as exc:
            raise LoadError(f"{self._where(table, schema)}: MySQL read failed: {exc.orig}") from exc


def _mysql_column(name: str, data_type: str, column_type: str, prec: Any, scale: Any) -> Column:
    """The DMS mapping of a MySQL/MariaDB type ("Source data types for MySQL",
    https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Source.MySQL.html).

    BOOLEAN is TINYINT(1) in MySQL, and DMS maps TINYINT to INT1: it lands as int8.
    """
    data_type = data_type.lower()
    column_type = column_type.lower()
    if data_type == "bit":
        if column_type in ("bit", "bit(1)"):
            return Column(name, Kind.BOOL, pa.bool_(), column_type)  # BIT -> BOOLEAN
        return Column(name, Kind.BINARY, pa.binary(), column_type)  # BIT(64) -> BYTES(8)
    if data_type in _MYSQL_INTS:
        signed, unsigned = _MYSQL_INTS[data_type]
        return Column(
            name, Kind.INT, unsigned if "unsigned" in column_type else signed, column_type
        )
    if data_type == "decimal":
        return Column(
            name, Kind.DECIMAL, arrow_for(Kind.DECIMAL, int(prec), int(scale)), column_type
        )
    simple = {
        "float": (Kind.FLOAT, pa.float64()),  # FLOAT -> REAL(DOUBLE)
        "double": (Kind.FLOAT, pa.float64()),
        "date": (Kind.DATE, pa.date32()),
        "datetime": (Kind.TIMESTAMP, pa.timestamp("us")),  # as written, not converted
        "timestamp": (Kind.TIMESTAMPTZ, pa.timestamp("us")),  # converted to UTC
    }
    if data_type in _MYSQL_BINARY:
        return Column(name, Kind.BINARY, pa.binary(), column_type)
    if data_type in _MYSQL_BLOB:
        return Column(name, Kind.BINARY, pa.binary(), column_type, lob=BLOB)
    if data_type == "time":  # TIME -> STRING, in MySQL's own text form
        return Column(name, Kind.TEXT, pa.string(), column_type, read_as_text=True)
    if data_type in simple:
        kind, arrow_type = simple[data_type]
        return Column(name, kind, arrow_type, column_type)
    # MEDIUMTEXT/LONGTEXT -> NCLOB (MariaDB's JSON is a LONGTEXT), MySQL JSON -> CLOB,
    # CHAR/VARCHAR/TINYTEXT/TEXT/ENUM/SET -> WSTRING.
    lob = {"mediumtext": NCLOB, "longtext": NCLOB, "json": CLOB}.get(data_type)
    return Column(name, Kind.TEXT, pa.string(), column_type, lob=lob)


def _rows_to_batch(
    rows: Sequence[Sequence[Any]], columns: list[Column], schema: pa.Schema
) -> pa.RecordBatch:
    arrays = []
    for index, column in enumerate(columns):
        values = [row[index] for row in rows]
        if column.kind is Kind.BOOL:
            # BIT(1) arrives as b'\x00'/b'\x01'.
            values = [None if v is None else _mysql_bool(v) for v in values]
        elif column.kind is Kind.TEXT:
            values = [None if v is None else str(v) for v in values]
        elif column.kind is Kind.BINARY:
            values = [None if v is None else bytes(v) for v in values]
        arrays.append(pa.array(values, type=column.arrow_type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _mysql_bool(value: Any) -> bool:
    if isinstance(value, bytes | bytearray):
        return int.from_bytes(value, "big") != 0
    return bool(value)


# ----------------------------------------------------------------------- conversion


def conform(batch: pa.RecordBatch, schema: pa.Schema, columns: list[Column]) -> pa.RecordBatch:
    """Cast a driver batch to the table's Arrow schema (safe casts: no silent loss)."""
    if batch.schema.equals(schema):
        return batch
    arrays = []
    for index, column in enumerate(columns):
        array = batch.column(index)
        if isinstance(array.type, pa.ExtensionType):
            array = array.storage  # e.g. PostgreSQL numeric arrives as opaque text
        if array.type != column.arrow_type:
            array = _cast(array, column)
        arrays.append(array)
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _cast(array: pa.Array, column: Column) -> pa.Array:
    try:
        if pa.types.is_time32(column.arrow_type):
            # DMS TIME lands as Parquet TIME32 (milliseconds): finer digits are dropped.
            return pc.cast(array, column.arrow_type, safe=False)
        return pc.cast(array, column.arrow_type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        # Arrow's cast is the fast path and refuses rather than guesses; text timestamps
        # it refuses get the slow parser (_parse_times), anything else is the load's error.
        if pa.types.is_string(array.type) and column.kind in (
            Kind.TIMESTAMP,
            Kind.TIMESTAMPTZ,
            Kind.DATE,
        ):
            return _parse_times(array, column)
        raise LoadError(
            f"column {column.name!r} ({column.declared}): cannot convert {array.type} to "
            f"{column.arrow_type}: {exc}"
        ) from exc


def _parse_times(array: pa.Array, column: Column) -> pa.Array:
    # Slow path for text timestamps Arrow's ISO parser refuses (offsets on a naive
    # column, 'YYYY-MM-DD' on a time-zone column, 7-9 fraction digits).
    values = []
    for text in array.to_pylist():
        if text is None:
            values.append(None)
            continue
        try:
            stamp = parse_timestamp(text if len(text) > 10 else f"{text} 00:00:00")
        except ValueError as exc:
            raise LoadError(
                f"column {column.name!r} ({column.declared}): {text!r} is not a timestamp"
            ) from exc
        if stamp.tzinfo is not None:  # naive values of a time-zone column are UTC already
            stamp = stamp.astimezone(UTC).replace(tzinfo=None)
        values.append(stamp.date() if column.kind is Kind.DATE else stamp)
    return pa.array(values, type=column.arrow_type)


def open_reader(config: SourceConfig) -> SourceReader:
    """Open the reader for a source config (raises LoadError if it cannot connect)."""
    readers = {"sqlite": SqliteReader, "postgres": PostgresReader, "mysql": MysqlReader}
    return readers[config.kind](config)
