"""Resource lifecycles, status sequences and DMS error codes, through boto3 only."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from deltaload.local.dms import LocalDms, Quotas, Timing

from .conftest import make_sqlite
from .helpers import Workflow, ids, mappings, selection, wait_for


def _code(error: pytest.ExceptionInfo[ClientError]) -> str:
    return error.value.response["Error"]["Code"]


def _message(error: pytest.ExceptionInfo[ClientError]) -> str:
    return error.value.response["Error"]["Message"]


@pytest.fixture
def flow(aws, dms, tmp_path):  # type: ignore[no-untyped-def]
    make_sqlite(
        tmp_path / "s.sqlite", "CREATE TABLE orders (id INTEGER, v TEXT)", [(1, "a"), (2, "b")]
    )
    return Workflow(aws, dms)


@pytest.fixture
def parts(flow, tmp_path):  # type: ignore[no-untyped-def]
    source = flow.source_endpoint_sqlite(tmp_path / "s.sqlite")
    return source, flow.target_endpoint("stage/life"), flow.instance()


def _watch(probe: Any, until: set[str], timeout: float = 10) -> list[str]:
    """Poll a status quickly; return the distinct statuses in the order seen."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = probe()
        if not seen or seen[-1] != status:
            seen.append(status)
        if status in until:
            return seen
        time.sleep(0.002)
    raise AssertionError(f"never reached {until}: {seen}")


def test_statuses_advance_in_real_time(aws, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Default timings: instance creating -> available; task creating -> ready -> ... -> stopped."""
    make_sqlite(tmp_path / "s.sqlite", "CREATE TABLE orders (id INTEGER)", [(1,)])
    with LocalDms(aws.client, timing=Timing(), quotas=Quotas.off()) as local:
        local.install(aws.events)
        flow = Workflow(aws, aws.client("dms"))
        arn = flow.dms.create_replication_instance(
            ReplicationInstanceIdentifier="RI-Mixed-Case", ReplicationInstanceClass="dms.t3.micro"
        )["ReplicationInstance"]["ReplicationInstanceArn"]
        seen = _watch(
            lambda: flow.describe_instance(arn)["ReplicationInstanceStatus"], {"available"}
        )
        assert seen == ["creating", "available"]
        assert flow.describe_instance(arn)["ReplicationInstanceIdentifier"] == "ri-mixed-case"
        source = flow.source_endpoint_sqlite(tmp_path / "s.sqlite")
        task = flow.create_task(
            source, flow.target_endpoint("stage/t"), arn, mappings(selection("orders"))
        )
        assert _watch(lambda: flow.describe_task(task)["Status"], {"ready"}) == [
            "creating",
            "ready",
        ]
        assert "ReplicationTaskStats" not in flow.describe_task(task)
        flow.dms.start_replication_task(
            ReplicationTaskArn=task, StartReplicationTaskType="start-replication"
        )
        seen = _watch(lambda: flow.describe_task(task)["Status"], {"stopped", "failed"})
        assert seen[0] == "starting" and seen[-1] == "stopped"
        assert set(seen) <= {"starting", "running", "stopped"}
        final = flow.describe_task(task)
        assert final["StopReason"] == "Stop Reason FULL_LOAD_ONLY_FINISHED"
        stats = final["ReplicationTaskStats"]
        assert stats["FullLoadProgressPercent"] == 100
        assert (stats["TablesLoaded"], stats["TablesErrored"], stats["TablesQueued"]) == (1, 0, 0)
        assert stats["StartDate"] <= stats["FullLoadStartDate"] <= stats["FullLoadFinishDate"]
        assert stats["StopDate"] == stats["FullLoadFinishDate"]
        assert stats["FreshStartDate"] == stats["StartDate"]
        assert stats["ElapsedTimeMillis"] >= 100  # at least the default starting delay
        flow.dms.delete_replication_task(ReplicationTaskArn=task)
        assert flow.describe_task(task)["Status"] == "deleting"
        wait_for(
            lambda: flow.dms.describe_replication_tasks()["ReplicationTasks"], lambda t: t == []
        )
        flow.dms.delete_replication_instance(ReplicationInstanceArn=arn)

        def instance_status() -> str:
            found = flow.dms.describe_replication_instances()["ReplicationInstances"]
            return found[0]["ReplicationInstanceStatus"] if found else "gone"

        seen = _watch(instance_status, {"gone"})
        assert seen == ["deleting", "gone"]
        local.uninstall(aws.events)


def test_start_types_follow_dms_rules(flow, parts) -> None:  # type: ignore[no-untyped-def]
    source, target, instance = parts
    task = flow.task(source, target, instance, mappings(selection("orders")))
    for start_type in ("reload-target", "resume-processing"):
        with pytest.raises(ClientError) as error:
            flow.dms.start_replication_task(
                ReplicationTaskArn=task, StartReplicationTaskType=start_type
            )
        assert _code(error) == "InvalidParameterCombinationException"
        assert "start-replication" in _message(error)
    first = flow.start_and_wait(task)
    assert first["Status"] == "stopped"
    with pytest.raises(ClientError) as error:
        flow.dms.start_replication_task(
            ReplicationTaskArn=task, StartReplicationTaskType="start-replication"
        )
    assert _code(error) == "InvalidParameterCombinationException"
    assert _message(error) == (
        "Start Type : START_REPLICATION, valid only for tasks running for the first time"
    )
    again = flow.start_and_wait(task, "reload-target")
    assert again["Status"] == "stopped"
    assert (
        again["ReplicationTaskStats"]["FreshStartDate"]
        > first["ReplicationTaskStats"]["FreshStartDate"]
    )
    assert flow.keys("stage/life/") == ["stage/life/dwh/orders/LOAD00000001.parquet"]
    resumed = flow.start_and_wait(task, "resume-processing")
    assert resumed["Status"] == "stopped"
    # Everything was complete, so resuming reloads nothing and keeps the statistics.
    assert flow.table_stats(task)[0]["FullLoadRows"] == 2


def test_instance_with_tasks_cannot_be_deleted(flow, parts) -> None:  # type: ignore[no-untyped-def]
    source, target, instance = parts
    task = flow.task(source, target, instance, mappings(selection("orders")))
    with pytest.raises(ClientError) as error:
        flow.dms.delete_replication_instance(ReplicationInstanceArn=instance)
    assert _code(error) == "InvalidResourceStateFault"
    assert flow.describe_task(task)["ReplicationTaskIdentifier"] in _message(error)
    with pytest.raises(ClientError) as error:
        flow.dms.delete_endpoint(EndpointArn=source)
    assert _code(error) == "InvalidResourceStateFault"


def test_not_found_and_already_exists(flow, parts) -> None:  # type: ignore[no-untyped-def]
    source, target, instance = parts
    flow.task(source, target, instance, mappings(selection("orders")), ident="dup-task")
    with pytest.raises(ClientError) as error:
        flow.create_task(source, target, instance, mappings(selection("orders")), ident="dup-task")
    assert _code(error) == "ResourceAlreadyExistsFault" and "dup-task" in _message(error)
    with pytest.raises(ClientError) as error:
        flow.dms.describe_replication_tasks(
            Filters=[{"Name": "replication-task-id", "Values": ["no-such-task"]}]
        )
    assert _code(error) == "ResourceNotFoundFault"
    missing = instance.rsplit(":", 1)[0] + ":task:NOPE"
    with pytest.raises(ClientError) as error:
        flow.dms.start_replication_task(
            ReplicationTaskArn=missing, StartReplicationTaskType="start-replication"
        )
    assert _code(error) == "ResourceNotFoundFault" and missing in _message(error)
    with pytest.raises(ClientError) as error:
        flow.dms.describe_table_statistics(ReplicationTaskArn=missing)
    assert _code(error) == "ResourceNotFoundFault"


def test_invalid_parameters_are_refused(flow, parts) -> None:  # type: ignore[no-untyped-def]
    source, target, instance = parts
    with pytest.raises(ClientError) as error:
        flow.dms.create_endpoint(
            EndpointIdentifier="csv-target",
            EndpointType="target",
            EngineName="s3",
            S3Settings={"BucketName": "lake", "BucketFolder": "x"},
        )
    assert _code(error) == "InvalidParameterValueException" and "csv" in _message(error)
    with pytest.raises(ClientError) as error:
        flow.dms.create_replication_task(
            ReplicationTaskIdentifier="cdc-task",
            SourceEndpointArn=source,
            TargetEndpointArn=target,
            ReplicationInstanceArn=instance,
            MigrationType="full-load-and-cdc",
            TableMappings=mappings(selection("orders")),
        )
    assert _code(error) == "InvalidParameterValueException" and "full-load" in _message(error)
    bad_operator = selection(
        "orders",
        [{"column-name": "id", "filter-conditions": [{"filter-operator": "gt", "value": "1"}]}],
    )
    with pytest.raises(ClientError) as error:
        flow.create_task(source, target, instance, mappings(bad_operator), ident="bad-op")
    assert _code(error) == "InvalidParameterValueException"
    assert "'gt'" in _message(error) and "bad-op" in _message(error)
    with pytest.raises(ClientError) as error:
        flow.create_task(source, target, instance, "{not json", ident="bad-json")
    assert _code(error) == "InvalidParameterValueException"
    with pytest.raises(ClientError) as error:
        flow.create_task(target, source, instance, mappings(selection("orders")), ident="swapped")
    assert _code(error) == "InvalidParameterValueException"
    with pytest.raises(ClientError) as error:
        flow.dms.create_replication_instance(
            ReplicationInstanceIdentifier="bad--name", ReplicationInstanceClass="dms.t3.micro"
        )
    assert _code(error) == "InvalidParameterValueException"


def test_describe_paginates_with_marker(flow) -> None:  # type: ignore[no-untyped-def]
    for n in range(25):
        flow.target_endpoint(f"stage/p{n}")
    first = flow.dms.describe_endpoints(MaxRecords=20)
    assert len(first["Endpoints"]) == 20 and first["Marker"]
    second = flow.dms.describe_endpoints(MaxRecords=20, Marker=first["Marker"])
    assert len(second["Endpoints"]) == 5 and "Marker" not in second
    paged = [
        e["EndpointArn"]
        for p in flow.dms.get_paginator("describe_endpoints").paginate()
        for e in p["Endpoints"]
    ]
    assert len(set(paged)) == 25
    with pytest.raises(ClientError) as error:
        flow.dms.describe_endpoints(MaxRecords=5)
    assert _code(error) == "InvalidParameterValueException"


def test_describe_tasks_filters(flow, parts) -> None:  # type: ignore[no-untyped-def]
    source, target, instance = parts
    task = flow.task(source, target, instance, mappings(selection("orders")), ident="filtered")
    for name, value in (
        ("replication-task-arn", task),
        ("replication-task-id", "filtered"),
        ("replication-instance-arn", instance),
        ("migration-type", "full-load"),
        ("endpoint-arn", source),
        ("endpoint-arn", target),
    ):
        found = flow.dms.describe_replication_tasks(Filters=[{"Name": name, "Values": [value]}])
        assert [t["ReplicationTaskArn"] for t in found["ReplicationTasks"]] == [task], name
    lean = flow.dms.describe_replication_tasks(WithoutSettings=True)["ReplicationTasks"][0]
    assert "ReplicationTaskSettings" not in lean


def test_test_connection_reports_success_and_failure(flow, parts, tmp_path) -> None:  # type: ignore[no-untyped-def]
    source, target, instance = parts
    missing = flow.source_endpoint_sqlite(tmp_path / "missing.sqlite")
    for endpoint, expected in ((source, "successful"), (target, "successful"), (missing, "failed")):
        assert (
            flow.dms.test_connection(ReplicationInstanceArn=instance, EndpointArn=endpoint)[
                "Connection"
            ]["Status"]
            == "testing"
        )
        conn = wait_for(
            lambda endpoint=endpoint: flow.dms.describe_connections(
                Filters=[{"Name": "endpoint-arn", "Values": [endpoint]}]
            )["Connections"][0],
            lambda c: c["Status"] != "testing",
        )
        assert conn["Status"] == expected, conn
    assert "missing.sqlite" in conn["LastFailureMessage"]


def test_serverless_replication(flow, tmp_path) -> None:  # type: ignore[no-untyped-def]
    source = flow.source_endpoint_sqlite(tmp_path / "s.sqlite")
    target = flow.target_endpoint("stage/serverless")
    config = flow.dms.create_replication_config(
        ReplicationConfigIdentifier="orders-serverless",
        SourceEndpointArn=source,
        TargetEndpointArn=target,
        ComputeConfig={"MaxCapacityUnits": 4, "MinCapacityUnits": 1},
        ReplicationType="full-load",
        TableMappings=mappings(selection("orders")),
    )["ReplicationConfig"]
    arn = config["ReplicationConfigArn"]
    with pytest.raises(ClientError) as error:
        flow.dms.describe_replications(
            Filters=[{"Name": "replication-config-arn", "Values": [arn]}]
        )
    assert _code(error) == "ResourceNotFoundFault"  # not started yet
    started = flow.dms.start_replication(
        ReplicationConfigArn=arn, StartReplicationType="start-replication"
    )
    assert started["Replication"]["Status"] == "initializing"

    def replication() -> dict[str, Any]:
        return flow.dms.describe_replications(
            Filters=[{"Name": "replication-config-arn", "Values": [arn]}]
        )["Replications"][0]

    final = wait_for(replication, lambda r: r["Status"] in ("stopped", "failed"))
    assert final["Status"] == "stopped", final
    assert final["StopReason"] == "Stop Reason FULL_LOAD_ONLY_FINISHED"
    assert final["ReplicationStats"]["TablesLoaded"] == 1
    stats = flow.dms.describe_replication_table_statistics(ReplicationConfigArn=arn)
    assert stats["ReplicationTableStatistics"][0]["FullLoadRows"] == 2
    assert ids(flow.read_all("stage/serverless/dwh/orders/")) == [1, 2]
    wait_for(
        lambda: replication()["ProvisionData"]["ProvisionState"], lambda s: s == "deprovisioned"
    )
    flow.dms.delete_replication_config(ReplicationConfigArn=arn)
    wait_for(
        lambda: flow.dms.describe_replication_configs()["ReplicationConfigs"], lambda c: c == []
    )


def test_tags_are_accepted_and_passwords_never_echoed(flow, tmp_path) -> None:  # type: ignore[no-untyped-def]
    endpoint = flow.dms.create_endpoint(
        EndpointIdentifier="inline-pg",
        EndpointType="source",
        EngineName="postgres",
        ServerName="127.0.0.1",
        Port=5432,
        DatabaseName="test",
        Username="postgres",
        Password="s3cr3t-value",
        Tags=[{"Key": "team", "Value": "data"}],
    )
    described = flow.dms.describe_endpoints()
    assert "s3cr3t-value" not in json.dumps(endpoint, default=str)
    assert "s3cr3t-value" not in json.dumps(described, default=str)
