"""A 2,000,000-row backfill in bounded windows, offline, from SQLite, PostgreSQL and MariaDB.

The issue's check: window size 500,000 on an integer key (``endvalue`` above the table's
largest id), two windows at a time, window 3's task failing part-way. The first run
publishes windows 1-2 only and records the end of window 2 as the watermark, with
staging and DMS clean; the next run loads windows 3-4 only; across both runs every row
is published exactly once. The same with a timestamp column, window size ``1d``, over 30
days of rows. Rows are made in the database itself (fast at millions of rows); the
published files are read from the state folder.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from deltaload import names
from deltaload.local.runtime import LocalRuntime, Source
from tests.guarantees.conftest import assert_clean
from tests.integration.conftest import FAST, ROOT, Ticks, _orders
from tests.servers import MYSQL_URL, POSTGRES_URL, SOURCES

TARGET = "backfill_s3"
ROWS = 2_000_000
# SQLite keeps timestamps as text, so a timestamp filter there compares a normalised
# expression and cannot use an index (docs/engine.md, "Filters to SQL"): each of the 32
# daily windows reads the whole table twice (the probe's count, the load). The SQLite
# timestamp case therefore runs on fewer rows; its windows and days are the same.
SQLITE_TIMESTAMP_ROWS = 300_000
DAYS = 30
# Day 0 of the timestamp table: whole days in the past, so all 30 days are behind the
# clock less the safety lag when the test runs.
ORIGIN = (datetime.now(UTC) - timedelta(days=DAYS + 2)).replace(
    hour=0, minute=0, second=0, microsecond=0
)


class Backfill:
    """An orders table of ``rows`` rows: ids 1..rows, ``updated_at`` spread over DAYS days."""

    def __init__(
        self, kind: str, url: str, engine: sa.Engine, table: sa.Table, rows: int = ROWS
    ) -> None:
        self.kind, self.url, self.engine, self.table = kind, url, engine, table
        self.rows = rows

    def fill(self) -> None:
        name, origin = self.table.name, ORIGIN.strftime("%Y-%m-%d %H:%M:%S")
        rows = self.rows
        spread = DAYS * 86400 / rows  # seconds between rows: the last row is in day 30
        columns = "(row_id, status, amount, note, updated_at)"
        if self.kind == "sqlite":
            sql = (
                f"WITH RECURSIVE ids(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM ids "
                f"WHERE x < {rows}) INSERT INTO {name} {columns}"
                f" SELECT x, 'NEW', x / 4.0, 'order ' || x, datetime('{origin}', '+' || "
                f"CAST((x - 1) * {spread} AS INTEGER) || ' seconds') || '.000000' FROM ids"
            )
        elif self.kind == "postgres":
            sql = (
                f"INSERT INTO dwh.{name} {columns} SELECT g, 'NEW', g / 4.0, 'order ' || g, "
                f"timestamp '{origin}' + floor((g - 1) * {spread}) * interval '1 second' "
                f"FROM generate_series(1, {rows}) g"
            )
        else:  # MariaDB's SEQUENCE engine: seq_1_to_N
            sql = (
                f"INSERT INTO dwh.{name} {columns} SELECT seq, 'NEW', seq / 4.0, "
                f"CONCAT('order ', seq), TIMESTAMPADD(SECOND, FLOOR((seq - 1) * {spread}), "
                f"'{origin}') FROM seq_1_to_{rows}"
            )
        # The filter column is indexed, as a column a table is loaded by usually is.
        qualified = name if self.kind == "sqlite" else f"dwh.{name}"
        with self.engine.begin() as conn:
            conn.exec_driver_sql(sql)
            conn.exec_driver_sql(f"CREATE INDEX {name}_updated ON {qualified} (updated_at)")

    def item(self, **changes: str | int) -> dict:
        return {
            "targetTableName": TARGET,
            "activeflag": "true",
            "sourceSchema": "dwh",
            "sourceTable": self.table.name,
            "filteroperator": "gte",
            "ouputs3Prefix": "lake",
            "windowconcurrency": 2,
            **changes,
        }


@pytest.fixture(params=SOURCES)
def backfill(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backfill]:
    kind = request.param
    name = f"backfill_{uuid.uuid4().hex[:8]}"
    if kind == "sqlite":
        url, engine, schema = f"sqlite:///{tmp_path / 'source.sqlite'}", None, None
        engine = sa.create_engine(url)
    else:
        url = POSTGRES_URL if kind == "postgres" else MYSQL_URL
        engine = request.getfixturevalue(f"{kind}_engine")
        schema = "dwh"
    metadata = sa.MetaData()
    table = _orders(metadata, name, schema)
    metadata.create_all(engine)
    try:
        column = request.node.callspec.params.get("column")
        rows = SQLITE_TIMESTAMP_ROWS if (kind, column) == ("sqlite", "timestamp") else ROWS
        table_ = Backfill(kind, url, engine, table, rows)
        table_.fill()
        yield table_
    finally:
        metadata.drop_all(engine)
        if kind == "sqlite":
            engine.dispose()


def published(state: Path, rt: LocalRuntime) -> dict[str, list[Path]]:
    """Every published unit's files, by manifest name, read from the state folder."""
    base = state / "s3" / rt.bucket / "lake" / "dwh" / TARGET
    units = {}
    for manifest_file in sorted((base / "_manifests").glob("*.json")):
        manifest = json.loads(manifest_file.read_text())
        files = [state / "s3" / rt.bucket / f["key"] for f in manifest["files"]]
        assert all(f.is_file() for f in files), manifest_file
        assert manifest["rows"] == sum(pq.ParquetFile(f).metadata.num_rows for f in files)
        units[manifest_file.stem] = files
    data = {p for p in base.glob("run=*/**/*") if p.is_file()}
    assert data == {f for files in units.values() for f in files}, "files without a manifest"
    return units


def ids_of(files: list[Path]) -> pa.ChunkedArray:
    chunks = [
        pc.cast(pq.read_table(f, columns=["row_id"]).column("row_id"), "int64") for f in files
    ]
    return pc.cast(
        pa.chunked_array([c for col in chunks for c in col.chunks], type=pa.int64()), "int64"
    )


def failing_run(rt: LocalRuntime, ticks: Ticks, mode: str = "instance") -> tuple[str, str]:
    """Tick with window 3's load (its task, or serverless its replication config) failing
    after 1,000 rows; (run id, status)."""
    moment = ticks()
    run_id = names.execution_name(TARGET, names.tick(moment))
    window = names.window_names(TARGET, run_id, 3)
    rt.dms.faults.fail_after_rows(window.config if mode == "serverless" else window.task, 1000)
    [execution] = rt.tick([TARGET], now=moment).executions
    assert rt.dms.faults.armed() == [], "window 3's fault never fired"
    return execution.name, execution.status


def watermark_rows(column: str, watermark: str, rows: int) -> int:
    """How many rows lie at or below ``watermark`` (the rows the first run published)."""
    if column == "integer":
        return int(watermark)
    moment = datetime.fromisoformat(watermark).replace(tzinfo=UTC)
    seconds = int((moment - ORIGIN).total_seconds())  # rows at offsets 0..seconds
    spread = DAYS * 86400 / rows
    return _rows_up_to(seconds, spread, rows)


def _rows_up_to(seconds: int, spread: float, rows: int) -> int:
    # Row x sits at floor((x - 1) * spread) seconds: count the x with that <= seconds.
    low, high = 0, rows
    while low < high:
        mid = (low + high + 1) // 2
        if int((mid - 1) * spread) <= seconds:
            low = mid
        else:
            high = mid - 1
    return low


CASES = {
    "integer": {
        "filtercolumn": "row_id",
        "filtercolumntype": "integer",
        "startvalue": "1",
        "endvalue": str(ROWS + 7),  # above the largest id
        "windowsize": 500_000,
        "maxwindows": 4,
    },
    "timestamp": {
        "filtercolumn": "updated_at",
        "filtercolumntype": "timestamp",
        "startvalue": ORIGIN.strftime("%Y-%m-%d %H:%M:%S"),
        "windowsize": "1d",
        "maxwindows": DAYS + 5,  # every whole day up to the clock in one run
    },
}


@pytest.mark.slow
@pytest.mark.parametrize("column", list(CASES))
def test_a_failed_window_is_resumed_by_the_next_run_and_every_row_lands_once(
    backfill: Backfill, tmp_path: Path, column: str
) -> None:
    state, ticks = tmp_path / "state", Ticks()
    environment = {"POLL_INITIAL_SECONDS": "0", "POLL_MAX_SECONDS": "1"}
    with LocalRuntime(
        ROOT, state, Source.from_url(backfill.url), timing=FAST, environment=environment
    ) as rt:
        rt.put_item(backfill.item(**CASES[column]))
        first, status = failing_run(rt, ticks)
        assert status == "FAILED"
        units = published(state, rt)
        assert sorted(units) == [f"{first}-w0001", f"{first}-w0002"]
        watermark = rt.item(TARGET)["watermark"]
        if column == "integer":
            assert watermark == "1000000"  # the end of window 2
            assert [len(ids_of(units[u])) for u in sorted(units)] == [500_000, 500_000]
        else:
            day_two = ORIGIN + timedelta(days=2) - timedelta(microseconds=1)
            assert watermark == day_two.strftime("%Y-%m-%d %H:%M:%S.%f")
        assert_clean(rt)

        [second] = rt.tick([TARGET], now=ticks()).executions
        assert second.status == "SUCCEEDED", second
        units = published(state, rt)
        later = sorted(u for u in units if u.startswith(second.name))
        loaded = ids_of([f for u in later for f in units[u]])
        if column == "integer":
            # Windows 3 and 4 only: the source probe's maximum (ROWS) ends the split, so no
            # window reaches up to endvalue above it.
            assert [len(ids_of(units[u])) for u in later] == [500_000, 500_000]
            assert rt.item(TARGET)["watermark"] == str(ROWS)
        else:
            assert len(later) >= DAYS - 2  # days 3 to 30, then the days up to the clock
        # The second run loaded exactly what the first did not publish.
        rows = backfill.rows
        assert (
            len(loaded) == len(pc.unique(loaded)) == rows - watermark_rows(column, watermark, rows)
        )
        ids = ids_of([f for files in units.values() for f in files])
        assert len(ids) == rows, f"{len(ids)} rows published, expected {rows}"
        assert len(pc.unique(ids)) == rows, "a row was published twice"
        assert (pc.min(ids).as_py(), pc.max(ids).as_py()) == (1, rows)
        assert_clean(rt)


@pytest.mark.slow
@pytest.mark.parametrize("backfill", ["sqlite"], indirect=True)
def test_a_serverless_backfill_resumes_a_failed_window_and_every_row_lands_once(
    backfill: Backfill, tmp_path: Path
) -> None:
    """The integer case on DMS Serverless: each window loads through a replication config
    of its own, window 3's fails, and the next run loads windows 3-4 only."""
    state, ticks = tmp_path / "state", Ticks()
    environment = {"POLL_INITIAL_SECONDS": "0", "POLL_MAX_SECONDS": "1"}
    with LocalRuntime(
        ROOT, state, Source.from_url(backfill.url), timing=FAST, environment=environment
    ) as rt:
        rt.put_item(backfill.item(**CASES["integer"], replicationmode="serverless"))
        first, status = failing_run(rt, ticks, "serverless")
        assert status == "FAILED"
        units = published(state, rt)
        assert sorted(units) == [f"{first}-w0001", f"{first}-w0002"]
        assert rt.item(TARGET)["watermark"] == "1000000"
        assert_clean(rt)

        [second] = rt.tick([TARGET], now=ticks()).executions
        assert second.status == "SUCCEEDED", second
        units = published(state, rt)
        later = sorted(u for u in units if u.startswith(second.name))
        assert [len(ids_of(units[u])) for u in later] == [500_000, 500_000]
        assert rt.item(TARGET)["watermark"] == str(ROWS)
        ids = ids_of([f for files in units.values() for f in files])
        assert len(ids) == len(pc.unique(ids)) == ROWS
        assert (pc.min(ids).as_py(), pc.max(ids).as_py()) == (1, ROWS)
        assert {r["replicationMode"] for r in rt.history(TARGET)} == {"serverless"}
        assert_clean(rt)
