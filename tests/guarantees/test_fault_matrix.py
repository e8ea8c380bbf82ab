"""Guarantees 2, 4 and 5 under faults: one whole offline run per fault, then a clean rerun.

For every fault the failed run must leave: nothing published partially (no ``run=<id>/``
file without a manifest, no manifest without its files), no staging data, the watermark
where it was, every DMS resource it created deleted, the failure on the item and in the
history table, a failure notification; and the NEXT run must load the same window in full.
Faults that the design absorbs (throttling, a teardown call failing once with a retryable
error) must not fail the run at all.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from deltaload.local.runtime import LocalRuntime
from tests.guarantees.conftest import (
    STAGING,
    OrdersTable,
    Ticks,
    assert_clean,
    assert_lake_consistent,
    old,
    open_runtime,
    published_rows,
)

TARGET = "orders_s3"
ROWS = 50


def _body(params: dict[str, Any]) -> dict[str, Any]:
    body = params.get("body") or b"{}"
    return json.loads(body.decode() if isinstance(body, bytes) else body)


class Recorder:
    """Records the keys of every S3 DeleteObjects call of the runtime's session."""

    def __init__(self, rt: LocalRuntime) -> None:
        self.deleted: list[str] = []
        rt.session.events.register("before-call.s3.DeleteObjects", self._on_delete)

    def _on_delete(self, params: dict[str, Any], **_: Any) -> None:
        body = params.get("body") or b""
        text = body.decode() if isinstance(body, bytes) else str(body)
        for part in text.split("<Key>")[1:]:
            self.deleted.append(part.split("</Key>", 1)[0])


# --- arming the faults ----------------------------------------------------------------------

HOOKS: dict[int, bool] = {}


def hook(rt: LocalRuntime, event: str, handler: Callable[..., Any]) -> None:
    """Register a botocore event handler on the runtime's session until ``unhook(rt)``.

    Clients copy the session's emitter when they are created, so unregistering later
    would not reach them: the handler is switched off instead.
    """
    HOOKS[id(rt)] = True

    def switched(**kwargs: Any) -> Any:
        return handler(**kwargs) if HOOKS.get(id(rt)) else None

    rt.session.events.register(event, switched)


def unhook(rt: LocalRuntime) -> None:
    HOOKS[id(rt)] = False


def _instance_create(rt: LocalRuntime) -> Any:
    rt.dms.faults.fail_at_create("*", operation="CreateReplicationInstance")


def _endpoint_create(rt: LocalRuntime) -> Any:
    rt.dms.faults.fail_at_create("*", operation="CreateEndpoint")


def _task_create(rt: LocalRuntime) -> Any:
    rt.dms.faults.fail_at_create("*", operation="CreateReplicationTask")


def _task_start(rt: LocalRuntime) -> Any:
    return rt.faults.fail(
        "dms",
        "StartReplicationTask",
        code="AccessDeniedFault",
        status=400,
        message="injected: not allowed to start the task",
    )


def _rows_then_fail(rt: LocalRuntime) -> Any:
    rt.dms.faults.fail_after_rows("*", 20)


def _throttle_status(rt: LocalRuntime) -> Any:
    # Fewer than the clients' attempts: the SDK retries them transparently.
    rt.dms.faults.throttle(2, operation="DescribeReplicationTasks")


def _throttle_status_hard(rt: LocalRuntime) -> Any:
    # More than the clients' 8 attempts (deltaload.aws.Clients: adaptive retries): the step
    # raises TransientError and the state machine's Retry takes over; the run still
    # succeeds. Slow (~75 s): botocore backs off for real between the 8 attempts.
    rt.dms.faults.throttle(9, operation="DescribeReplicationTasks")


def _statistics_disagree(rt: LocalRuntime) -> Any:
    """DMS table statistics claim one row more than the Parquet footers hold."""

    def inflate(parsed: dict[str, Any], **_: Any) -> None:
        for row in parsed.get("TableStatistics", []):
            row["FullLoadRows"] = int(row.get("FullLoadRows", 0)) + 1

    hook(rt, "after-call.database-migration-service.DescribeTableStatistics", inflate)


def _staged_file_vanishes(rt: LocalRuntime) -> Any:
    """One staged Parquet file disappears between the load and the verification."""
    state = {"done": False}

    def vanish(params: dict[str, Any], **_: Any) -> None:
        prefix = str((params.get("query_string") or {}).get("prefix", ""))
        if state["done"] or not prefix.startswith(STAGING):
            return
        state["done"] = True
        s3 = rt.session.client("s3")
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=rt.bucket, Prefix=prefix)["Contents"]]
        assert len(keys) > 1, keys  # MAX_FILE_SIZE_KB=1: several files
        s3.delete_object(Bucket=rt.bucket, Key=sorted(keys)[-1])

    hook(rt, "before-call.s3.ListObjectsV2", vanish)
    return state


def _publish_interrupted(rt: LocalRuntime) -> Any:
    return rt.faults.fail(
        "s3", "CopyObject", after=1, code="AccessDenied", status=403, message="injected"
    )


def _watermark_conflict(rt: LocalRuntime) -> Any:
    controller = rt.controller_table

    def record_success_call(params: dict[str, Any]) -> bool:
        body = _body(params)
        return body.get("TableName") == controller and str(
            body.get("ConditionExpression", "")
        ).startswith("lockOwner = :run AND")

    return rt.faults.fail(
        "dynamodb",
        "UpdateItem",
        code="ConditionalCheckFailedException",
        status=400,
        message="The conditional request failed",
        when=record_success_call,
    )


def _history_write_throttled_after_commit(rt: LocalRuntime) -> Any:
    """The SUCCEEDED history record is throttled once, after the watermark was committed."""
    history = rt.history_table

    def success_record(params: dict[str, Any]) -> bool:
        body = _body(params)
        status = (body.get("Item") or {}).get("status", {}).get("S")
        return body.get("TableName") == history and status == "SUCCEEDED"

    return rt.faults.fail(
        "dynamodb", "PutItem", code="ThrottlingException", status=400, when=success_record
    )


def _teardown_instance_once_retryable(rt: LocalRuntime) -> Any:
    return rt.faults.fail(
        "dms", "DeleteReplicationInstance", code="ThrottlingException", status=400
    )


def _teardown_endpoint_once_retryable(rt: LocalRuntime) -> Any:
    return rt.faults.fail("dms", "DeleteEndpoint", code="ThrottlingException", status=400)


def _teardown_instance_once_hard(rt: LocalRuntime) -> Any:
    return rt.faults.fail("dms", "DeleteReplicationInstance", code="AccessDeniedFault", status=400)


@dataclass(frozen=True)
class Case:
    """One fault and what the run must end as."""

    arm: Callable[[LocalRuntime], Any]
    outcome: str  # "failed": nothing moves; "succeeded": absorbed; "committed": see below
    cause: tuple[str, ...] = ()  # words lastRunError, history and notification must contain
    environment: dict[str, str] = field(default_factory=dict)
    partial_staging: bool = False  # staging held data when the run failed (and was deleted)
    retried: bool | None = None  # must the state machine have retried a TransientError?


SMALL_FILES = {"MAX_FILE_SIZE_KB": "1"}
CASES = {
    "instance-create-fails": Case(
        _instance_create, "failed", ("ResourceError", "replication instance")
    ),
    "endpoint-create-fails": Case(_endpoint_create, "failed", ("ResourceError", "endpoint")),
    "task-create-fails": Case(_task_create, "failed", ("ResourceError", "replication task")),
    "task-start-fails": Case(_task_start, "failed", ("AccessDeniedFault", "StartReplication")),
    "task-fails-after-rows": Case(
        _rows_then_fail, "failed", ("LoadFailedError",), SMALL_FILES, partial_staging=True
    ),
    "status-call-throttled": Case(_throttle_status, "succeeded", retried=False),
    "status-call-throttled-beyond-sdk-retries": Case(
        _throttle_status_hard, "succeeded", retried=True
    ),
    "statistics-disagree": Case(
        _statistics_disagree,
        "failed",
        ("VerificationError", f"FullLoadRows={ROWS + 1}"),
        partial_staging=True,
    ),
    "staged-file-vanishes": Case(
        _staged_file_vanishes, "failed", ("VerificationError",), SMALL_FILES, True
    ),
    "publish-interrupted": Case(
        _publish_interrupted, "failed", ("AccessDenied", "CopyObject"), SMALL_FILES, True
    ),
    "watermark-write-loses-condition": Case(
        _watermark_conflict, "failed", ("WatermarkConflictError",), SMALL_FILES, True
    ),
    "history-write-throttled-after-commit": Case(
        _history_write_throttled_after_commit, "succeeded"
    ),
    "teardown-instance-once-retryable": Case(_teardown_instance_once_retryable, "succeeded"),
    "teardown-endpoint-once-retryable": Case(_teardown_endpoint_once_retryable, "succeeded"),
    "teardown-instance-once-hard": Case(
        _teardown_instance_once_hard, "committed", ("AccessDeniedFault",)
    ),
}


SLOW = {"status-call-throttled-beyond-sdk-retries"}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in CASES]
)
def test_fault(name: str, sqlite_table: OrdersTable, tmp_path: Path, ticks: Ticks) -> None:
    case = CASES[name]
    sqlite_table.insert(range(1, ROWS + 1), old())
    with open_runtime(tmp_path / "state", sqlite_table.url, case.environment) as rt:
        rt.put_item(sqlite_table.item(TARGET))
        recorder = Recorder(rt)
        armed = case.arm(rt)

        result = rt.tick(now=ticks())
        [execution] = result.executions
        run_id = execution.name
        item = rt.item(TARGET)
        history = {h["runId"]: h for h in rt.history(TARGET)}
        notes = [n["message"] for n in rt.notifications()]

        if armed is not None and hasattr(armed, "fired"):
            assert armed.fired == 1, f"{name}: the fault never fired"
        if isinstance(armed, dict):
            assert armed["done"], f"{name}: the fault never fired"
        assert rt.dms.faults.armed() == [], f"{name}: engine fault not consumed"

        # Guarantee 4: whatever happened, every DMS resource of the run is gone.
        assert_clean(rt)
        assert "lockOwner" not in item, item

        if case.retried is not None:
            errors = [
                detail.get("error")
                for event in rt.execution_history(rt.execution_arn(run_id))
                for key, detail in event.items()
                if key.endswith("EventDetails") and isinstance(detail, dict)
            ]
            assert ("TransientError" in errors) is case.retried, errors
        if case.outcome == "succeeded":
            assert execution.status == "SUCCEEDED", execution
            assert item["lastRunStatus"] == "SUCCEEDED"
            assert item["watermark"] == str(ROWS)
            assert history[run_id]["status"] == "SUCCEEDED", history[run_id]
            assert history[run_id]["rows"] == ROWS
            rows = published_rows(rt, TARGET)[run_id]
            assert sorted(r["row_id"] for r in rows) == list(range(1, ROWS + 1))
            return

        assert execution.status == "FAILED", execution
        if case.outcome == "committed":
            # The run committed before teardown failed: its output and watermark stay,
            # the failure after the commit is recorded, and teardown still completed.
            assert item["lastRunStatus"] == "SUCCEEDED"
            assert item["watermark"] == str(ROWS)
            assert history[run_id]["status"] == "SUCCEEDED"
            assert all(w in history[run_id]["postCommitError"] for w in case.cause)
            assert any(run_id in n and "failed" in n for n in notes), notes
            rows = published_rows(rt, TARGET)[run_id]
            assert sorted(r["row_id"] for r in rows) == list(range(1, ROWS + 1))
            sqlite_table.insert(range(ROWS + 1, ROWS + 6), old())
            rt.faults.clear()
            nxt = rt.tick(now=ticks())
            assert [e.status for e in nxt.executions] == ["SUCCEEDED"]
            all_ids = sorted(
                r["row_id"] for rows in published_rows(rt, TARGET).values() for r in rows
            )
            assert all_ids == list(range(1, ROWS + 6)), "a row was lost or loaded twice"
            return

        # Guarantee 2: nothing published, no staging data, the watermark did not move.
        assert_lake_consistent(rt, TARGET)
        assert not [k for k in rt.keys("lake/") if f"run={run_id}/" in k or run_id in k]
        assert "watermark" not in item, item
        assert item["lastRunStatus"] == "FAILED"
        assert item["lastRunId"] == run_id
        for word in case.cause:
            assert word in item["lastRunError"], (word, item["lastRunError"])
        record = history[run_id]
        assert record["status"] == "FAILED"
        for word in case.cause:
            assert word in record["error"], (word, record["error"])
        assert "watermark" not in record
        matching = [n for n in notes if run_id in n and TARGET in n]
        assert matching and all(case.cause[0] in n for n in matching), notes
        if case.partial_staging:
            staged = [k for k in recorder.deleted if k.startswith(STAGING)]
            assert staged, f"{name}: expected staging data to have existed and been deleted"

        # Guarantee 5: the next run loads the same window in full, once.
        rt.faults.clear()
        rt.dms.faults.clear()
        unhook(rt)
        rerun = rt.tick(now=ticks())
        assert [e.status for e in rerun.executions] == ["SUCCEEDED"], rerun
        runs = published_rows(rt, TARGET)
        assert list(runs) == [rerun.executions[0].name]
        assert sorted(r["row_id"] for r in runs[rerun.executions[0].name]) == list(
            range(1, ROWS + 1)
        )
        assert rt.item(TARGET)["watermark"] == str(ROWS)
        assert_clean(rt)


def test_cancelled_run_is_cleaned_up_and_the_window_reloaded(
    sqlite_table: OrdersTable, tmp_path: Path, ticks: Ticks, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Guarantee 4 on the cancel path: StopExecution runs no Catch, so the template's
    CleanupAbortedFunction (an EventBridge rule on ABORTED/TIMED_OUT) does the failure path.
    The local runtime has no EventBridge bus: the test delivers the status-change event."""
    import time

    from deltaload import workflow

    # CleanupAborted waits 5, 10, 20 s between teardown passes (AWS pacing); shorten them.
    monkeypatch.setattr(workflow, "_sleep", lambda seconds: time.sleep(min(seconds, 0.5)))
    sqlite_table.insert(range(1, ROWS + 1), old())
    # Long waits between load checks: the execution is stopped while it sits in
    # WaitForLoad, not while a Lambda task is in flight (moto can then end it FAILED).
    slow_polls = {"POLL_INITIAL_SECONDS": "4", "POLL_MAX_SECONDS": "4"}
    with open_runtime(tmp_path / "state", sqlite_table.url, slow_polls) as rt:
        rt.put_item(sqlite_table.item(TARGET))
        rt.dms.faults.stall("*")
        sfn, dms = rt.session.client("stepfunctions"), rt.session.client("dms")
        run_id = f"{TARGET}-cancelled"
        payload = json.dumps({"table": TARGET, "runId": run_id})
        arn = sfn.start_execution(stateMachineArn=rt.state_machine_arn, name=run_id, input=payload)[
            "executionArn"
        ]
        deadline = time.monotonic() + 60
        while not (
            any(
                t["Status"] == "running"
                for t in dms.describe_replication_tasks()["ReplicationTasks"]
            )
            and rt.execution_history(arn)[-1]["type"] == "WaitStateEntered"
        ):
            assert time.monotonic() < deadline, "the load never started"
            time.sleep(0.2)
        sfn.stop_execution(executionArn=arn, error="Cancelled", cause="operator stopped it")
        [stopped] = rt.wait_for([arn])
        assert stopped.status == "ABORTED", stopped
        assert rt.item(TARGET)["lockOwner"] == run_id  # no Catch ran

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
        item = rt.item(TARGET)
        assert "lockOwner" not in item
        assert item["lastRunStatus"] == "FAILED"
        assert "ExecutionAborted" in item["lastRunError"]
        assert "watermark" not in item
        assert rt.history(TARGET)[-1]["status"] == "FAILED"
        assert_lake_consistent(rt, TARGET)
        assert_clean(rt)

        rerun = rt.tick(now=ticks())
        assert [e.status for e in rerun.executions] == ["SUCCEEDED"]
        rows = published_rows(rt, TARGET)[rerun.executions[0].name]
        assert sorted(r["row_id"] for r in rows) == list(range(1, ROWS + 1))
        assert_clean(rt)
