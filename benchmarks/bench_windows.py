"""Benchmark a large backfill offline: one window against bounded windows loaded in parallel.

Builds a SQLite ``orders`` table of ``--rows`` rows (2,000,000 by default) with an integer
key, then backfills it from scratch once per case, each case in its own process (so its
peak RSS is its own) and its own state folder, through the offline runtime (the real
template, state machine and handlers; moto; the local DMS engine with its quick timing):

- ``1``: the item as the published layout writes it (no window attributes): one window,
  one DMS task, the whole table;
- ``N`` (2 and 4 by default): ``windowsize`` rows/N, ``maxwindows`` N,
  ``windowconcurrency`` N and ``endvalue`` at the last key: N windows, N at a time.

Prints per case: time to the first published window (its manifest in the lake), total
time, peak RSS, state transitions (states entered, Map iterations included), Lambda
invocations and DMS API calls per window, and the rows published (every row once).

Usage::

    .venv/bin/python benchmarks/bench_windows.py                 # 2,000,000 rows; 1, 2, 4
    .venv/bin/python benchmarks/bench_windows.py --rows 200000 --windows 1,2 --json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TABLE = "orders"


def build_source(path: Path, rows: int) -> None:
    """The source table, built in batches of 100,000 rows."""
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE orders (row_id BIGINT PRIMARY KEY, customer_id INTEGER NOT NULL, "
            "amount NUMERIC(12, 2), status VARCHAR(20) NOT NULL, note TEXT, "
            "updated_at DATETIME NOT NULL)"
        )
        for start in range(1, rows + 1, 100_000):
            batch = range(start, min(rows, start + 99_999) + 1)
            conn.executemany(
                "INSERT INTO orders VALUES (?, ?, ?, 'NEW', ?, '2026-01-01 00:00:00.000000')",
                ((i, i % 5000, i / 4, f"order {i}") for i in batch),
            )


def item(windows: int, rows: int) -> dict[str, str]:
    """The controller item of a case: the published layout, plus windows when N > 1."""
    base = {
        "targetTableName": "orders_backfill",
        "activeflag": "true",
        "sourceSchema": "dwh",
        "sourceTable": TABLE,
        "filtercolumn": "row_id",
        "filteroperator": "gte",
        "filtercolumntype": "integer",
        "startvalue": "1",
        "ouputs3Prefix": "lake",
    }
    if windows == 1:
        return base
    return base | {
        "endvalue": str(rows),
        "windowsize": str(math.ceil(rows / windows)),
        "maxwindows": str(windows),
        "windowconcurrency": str(windows),
    }


def _first_manifest(state: Path, found: dict[str, float], done: threading.Event) -> None:
    # The lake is a folder of the state folder: the first manifest written is the first
    # window published.
    while not done.is_set():
        if next(state.glob("s3/**/_manifests/*.json"), None) is not None:
            found["at"] = time.perf_counter()
            return
        time.sleep(0.02)


def case(windows: int, rows: int, source: Path, workdir: Path) -> dict[str, Any]:
    """One backfill in this process; its figures."""
    sys.path.insert(0, str(ROOT / "src"))
    from deltaload.items import to_dynamodb
    from deltaload.local.dms import Timing
    from deltaload.local.runtime import LocalRuntime, Source

    state = workdir / f"state-{windows}"
    environment = {"POLL_INITIAL_SECONDS": "1", "POLL_MAX_SECONDS": "2"}
    with LocalRuntime(
        ROOT,
        state,
        Source.from_url(f"sqlite:///{source}", schema="dwh"),
        timing=Timing.quick(),
        environment=environment,
        log_file=workdir / f"functions-{windows}.log",
    ) as rt:
        rt.session.client("dynamodb").put_item(
            TableName=rt.controller_table, Item=to_dynamodb(item(windows, rows))
        )
        operations: Counter[str] = Counter()

        def count(model: Any, **_: Any) -> None:
            if model.service_model.service_name == "dms":
                operations[model.name] += 1

        rt.session.events.register("before-call", count)
        found: dict[str, float] = {}
        done = threading.Event()
        watcher = threading.Thread(target=_first_manifest, args=(state, found, done))
        calls_before = rt.dms.api_calls
        started = time.perf_counter()
        watcher.start()
        result = rt.tick(now=datetime.now(UTC), timeout=3600)
        elapsed = time.perf_counter() - started
        done.set()
        watcher.join()
        failed = [(e.table, e.error, e.cause) for e in result.executions if e.status != "SUCCEEDED"]
        histories = [rt.execution_history(rt.execution_arn(e.name)) for e in result.executions]
        transitions = sum(sum(ev["type"].endswith("StateEntered") for ev in h) for h in histories)
        invocations = sum(v for k, v in rt.invocations.items() if k != "StarterFunction")
        dms_calls = rt.dms.api_calls - calls_before
        loaded = sum(int(r.get("rows", 0)) for r in rt.history())
    return {
        "windows": windows,
        "failed": failed,
        "rowsPublished": loaded,
        "secondsToFirstWindow": round(found["at"] - started, 2) if "at" in found else None,
        "seconds": round(elapsed, 2),
        "peakRssMb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "stateTransitions": transitions,
        "lambdaInvocationsPerWindow": round(invocations / windows, 1),
        "dmsCallsPerWindow": round(dms_calls / windows, 1),
        "dmsOperations": dict(sorted(operations.items())),
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--windows", default="1,2,4", help="the cases (default 1,2,4)")
    parser.add_argument("--workdir", help="where the source and state folders go (a temp dir)")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    parser.add_argument("--case", type=int, help=argparse.SUPPRESS)  # a child process
    args = parser.parse_args(argv)
    if args.case is not None:
        figures = case(
            args.case, args.rows, Path(args.workdir) / "source.sqlite", Path(args.workdir)
        )
        print(json.dumps(figures))
        return [figures]
    with tempfile.TemporaryDirectory(prefix="bench-windows-", dir=args.workdir) as tmp:
        work = Path(tmp)
        began = time.perf_counter()
        build_source(work / "source.sqlite", args.rows)
        print(
            f"bench_windows {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: {args.rows:,} rows "
            f"(built in {time.perf_counter() - began:.1f} s), {os.cpu_count()} CPUs",
            flush=True,
        )
        results = []
        for n in (int(v) for v in args.windows.split(",")):
            child = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--case",
                    str(n),
                    "--rows",
                    str(args.rows),
                    "--workdir",
                    str(work),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if child.returncode != 0:
                raise SystemExit(f"case {n} failed:\n{child.stderr[-3000:]}")
            results.append(json.loads(child.stdout.strip().splitlines()[-1]))
    print(
        f"{'windows':>7} {'first s':>8} {'total s':>8} {'RSS MB':>7} {'states':>7} "
        f"{'lambdas/w':>9} {'DMS/w':>6} {'rows':>10}"
    )
    for r in results:
        first = "-" if r["secondsToFirstWindow"] is None else f"{r['secondsToFirstWindow']:.2f}"
        print(
            f"{r['windows']:>7} {first:>8} {r['seconds']:>8.2f} {r['peakRssMb']:>7} "
            f"{r['stateTransitions']:>7} {r['lambdaInvocationsPerWindow']:>9} "
            f"{r['dmsCallsPerWindow']:>6} {r['rowsPublished']:>10,}"
            + (f"  FAILED: {r['failed']}" if r["failed"] else "")
        )
    for r in results:
        calls = ", ".join(f"{op} {n}" for op, n in r["dmsOperations"].items())
        print(f"  {r['windows']} window(s), DMS calls by operation: {calls}")
    if args.json:
        print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
