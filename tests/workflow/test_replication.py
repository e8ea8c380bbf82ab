"""DMS judgement and teardown order (the local DMS engine, tests/dms_standin.py)."""

from __future__ import annotations

import json

import pytest

from deltaload import names, replication
from deltaload.aws import Clients
from tests.dms_standin import DmsStandIn

COMPLETED = [
    {
        "SchemaName": "sales",
        "TableName": "orders",
        "TableState": "Table completed",
        "FullLoadRows": 5,
    }
]
FINISHED = "Stop Reason FULL_LOAD_ONLY_FINISHED"
MAPPING = json.dumps(
    {
        "rules": [
            {
                "rule-type": "selection",
                "rule-id": "1",
                "rule-name": "1",
                "object-locator": {"schema-name": "sales", "table-name": "orders"},
                "rule-action": "include",
            }
        ]
    }
)


def judge(status="stopped", reason=FINISHED, errored=0, stats=COMPLETED, failure=""):
    return replication.judge_load(status, reason, errored, failure, stats, "sales", ("orders",))


def test_clean_full_load_is_done_with_its_row_count() -> None:
    verdict = judge()
    assert verdict.done and not verdict.failed and verdict.full_load_rows == 5


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"errored": 1}, "1 table(s) errored"),  # StopReason alone is not enough
        ({"errored": None}, "no TablesErrored"),
        ({"stats": []}, "no entry for sales.orders"),
        ({"stats": [{**COMPLETED[0], "TableState": "Table error"}]}, "'Table error'"),
        ({"reason": "Stop Reason STOPPED_AFTER_FULL_LOAD"}, "not FULL_LOAD_ONLY_FINISHED"),
        ({"status": "failed", "failure": "ORA-00942"}, "ORA-00942"),
    ],
)
def test_anything_short_of_a_clean_finish_fails(kwargs: dict, reason: str) -> None:
    verdict = judge(**kwargs)
    assert verdict.failed and not verdict.done
    assert reason in verdict.reason


def test_a_running_task_is_neither_done_nor_failed() -> None:
    verdict = judge(status="running", reason="")
    assert not verdict.done and not verdict.failed


def test_renamed_target_table_statistics_are_recognised() -> None:
    stats = [{**COMPLETED[0], "TableName": "ORDERS_V2"}]
    verdict = replication.judge_load(
        "stopped", FINISHED, 0, "", stats, "SALES", ("orders", "orders_v2")
    )
    assert verdict.done


def _create_run_resources(dms: DmsStandIn, dms_names: names.DmsNames, running: bool) -> None:
    instance = dms.add_existing_instance(dms_names.instance)
    target = _target_endpoint(dms, dms_names)["Endpoint"]["EndpointArn"]
    source = dms.add_source_endpoint("template-source")
    task = dms.create_replication_task(
        ReplicationTaskIdentifier=dms_names.task,
        ReplicationInstanceArn=instance,
        SourceEndpointArn=source,
        TargetEndpointArn=target,
        MigrationType="full-load",
        TableMappings=MAPPING,
    )["ReplicationTask"]
    if running:
        dms.start_stalled(task["ReplicationTaskArn"], dms_names.task)
    assert task


def _target_endpoint(dms: DmsStandIn, dms_names: names.DmsNames) -> dict:
    return dms.create_endpoint(
        EndpointIdentifier=dms_names.target_endpoint,
        EndpointType="target",
        EngineName="s3",
        S3Settings={
            "BucketName": "lake",
            "BucketFolder": "staging/orders/r",
            "DataFormat": "parquet",
        },
    )


def _teardown(clients: Clients, dms_names: names.DmsNames, mode: str) -> int:
    for attempt in range(1, 20):
        if replication.teardown_pass(clients, dms_names, mode)["done"]:
            return attempt
    raise AssertionError("teardown never finished")


def test_teardown_stops_and_deletes_the_task_before_endpoint_and_instance(
    dms: DmsStandIn, clients: Clients
) -> None:
    run = names.dms_names("orders", "orders-20240501T1200Z")
    _create_run_resources(dms, run, running=True)
    first = replication.teardown_pass(clients, run, "instance")
    assert not first["done"] and first["remaining"] == [f"task {run.task}"]
    assert "delete_replication_instance" not in dms.operations()
    _teardown(clients, run, "instance")
    ops = dms.operations()
    assert ops.index("stop_replication_task") < ops.index("delete_replication_task")
    assert ops.index("delete_replication_task") < ops.index("delete_endpoint")
    assert ops.index("delete_replication_task") < ops.index("delete_replication_instance")
    assert dms.violations == []
    assert not dms.tasks and not dms.instances
    assert list(dms.endpoints) == ["template-source"]  # the template's endpoint stays


def test_teardown_is_idempotent_when_nothing_exists(dms: DmsStandIn, clients: Clients) -> None:
    run = names.dms_names("orders", "r")
    assert replication.teardown_pass(clients, run, "instance") == {
        "done": True,
        "remaining": [],
        "deleted": [],
        "notes": [],
    }


def test_teardown_never_touches_the_shared_instance(dms: DmsStandIn, clients: Clients) -> None:
    shared = dms.add_existing_instance("shared-instance")
    run = names.dms_names("orders", "r")
    _target_endpoint(dms, run)
    _teardown(clients, run, "existing")
    assert "shared-instance" in dms.instances and shared
    assert not any(op == "delete_replication_instance" for op in dms.operations())
    assert not dms.endpoints


def test_teardown_of_a_serverless_run(dms: DmsStandIn, clients: Clients) -> None:
    run = names.dms_names("orders", "r")
    target = _target_endpoint(dms, run)
    config = dms.create_replication_config(
        ReplicationConfigIdentifier=run.config,
        SourceEndpointArn=dms.source_endpoint_arn,
        TargetEndpointArn=target["Endpoint"]["EndpointArn"],
        ReplicationType="full-load",
        ComputeConfig={"MaxCapacityUnits": 2},
        TableMappings=MAPPING,
    )["ReplicationConfig"]["ReplicationConfigArn"]
    dms.start_held(config, run.config)
    _teardown(clients, run, "serverless")
    ops = dms.operations()
    assert ops.index("stop_replication") < ops.index("delete_replication_config")
    assert ops.index("delete_replication_config") < ops.index("delete_endpoint")
    assert not dms.configs and not dms.endpoints


def test_start_uses_start_replication_and_never_restarts(dms: DmsStandIn, clients: Clients) -> None:
    run = names.dms_names("orders", "r")
    _create_run_resources(dms, run, running=False)
    task = replication.find_task(clients, run.task)
    assert replication.start_task(clients, task) is True
    assert dms.tasks[run.task]["_start_type"] == "start-replication"
    again = replication.find_task(clients, run.task)
    assert replication.start_task(clients, again) is False  # a retried StartLoad
    assert dms.operations().count("start_replication_task") == 1
