"""The schedule tick (moto DynamoDB and Step Functions)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from botocore.exceptions import ClientError

from deltaload import items
from deltaload.aws import Clients
from deltaload.settings import Settings
from deltaload.starter import StartFailedError, start_tick
from tests.workflow.conftest import NOW, ORDERS, TICK_EVENT, put_item

EVENT = TICK_EVENT


def _bulk(clients: Clients, settings: Settings, count: int, **attributes: Any) -> None:
    padding = "p" * 1000  # ~1 KB items: 1,000 of them span several 1 MB Scan pages
    for first in range(0, count, 25):
        requests = [
            {
                "PutRequest": {
                    "Item": items.to_dynamodb(
                        {**ORDERS, "targetTableName": f"t{n:04d}", "description": padding}
                        | attributes
                    )
                }
            }
            for n in range(first, min(count, first + 25))
        ]
        clients.dynamodb.batch_write_item(RequestItems={settings.controller_table: requests})


def _executions(clients: Clients, arn: str) -> list[dict[str, Any]]:
    pages = clients.sfn.get_paginator("list_executions").paginate(stateMachineArn=arn)
    return [e for page in pages for e in page["executions"]]


def test_starts_every_active_item_across_scan_pages(
    clients: Clients, tick_settings: Settings
) -> None:
    # Serverless runs create no replication instance: no instance cap applies.
    tick_settings = replace(tick_settings, replication_mode="serverless")
    _bulk(clients, tick_settings, 1000)
    put_item(clients, tick_settings, targetTableName="inactive", activeflag="false")
    put_item(clients, tick_settings, targetTableName="bool_active", activeflag=True)
    assert "LastEvaluatedKey" in clients.dynamodb.scan(TableName=tick_settings.controller_table)
    result = start_tick(EVENT, clients, tick_settings, now=lambda: NOW)
    assert len(result["started"]) == 1001 and not result["invalid"]
    names = {s["runId"] for s in result["started"]}
    assert "t0000-20240501T120041Z" in names and "bool_active-20240501T120041Z" in names
    assert len(_executions(clients, tick_settings.state_machine_arn)) == 1001
    started = clients.sfn.describe_execution(
        executionArn=_executions(clients, tick_settings.state_machine_arn)[0]["executionArn"]
    )
    payload = json.loads(started["input"])
    assert set(payload) == {"table", "runId"} and payload["runId"] == started["name"]


def test_repeated_tick_does_not_start_twice(clients: Clients, tick_settings: Settings) -> None:
    put_item(clients, tick_settings)
    first = start_tick(EVENT, clients, tick_settings)
    again = start_tick({**EVENT, "id": "evt-2"}, clients, tick_settings)
    assert [s["runId"] for s in first["started"]] == ["orders-20240501T120041Z"]
    assert again["started"] == []
    assert again["skipped"] == [
        {
            "table": "orders",
            "runId": "orders-20240501T120041Z",
            "reason": "already started for this tick",
        }
    ]


def test_a_redelivered_tick_after_its_run_ended_does_not_start_again(
    clients: Clients, tick_settings: Settings
) -> None:
    put_item(clients, tick_settings)
    start_tick(EVENT, clients, tick_settings)
    _finish_all(clients, tick_settings.state_machine_arn)
    again = start_tick(EVENT, clients, tick_settings)
    assert again["started"] == []
    assert [s["reason"] for s in again["skipped"]] == ["already started for this tick"]
    assert len(_executions(clients, tick_settings.state_machine_arn)) == 1


def test_invalid_items_are_reported_and_never_started(
    clients: Clients, tick_settings: Settings
) -> None:
    put_item(clients, tick_settings)
    put_item(clients, tick_settings, targetTableName="broken", filteroperator="greater")
    put_item(
        clients, tick_settings, targetTableName="broken_off", activeflag="false", filteroperator="x"
    )
    result = start_tick(EVENT, clients, tick_settings)
    assert [s["table"] for s in result["started"]] == ["orders"]
    (invalid,) = result["invalid"]
    assert invalid["table"] == "broken"
    assert any("filteroperator" in e for e in invalid["errors"])


def test_event_can_limit_the_tick_to_some_tables(clients: Clients, tick_settings: Settings) -> None:
    put_item(clients, tick_settings)
    put_item(clients, tick_settings, targetTableName="customers")
    result = start_tick({"tables": ["customers", "ghost"]}, clients, tick_settings, now=lambda: NOW)
    assert [s["runId"] for s in result["started"]] == ["customers-20240501T120000Z"]
    assert result["skipped"] == [{"table": "ghost", "reason": "no active controller item"}]


class _ThrottlingSfn:
    def __init__(self, sfn: Any, failures: int) -> None:
        self._sfn, self.failures, self.calls = sfn, failures, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sfn, name)

    def start_execution(self, **kwargs: Any) -> Any:
        self.calls += 1
        if self.failures:
            self.failures -= 1
            raise ClientError(
                {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}},
                "StartExecution",
            )
        return self._sfn.start_execution(**kwargs)


def test_throttled_start_is_retried_with_backoff(clients: Clients, tick_settings: Settings) -> None:
    put_item(clients, tick_settings)
    throttling = _ThrottlingSfn(clients.sfn, failures=3)
    slept: list[float] = []
    throttled = Clients(overrides={"stepfunctions": throttling, "dynamodb": clients.dynamodb})
    result = start_tick(EVENT, throttled, tick_settings, sleep=slept.append)
    assert [s["table"] for s in result["started"]] == ["orders"]
    assert throttling.calls == 4 and slept == [1, 2, 4]


def test_max_concurrent_runs_defers_the_rest(clients: Clients, tick_settings: Settings) -> None:
    for table in ("a", "b", "c", "d"):
        put_item(clients, tick_settings, targetTableName=table)
    limited = replace(tick_settings, max_concurrent_runs=3)
    first = start_tick(EVENT, clients, limited)
    assert [s["table"] for s in first["started"]] == ["a", "b", "c"]
    assert first["deferred"] == [{"table": "d", "reason": "MAX_CONCURRENT_RUNS=3 reached"}]
    later = start_tick({"time": "2024-05-01T12:05:00Z"}, clients, limited)
    assert later["started"] == []
    reasons = {d["table"]: d["reason"] for d in later["deferred"]}
    # a, b and c are still running: deferred as such, not as taking a slot.
    assert reasons["d"] == "MAX_CONCURRENT_RUNS=3 reached"
    for table in ("a", "b", "c"):
        assert reasons[table].startswith(f"run {table}-20240501T120041Z is still going")


def _set_run_state(clients: Clients, settings: Settings, table: str, **state: Any) -> None:
    put_item(clients, settings, targetTableName=table, **state)


def _finish_all(clients: Clients, arn: str) -> None:
    """End every RUNNING execution, as finished runs would."""
    for execution in _executions(clients, arn):
        if execution["status"] == "RUNNING":
            clients.sfn.stop_execution(executionArn=execution["executionArn"])


def test_candidates_go_in_the_order_they_have_waited(
    clients: Clients, tick_settings: Settings
) -> None:
    # Six tables, two slots: the names would favour t0 and t1 every tick.
    for n in range(6):
        put_item(clients, tick_settings, targetTableName=f"t{n}")
    _set_run_state(clients, tick_settings, "t0", lastRunStartedAt="2024-05-01T11:00:00+00:00")
    _set_run_state(clients, tick_settings, "t1", lastRunStartedAt="2024-05-01T10:00:00+00:00")
    limited = replace(tick_settings, max_concurrent_runs=2)
    first = start_tick(EVENT, clients, limited)
    assert [s["table"] for s in first["started"]] == ["t2", "t3"]  # never started: first
    assert [d["table"] for d in first["deferred"]] == ["t4", "t5", "t1", "t0"]


def test_every_table_loads_within_ceil_n_over_cap_ticks(
    clients: Clients, tick_settings: Settings
) -> None:
    """The starvation of name order: with 6 tables and a cap of 2, t2..t5 never loaded."""
    for n in range(6):
        put_item(clients, tick_settings, targetTableName=f"t{n}")
    limited = replace(tick_settings, max_concurrent_runs=2)
    loaded: list[list[str]] = []
    for minute in range(3):
        moment = f"2024-05-01T12:{minute:02d}:00Z"
        result = start_tick({"time": moment}, clients, limited)
        loaded.append([s["table"] for s in result["started"]])
        for table in loaded[-1]:  # what AcquireLock writes, then the run ends
            _set_run_state(clients, limited, table, lastRunStartedAt=moment)
        _finish_all(clients, limited.state_machine_arn)
    assert sorted(t for tick in loaded for t in tick) == [f"t{n}" for n in range(6)]
    assert all(len(tick) == 2 for tick in loaded)


def test_a_table_whose_run_is_going_is_deferred_without_a_slot(
    clients: Clients, tick_settings: Settings
) -> None:
    put_item(clients, tick_settings, targetTableName="busy")
    put_item(clients, tick_settings, targetTableName="idle")
    put_item(clients, tick_settings, targetTableName="stale")
    held_until = int(NOW.timestamp()) + 600
    _set_run_state(
        clients, tick_settings, "busy", lockOwner="busy-20240501T110000Z", lockExpiresAt=held_until
    )
    _set_run_state(
        clients, tick_settings, "stale", lockOwner="stale-old", lockExpiresAt=held_until - 7200
    )
    limited = replace(tick_settings, max_concurrent_runs=2)
    result = start_tick(EVENT, clients, limited, now=lambda: NOW)
    assert sorted(s["table"] for s in result["started"]) == ["idle", "stale"]  # expired lock
    assert result["deferred"] == [
        {
            "table": "busy",
            "reason": "run busy-20240501T110000Z is still going "
            "(lock held until 2024-05-01T12:10:00+00:00)",
        }
    ]


def test_instance_mode_stays_below_the_instance_cap(
    clients: Clients, tick_settings: Settings
) -> None:
    for n in range(5):
        put_item(clients, tick_settings, targetTableName=f"i{n}")
    put_item(clients, tick_settings, targetTableName="sls", replicationmode="serverless")
    capped = replace(tick_settings, replication_mode="instance", max_replication_instances=3)
    first = start_tick(EVENT, clients, capped)
    # The serverless table needs no instance: it starts although it sorts last.
    assert sorted(s["table"] for s in first["started"]) == ["i0", "i1", "i2", "sls"]
    assert [d["reason"] for d in first["deferred"]] == [
        "MAX_REPLICATION_INSTANCES=3 reached (instance mode)"
    ] * 2
    # Three instance-mode executions still run (their teardown counts too): nothing more.
    later = start_tick({"time": "2024-05-01T12:05:00Z"}, clients, capped)
    assert {s["table"] for s in later["started"]} == set()
    assert {d["table"] for d in later["deferred"]} == {"i0", "i1", "i2", "i3", "i4", "sls"}


def test_existing_mode_stays_below_the_shared_instance_task_cap(
    clients: Clients, tick_settings: Settings
) -> None:
    for n in range(4):
        put_item(clients, tick_settings, targetTableName=f"e{n}")
    capped = replace(tick_settings, replication_mode="existing", max_tasks_per_shared_instance=2)
    result = start_tick(EVENT, clients, capped)
    assert [s["table"] for s in result["started"]] == ["e0", "e1"]
    assert [d["reason"] for d in result["deferred"]] == [
        "MAX_TASKS_PER_SHARED_INSTANCE=2 reached (existing mode)"
    ] * 2


class _RefusingSfn:
    def __init__(self, sfn: Any, refuse: str, code: str) -> None:
        self._sfn, self._refuse, self._code = sfn, refuse, code

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sfn, name)

    def start_execution(self, **kwargs: Any) -> Any:
        if json.loads(kwargs["input"])["table"] == self._refuse:
            raise ClientError(
                {"Error": {"Code": self._code, "Message": "refused"}}, "StartExecution"
            )
        return self._sfn.start_execution(**kwargs)


def test_a_table_that_cannot_start_fails_the_tick_and_notifies(
    clients: Clients, tick_settings: Settings
) -> None:
    topic = clients.sns.create_topic(Name="deltaload")["TopicArn"]
    queue = clients.client("sqs").create_queue(QueueName="notes")["QueueUrl"]
    queue_arn = clients.client("sqs").get_queue_attributes(
        QueueUrl=queue, AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    clients.sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    put_item(clients, tick_settings, targetTableName="good")
    put_item(clients, tick_settings, targetTableName="bad")
    refusing = _RefusingSfn(clients.sfn, "bad", "AccessDeniedException")
    failing = Clients(
        overrides={"stepfunctions": refusing, "dynamodb": clients.dynamodb, "sns": clients.sns}
    )
    with pytest.raises(StartFailedError, match="bad: StartExecution failed") as raised:
        start_tick(EVENT, failing, replace(tick_settings, topic_arn=topic))
    summary = raised.value.summary
    assert [s["table"] for s in summary["started"]] == ["good"]  # the others still start
    assert summary["deferred"] == [] and [e["table"] for e in summary["errors"]] == ["bad"]
    messages = clients.client("sqs").receive_message(QueueUrl=queue)["Messages"]
    body = json.loads(messages[0]["Body"])
    assert "bad: StartExecution failed" in body["Message"] and "AccessDenied" in body["Message"]


def test_throttling_past_the_retries_is_a_deferral_not_an_error(
    clients: Clients, tick_settings: Settings
) -> None:
    put_item(clients, tick_settings, targetTableName="slow")
    throttling = _ThrottlingSfn(clients.sfn, failures=100)
    throttled = Clients(overrides={"stepfunctions": throttling, "dynamodb": clients.dynamodb})
    result = start_tick(EVENT, throttled, tick_settings, sleep=lambda _: None)
    assert result["errors"] == [] and result["started"] == []
    (entry,) = result["deferred"]
    assert entry["table"] == "slow" and entry["reason"].startswith("StartExecution throttled")
