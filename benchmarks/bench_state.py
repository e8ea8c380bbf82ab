"""Benchmark what a command costs as the offline lake grows: it should not grow with it.

Builds one state folder per lake size (0, 1M and 5M rows by default), each loaded from
its own SQLite ``orders`` table with ``deltaload onboard`` and ``deltaload run`` (real
subprocesses, as a user runs them), then times ``deltaload status`` and an empty
``deltaload run`` (nothing new to load) on each lake. Each subprocess is measured on its
own: wall time and peak RSS (``ru_maxrss`` from ``os.wait4``).

Prints, per lake, the load's figures and the median of ``--repeat`` status and empty-run
commands, then the ratios against the 0-row lake measured in the same run (target: 1.0
within noise) and the 5M-row load's peak memory against the 1M-row load's (target:
within 20 %).

Usage::

    .venv/bin/python benchmarks/bench_state.py                     # 0, 1M, 5M rows, 3 repeats
    .venv/bin/python benchmarks/bench_state.py --sizes 0,100000,500000 --repeat 1 --json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-c", "from deltaload.cli import main; main()"]


def make_source(path: Path, rows: int) -> str:
    """A SQLite file with an ``orders`` table of ``rows`` rows, filled by SQLite itself."""
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE orders (row_id BIGINT PRIMARY KEY, status VARCHAR(20) NOT NULL, "
            "amount NUMERIC(12, 2), note TEXT, updated_at DATETIME NOT NULL)"
        )
        if rows:
            conn.execute(
                "WITH RECURSIVE ids(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM ids "
                f"WHERE x < {rows}) INSERT INTO orders SELECT x, 'NEW', x / 4.0, "
                "'order ' || x || ' with a note of some length', "
                "datetime('2026-01-01', '+' || x || ' seconds') || '.000000' FROM ids"
            )
    return f"sqlite:///{path}"


def measure(args: list[str], env: dict[str, str]) -> dict[str, float]:
    """Run one CLI command; its wall time (s) and peak RSS (MB). Fails loudly on exit != 0."""
    start = time.perf_counter()
    process = subprocess.Popen(
        CLI + args, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if process.returncode != 0:
        raise SystemExit(f"deltaload {' '.join(args)} exited {process.returncode}:\n{output}")
    return {"s": wall, "rss_mb": usage.ru_maxrss / 1024}


def bench(sizes: list[int], repeat: int, work: Path) -> dict[str, Any]:
    """Build a lake per size, then time status and an empty run on each."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    results: dict[str, Any] = {}
    for rows in sizes:
        folder = work / f"lake-{rows}"
        folder.mkdir()
        url = make_source(folder / "source.sqlite", rows)
        item = {
            "targetTableName": "orders_s3",
            "activeflag": "true",
            "sourceSchema": "dwh",
            "sourceTable": "orders",
            "filtercolumn": "row_id",
            "filteroperator": "gte",
            "filtercolumntype": "integer",
            "startvalue": "1",
            "ouputs3Prefix": "lake",
        }
        (folder / "item.json").write_text(json.dumps(item))
        common = ["--state-dir", str(folder / "state"), "--source", url]
        measure([*common, "onboard", str(folder / "item.json")], env)
        load = measure([*common, "run"], env)
        lake = folder / "state" / "s3"
        lake_mb = sum(f.stat().st_size for f in lake.rglob("*.parquet")) / 1024**2
        status = [measure([*common, "status"], env) for _ in range(repeat)]
        empty = [measure([*common, "run"], env) for _ in range(repeat)]
        results[str(rows)] = {
            "lake_mb": lake_mb,
            "load": load,
            "status": _median(status),
            "empty_run": _median(empty),
        }
        print(
            f"{rows:>9,} rows ({lake_mb:7.1f} MB lake): load {load['s']:6.2f} s "
            f"{load['rss_mb']:6.0f} MB | status {results[str(rows)]['status']['s']:5.2f} s "
            f"{results[str(rows)]['status']['rss_mb']:5.0f} MB | empty run "
            f"{results[str(rows)]['empty_run']['s']:5.2f} s "
            f"{results[str(rows)]['empty_run']['rss_mb']:5.0f} MB",
            flush=True,
        )
    return results


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def ratios(results: dict[str, Any], sizes: list[int]) -> dict[str, Any]:
    """Each lake's status and empty-run cost against the smallest lake's; large vs 1M load."""
    base = results[str(sizes[0])]
    out: dict[str, Any] = {}
    for rows in sizes[1:]:
        r = results[str(rows)]
        out[str(rows)] = {
            f"{command}_{metric}": r[command][metric] / base[command][metric]
            for command in ("status", "empty_run")
            for metric in ("s", "rss_mb")
        }
    loaded = [s for s in sizes if s > 0]
    if len(loaded) >= 2:
        small, large = results[str(loaded[0])], results[str(loaded[-1])]
        out["load_rss_largest_vs_smallest"] = large["load"]["rss_mb"] / small["load"]["rss_mb"]
    return out


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", default="0,1000000,5000000", help="lake sizes in rows")
    parser.add_argument("--repeat", type=int, default=3, help="status / empty runs per lake")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--keep", type=Path, help="build the lakes here and keep them")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    print(
        f"bench_state {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="deltaload-bench-state-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        results = bench(sizes, args.repeat, work)
    summary = ratios(results, sizes)
    print(f"\nagainst the {sizes[0]:,}-row lake (1.00 = the same cost):")
    for rows, values in summary.items():
        if rows.startswith("load"):
            continue
        print(
            f"  {int(rows):>9,} rows: status time {values['status_s']:.2f}x, "
            f"RSS {values['status_rss_mb']:.2f}x; empty run time {values['empty_run_s']:.2f}x, "
            f"RSS {values['empty_run_rss_mb']:.2f}x"
        )
    if "load_rss_largest_vs_smallest" in summary:
        loaded = [s for s in sizes if s > 0]
        print(
            f"  load peak RSS, {loaded[-1]:,} vs {loaded[0]:,} rows: "
            f"{summary['load_rss_largest_vs_smallest']:.2f}x (target <= 1.20)"
        )
    if args.json:
        print(json.dumps({"results": results, "ratios": summary}, indent=2))


if __name__ == "__main__":
    main()
