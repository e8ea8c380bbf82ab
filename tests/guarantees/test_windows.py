"""Bounded windows end to end, offline: a Map of windows, a fault in one, the next run.

A gte item with a windowsize loads each run as bounded windows, each with its own DMS
task, verified on its own and published in order. A window that fails stops publishing
there: the windows before it stay published and move the watermark, it and every later
window are deleted from staging and loaded by the next run; staging and DMS end clean
and every row is published exactly once across both runs.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from deltaload import names
from tests.guarantees.conftest import (
    OrdersTable,
    Ticks,
    assert_clean,
    assert_lake_consistent,
    open_runtime,
    published_rows,
)

TARGET = "orders_s3"


def _load_name(run_id: str, index: int, mode: str) -> str:
    """The identifier of window ``index``'s load: its task, or its serverless config."""
    window = names.window_names(TARGET, run_id, index)
    return window.config if mode == "serverless" else window.task


def _load_of_window(moment: datetime, index: int, mode: str = "instance") -> str:
    """``_load_name`` of window ``index`` of the run ticked at ``moment``."""
    return _load_name(names.execution_name(TARGET, names.tick(moment)), index, mode)


def _published_ids(rt, column: str = "row_id") -> Counter:
    return Counter(r[column] for rows in published_rows(rt, TARGET).values() for r in rows)


def _dms_requests(rt, operation: str) -> list[dict]:
    """The request bodies of one DMS operation, from now on, in call order."""
    bodies: list[dict] = []
    rt.session.events.register(
        f"before-call.database-migration-service.{operation}",
        lambda params, **_: bodies.append(json.loads(params["body"])),
    )
    return bodies


def _one_windowed_run(rt, ticks: Ticks, item: dict, windows: int) -> tuple[str, list]:
    """Tick ``item`` once; its run id and the names of its windows (the run succeeded)."""
    rt.put_item(item)
    moment = ticks()
    run_id = names.execution_name(TARGET, names.tick(moment))
    [execution] = rt.tick(now=moment).executions
    assert execution.status == "SUCCEEDED", execution
    return run_id, [names.window_names(TARGET, run_id, i) for i in range(1, windows + 1)]


def run_with_a_failed_window(
    rt, ticks: Ticks, item: dict, failing: int, rows_before_failure: int = 10
):
    """Tick once with window ``failing``'s load failing after some rows; the result."""
    rt.put_item(item)
    moment = ticks()
    mode = item.get("replicationmode", "instance")
    rt.dms.faults.fail_after_rows(_load_of_window(moment, failing, mode), rows_before_failure)
    result = rt.tick(now=moment)
    assert rt.dms.faults.armed() == [], "the fault never fired"
    [execution] = result.executions
    return execution


@pytest.mark.parametrize("mode", ["instance", "serverless"])
def test_a_failed_window_stops_publishing_and_the_next_run_resumes_there(
    sqlite_table: OrdersTable, tmp_path: Path, ticks: Ticks, mode: str
) -> None:
    sqlite_table.insert(range(1, 401), datetime.now(UTC) - timedelta(days=1))
    item = sqlite_table.item(
        TARGET,
        endvalue="400",
        windowsize=100,
        maxwindows=4,
        windowconcurrency=2,
        replicationmode=mode,
    )
    with open_runtime(tmp_path / "state", sqlite_table.url, {"MAX_FILE_SIZE_KB": "8"}) as rt:
        first = run_with_a_failed_window(rt, ticks, item, failing=3)
        assert first.status == "FAILED", first
        state = rt.item(TARGET)
        assert state["watermark"] == "200"
        assert sorted(_published_ids(rt)) == list(range(1, 201))
        manifests = assert_lake_consistent(rt, TARGET)
        assert sorted(manifests) == [f"{first.name}-w0001", f"{first.name}-w0002"]
        assert_clean(rt)
        history = {h["runId"]: h for h in rt.history(TARGET)}[first.name]
        assert "window 3 failed" in history["postCommitError"], history
        assert any("window 3 failed" in n["message"] for n in rt.notifications())

        second = rt.tick(now=ticks())
        [execution] = second.executions
        assert execution.status == "SUCCEEDED", execution
        assert rt.item(TARGET)["watermark"] == "400"
        ids = _published_ids(rt)
        assert sorted(ids) == list(range(1, 401))
        assert set(ids.values()) == {1}, "a row was published twice"
        manifests = assert_lake_consistent(rt, TARGET)
        assert sorted(m for m in manifests if m.startswith(execution.name)) == [
            f"{execution.name}-w0001",
            f"{execution.name}-w0002",
        ]
        assert_clean(rt)


def _load_statuses(dms, mode: str) -> dict[str, str]:
    """Identifier -> status of every task (or, serverless, every config's replication)."""
    if mode != "serverless":
        return {
            t["ReplicationTaskIdentifier"]: t["Status"]
            for t in dms.describe_replication_tasks()["ReplicationTasks"]
        }
    configs = {
        c["ReplicationConfigArn"]: c["ReplicationConfigIdentifier"]
        for c in dms.describe_replication_configs()["ReplicationConfigs"]
    }
    statuses = dict.fromkeys(configs.values(), "")
    for r in dms.describe_replications()["Replications"]:
        statuses[configs[r["ReplicationConfigArn"]]] = r["Status"]
    return statuses


@pytest.mark.parametrize(
    ("mode", "instances"), [("instance", 1), ("instance", 2), ("serverless", 1)]
)
def test_an_aborted_windowed_run_leaves_no_window_task_endpoint_or_staging(
    sqlite_table: OrdersTable,
    tmp_path: Path,
    ticks: Ticks,
    monkeypatch,
    mode: str,
    instances: int,
) -> None:
    """StopExecution runs no Catch: CleanupAbortedFunction finds every window's task and
    endpoint by name (the run noted its window count before creating anything)."""
    import time

    from deltaload import workflow

    monkeypatch.setattr(workflow, "_sleep", lambda seconds: time.sleep(min(seconds, 0.5)))
    sqlite_table.insert(range(1, 401), datetime.now(UTC) - timedelta(days=1))
    item = sqlite_table.item(
        TARGET,
        endvalue="400",
        windowsize=100,
        windowconcurrency=2,
        windowinstances=instances,
        replicationmode=mode,
    )
    slow_polls = {"POLL_INITIAL_SECONDS": "4", "POLL_MAX_SECONDS": "4"}
    with open_runtime(tmp_path / "state", sqlite_table.url, slow_polls) as rt:
        rt.put_item(item)
        run_id = f"{TARGET}-cancelled"
        stalled = _load_name(run_id, 2, mode)
        rt.dms.faults.stall(stalled)
        sfn, dms = rt.session.client("stepfunctions"), rt.session.client("dms")
        payload = json.dumps({"table": TARGET, "runId": run_id})
        arn = sfn.start_execution(stateMachineArn=rt.state_machine_arn, name=run_id, input=payload)[
            "executionArn"
        ]
        deadline = time.monotonic() + 90
        while True:
            tasks = _load_statuses(dms, mode)
            others = [s for name, s in tasks.items() if name != stalled]
            if tasks.get(stalled) == "running" and len(others) == 3 and set(others) == {"stopped"}:
                break
            assert time.monotonic() < deadline, f"the windows never got there: {tasks}"
            time.sleep(0.2)
        time.sleep(1)  # the iterations sit in their Wait states
        sfn.stop_execution(executionArn=arn, error="Cancelled", cause="operator stopped it")
        [stopped] = rt.wait_for([arn])
        # AWS ends it ABORTED. moto's interpreter (5.2) fails while stopping a running Map
        # (its MapIterationAborted event) and ends it FAILED with States.Runtime; either
        # way no Catch ran, so the lock and every window's task are still there.
        assert stopped.status == "ABORTED" or (stopped.status, stopped.error) == (
            "FAILED",
            "States.Runtime",
        ), stopped
        assert rt.item(TARGET)["lockOwner"] == run_id
        assert len(_load_statuses(dms, mode)) == 4
        created = instances if mode == "instance" else 0
        assert len(dms.describe_replication_instances()["ReplicationInstances"]) == created

        event = {
            "source": "aws.states",
            "detail-type": "Step Functions Execution Status Change",
            "detail": {
                "executionArn": arn,
                "stateMachineArn": rt.state_machine_arn,
                "name": run_id,
                "status": "ABORTED",
                "input": payload,
            },
        }
        rt.invoke("CleanupAbortedFunction", event)
        state = rt.item(TARGET)
        assert "lockOwner" not in state and "watermark" not in state
        assert state["lastRunStatus"] == "FAILED"
        assert assert_lake_consistent(rt, TARGET) == {}
        assert_clean(rt)

        rerun = rt.tick(now=ticks())
        assert [e.status for e in rerun.executions] == ["SUCCEEDED"]
        assert sorted(_published_ids(rt)) == list(range(1, 401))
        assert_clean(rt)


def test_when_the_first_window_fails_nothing_is_published_and_the_watermark_stays(
    sqlite_table: OrdersTable, tmp_path: Path, ticks: Ticks
) -> None:
    sqlite_table.insert(range(1, 301), datetime.now(UTC) - timedelta(days=1))
    item = sqlite_table.item(TARGET, endvalue="300", windowsize=100, windowconcurrency=3)
    with open_runtime(tmp_path / "state", sqlite_table.url) as rt:
        first = run_with_a_failed_window(rt, ticks, item, failing=1)
        assert first.status == "FAILED", first
        state = rt.item(TARGET)
        assert "watermark" not in state
        assert state["lastRunStatus"] == "FAILED"
        assert "window 1 of 3 failed" in state["lastRunError"], state["lastRunError"]
        assert assert_lake_consistent(rt, TARGET) == {}
        assert_clean(rt)

        [second] = rt.tick(now=ticks()).executions
        assert second.status == "SUCCEEDED", second
        ids = _published_ids(rt)
        assert sorted(ids) == list(range(1, 301)) and set(ids.values()) == {1}
        assert rt.item(TARGET)["watermark"] == "300"
        assert_clean(rt)


def test_windows_spread_over_two_instances_are_all_torn_down(
    sqlite_table: OrdersTable, tmp_path: Path, ticks: Ticks
) -> None:
    sqlite_table.insert(range(1, 401), datetime.now(UTC) - timedelta(days=1))
    item = sqlite_table.item(
        TARGET, endvalue="400", windowsize=100, windowconcurrency=2, windowinstances=2
    )
    with open_runtime(tmp_path / "state", sqlite_table.url) as rt:
        tasks = _dms_requests(rt, "CreateReplicationTask")
        _, windows = _one_windowed_run(rt, ticks, item, 4)
        placed = {t["ReplicationTaskIdentifier"]: t["ReplicationInstanceArn"] for t in tasks}
        assert sorted(placed) == sorted(w.task for w in windows)
        arns = [placed[w.task] for w in windows]
        assert arns[0] == arns[2] != arns[1] == arns[3]  # round robin over two instances
        assert sorted(_published_ids(rt)) == list(range(1, 401))
        assert_clean(rt)  # both instances, every window's task and endpoint: gone


def test_a_windowed_run_creates_a_target_endpoint_per_window_and_no_other(
    sqlite_table: OrdersTable, tmp_path: Path, ticks: Ticks
) -> None:
    sqlite_table.insert(range(1, 301), datetime.now(UTC) - timedelta(days=1))
    item = sqlite_table.item(TARGET, endvalue="300", windowsize=100, windowconcurrency=2)
    with open_runtime(tmp_path / "state", sqlite_table.url) as rt:
        created: dict[str, str] = {}  # identifier -> ARN, in creation order

        def endpoint(parsed, **_):
            created[parsed["Endpoint"]["EndpointIdentifier"]] = parsed["Endpoint"]["EndpointArn"]

        rt.session.events.register("after-call.database-migration-service.CreateEndpoint", endpoint)
        tasks = _dms_requests(rt, "CreateReplicationTask")
        _, windows = _one_windowed_run(rt, ticks, item, 3)
        assert list(created) == [w.target_endpoint for w in windows]
        # Each window's task writes through its own endpoint.
        used = {t["ReplicationTaskIdentifier"]: t["TargetEndpointArn"] for t in tasks}
        assert [used[w.task] for w in windows] == [created[w.target_endpoint] for w in windows]
        assert sorted(_published_ids(rt)) == list(range(1, 301))
        assert_clean(rt)


@pytest.mark.parametrize("empty", [[2], [1], [1, 2]], ids=["middle", "first", "all-but-the-last"])
def test_a_window_the_probe_found_empty_gets_no_task_and_no_endpoint(
    sqlite_table: OrdersTable, tmp_path: Path, ticks: Ticks, empty: list[int]
) -> None:
    old = datetime.now(UTC) - timedelta(days=1)
    loaded = [i for i in (1, 2, 3) if i not in empty]
    rows = [r for i in loaded for r in range(100 * i - 99, 100 * i + 1)]
    sqlite_table.insert(rows, old)
    item = sqlite_table.item(TARGET, endvalue="300", windowsize=100, windowconcurrency=2)
    with open_runtime(tmp_path / "state", sqlite_table.url) as rt:
        tasks = _dms_requests(rt, "CreateReplicationTask")
        endpoints = _dms_requests(rt, "CreateEndpoint")
        run_id, windows = _one_windowed_run(rt, ticks, item, 3)
        created = sorted(t["ReplicationTaskIdentifier"] for t in tasks)
        assert created == sorted(windows[i - 1].task for i in loaded)
        targets = [e["EndpointIdentifier"] for e in endpoints if e["EndpointType"] == "target"]
        assert sorted(targets) == sorted(windows[i - 1].target_endpoint for i in loaded)
        ids = _published_ids(rt)
        assert sorted(ids) == rows
        assert set(ids.values()) == {1}
        assert rt.item(TARGET)["watermark"] == "300"
        manifests = assert_lake_consistent(rt, TARGET)
        assert [manifests[f"{run_id}-w{i:04d}"]["rows"] for i in (1, 2, 3)] == [
            0 if i in empty else 100 for i in (1, 2, 3)
        ]
        assert_clean(rt)


def test_serverless_windows_each_load_through_a_replication_config_of_their_own(
    sqlite_table: OrdersTable, tmp_path: Path, ticks: Ticks
) -> None:
    """One DMS Serverless replication config carries one table mapping
    (CreateReplicationConfig, DMS API Reference): each window gets its own, with the
    window's mapping and target endpoint, and teardown deletes every one."""
    sqlite_table.insert(range(1, 301), datetime.now(UTC) - timedelta(days=1))
    item = sqlite_table.item(
        TARGET, endvalue="300", windowsize=100, windowconcurrency=2, replicationmode="serverless"
    )
    with open_runtime(tmp_path / "state", sqlite_table.url) as rt:
        created: dict[str, str] = {}  # endpoint identifier -> ARN

        def endpoint(parsed, **_):
            created[parsed["Endpoint"]["EndpointIdentifier"]] = parsed["Endpoint"]["EndpointArn"]

        rt.session.events.register("after-call.database-migration-service.CreateEndpoint", endpoint)
        configs = _dms_requests(rt, "CreateReplicationConfig")
        tasks = _dms_requests(rt, "CreateReplicationTask")
        run_id, windows = _one_windowed_run(rt, ticks, item, 3)
        assert tasks == [], "a serverless run created a replication task"
        by_name = {c["ReplicationConfigIdentifier"]: c for c in configs}
        assert sorted(by_name) == sorted(w.config for w in windows)
        assert names.dms_names(TARGET, run_id).config not in by_name  # no run-level config
        run = rt.history(TARGET)[-1]
        assert run["replicationMode"] == "serverless"
        for window in windows:
            assert by_name[window.config]["TargetEndpointArn"] == created[window.target_endpoint]
        assert len({c["TableMappings"] for c in configs}) == 3, "windows share a table mapping"
        # Each config loaded its own window, through its own endpoint into its own folder.
        loaded = {
            run: sorted(r["row_id"] for r in rows)
            for run, rows in published_rows(rt, TARGET).items()
        }
        assert loaded == {
            f"{run_id}-w{i:04d}": list(range(100 * i - 99, 100 * i + 1)) for i in (1, 2, 3)
        }, loaded
        ids = _published_ids(rt)
        assert sorted(ids) == list(range(1, 301)) and set(ids.values()) == {1}
        manifests = assert_lake_consistent(rt, TARGET)
        assert sorted(manifests) == [f"{run_id}-w{i:04d}" for i in (1, 2, 3)]
        assert rt.item(TARGET)["watermark"] == "300"
        assert_clean(rt)  # every window's config and endpoint: gone
