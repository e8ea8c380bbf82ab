"""Test helpers: source tables on three engines, and a DMS workflow driven through boto3."""

from __future__ import annotations

import io
import json
import sqlite3
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa

from deltaload.local.account import ACCOUNT

BUCKET = "lake"
SCHEMA = "dwh"

# Neutral column types -> DDL on each engine.
DDL = {
    "bigint": {"sqlite": "INTEGER", "postgres": "bigint", "mysql": "BIGINT"},
    "decimal": {"sqlite": "NUMERIC(12,2)", "postgres": "numeric(12,2)", "mysql": "DECIMAL(12,2)"},
    "text": {"sqlite": "TEXT", "postgres": "text", "mysql": "TEXT"},
    "varchar": {"sqlite": "VARCHAR(20)", "postgres": "varchar(20)", "mysql": "VARCHAR(20)"},
    "date": {"sqlite": "DATE", "postgres": "date", "mysql": "DATE"},
    "timestamp": {"sqlite": "TIMESTAMP", "postgres": "timestamp", "mysql": "DATETIME(6)"},
    "timestamptz": {
        "sqlite": "TIMESTAMP WITH TIME ZONE",
        "postgres": "timestamptz",
        "mysql": "TIMESTAMP(6) NULL",
    },
    "bool": {"sqlite": "BOOLEAN", "postgres": "boolean", "mysql": "BOOLEAN"},
    "binary": {"sqlite": "BLOB", "postgres": "bytea", "mysql": "BLOB"},
}


class Text(str):
    """A timestamp written as text: SQLite stores it verbatim, servers store the instant."""


@dataclass
class SourceDb:
    """A source database (SQLite file or a server) where tests create tables in 'dwh'."""

    kind: str
    sqlite_path: Path | None = None
    engine: sa.Engine | None = None
    tables: list[str] = field(default_factory=list)

    def create_table(
        self, name: str, columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[Any]]
    ) -> None:
        """Create ``dwh.<name>`` with neutral-typed columns and insert rows."""
        cols = ", ".join(f'"{c}" {DDL[t][self.kind]}' for c, t in columns)
        if self.kind == "mysql":
            cols = cols.replace('"', "`")
        self.tables.append(name)
        if self.kind == "sqlite":
            assert self.sqlite_path is not None
            with sqlite3.connect(self.sqlite_path) as conn:
                conn.execute(f'CREATE TABLE "{name}" ({cols})')
                marks = ",".join("?" for _ in columns)
                data = [[_sqlite_value(v) for v in row] for row in rows]
                conn.executemany(f'INSERT INTO "{name}" VALUES ({marks})', data)
            return
        assert self.engine is not None
        qualified = f"`{SCHEMA}`.`{name}`" if self.kind == "mysql" else f'"{SCHEMA}"."{name}"'
        with self.engine.begin() as conn:
            if self.kind == "mysql":
                conn.exec_driver_sql("SET time_zone = '+00:00'")
            conn.exec_driver_sql(f"CREATE TABLE {qualified} ({cols})")
            if rows:
                keys = [f"c{i}" for i in range(len(columns))]
                stmt = sa.text(
                    f"INSERT INTO {qualified} VALUES ({', '.join(':' + k for k in keys)})"
                )
                data = [
                    {k: self._server_value(v) for k, v in zip(keys, row, strict=True)}
                    for row in rows
                ]
                conn.execute(stmt, data)

    def _server_value(self, value: Any) -> Any:
        if isinstance(value, Text):
            value = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        if self.kind == "mysql" and isinstance(value, datetime) and value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)  # session zone is UTC
        return value

    def drop_all(self) -> None:
        """Drop every table this test created."""
        if self.kind == "sqlite" or self.engine is None:
            return
        with self.engine.begin() as conn:
            for name in self.tables:
                if self.kind == "mysql":
                    conn.exec_driver_sql(f"DROP TABLE IF EXISTS `{SCHEMA}`.`{name}`")
                else:
                    conn.exec_driver_sql(f'DROP TABLE IF EXISTS "{SCHEMA}"."{name}"')

    def secret(self) -> dict[str, Any]:
        """The Secrets Manager secret DMS documents: host, port, username, password."""
        assert self.engine is not None
        url = self.engine.url
        return {
            "engine": "postgres" if self.kind == "postgres" else "mysql",
            "host": url.host,
            "port": url.port or (5432 if self.kind == "postgres" else 3306),
            "username": url.username or "",
            "password": url.password or "",
            "dbname": url.database or "",
        }


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bool):
        return int(value)
    return value


def wait_for(probe: Callable[[], Any], done: Callable[[Any], bool], timeout: float = 20) -> Any:
    """Poll ``probe`` until ``done(result)``; return the result (fail after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if done(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting; last result: {result!r}")
        time.sleep(0.01)


def selection(
    table: str,
    filters: Sequence[dict[str, Any]] = (),
    schema: str = SCHEMA,
    rule_id: str = "1",
    action: str = "include",
) -> dict[str, Any]:
    """A selection rule for schema.table with source filters."""
    return {
        "rule-type": "selection",
        "rule-id": rule_id,
        "rule-name": rule_id,
        "object-locator": {"schema-name": schema, "table-name": table},
        "rule-action": action,
        "filters": list(filters),
    }


def source_filter(column: str, *conditions: dict[str, Any]) -> dict[str, Any]:
    """A DMS source filter; its conditions are ORed."""
    return {"filter-type": "source", "column-name": column, "filter-conditions": list(conditions)}


def rename_table(table: str, new_name: str, schema: str = SCHEMA) -> dict[str, Any]:
    """A transformation rule renaming a table."""
    return {
        "rule-type": "transformation",
        "rule-id": "90",
        "rule-name": "rename-table",
        "rule-target": "table",
        "object-locator": {"schema-name": schema, "table-name": table},
        "rule-action": "rename",
        "value": new_name,
    }


def mappings(*rules: dict[str, Any]) -> str:
    """A TableMappings document."""
    return json.dumps({"rules": list(rules)})


@dataclass
class Workflow:
    """What a deltaload run does, through boto3 calls only."""

    session: Any
    dms: Any

    def __post_init__(self) -> None:
        self.s3 = self.session.client("s3")

    def source_endpoint(self, db: SourceDb, **extra: Any) -> str:
        """Create the source endpoint (servers: from a Secrets Manager secret)."""
        ident = f"src-{uuid.uuid4().hex[:8]}"
        if db.kind == "sqlite":
            params = {"EngineName": "sqlite", "DatabaseName": str(db.sqlite_path)}
        else:
            secrets = self.session.client("secretsmanager")
            arn = secrets.create_secret(Name=ident, SecretString=json.dumps(db.secret()))["ARN"]
            key = "PostgreSQLSettings" if db.kind == "postgres" else "MySQLSettings"
            params = {
                "EngineName": db.kind,
                "DatabaseName": db.secret()["dbname"],
                key: {
                    "SecretsManagerSecretId": arn,
                    "SecretsManagerAccessRoleArn": f"arn:aws:iam::{ACCOUNT}:role/dms-secrets",
                },
            }
        for key, value in extra.items():  # engine settings are merged into the secret's
            if isinstance(value, dict) and isinstance(params.get(key), dict):
                params[key] = {**params[key], **value}
            else:
                params[key] = value
        endpoint = self.dms.create_endpoint(
            EndpointIdentifier=ident, EndpointType="source", **params
        )["Endpoint"]
        return endpoint["EndpointArn"]

    def source_endpoint_sqlite(self, path: Path, **extra: Any) -> str:
        """Create a SQLite source endpoint (local only: DatabaseName is the file)."""
        return self.dms.create_endpoint(
            EndpointIdentifier=f"src-{uuid.uuid4().hex[:8]}",
            EndpointType="source",
            EngineName="sqlite",
            DatabaseName=str(path),
            **extra,
        )["Endpoint"]["EndpointArn"]

    def target_endpoint(self, folder: str, **s3: Any) -> str:
        """Create the S3 Parquet target endpoint writing under ``folder``."""
        settings = {
            "BucketName": BUCKET,
            "BucketFolder": folder,
            "DataFormat": "parquet",
            "ServiceAccessRoleArn": f"arn:aws:iam::{ACCOUNT}:role/dms-s3",
            **s3,
        }
        endpoint = self.dms.create_endpoint(
            EndpointIdentifier=f"tgt-{uuid.uuid4().hex[:8]}",
            EndpointType="target",
            EngineName="s3",
            S3Settings=settings,
        )["Endpoint"]
        return endpoint["EndpointArn"]

    def instance(self) -> str:
        """Create a replication instance and wait until it is available."""
        arn = self.dms.create_replication_instance(
            ReplicationInstanceIdentifier=f"ri-{uuid.uuid4().hex[:8]}",
            ReplicationInstanceClass="dms.t3.medium",
        )["ReplicationInstance"]["ReplicationInstanceArn"]
        wait_for(
            lambda: self.describe_instance(arn)["ReplicationInstanceStatus"],
            lambda s: s == "available",
        )
        return arn

    def describe_instance(self, arn: str) -> dict[str, Any]:
        """The instance with this ARN."""
        return self.dms.describe_replication_instances(
            Filters=[{"Name": "replication-instance-arn", "Values": [arn]}]
        )["ReplicationInstances"][0]

    def task(self, source: str, target: str, instance: str, table_mappings: str, **kw: Any) -> str:
        """Create a full-load task and wait until it is ready."""
        arn = self.create_task(source, target, instance, table_mappings, **kw)
        wait_for(lambda: self.describe_task(arn)["Status"], lambda s: s == "ready")
        return arn

    def create_task(
        self, source: str, target: str, instance: str, table_mappings: str, **kw: Any
    ) -> str:
        """Create a full-load task (status creating); its ARN."""
        arn = self.dms.create_replication_task(
            ReplicationTaskIdentifier=kw.pop("ident", f"task-{uuid.uuid4().hex[:8]}"),
            SourceEndpointArn=source,
            TargetEndpointArn=target,
            ReplicationInstanceArn=instance,
            MigrationType="full-load",
            TableMappings=table_mappings,
            **kw,
        )["ReplicationTask"]["ReplicationTaskArn"]
        return arn

    def describe_task(self, arn: str) -> dict[str, Any]:
        """The task with this ARN."""
        return self.dms.describe_replication_tasks(
            Filters=[{"Name": "replication-task-arn", "Values": [arn]}]
        )["ReplicationTasks"][0]

    def start_and_wait(self, arn: str, start_type: str = "start-replication") -> dict[str, Any]:
        """Start the task and poll until it is stopped or failed."""
        self.dms.start_replication_task(ReplicationTaskArn=arn, StartReplicationTaskType=start_type)
        return wait_for(
            lambda: self.describe_task(arn), lambda t: t["Status"] in ("stopped", "failed")
        )

    def table_stats(self, arn: str) -> list[dict[str, Any]]:
        """DescribeTableStatistics of a task."""
        return self.dms.describe_table_statistics(ReplicationTaskArn=arn)["TableStatistics"]

    def keys(self, prefix: str) -> list[str]:
        """Object keys under a prefix, in order."""
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def read(self, key: str) -> pa.Table:
        """One Parquet object from S3."""
        body = self.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        return pq.read_table(io.BytesIO(body))

    def read_all(self, prefix: str) -> pa.Table | None:
        """Every Parquet object under a prefix as one table (None if there is none)."""
        tables = [self.read(k) for k in self.keys(prefix)]
        return pa.concat_tables(tables) if tables else None


def ids(table: pa.Table | None, column: str = "id") -> list[int]:
    """The sorted ids of a loaded table ([] for no output)."""
    return sorted(table.column(column).to_pylist()) if table is not None else []
