"""Benchmark offline ticks with many active tables, under MAX_CONCURRENT_RUNS.

Builds one small SQLite ``orders`` table and N controller items that load it under
different targets, then runs scheduled ticks through the offline runtime (the real
template, state machine and handlers; moto; the local DMS engine) until every table has
been loaded once. The starter starts at most MAX_CONCURRENT_RUNS runs per tick (minus
those still running) and defers the rest, so draining N tables takes several ticks.

Prints: total time, runs per minute, ticks to drain, peak concurrent runs (RUNNING
executions seen while polling), and per table run the number of state transitions
(execution history events) and Lambda invocations (``LocalRuntime.invocations``).

Usage::

    .venv/bin/python benchmarks/bench_tick.py                       # 300 tables, 50 at a time
    .venv/bin/python benchmarks/bench_tick.py --tables 5 --max-concurrent 2 --json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _source(path: Path, rows: int) -> str:
    import sqlite3

    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE orders (row_id BIGINT PRIMARY KEY, status VARCHAR(20) NOT NULL, "
            "amount NUMERIC(12, 2), note TEXT, updated_at DATETIME NOT NULL)"
        )
        conn.executemany(
            "INSERT INTO orders VALUES (?, 'NEW', ?, ?, '2026-01-01 00:00:00.000000')",
            [(i, i / 4, f"order {i}") for i in range(1, rows + 1)],
        )
    return f"sqlite:///{path}"


def _item(target: str) -> dict[str, Any]:
    return {
        "targetTableName": target,
        "activeflag": "true",
        "sourceSchema": "dwh",
        "sourceTable": "orders",
        "filtercolumn": "row_id",
        "filteroperator": "gte",
        "filtercolumntype": "integer",
        "startvalue": "1",
        "ouputs3Prefix": "lake",
    }


def run(
    tables: int,
    max_concurrent: int,
    rows: int,
    workdir: Path,
    poll: tuple[int, int] = (1, 2),
    mode: str = "instance",
    environment: dict[str, str] | None = None,
    stop_on_failure: bool = True,
) -> dict[str, Any]:
    """Drain ``tables`` active tables in replication ``mode``; returns the figures.

    The local DMS engine enforces DMS's quotas and API token bucket (its default), so the
    figures include how many DMS calls were throttled and how many creates a quota refused.
    """
    sys.path.insert(0, str(ROOT / "src"))
    from deltaload.items import to_dynamodb
    from deltaload.local.dms import Timing
    from deltaload.local.runtime import LocalRuntime, Source

    url = _source(workdir / "source.sqlite", rows)
    environment = {
        "POLL_INITIAL_SECONDS": str(poll[0]),
        "POLL_MAX_SECONDS": str(poll[1]),
        "MAX_CONCURRENT_RUNS": str(max_concurrent),
        "REPLICATION_MODE": mode,
        **(environment or {}),
    }
    with LocalRuntime(
        ROOT,
        workdir / "state",
        Source.from_url(url, schema="dwh"),
        timing=Timing.quick(),
        environment=environment,
        log_file=workdir / "functions.log",
    ) as rt:
        if mode == "existing":
            # One shared instance, created as an operator would before deploying the stack;
            # the handlers read EXISTING_INSTANCE_ARN at their first invocation.
            shared = rt.session.client("dms").create_replication_instance(
                ReplicationInstanceIdentifier="shared-instance",
                ReplicationInstanceClass="dms.t3.medium",
            )["ReplicationInstance"]["ReplicationInstanceArn"]
            _wait_available(rt, shared)
            os.environ["EXISTING_INSTANCE_ARN"] = shared
        dynamodb = rt.session.client("dynamodb")
        for n in range(tables):
            dynamodb.put_item(
                TableName=rt.controller_table, Item=to_dynamodb(_item(f"t{n:04d}_s3"))
            )
        peak = 0

        def watch(results: list[Any]) -> None:
            nonlocal peak
            peak = max(peak, sum(r.status == "RUNNING" for r in results))

        moment = datetime(2026, 11, 23, tzinfo=UTC)
        executions: list[Any] = []
        deferred_per_tick: list[int] = []
        started_per_tick: list[list[str]] = []
        calls_before = rt.dms.api_calls
        started = time.perf_counter()
        for _ in range(tables + 1):
            moment += timedelta(minutes=1)
            if all(i.get("lastRunStatus") == "SUCCEEDED" for i in rt.items()):
                break
            # Every tick covers every active table: the starter alone decides who goes first.
            result = rt.tick(now=moment, progress=watch, timeout=3600)
            executions += result.executions
            deferred_per_tick.append(len(result.starter["deferred"]))
            started_per_tick.append([s["table"] for s in result.starter["started"]])
            if result.failed and stop_on_failure:
                raise SystemExit(f"runs failed: {[(e.table, e.error) for e in result.failed]}")
        elapsed = time.perf_counter() - started
        histories = [rt.execution_history(rt.execution_arn(e.name)) for e in executions]
        events = [len(h) for h in histories]
        # A state transition = a state entered (Task, Wait, Choice, Pass, Succeed, Fail).
        transitions = [sum(ev["type"].endswith("StateEntered") for ev in h) for h in histories]
        invocations = sum(v for k, v in rt.invocations.items() if k != "StarterFunction")
        ticks = len(deferred_per_tick)
        # Over every run (a table may load again once all have loaded once).
        loaded = sum(int(r.get("rows", 0)) for r in rt.history())
        dms_calls = rt.dms.api_calls - calls_before
        throttled = len(rt.dms.throttled)
        quota_faults = rt.dms.quota_faults
        failed = [
            {"table": e.table, "error": e.error, "cause": e.cause}
            for e in executions
            if e.status != "SUCCEEDED"
        ]
    return {
        "tables": tables,
        "mode": mode,
        "startedPerTick": started_per_tick,
        "failedRuns": failed,
        "dmsApiCalls": dms_calls,
        "dmsCallsPerRun": round(dms_calls / max(1, len(executions)), 1),
        "dmsThrottledCalls": throttled,
        "dmsQuotaFaults": quota_faults,
        "maxConcurrentRuns": max_concurrent,
        "rowsPerTable": rows,
        "pollSeconds": list(poll),
        "runs": len(executions),
        "rowsLoaded": loaded,
        "ticksToDrain": ticks,
        "deferredPerTick": deferred_per_tick,
        "seconds": round(elapsed, 2),
        "runsPerMinute": round(len(executions) / elapsed * 60, 1),
        "peakConcurrentRuns": peak,
        "transitionsPerRun": {
            "min": min(transitions),
            "median": statistics.median(transitions),
            "max": max(transitions),
        },
        "historyEventsPerRun": {
            "min": min(events),
            "median": statistics.median(events),
            "max": max(events),
        },
        "lambdaInvocationsPerRun": round(invocations / max(1, len(executions)), 2),
        "starterInvocations": rt.invocations.get("StarterFunction", 0),
        "cpus": os.cpu_count(),
    }


def _wait_available(rt: Any, arn: str) -> None:
    dms = rt.session.client("dms")
    filters = [{"Name": "replication-instance-arn", "Values": [arn]}]
    for _ in range(200):
        found = dms.describe_replication_instances(Filters=filters)["ReplicationInstances"]
        if found and found[0]["ReplicationInstanceStatus"] == "available":
            return
        time.sleep(0.05)
    raise SystemExit(f"replication instance {arn} never became available")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", type=int, default=300, help="active tables (default 300)")
    parser.add_argument(
        "--max-concurrent", type=int, default=50, help="MAX_CONCURRENT_RUNS (default 50)"
    )
    parser.add_argument("--rows", type=int, default=20, help="rows in the source table")
    parser.add_argument(
        "--poll",
        default="1,2",
        help="POLL_INITIAL_SECONDS,POLL_MAX_SECONDS (default 1,2: the local runtime's)",
    )
    parser.add_argument(
        "--mode",
        choices=("instance", "existing", "serverless"),
        default="instance",
        help="REPLICATION_MODE (default instance)",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON only")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-tick-") as tmp:
        initial, most = (int(v) for v in args.poll.split(","))
        figures = run(
            args.tables, args.max_concurrent, args.rows, Path(tmp), (initial, most), args.mode
        )
    if args.json:
        print(json.dumps(figures))
    else:
        t = figures["transitionsPerRun"]
        print(
            f"{figures['tables']} tables, {figures['mode']} mode, "
            f"MAX_CONCURRENT_RUNS={figures['maxConcurrentRuns']}, "
            f"{figures['rowsPerTable']} rows each, polls {figures['pollSeconds']} s, "
            f"{figures['cpus']} CPUs\n"
            f"  total time            {figures['seconds']:.1f} s\n"
            f"  runs/min              {figures['runsPerMinute']}\n"
            f"  ticks to drain        {figures['ticksToDrain']} "
            f"(deferred per tick: {figures['deferredPerTick']})\n"
            f"  peak concurrent runs  {figures['peakConcurrentRuns']}\n"
            f"  state transitions/run min {t['min']}, median {t['median']}, max {t['max']} "
            f"(history events median {figures['historyEventsPerRun']['median']})\n"
            f"  Lambda invocations/run {figures['lambdaInvocationsPerRun']} "
            f"(+ {figures['starterInvocations']} starter invocations)\n"
            f"  DMS API calls         {figures['dmsApiCalls']} ({figures['dmsCallsPerRun']}/run), "
            f"{figures['dmsThrottledCalls']} throttled, "
            f"{len(figures['dmsQuotaFaults'])} refused by a quota"
        )
    return figures


if __name__ == "__main__":
    main()
