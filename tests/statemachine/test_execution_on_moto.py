"""The real ASL, executed by moto's interpreter, with the real handlers in-process."""

from __future__ import annotations

import json
from typing import Any

from tests.workflow.conftest import get_item, keys_under, put_item


def _rows(n: int, start: int = 1) -> list[dict[str, Any]]:
    return [{"id": i, "amount": i * 1.5} for i in range(start, start + n)]


def _notifications(m: dict[str, Any]) -> list[str]:
    import boto3

    messages = boto3.client("sqs").receive_message(QueueUrl=m["queue"], MaxNumberOfMessages=10)
    return [json.loads(x["Body"])["Message"] for x in messages.get("Messages", [])]


def test_happy_path_publishes_records_and_tears_down(machine: dict[str, Any]) -> None:
    m = machine
    put_item(m["clients"], m["settings"])
    m["dms"].load_rows = _rows(25)
    result = _run(m, "orders-20240501T1200Z")
    assert result["status"] == "SUCCEEDED", result.get("error")
    states = result["states"]
    assert states.index("VerifyPublish") < states.index("RecordSuccess") < states.index("Teardown")
    item = get_item(m["clients"], m["settings"])
    assert item["watermark"] == "25" and item["lastRunStatus"] == "SUCCEEDED"
    assert "lockOwner" not in item
    lake = keys_under(m["clients"], "lake")
    assert "datalake/sales/sales/orders/_manifests/orders-20240501T1200Z.json" in lake
    assert not [k for k in lake if k.startswith("staging/")]
    assert not m["dms"].tasks and not m["dms"].endpoints and not m["dms"].instances
    output = json.loads(result["output"])
    assert output["publish"]["rows"] == 25 and output["recorded"]["watermark"] == "25"


def test_failed_load_runs_the_failure_chain(machine: dict[str, Any]) -> None:
    m = machine
    put_item(m["clients"], m["settings"], watermark="3")
    m["dms"].load_rows = _rows(5, start=4)
    m["dms"].outcome.tables_errored = 1  # StopReason says finished, but a table errored
    result = _run(m, "orders-20240501T1300Z")
    assert result["status"] == "FAILED"
    states = result["states"]
    for state in ("LoadFailed", "RecordFailure", "TeardownOnFailure", "NotifyFailure", "Failed"):
        assert state in states
    assert "VerifyPublish" not in states and "RecordSuccess" not in states
    item = get_item(m["clients"], m["settings"])
    assert item["watermark"] == "3" and item["lastRunStatus"] == "FAILED"
    assert "lockOwner" not in item
    assert not keys_under(m["clients"], "lake")
    assert not m["dms"].tasks and not m["dms"].endpoints and not m["dms"].instances
    (message,) = _notifications(m)
    assert "LoadFailedError" in message and "orders" in message


def test_handler_exception_is_caught_by_class_name(machine: dict[str, Any]) -> None:
    m = machine
    put_item(m["clients"], m["settings"])
    m["dms"].fail_create["create_endpoint"] = "AccessDeniedFault"  # after the instance exists
    result = _run(m, "orders-20240501T1400Z")
    assert result["status"] == "FAILED"
    output_error = next(
        json.loads(e["stateEnteredEventDetails"]["input"])["error"]
        for e in result["events"]
        if e.get("stateEnteredEventDetails", {}).get("name") == "RecordFailure"
    )
    assert output_error["Error"] == "ResourceError"
    assert not m["dms"].instances  # the orphan instance was found by name and deleted


def test_second_run_is_skipped_cleanly(machine: dict[str, Any]) -> None:
    m = machine
    put_item(m["clients"], m["settings"], lockOwner="other-run", lockExpiresAt=4_102_444_800)
    result = _run(m, "orders-20240501T1500Z")
    assert result["status"] == "SUCCEEDED"
    assert result["states"] == ["AcquireLock", "LockAcquired?", "Skipped"]
    assert not m["dms"].calls


def test_empty_window_records_success_without_dms(machine: dict[str, Any]) -> None:
    m = machine
    put_item(m["clients"], m["settings"], filteroperator="eq", watermark="loaded")
    result = _run(m, "orders-20240501T1600Z")
    assert result["status"] == "SUCCEEDED", result.get("error")
    assert "CreateResources" not in result["states"]
    assert get_item(m["clients"], m["settings"])["lastRunStatus"] == "SKIPPED"
    assert not [c for c in m["dms"].calls if c[0].startswith(("create", "start"))]


def _run(m: dict[str, Any], run_id: str) -> dict[str, Any]:
    from tests.statemachine.harness import run_execution

    return run_execution(m["sfn"], m["arn"], {"table": "orders", "runId": run_id})
