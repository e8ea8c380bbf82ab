"""Injected faults: refused creates, loads failing mid-way, throttling, stalled tasks."""

from __future__ import annotations

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from .conftest import make_sqlite
from .helpers import Workflow, mappings, selection, wait_for


@pytest.fixture
def flow(aws, dms, tmp_path):  # type: ignore[no-untyped-def]
    rows = [(i, f"note {i}") for i in range(1, 1001)]
    make_sqlite(tmp_path / "s.sqlite", "CREATE TABLE orders (id INTEGER, note TEXT)", rows)
    return Workflow(aws, dms)


@pytest.fixture
def parts(flow, tmp_path):  # type: ignore[no-untyped-def]
    source = flow.source_endpoint_sqlite(tmp_path / "s.sqlite")
    return source, flow.target_endpoint("stage/faults"), flow.instance()


def test_fail_at_create_refuses_matching_identifiers_then_recovers(engine, flow, parts) -> None:  # type: ignore[no-untyped-def]
    source, target, instance = parts
    engine.faults.fail_at_create("orders-*", operation="CreateReplicationTask", times=1)
    other = flow.create_task(
        source, target, instance, mappings(selection("orders")), ident="customers-1"
    )
    assert other
    with pytest.raises(ClientError) as error:
        flow.create_task(source, target, instance, mappings(selection("orders")), ident="orders-1")
    assert error.value.response["Error"]["Code"] == "ResourceQuotaExceededFault"
    assert flow.create_task(
        source, target, instance, mappings(selection("orders")), ident="orders-1"
    )
    assert engine.faults.armed() == []


def test_fail_at_create_other_operations(engine, flow) -> None:  # type: ignore[no-untyped-def]
    engine.faults.fail_at_create(
        "ri-*", operation="CreateReplicationInstance", code="InsufficientResourceCapacityFault"
    )
    with pytest.raises(ClientError) as error:
        flow.dms.create_replication_instance(
            ReplicationInstanceIdentifier="ri-1", ReplicationInstanceClass="dms.t3.micro"
        )
    assert error.value.response["Error"]["Code"] == "InsufficientResourceCapacityFault"
    assert "ri-*" in error.value.response["Error"]["Message"]
    engine.faults.fail_at_create("tgt-*", operation="CreateEndpoint")
    with pytest.raises(ClientError):
        flow.target_endpoint("stage/x")
    with pytest.raises(ValueError):
        engine.faults.fail_at_create("*", operation="StartReplicationTask")


def test_fail_after_rows_leaves_partial_file_and_fails_task(engine, flow, parts) -> None:  # type: ignore[no-untyped-def]
    source, target, instance = parts
    engine.faults.fail_after_rows("flaky-*", 250)
    task = flow.task(source, target, instance, mappings(selection("orders")), ident="flaky-load")
    final = flow.start_and_wait(task)
    assert final["Status"] == "failed"
    assert "orders" in final["LastFailureMessage"] and "250" in final["LastFailureMessage"]
    assert final["ReplicationTaskStats"]["TablesErrored"] == 1
    [stats] = flow.table_stats(task)
    assert stats["TableState"] == "Table error"
    [key] = flow.keys("stage/faults/")
    assert flow.read(key).num_rows == 250
    # The fault fired once: a reload of the same task now completes.
    again = flow.start_and_wait(task, "reload-target")
    assert again["Status"] == "stopped"
    assert flow.table_stats(task)[0]["FullLoadRows"] == 1000


def test_throttle_answers_throttling_then_botocore_retries(engine, aws, flow) -> None:  # type: ignore[no-untyped-def]
    engine.faults.throttle(2)
    with pytest.raises(ClientError) as error:
        flow.dms.describe_endpoints()
    assert error.value.response["Error"]["Code"] == "ThrottlingException"
    retrying = aws.client(
        "dms", config=Config(retries={"total_max_attempts": 3, "mode": "standard"})
    )
    assert retrying.describe_endpoints()["Endpoints"] is not None  # second throttle, then OK
    assert engine.faults.armed() == []


def test_throttle_scoped_to_a_task(engine, flow, parts) -> None:  # type: ignore[no-untyped-def]
    source, target, instance = parts
    task = flow.task(source, target, instance, mappings(selection("orders")), ident="slow-api")
    engine.faults.throttle(1, pattern="slow-*")
    flow.dms.describe_endpoints()  # not about the task: not throttled
    with pytest.raises(ClientError) as error:
        flow.dms.start_replication_task(
            ReplicationTaskArn=task, StartReplicationTaskType="start-replication"
        )
    assert error.value.response["Error"]["Code"] == "ThrottlingException"


def test_stall_keeps_running_until_stopped(engine, flow, parts) -> None:  # type: ignore[no-untyped-def]
    source, target, instance = parts
    engine.faults.stall("stuck")
    task = flow.task(source, target, instance, mappings(selection("orders")), ident="stuck")
    flow.dms.start_replication_task(
        ReplicationTaskArn=task, StartReplicationTaskType="start-replication"
    )
    wait_for(lambda: flow.describe_task(task)["Status"], lambda s: s == "running")
    for _ in range(20):
        assert flow.describe_task(task)["Status"] == "running"
    stopping = flow.dms.stop_replication_task(ReplicationTaskArn=task)["ReplicationTask"]
    assert stopping["Status"] == "stopping"
    final = wait_for(lambda: flow.describe_task(task), lambda t: t["Status"] == "stopped")
    assert final["StopReason"] == "Stop Reason NORMAL"
    assert flow.keys("stage/faults/") == []
    with pytest.raises(ClientError) as error:
        flow.dms.stop_replication_task(ReplicationTaskArn=task)
    assert error.value.response["Error"]["Code"] == "InvalidResourceStateFault"


def test_resume_after_failure_reloads_only_unfinished_tables(engine, flow, parts, tmp_path) -> None:  # type: ignore[no-untyped-def]
    source, target, instance = parts
    make_sqlite(tmp_path / "s.sqlite", "CREATE TABLE zz_last (id INTEGER)", [(1,), (2,)])
    engine.faults.fail_after_rows("two-tables", 1001)  # orders (1000 rows) completes, zz_last fails
    rules = mappings(selection("orders"), selection("zz_last", rule_id="2"))
    task = flow.task(source, target, instance, rules, ident="two-tables")
    assert flow.start_and_wait(task)["Status"] == "failed"
    states = {s["TableName"]: s["TableState"] for s in flow.table_stats(task)}
    assert states == {"orders": "Table completed", "zz_last": "Table error"}
    finished = flow.dms.describe_table_statistics(
        ReplicationTaskArn=task, Filters=[{"Name": "table-state", "Values": ["Table completed"]}]
    )["TableStatistics"]
    assert [s["TableName"] for s in finished] == ["orders"]
    resumed = flow.start_and_wait(task, "resume-processing")
    assert resumed["Status"] == "stopped"
    rows = {s["TableName"]: s["FullLoadRows"] for s in flow.table_stats(task)}
    assert rows == {"orders": 1000, "zz_last": 2}
    assert resumed["ReplicationTaskStats"]["TablesLoaded"] == 2
