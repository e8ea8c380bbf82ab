"""Each step of the run against moto (DynamoDB, S3) and the local DMS engine.

``drive`` follows the state machine's transitions in Python so one test can exercise a
whole run; the ASL itself is executed on moto's interpreter in tests/statemachine.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from deltaload import store, workflow
from deltaload.aws import Clients
from deltaload.handlers import run_step
from deltaload.local.account import ACCOUNT, REGION
from deltaload.settings import Settings
from tests.dms_standin import DmsStandIn
from tests.workflow.conftest import NOW, get_item, keys_under, put_item

RUN = "orders-20240501T1200Z"


def clock(start=NOW, step=timedelta(seconds=1)):
    moments = {"now": start}

    def now():
        moments["now"] += step
        return moments["now"]

    return now


def _rows(n: int, start: int = 1) -> list[dict[str, Any]]:
    return [{"id": i, "amount": float(i)} for i in range(start, start + n)]


def drive(state: dict, clients: Clients, settings: Settings, now=None) -> dict[str, Any]:
    """Run the steps like the state machine does; returns the final state (with 'end')."""
    now = now or clock()

    def step(name: str) -> None:
        state.update(run_step(name, state, clients, settings, now))

    def loop(name: str) -> bool:
        for _ in range(50):
            step(name)
            if state["poll"]["failed"]:
                state["error"] = {"Error": state["poll"]["error"], "Cause": state["poll"]["reason"]}
                return False
            if state["poll"]["done"]:
                return True
        raise AssertionError(f"{name} never finished")

    try:
        step("acquire_lock")
        if not state["lock"]["acquired"]:
            state["end"] = "Skipped"
            return state
        step("plan_run")
        ok = True
        if not state["run"]["loadsNothing"]:
            step("create_resources")
            ok = loop("check_resources")
            if ok:
                step("start_load")
                ok = loop("check_load")
            if ok:
                step("verify_publish")
        if ok:
            step("record_success")
            if loop("teardown"):
                state["end"] = "Succeeded"
                return state
    except Exception as error:  # what the Catch does
        state["error"] = {
            "Error": type(error).__name__,
            "Cause": json.dumps({"errorType": type(error).__name__, "errorMessage": str(error)}),
        }
    step("record_failure")
    loop("teardown")
    state["end"] = "Failed"
    return state


def start(table: str = "orders", run_id: str = RUN) -> dict[str, Any]:
    return {"table": table, "runId": run_id}


def test_full_run_publishes_and_moves_the_watermark(
    dms: DmsStandIn, clients: Clients, settings: Settings
) -> None:
    put_item(clients, settings)
    dms.load_rows = _rows(30)
    dms.outcome.files = 3
    state = drive(start(), clients, settings)
    assert state["end"] == "Succeeded", state.get("error")
    item = get_item(clients, settings)
    assert item["watermark"] == "30" and item["lastRunRows"] == 30 and item["lastRunFiles"] == 3
    assert item["lastWindow"] == {"lower": "1", "upper": "30"}
    final = keys_under(clients, "lake", "datalake/sales/sales/orders/")
    assert len([k for k in final if "/run=" + RUN + "/" in k]) == 3
    manifest = json.loads(
        clients.s3.get_object(
            Bucket="lake", Key=f"datalake/sales/sales/orders/_manifests/{RUN}.json"
        )["Body"].read()
    )
    assert manifest["rows"] == 30 and manifest["watermark"] == "30" and len(manifest["files"]) == 3
    assert keys_under(clients, "lake", "staging/") == []
    assert dms.violations == [] and not (dms.tasks or dms.endpoints or dms.instances)
    created = next(p for op, p in dms.calls if op == "create_replication_instance")
    assert created["MultiAZ"] is False and created["PubliclyAccessible"] is False
    assert created["ReplicationSubnetGroupIdentifier"] == "deltaload-subnets"
    endpoint = next(p for op, p in dms.calls if op == "create_endpoint")["S3Settings"]
    assert endpoint["BucketFolder"] == f"staging/orders/{RUN}"
    assert endpoint["DataFormat"] == "parquet" and endpoint["ParquetVersion"] == "parquet-2-0"
    assert endpoint["EnableStatistics"] is True
    task = next(p for op, p in dms.calls if op == "create_replication_task")
    assert task["MigrationType"] == "full-load"
    starts = [p for op, p in dms.calls if op == "start_replication_task"]
    assert [p["StartReplicationTaskType"] for p in starts] == ["start-replication"]
    history = store.get_history(clients, settings, "orders", RUN)
    assert history["status"] == "SUCCEEDED" and history["rows"] == 30


def test_next_run_starts_after_the_watermark(
    dms: DmsStandIn, clients: Clients, settings: Settings
) -> None:
    put_item(clients, settings, watermark="30")
    dms.load_rows = _rows(5, start=31)
    state = drive(start(run_id="orders-20240501T1300Z"), clients, settings)
    assert state["end"] == "Succeeded"
    filters = state["run"]["tableMapping"]["rules"][0]["filters"]
    assert filters[0]["filter-conditions"][0] == {"filter-operator": "gte", "value": "31"}
    assert get_item(clients, settings)["watermark"] == "35"


def test_empty_delta_is_a_success_and_keeps_the_watermark(
    dms: DmsStandIn, clients: Clients, settings: Settings
) -> None:
    put_item(clients, settings, watermark="30")
    dms.load_rows = []
    state = drive(start(), clients, settings)
    assert state["end"] == "Succeeded", state.get("error")
    assert state["publish"]["rows"] == 0
    item = get_item(clients, settings)
    assert item["watermark"] == "30" and item["lastRunStatus"] == "SUCCEEDED"


def test_failed_load_never_moves_the_watermark_and_leaves_nothing(
    dms: DmsStandIn, clients: Clients, settings: Settings
) -> None:
    put_item(clients, settings, watermark="3")
    dms.load_rows = _rows(10, start=4)
    dms.outcome.table_state = "Table error"  # StopReason still says finished
    state = drive(start(), clients, settings)
    assert state["end"] == "Failed"
    assert state["error"]["Error"] == "LoadFailedError"
    item = get_item(clients, settings)
    assert item["watermark"] == "3" and item["lastRunStatus"] == "FAILED"
    assert "LoadFailedError" in item["lastRunError"] and "lockOwner" not in item
    assert keys_under(clients, "lake") == []  # staging deleted, nothing published
    assert not (dms.tasks or dms.endpoints or dms.instances) and dms.violations == []


def test_row_count_mismatch_fails_verification_and_publishes_nothing(
    dms: DmsStandIn, clients: Clients, settings: Settings
) -> None:
    put_item(clients, settings)
    dms.load_rows = _rows(10)
    dms.outcome.reported_rows = 11
    state = drive(start(), clients, settings)
    assert state["end"] == "Failed" and state["error"]["Error"] == "VerificationError"
    assert "FullLoadRows=11" in state["error"]["Cause"]
    assert keys_under(clients, "lake") == []
    assert "watermark" not in get_item(clients, settings)


def test_orphaned_instance_of_an_early_failure_is_torn_down(
    dms: DmsStandIn, clients: Clients, settings: Settings
) -> None:
    put_item(clients, settings)
    dms.fail_create["create_endpoint"] = "ResourceQuotaExceededFault"
    state = drive(start(), clients, settings)
    assert state["end"] == "Failed" and state["error"]["Error"] == "ResourceError"
    assert "resources" not in state  # CreateResources never reported the instance
    assert "create_replication_instance" in dms.operations()
    assert not dms.instances  # found by its per-run name and deleted


def test_watermark_conditional_write_losing_unpublishes_the_run(
    dms: DmsStandIn, clients: Clients, settings: Settings
) -> None:
    put_item(clients, settings)
    dms.load_rows = _rows(4)
    now = clock()
    state = start()
    for name in ("acquire_lock", "plan_run", "create_resources", "check_resources"):
        state.update(run_step(name, state, clients, settings, now))
    state.update(run_step("start_load", state, clients, settings, now))
    state.update(run_step("check_load", state, clients, settings, now))
    state.update(run_step("verify_publish", state, clients, settings, now))
    assert keys_under(clients, "lake", "datalake/")
    clients.dynamodb.update_item(  # an operator reset the watermark meanwhile
        TableName=settings.controller_table,
        Key={"targetTableName": {"S": "orders"}},
        UpdateExpression="SET watermark = :w",
        ExpressionAttributeValues={":w": {"S": "100"}},
    )
    with pytest.raises(store.WatermarkConflictError):
        run_step("record_success", state, clients, settings, now)
    state["error"] = {"Error": "WatermarkConflictError", "Cause": "moved"}
    failure = run_step("record_failure", state, clients, settings, now)["failure"]
    assert failure["objectsDeleted"] >= 2 and not failure["committed"]
    assert keys_under(clients, "lake") == []  # the half-published run is gone
    item = get_item(clients, settings)
    assert item["watermark"] == "100" and "lockOwner" not in item


def test_failure_after_commit_keeps_the_published_run(
    dms: DmsStandIn, clients: Clients, settings: Settings
) -> None:
    put_item(clients, settings)
    dms.load_rows = _rows(4)
    state = drive(start(), clients, settings)
    assert state["end"] == "Succeeded"
    published = keys_under(clients, "lake")
    state["error"] = {"Error": "WaitTimeoutError", "Cause": "teardown did not finish"}
    failure = run_step("record_failure", state, clients, settings)["failure"]
    assert failure["committed"] and failure["objectsDeleted"] == 0
    assert keys_under(clients, "lake") == published
    assert get_item(clients, settings)["lastRunStatus"] == "SUCCEEDED"
    history = store.get_history(clients, settings, "orders", RUN)
    assert history["status"] == "SUCCEEDED" and "teardown" in history["postCommitError"]


def test_retried_record_success_does_not_fail_the_run(
    dms: DmsStandIn, clients: Clients, settings: Settings
) -> None:
    put_item(clients, settings)
    dms.load_rows = _rows(2)
    state = drive(start(), clients, settings)
    again = run_step("record_success", state, clients, settings)["recorded"]
    assert again["alreadyRecorded"] is True


def test_second_run_is_skipped_with_the_holders_run_id(
    dms: DmsStandIn, clients: Clients, settings: Settings
) -> None:
    put_item(clients, settings)
    run_step("acquire_lock", start(run_id="first"), clients, settings)
    state = drive(start(run_id="second"), clients, settings)
    assert state["end"] == "Skipped" and "first" in state["lock"]["reason"]
    assert dms.calls == []
    assert store.get_history(clients, settings, "orders", "second")["status"] == "SKIPPED"


def test_invalid_item_fails_before_any_dms_work(
    dms: DmsStandIn, clients: Clients, settings: Settings
) -> None:
    put_item(clients, settings, filteroperator="greater")
    state = drive(start(), clients, settings)
    assert state["end"] == "Failed" and state["error"]["Error"] == "InvalidItemError"
    assert "filteroperator" in state["error"]["Cause"]
    assert not [op for op in dms.operations() if op.startswith("create")]
    assert "lockOwner" not in get_item(clients, settings)


def test_resources_that_never_become_available_time_out(
    dms: DmsStandIn, clients: Clients, settings: Settings
) -> None:
    put_item(clients, settings)
    dms.instance_ready_after = 10**6
    quick = replace(settings, resource_timeout_seconds=600)
    state = drive(start(), clients, quick, now=clock(step=timedelta(seconds=120)))
    assert state["end"] == "Failed" and state["error"]["Error"] == "WaitTimeoutError"
    assert "600 seconds" in state["error"]["Cause"]
    assert not dms.instances


def test_poll_waits_back_off_and_are_capped(settings: Settings) -> None:
    poll = None
    waits = []
    for n in range(7):
        poll = workflow._poll(
            poll,
            settings,
            NOW + timedelta(seconds=n),
            phase="load",
            timeout=10_000,
            done=False,
            failed=False,
            status="running",
        )
        waits.append(poll.document()["waitSeconds"])
    assert waits == [30, 60, 120, 240, 300, 300, 300]


@pytest.mark.parametrize("mode", ["existing", "serverless"])
def test_other_replication_modes(
    mode: str, dms: DmsStandIn, clients: Clients, settings: Settings
) -> None:
    shared = dms.add_existing_instance("shared")
    configured = replace(settings, replication_mode=mode, existing_instance_arn=shared)
    put_item(clients, settings)
    dms.load_rows = _rows(3)
    state = drive(start(), clients, configured)
    assert state["end"] == "Succeeded", state.get("error")
    assert list(dms.instances) == ["shared"]  # never created, never deleted
    assert not dms.endpoints and not dms.tasks and not dms.configs
    assert get_item(clients, settings)["watermark"] == "3"
    if mode == "serverless":
        starts = [p for op, p in dms.calls if op == "start_replication"]
        assert [p["StartReplicationType"] for p in starts] == ["start-replication"]


def test_awkward_table_names_make_identifiers_dms_accepts(
    dms: DmsStandIn, clients: Clients, settings: Settings
) -> None:
    table = "Orders__2024_" + "x" * 60
    put_item(clients, settings, targetTableName=table)
    dms.load_rows = _rows(2)
    state = drive(start(table=table, run_id=f"{table}-20240501T1200Z"[:80]), clients, settings)
    assert state["end"] == "Succeeded", state.get("error")


def test_handler_returns_the_state_with_its_result_under_its_key(
    monkeypatch: pytest.MonkeyPatch, clients: Clients, settings: Settings
) -> None:
    from tests.statemachine.harness import load_handler

    for name, value in {
        "CONTROLLER_TABLE": settings.controller_table,
        "HISTORY_TABLE": settings.history_table,
        "DATA_BUCKET": settings.data_bucket,
    }.items():
        monkeypatch.setenv(name, value)
    put_item(clients, settings)
    module = load_handler("acquire_lock")
    context = type(
        "Context",
        (),
        {
            "function_name": "f",
            "memory_limit_in_mb": 128,
            "invoked_function_arn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:f",
            "aws_request_id": "1",
        },
    )()
    result = module.handler(start(), context)
    assert result["table"] == "orders" and result["lock"]["acquired"] is True


def test_aborted_execution_is_cleaned_up_outside_the_state_machine(
    dms: DmsStandIn, clients: Clients, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(workflow, "_sleep", lambda seconds: None)
    put_item(clients, settings, watermark="2")
    now = clock()
    state = start()
    for name in ("acquire_lock", "plan_run", "create_resources", "check_resources"):
        state.update(run_step(name, state, clients, settings, now))
    state.update(run_step("start_load", state, clients, settings, now))  # then: StopExecution
    event = {
        "detail-type": "Step Functions Execution Status Change",
        "detail": {"status": "ABORTED", "input": json.dumps(start())},
    }
    result = run_step("cleanup_aborted", event, clients, settings, now)
    assert result["teardown"]["done"]
    assert not (dms.tasks or dms.endpoints or dms.instances) and dms.violations == []
    item = get_item(clients, settings)
    assert item["watermark"] == "2" and item["lastRunStatus"] == "FAILED"
    assert "lockOwner" not in item and "ExecutionAborted" in item["lastRunError"]
    assert keys_under(clients, "lake") == []
