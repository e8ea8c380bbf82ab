"""Test-wide setup: hypothesis profiles and the database servers some tests need."""

from __future__ import annotations

import os

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, settings

from tests.servers import MYSQL_URL, POSTGRES_URL, server_engine

# `make test` runs the default profile; `make test-large` runs many more examples.
settings.register_profile("default", max_examples=100, deadline=None)
settings.register_profile(
    "large", max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("DELTALOAD_HYPOTHESIS_PROFILE", "default"))


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
