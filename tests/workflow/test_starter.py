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
from deltaload.starter import start_tick
from tests.workflow.conftest import NOW, ORDERS, put_item

EVENT = {"id": "evt-1", "time": "2024-05-01T12:00:41Z", "detail-type": "Scheduled Event"}


@pytest.fixture
def tick_settings(clients: Clients, settings: Settings) -> Settings:
    arn = clients.sfn.create_state_machine(
        name="load",
        definition=json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}),
        roleArn="arn:aws:iam::123456789012:role/sfn",
    )["stateMachineArn"]
    return replace(settings, state_machine_arn=arn)


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
    assert [d["table"] for d in first["deferred"]] == ["d"]
    later = start_tick({"time": "2024-05-01T12:05:00Z"}, clients, limited)
    assert later["started"] == [] and len(later["deferred"]) == 4  # 3 still RUNNING
