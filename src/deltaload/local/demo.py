"""`deltaload demo`: the whole workflow offline on a realistic orders table.

Two controller items watch one SQLite table ``dwh.orders_rds``: the shipped seed
(``orders_s3``, new rows by ``row_id``) and ``orders_changes_s3`` (every new row
version by ``updated_at``). The demo loads both, inserts and updates rows, loads
again and shows what each run loaded and where the Parquet files are.
"""

from __future__ import annotations

import json
import random
import shutil
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
from rich.console import Console
from rich.table import Table

from deltaload.local.runtime import LocalRuntime, Source

STATUSES = ("NEW", "PAID", "SHIPPED", "DELIVERED", "CANCELLED")
CHANGES_ITEM = {
    "targetTableName": "orders_changes_s3",
    "activeflag": "true",
    "sourceSchema": "dwh",
    "sourceTable": "orders_rds",
    "filtercolumn": "updated_at",
    "filteroperator": "gte",
    "filtercolumntype": "timestamp",
    "startvalue": "2000-01-01 00:00:00",
    "safetylagseconds": 0,
    "ouputs3Prefix": "datalake",
    "description": "Demo: every new version of an order, by updated_at",
}


def stamp(moment: datetime) -> str:
    """How the demo source stores timestamps: UTC text with microseconds."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def create_source(path: Path, rows: int, seed: int = 7) -> None:
    """A fresh SQLite orders table with ``rows`` orders placed over the last 30 days."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    rng = random.Random(seed)
    now = datetime.now(UTC) - timedelta(minutes=5)
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE orders_rds (row_id INTEGER PRIMARY KEY, order_ref TEXT NOT NULL, "
            "customer_id INTEGER NOT NULL, status TEXT NOT NULL, amount NUMERIC(12,2) NOT NULL, "
            "currency TEXT NOT NULL, note TEXT, created_at TIMESTAMP NOT NULL, "
            "updated_at TIMESTAMP NOT NULL)"
        )
        db.executemany(
            "INSERT INTO orders_rds VALUES (?,?,?,?,?,?,?,?,?)",
            (
                _order(i, now - timedelta(minutes=rng.randint(0, 30 * 24 * 60)), rng)
                for i in range(1, rows + 1)
            ),
        )


def _order(row_id: int, created: datetime, rng: random.Random) -> tuple[Any, ...]:
    note = rng.choice(
        [None, "gift wrap", "leave at the door", 'call "before" delivery', "ünïcode ✓"]
    )
    return (
        row_id,
        f"ORD-{row_id:08d}",
        rng.randint(1, 500),
        rng.choice(STATUSES[:2]),
        f"{rng.randint(100, 500000) / 100:.2f}",
        rng.choice(("EUR", "USD", "GBP")),
        note,
        stamp(created),
        stamp(created),
    )


def change_source(path: Path, inserts: int, updates: int, seed: int = 11) -> tuple[int, int]:
    """Insert new orders and move some existing ones to a later status."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    with sqlite3.connect(path) as db:
        (last,) = db.execute("SELECT max(row_id) FROM orders_rds").fetchone()
        db.executemany(
            "INSERT INTO orders_rds VALUES (?,?,?,?,?,?,?,?,?)",
            (_order(i, now, rng) for i in range(last + 1, last + 1 + inserts)),
        )
        ids = rng.sample(range(1, last + 1), min(updates, last))
        db.executemany(
            "UPDATE orders_rds SET status = ?, updated_at = ? WHERE row_id = ?",
            ((rng.choice(STATUSES[2:]), stamp(now), i) for i in ids),
        )
    return inserts, len(ids)


def run_demo(
    console: Console,
    _open: Callable[..., Any],
    state_dir: Path,
    rows: int,
    root: Path,
) -> None:
    """Run the demo in ``<state_dir>/demo`` (recreated each time), with the template and
    seed item of the project at ``root``."""
    folder = state_dir / "demo"
    shutil.rmtree(folder, ignore_errors=True)
    source_path = folder / "source.sqlite"
    create_source(source_path, rows)
    console.print(f"[bold]source[/bold]: SQLite {source_path} with {rows} orders in dwh.orders_rds")
    seed = json.loads((root / "controller_seed" / "orders.json").read_text())
    source = Source.from_url(f"sqlite:///{source_path}", schema="dwh")
    log_file = folder / "logs" / "functions.log"
    with LocalRuntime(root, folder, source, log_file=log_file) as rt:
        for item in (seed, CHANGES_ITEM):
            rt.put_item(item)
            console.print(
                f"onboarded [bold]{item['targetTableName']}[/bold]: "
                f"{item['filtercolumn']} {item['filteroperator']} {item['startvalue']}"
            )
        _load(console, rt, "run 1: initial load")
        inserted, updated = change_source(source_path, inserts=rows // 4, updates=rows // 10)
        console.print(f"\nsource changed: {inserted} orders inserted, {updated} orders updated")
        time.sleep(1.1)  # the changes' second must be over before a window may include it
        _load(console, rt, "run 2: delta")
        lake = folder / "s3" / rt.bucket / "datalake" / "dwh"
    console.print("\n[bold]the data lake[/bold] (plain Parquet files):")
    for table in ("orders_s3", "orders_changes_s3"):
        dataset = ds.dataset(
            lake / table, format="parquet", exclude_invalid_files=True, ignore_prefixes=["_", "."]
        )
        console.print(
            f"  {lake / table}: {dataset.count_rows()} rows in {len(dataset.files)} files"
        )
    # Runs may differ in their columns (schema changes): both readers read by column name.
    files = f"{lake / 'orders_s3'}/run=*/*.parquet"
    console.print(
        "\nquery it, for example (every column of every run):\n"
        '  python -c "import glob, pyarrow as pa, pyarrow.dataset as ds, pyarrow.parquet as pq; '
        f"files = sorted(glob.glob('{files}')); "
        "schema = pa.unify_schemas([pq.read_schema(f) for f in files], "
        "promote_options='permissive'); "
        'print(ds.dataset(files, schema=schema).to_table().num_rows)"\n'
        '  duckdb -c "select status, count(*) from read_parquet('
        f"'{lake / 'orders_changes_s3'}/run=*/*.parquet', union_by_name = true) "
        'group by all"',
        markup=False,  # the commands hold [brackets]
    )
    console.print(
        "\norders_s3 follows row_id, so it holds each order once, as first loaded; "
        "orders_changes_s3 follows updated_at, so it also holds every later version."
    )


def _load(console: Console, rt: LocalRuntime, title: str) -> None:
    console.print(f"\n[bold]{title}[/bold]")
    result = rt.tick()
    view = Table("table", "result", "window", "rows", "files", "new watermark")
    for execution in result.executions:
        record = next(
            (r for r in rt.history(execution.table) if r.get("runId") == execution.name), {}
        )
        window = record.get("window") or {}
        view.add_row(
            execution.table,
            execution.status if execution.status != "SUCCEEDED" else "[green]loaded[/green]",
            f"{window.get('lower')} .. {window.get('upper')}" if window else "-",
            str(record.get("rows", "-")),
            str(record.get("files", "-")),
            str(record.get("watermark", "-")),
        )
    console.print(view)
    if result.failed:
        raise SystemExit(f"demo failed: {[(e.table, e.error, e.cause) for e in result.failed]}")
