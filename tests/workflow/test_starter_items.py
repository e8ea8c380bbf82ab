"""The schedule tick and odd controller items: the sample's Y/N flags, values DynamoDB
cannot hand back, and items the validator cannot cope with."""

from __future__ import annotations

from typing import Any

import pytest

from deltaload import items, starter, store
from deltaload.aws import Clients
from deltaload.settings import Settings
from deltaload.starter import start_tick
from tests.workflow.conftest import NOW, ORDERS, TICK_EVENT, put_item

EVENT = TICK_EVENT


def test_the_published_samples_y_starts_and_n_is_switched_off(
    clients: Clients, tick_settings: Settings
) -> None:
    put_item(clients, tick_settings, targetTableName="sample_on", activeflag="Y")
    put_item(clients, tick_settings, targetTableName="sample_off", activeflag="N")
    put_item(clients, tick_settings, targetTableName="sample_off_broken", activeflag="n", x="1")
    put_item(clients, tick_settings, targetTableName="sample_yes", activeflag="YES")
    result = start_tick(EVENT, clients, tick_settings, now=lambda: NOW)
    assert [s["table"] for s in result["started"]] == ["sample_on"]
    assert [i["table"] for i in result["invalid"]] == ["sample_yes"]
    assert any(e.startswith("activeflag: found") for e in result["invalid"][0]["errors"])


def _scan_with(extra: list[dict[str, Any]]) -> Any:
    real = store.scan

    def scan(clients: Clients, table_name: str, **kwargs: Any) -> Any:
        yield from (items.from_dynamodb(raw) for raw in extra)
        yield from real(clients, table_name, **kwargs)

    return scan


def test_numbers_dynamodb_would_refuse_are_reported_and_the_rest_start(
    clients: Clients, tick_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # DynamoDB refuses these numbers, so only a table written some other way could hold
    # them; the starter must still report them rather than fail the whole tick.
    put_item(clients, tick_settings)
    bad = [
        items.to_dynamodb({**ORDERS, "targetTableName": f"bad_{n}"}) | {"startvalue": {"N": n}}
        for n in ("1e400", "abc")
    ]
    monkeypatch.setattr(store, "scan", _scan_with(bad))
    result = start_tick(EVENT, clients, tick_settings, now=lambda: NOW)
    assert [s["table"] for s in result["started"]] == ["orders"]
    reported = {i["table"]: i["errors"] for i in result["invalid"]}
    assert set(reported) == {"bad_1e400", "bad_abc"}
    assert all(e[0].startswith("startvalue: found the DynamoDB number") for e in reported.values())


def test_an_item_the_validator_cannot_handle_is_reported_and_the_rest_start(
    clients: Clients, tick_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    put_item(clients, tick_settings)
    put_item(clients, tick_settings, targetTableName="trips_validator")
    real = starter.parse_item

    def parse(raw: Any) -> Any:
        if raw.get("targetTableName") == "trips_validator":
            raise RecursionError("maximum recursion depth exceeded")
        return real(raw)

    monkeypatch.setattr(starter, "parse_item", parse)
    result = start_tick(EVENT, clients, tick_settings, now=lambda: NOW)
    assert [s["table"] for s in result["started"]] == ["orders"]
    [invalid] = result["invalid"]
    assert invalid["table"] == "trips_validator"
    assert "could not be validated" in invalid["errors"][0]
