"""The database servers some tests need: skip with the reason, or fail in CI.

With DELTALOAD_REQUIRE_SERVERS=1 (set by .ci/run) an unreachable server fails the
test instead of skipping it, so CI cannot pass by skipping.
"""

from __future__ import annotations

import os

import pytest
import sqlalchemy as sa

POSTGRES_URL = os.environ.get(
    "DELTALOAD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
MYSQL_URL = os.environ.get("DELTALOAD_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")


def require_servers() -> bool:
    """True when server tests must fail rather than skip."""
    return os.environ.get("DELTALOAD_REQUIRE_SERVERS") == "1"


def server_engine(url: str, what: str) -> sa.Engine:
    """An engine for a test server, or skip (fail with DELTALOAD_REQUIRE_SERVERS=1)."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except Exception as exc:
        reason = f"{what} server not reachable at {sa.make_url(url).render_as_string()}: {exc}"
        if require_servers():
            pytest.fail(f"DELTALOAD_REQUIRE_SERVERS=1 but {reason}")
        pytest.skip(reason)
    return engine


# The three source databases, the server ones marked so `-m "not postgres"` can leave them out.
SOURCES = [
    "sqlite",
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mysql", marks=pytest.mark.mysql),
]
