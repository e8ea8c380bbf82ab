"""Shared helpers for the guarantee tests: a runtime per test, lake invariants, clean-up checks.

Every test here drives the real template, state machine and handlers through the offline
runtime (moto in-process plus the local DMS engine), so what is proven is the product's
behaviour end to end, not a unit's.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from deltaload.local.runtime import LocalRuntime, Source
from tests.integration.conftest import FAST, ROOT, OrdersTable, Ticks, _orders
from tests.integration.test_offline_workflow import assert_clean as assert_clean

STAGING = "_staging/"
LAKE = "lake/"
QUICK = {"POLL_INITIAL_SECONDS": "0", "POLL_MAX_SECONDS": "1"}

__all__ = [
    "FAST",
    "ROOT",
    "OrdersTable",
    "Ticks",
    "assert_clean",
    "assert_lake_consistent",
    "open_runtime",
    "published_rows",
    "sqlite_orders",
]


def open_runtime(
    state: Path, url: str, environment: Mapping[str, str] | None = None, **kwargs: Any
) -> LocalRuntime:
    """A LocalRuntime on ``url`` with the fast engine timing (use as a context manager)."""
    return LocalRuntime(
        ROOT,
        state,
        Source.from_url(url, schema="dwh"),
        timing=FAST,
        environment={**QUICK, **(environment or {})},
        **kwargs,
    )


def sqlite_orders(path: Path, name: str | None = None) -> OrdersTable:
    """An empty orders table in a SQLite file (the file answers to schema ``dwh``)."""
    url = f"sqlite:///{path}"
    engine = sa.create_engine(url)
    metadata = sa.MetaData()
    table = _orders(metadata, name or f"orders_{uuid.uuid4().hex[:8]}", None)
    metadata.create_all(engine)
    return OrdersTable("sqlite", url, engine, table)


def _read(rt: LocalRuntime, key: str) -> bytes:
    return rt.session.client("s3").get_object(Bucket=rt.bucket, Key=key)["Body"].read()


def assert_lake_consistent(rt: LocalRuntime, target: str, schema: str = "dwh") -> dict[str, dict]:
    """Every published run is whole: each manifest's files exist with the rows it states, and
    every data file belongs to a run whose manifest lists it. Returns the manifests by run id."""
    base = f"{LAKE}{schema}/{target}/"
    keys = set(rt.keys(base))
    manifests = {
        key.rsplit("/", 1)[1].removesuffix(".json"): json.loads(_read(rt, key))
        for key in keys
        if key.startswith(base + "_manifests/")
    }
    listed: set[str] = set()
    for run_id, manifest in manifests.items():
        files = {f["key"]: f for f in manifest["files"]}
        assert files or manifest["rows"] == 0, manifest
        for key, entry in files.items():
            assert key in keys, f"manifest of {run_id} lists {key}, which does not exist"
            assert key.startswith(f"{base}run={run_id}/"), key
            rows = pq.ParquetFile(io.BytesIO(_read(rt, key))).metadata.num_rows
            assert rows == entry["rows"], (key, rows, entry)
        assert sum(f["rows"] for f in files.values()) == manifest["rows"], manifest
        listed |= set(files)
    data = {k for k in keys if k.startswith(base + "run=")}
    assert data <= listed, f"files published without a manifest: {sorted(data - listed)}"
    return manifests


def published_rows(rt: LocalRuntime, target: str, schema: str = "dwh") -> dict[str, list[dict]]:
    """Rows of every complete published run of ``target``, by run id."""
    manifests = assert_lake_consistent(rt, target, schema)
    runs: dict[str, list[dict]] = {}
    for run_id, manifest in manifests.items():
        rows: list[dict] = []
        for entry in sorted(manifest["files"], key=lambda f: f["key"]):
            rows += pq.read_table(io.BytesIO(_read(rt, entry["key"]))).to_pylist()
        runs[run_id] = rows
    return runs


def old(hours: int = 2) -> datetime:
    """A moment well behind the clock (outside any safety lag)."""
    return datetime.now(UTC) - timedelta(hours=hours)


@pytest.fixture
def ticks() -> Ticks:
    return Ticks()


@pytest.fixture
def sqlite_table(tmp_path: Path) -> Iterator[OrdersTable]:
    table = sqlite_orders(tmp_path / "source.sqlite")
    try:
        yield table
    finally:
        table.engine.dispose()
