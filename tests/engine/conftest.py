"""Fixtures for the local replication engine tests: moto AWS, the engine, source databases.

Server sources (PostgreSQL, MariaDB/MySQL) skip with a reason when the server cannot be
reached, unless DELTALOAD_REQUIRE_SERVERS=1, in which case they fail.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from moto import mock_aws

from deltaload.local.account import REGION
from deltaload.local.dms import LocalDms, Quotas, Timing
from tests.servers import SOURCES  # noqa: F401  (re-exported for the test modules)

from .helpers import SourceDb

FAST = Timing.quick()
BUCKET = "lake"


@pytest.fixture
def source_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SourceDb]:
    """A source database of the kind given by indirect parametrisation (default sqlite)."""
    kind = getattr(request, "param", "sqlite")
    if kind == "sqlite":
        db = SourceDb("sqlite", sqlite_path=tmp_path / "source.sqlite")
    elif kind == "postgres":
        db = SourceDb("postgres", engine=request.getfixturevalue("postgres_engine"))
    else:
        db = SourceDb("mysql", engine=request.getfixturevalue("mysql_engine"))
    yield db
    db.drop_all()


@pytest.fixture
def aws() -> Iterator[boto3.Session]:
    """A boto3 session under moto with the data bucket created."""
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        with mock_aws():
            session = boto3.Session(region_name=REGION)
            session.client("s3").create_bucket(Bucket=BUCKET)
            yield session
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def engine(aws: boto3.Session, tmp_path: Path) -> Iterator[LocalDms]:
    """The local DMS installed on the session, with fast timings.

    DMS's quotas and API throttling are off: these tests poll without retries (to see every
    error) and check the engine's copies; tests/engine/test_dms_quotas.py checks them.
    """
    local = LocalDms(aws.client, timing=FAST, quotas=Quotas.off())
    local.install(aws.events)
    yield local
    local.uninstall(aws.events)
    local.shutdown()


@pytest.fixture
def dms(aws: boto3.Session, engine: LocalDms) -> Any:
    """A DMS client answered by the local engine (no botocore retries: see every error)."""
    return aws.client("dms", config=Config(retries={"total_max_attempts": 1, "mode": "standard"}))


def make_sqlite(path: Path, ddl: str, rows: Sequence[Sequence[Any]]) -> None:
    """Create a SQLite table from DDL and rows (helper for tests that need a raw table)."""
    with sqlite3.connect(path) as conn:
        conn.execute(ddl)
        if rows:
            marks = ",".join("?" for _ in rows[0])
            table = ddl.split("(")[0].split()[-1]
            conn.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)


def unique(prefix: str) -> str:
    """A unique lower-case name for a table or identifier."""
    return f"{prefix}_{uuid.uuid4().hex[:8]}"
