"""Guarantee 3: one run per table at a time; a stale lock expires; tables do not interfere."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.guarantees.conftest import (
    OrdersTable,
    Ticks,
    assert_clean,
    old,
    open_runtime,
    published_rows,
    sqlite_orders,
)

TARGET = "orders_s3"


def test_two_runs_of_one_table_started_together(sqlite_table: OrdersTable, tmp_path: Path) -> None:
    sqlite_table.insert(range(1, 41), old())
    with open_runtime(tmp_path / "state", sqlite_table.url) as rt:
        rt.put_item(sqlite_table.item(TARGET))
        sfn = rt.session.client("stepfunctions")
        names = [f"{TARGET}-first", f"{TARGET}-second"]
        arns = [
            sfn.start_execution(
                stateMachineArn=rt.state_machine_arn,
                name=name,
                input=json.dumps({"table": TARGET, "runId": name}),
            )["executionArn"]
            for name in names
        ]
        results = rt.wait_for(arns)
        assert [r.status for r in results] == ["SUCCEEDED", "SUCCEEDED"], results

        runs = published_rows(rt, TARGET)
        [loader] = list(runs)  # exactly one run published
        [skipped] = [n for n in names if n != loader]
        assert sorted(r["row_id"] for r in runs[loader]) == list(range(1, 41))

        history = {h["runId"]: h for h in rt.history(TARGET)}
        assert history[loader]["status"] == "SUCCEEDED"
        assert history[skipped]["status"] == "SKIPPED"
        assert f"locked by run {loader}" in history[skipped]["reason"]
        output = next(r.output for r in results if r.name == skipped)
        assert output["lock"]["acquired"] is False
        assert output["lock"]["owner"] == loader
        assert "run" not in output  # the skipped run planned nothing and created nothing

        item = rt.item(TARGET)
        assert item["watermark"] == "40"
        assert item["lastRunId"] == loader
        assert "lockOwner" not in item
        assert_clean(rt)


def test_a_redelivered_schedule_event_does_not_start_a_table_twice(
    sqlite_table: OrdersTable, tmp_path: Path
) -> None:
    sqlite_table.insert(range(1, 11), old())
    with open_runtime(tmp_path / "state", sqlite_table.url) as rt:
        rt.put_item(sqlite_table.item(TARGET))
        moment = Ticks()()
        first = rt.tick(now=moment)
        again = rt.tick(now=moment)  # the same schedule event, delivered twice
        assert [e.status for e in first.executions] == ["SUCCEEDED"]
        assert again.executions == []
        assert again.starter["skipped"] == [
            {
                "table": TARGET,
                "runId": first.executions[0].name,
                "reason": "already started for this tick",
            }
        ]
        assert len(published_rows(rt, TARGET)) == 1


def test_a_stale_lock_expires_and_the_next_run_proceeds(
    sqlite_table: OrdersTable, tmp_path: Path, ticks: Ticks
) -> None:
    sqlite_table.insert(range(1, 21), old())
    with open_runtime(tmp_path / "state", sqlite_table.url) as rt:
        crashed = "orders_s3-20250101T000000Z"
        rt.put_item(
            {
                **sqlite_table.item(TARGET),
                "lockOwner": crashed,
                "lockExpiresAt": int(time.time()) - 5,  # a crashed run's lock, expired
                "lastRunId": crashed,
                "lastRunStatus": "RUNNING",
            }
        )
        result = rt.tick(now=ticks())
        [execution] = result.executions
        assert execution.status == "SUCCEEDED"
        assert execution.output["lock"]["acquired"] is True
        runs = published_rows(rt, TARGET)
        assert sorted(r["row_id"] for r in runs[execution.name]) == list(range(1, 21))
        item = rt.item(TARGET)
        assert (item["watermark"], item["lastRunId"]) == ("20", execution.name)
        assert "lockOwner" not in item
        assert_clean(rt)


def test_two_tables_side_by_side(tmp_path: Path, ticks: Ticks) -> None:
    path = tmp_path / "source.sqlite"
    first, second = sqlite_orders(path, "orders_a"), sqlite_orders(path, "orders_b")
    first.insert(range(1, 31), old())
    second.insert(range(1, 46), old())
    second.update(list(range(1, 46)), "B", old())
    try:
        with open_runtime(tmp_path / "state", first.url) as rt:
            rt.put_item(first.item("a_s3"))
            rt.put_item(second.item("b_s3"))
            result = rt.tick(now=ticks())
            assert sorted((e.table, e.status) for e in result.executions) == [
                ("a_s3", "SUCCEEDED"),
                ("b_s3", "SUCCEEDED"),
            ]
            a_rows = [r for rows in published_rows(rt, "a_s3").values() for r in rows]
            b_rows = [r for rows in published_rows(rt, "b_s3").values() for r in rows]
            assert sorted(r["row_id"] for r in a_rows) == list(range(1, 31))
            assert sorted(r["row_id"] for r in b_rows) == list(range(1, 46))
            assert {r["status"] for r in a_rows} == {"NEW"}
            assert {r["status"] for r in b_rows} == {"B"}
            assert rt.item("a_s3")["watermark"] == "30"
            assert rt.item("b_s3")["watermark"] == "45"
            for key in rt.keys("lake/"):
                assert key.startswith(("lake/dwh/a_s3/", "lake/dwh/b_s3/")), key
                table = key.split("/")[2]
                run = key.split("/")[3].removeprefix("run=").removesuffix(".json")
                assert run.startswith(table) or run == "_manifests", key
            assert_clean(rt)
    finally:
        first.engine.dispose()
        second.engine.dispose()
