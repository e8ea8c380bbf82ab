"""Test-wide setup: hypothesis profiles, the database servers some tests need, and the
offline lake's S3."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import boto3
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, settings

from deltaload.local.account import REGION
from deltaload.local.s3 import DiskS3
from tests.servers import MYSQL_URL, POSTGRES_URL, server_engine

# `make test` runs the default profile; `make test-large` runs many more examples.
settings.register_profile("default", max_examples=100, deadline=None)
settings.register_profile(
    "large", max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("DELTALOAD_HYPOTHESIS_PROFILE", "default"))


def pytest_configure(config: pytest.Config) -> None:
    # The runtimes of the tests, and the deltaload processes they start, share a parse
    # cache of their own (interpreter.shared_cache_dir), not the user's.
    if "DELTALOAD_CACHE_DIR" not in os.environ:
        folder = tempfile.mkdtemp(prefix="deltaload-test-cache-")
        os.environ["DELTALOAD_CACHE_DIR"] = folder
        config.add_cleanup(lambda: shutil.rmtree(folder, ignore_errors=True))


@pytest.fixture(scope="session")
def postgres_engine() -> sa.Engine:
    """The PostgreSQL test server (schema dwh is created if missing)."""
    engine = server_engine(POSTGRES_URL, "PostgreSQL")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE SCHEMA IF NOT EXISTS dwh")
    return engine


@pytest.fixture(scope="session")
def mysql_engine() -> sa.Engine:
    """The MariaDB/MySQL test server (database dwh is created if missing)."""
    engine = server_engine(MYSQL_URL, "MySQL/MariaDB")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE DATABASE IF NOT EXISTS dwh")
    return engine


@pytest.fixture
def store(tmp_path: Path) -> DiskS3:
    """The offline lake's S3 (``deltaload.local.s3``), its buckets folders in tmp_path."""
    return DiskS3(tmp_path / "s3")


@pytest.fixture
def s3(store: DiskS3, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A boto3 S3 client answered by ``store``, with the bucket ``lake`` created."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "local")
    session = boto3.Session(region_name=REGION)
    store.install(session.events)
    client = session.client("s3")
    client.create_bucket(Bucket="lake")
    return client
