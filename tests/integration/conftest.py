"""Fixtures for whole-workflow tests through the offline runtime."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from deltaload.cli import app
from deltaload.local.dms import Timing
from deltaload.local.runtime import LocalRuntime, Source
from tests.servers import MYSQL_URL, POSTGRES_URL, SOURCES

ROOT = Path(__file__).resolve().parents[2]
FAST = Timing.quick()


@dataclass
class OrdersTable:
    """A source orders table in one of the three databases."""

    kind: str
    url: str
    engine: sa.Engine
    table: sa.Table

    @property
    def name(self) -> str:
        return self.table.name

    def insert(self, ids: range | list[int], updated_at: datetime) -> None:
        rows = [
            {
                "row_id": i,
                "status": "NEW",
                "amount": Decimal(i) / 4,
                "note": f"order {i} with 'quotes', a newline\nand ünïcode",
                "updated_at": updated_at.replace(tzinfo=None),
            }
            for i in ids
        ]
        with self.engine.begin() as conn:
            conn.execute(self.table.insert(), rows)

    def update(self, ids: list[int], status: str, updated_at: datetime) -> None:
        with self.engine.begin() as conn:
            for i in ids:
                conn.execute(
                    self.table.update()
                    .where(self.table.c.row_id == i)
                    .values(status=status, updated_at=updated_at.replace(tzinfo=None))
                )

    def item(self, target: str, **changes: Any) -> dict[str, Any]:
        """A controller item for this table (row_id gte 1 unless changed)."""
        return {
            "targetTableName": target,
            "activeflag": "true",
            "sourceSchema": "dwh",
            "sourceTable": self.name,
            "filtercolumn": "row_id",
            "filteroperator": "gte",
            "filtercolumntype": "integer",
            "startvalue": "1",
            "ouputs3Prefix": "lake",
            **changes,
        }


def _orders(metadata: sa.MetaData, name: str, schema: str | None) -> sa.Table:
    return sa.Table(
        name,
        metadata,
        sa.Column("row_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("amount", sa.Numeric(12, 2)),
        sa.Column("note", sa.Text),
        sa.Column("updated_at", sa.DateTime(timezone=False), nullable=False),
        schema=schema,
    )


@pytest.fixture(params=SOURCES)
def orders(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OrdersTable]:
    """An empty orders table in SQLite, PostgreSQL or MariaDB, dropped afterwards."""
    kind = request.param
    name = f"orders_{uuid.uuid4().hex[:8]}"
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'source.sqlite'}"
        engine = sa.create_engine(url)
        schema = None
    else:
        url = POSTGRES_URL if kind == "postgres" else MYSQL_URL
        engine = request.getfixturevalue(f"{kind}_engine")
        schema = "dwh"
    metadata = sa.MetaData()
    table = _orders(metadata, name, schema)
    metadata.create_all(engine)
    try:
        yield OrdersTable(kind, url, engine, table)
    finally:
        metadata.drop_all(engine)
        if kind == "sqlite":
            engine.dispose()


@pytest.fixture
def offline(orders: OrdersTable, tmp_path: Path) -> Iterator[LocalRuntime]:
    """The offline runtime reading ``orders``, with its state in a temporary folder."""
    with LocalRuntime(
        ROOT,
        tmp_path / "state",
        Source.from_url(orders.url, schema="dwh"),
        timing=FAST,
        environment={"POLL_INITIAL_SECONDS": "0", "POLL_MAX_SECONDS": "1"},
    ) as runtime:
        yield runtime


class Ticks:
    """Distinct schedule times, one minute apart, as EventBridge would send them."""

    def __init__(self) -> None:
        self._next = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        self._next += timedelta(minutes=1)
        return self._next


@pytest.fixture
def ticks() -> Ticks:
    return Ticks()


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Run `deltaload` with its state and a small SQLite source in tmp_path."""
    source = tmp_path / "source.sqlite"
    with sqlite3.connect(source) as db:
        db.execute("CREATE TABLE orders_rds (row_id INTEGER PRIMARY KEY, status TEXT)")
        db.executemany("INSERT INTO orders_rds VALUES (?, 'NEW')", [(i,) for i in range(1, 31)])
    monkeypatch.setenv("DELTALOAD_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("DELTALOAD_SOURCE_URL", f"sqlite:///{source}")
    monkeypatch.chdir(ROOT)
    runner = CliRunner()

    def run(*args: str, env: dict[str, str] | None = None) -> Any:
        return runner.invoke(app, list(args), catch_exceptions=False, env=env)

    run.source = source  # type: ignore[attr-defined]
    return run


def write(tmp_path: Path, name: str, document: object) -> str:
    """Write ``document`` as JSON to tmp_path/name; its path."""
    path = tmp_path / name
    path.write_text(json.dumps(document))
    return str(path)
