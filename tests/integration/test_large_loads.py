"""Whole-workflow loads at realistic sizes, offline: files well above 8 MB, every row once.

A table of 200,000 or 2,000,000 rows (one Parquet file of 13 MB / 130 MB) is loaded with
``row_id gte 1`` through the real template, state machine, handlers and local DMS engine,
with the lake on disk (``deltaload.local.s3``). The published Parquet files are read
from the state folder itself: the row count and the distinct ids must both equal the
table's, the watermark must be its largest id, and a following delta run must add
exactly the new rows. The 2,000,000-row case runs once per engine (marked ``slow``, still
part of ``make test``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from deltaload.local.account import ACCOUNT
from deltaload.local.runtime import LocalRuntime, Source
from tests.integration.conftest import FAST, ROOT, Ticks, _orders
from tests.servers import POSTGRES_URL

TARGET = "large_s3"
EIGHT_MB = 8 * 1024 * 1024
SIZES = [200_000, pytest.param(2_000_000, marks=pytest.mark.slow, id="2000000")]
ENGINES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


class LargeTable:
    """One orders table, filled in the database itself (fast at millions of rows)."""

    def __init__(self, kind: str, url: str, engine: sa.Engine, table: sa.Table) -> None:
        self.kind, self.url, self.engine, self.table = kind, url, engine, table

    def fill(self, first: int, last: int) -> None:
        """Insert rows ``first``..``last`` (ids, inclusive)."""
        name = self.table.name
        if self.kind == "sqlite":
            sql = (
                f"WITH RECURSIVE ids(x) AS (SELECT {first} UNION ALL SELECT x + 1 FROM ids "
                f"WHERE x < {last}) INSERT INTO {name} (row_id, status, amount, note, updated_at)"
                " SELECT x, 'NEW', x / 4.0, 'order ' || x || ' with a note of some length', "
                "datetime('2026-01-01', '+' || x || ' seconds') || '.000000' FROM ids"
            )
        else:
            sql = (
                f"INSERT INTO dwh.{name} (row_id, status, amount, note, updated_at) "
                f"SELECT g, 'NEW', g / 4.0, 'order ' || g || ' with a note of some length', "
                f"timestamp '2026-01-01' + g * interval '1 second' "
                f"FROM generate_series({first}, {last}) g"
            )
        with self.engine.begin() as conn:
            conn.exec_driver_sql(sql)


@pytest.fixture(params=ENGINES)
def source(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LargeTable]:
    kind = request.param
    name = f"large_{uuid.uuid4().hex[:8]}"
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'source.sqlite'}"
        engine = sa.create_engine(url)
        schema = None
    else:
        url = POSTGRES_URL
        engine = request.getfixturevalue("postgres_engine")
        schema = "dwh"
    metadata = sa.MetaData()
    table = _orders(metadata, name, schema)
    metadata.create_all(engine)
    try:
        yield LargeTable(kind, url, engine, table)
    finally:
        metadata.drop_all(engine)
        if kind == "sqlite":
            engine.dispose()


def lake_runs(state: Path, rt: LocalRuntime) -> dict[str, pq.ParquetDataset]:
    """Every published run's files, read from the state folder's files (not through S3)."""
    base = state / "s3" / rt.bucket / "lake" / "dwh" / TARGET
    runs = {}
    for manifest_file in sorted((base / "_manifests").glob("*.json")):
        manifest = json.loads(manifest_file.read_text())
        files = [state / "s3" / rt.bucket / f["key"] for f in manifest["files"]]
        for file in files:
            assert file.is_file(), f"manifest {manifest_file.name} lists a missing {file}"
        runs[manifest_file.stem] = files
    return runs


def ids_in(files: list[Path]) -> pa.ChunkedArray:
    chunks = [pq.read_table(f, columns=["row_id"]).column("row_id") for f in files]
    return pc.cast(pa.chunked_array([c for column in chunks for c in column.chunks]), "int64")


def assert_ids(files: list[Path], first: int, last: int) -> None:
    """The files hold ids ``first``..``last``, each exactly once."""
    ids = ids_in(files)
    assert len(ids) == last - first + 1, f"{len(ids)} rows published, expected {last - first + 1}"
    assert len(pc.unique(ids)) == len(ids), "some rows were published twice"
    assert pc.min(ids).as_py() == first and pc.max(ids).as_py() == last


@pytest.mark.parametrize("rows", SIZES)
def test_a_large_table_is_published_once_and_the_delta_adds_only_new_rows(
    source: LargeTable, tmp_path: Path, rows: int
):
    source.fill(1, rows)
    state = tmp_path / "state"
    ticks = Ticks()
    item = {
        "targetTableName": TARGET,
        "activeflag": "true",
        "sourceSchema": "dwh",
        "sourceTable": source.table.name,
        "filtercolumn": "row_id",
        "filteroperator": "gte",
        "filtercolumntype": "integer",
        "startvalue": "1",
        "ouputs3Prefix": "lake",
    }
    runtime_args = {
        "timing": FAST,
        "environment": {"POLL_INITIAL_SECONDS": "0", "POLL_MAX_SECONDS": "1"},
    }
    with LocalRuntime(ROOT, state, Source.from_url(source.url), **runtime_args) as rt:
        rt.put_item(item)
        first = rt.tick([TARGET], now=ticks())
        assert [e.status for e in first.executions] == ["SUCCEEDED"], first.executions
        assert rt.item(TARGET)["watermark"] == str(rows)
        [files] = lake_runs(state, rt).values()
        assert max(f.stat().st_size for f in files) > EIGHT_MB
        assert_ids(files, 1, rows)
        assert rt.keys("_staging/") == []
        from moto.s3.models import s3_backends

        assert not s3_backends[ACCOUNT]["global"].buckets, "the lake went through moto's S3"

    source.fill(rows + 1, rows + 1000)
    # A new command on the same state folder: the lake is there without being restored.
    with LocalRuntime(ROOT, state, Source.from_url(source.url), **runtime_args) as rt:
        second = rt.tick([TARGET], now=ticks())
        assert [e.status for e in second.executions] == ["SUCCEEDED"], second.executions
        assert rt.item(TARGET)["watermark"] == str(rows + 1000)
        runs = lake_runs(state, rt)
        assert len(runs) == 2
        new = runs[second.executions[0].name]
        assert_ids(new, rows + 1, rows + 1000)
        assert_ids([f for files in runs.values() for f in files], 1, rows + 1000)
