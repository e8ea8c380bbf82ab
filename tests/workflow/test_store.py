"""Lock, commit and failure records on the controller item (moto DynamoDB)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from deltaload import store
from deltaload.aws import Clients
from deltaload.settings import Settings
from tests.workflow.conftest import NOW, get_item, put_item

WINDOW = {"lower": "1", "upper": "10"}


def test_second_run_is_skipped_naming_the_holder(clients: Clients, settings: Settings) -> None:
    put_item(clients, settings)
    first = store.acquire_lock(clients, settings, "orders", "run-a", NOW)
    second = store.acquire_lock(clients, settings, "orders", "run-b", NOW + timedelta(minutes=5))
    assert first.acquired
    assert not second.acquired
    assert "run-a" in second.reason and second.owner == "run-a"
    item = get_item(clients, settings)
    assert item["lockOwner"] == "run-a" and item["lastRunStatus"] == "RUNNING"


def test_stale_lock_is_taken_over(clients: Clients, settings: Settings) -> None:
    put_item(clients, settings)
    store.acquire_lock(clients, settings, "orders", "run-a", NOW)
    later = NOW + timedelta(seconds=settings.lock_timeout_seconds + 1)
    taken = store.acquire_lock(clients, settings, "orders", "run-b", later)
    assert taken.acquired
    assert get_item(clients, settings)["lockOwner"] == "run-b"


def test_lock_is_reentrant_for_the_same_run(clients: Clients, settings: Settings) -> None:
    put_item(clients, settings)
    assert store.acquire_lock(clients, settings, "orders", "run-a", NOW).acquired
    assert store.acquire_lock(clients, settings, "orders", "run-a", NOW).acquired


def test_missing_item_is_an_error(clients: Clients, settings: Settings) -> None:
    with pytest.raises(store.ItemNotFoundError, match="ghost"):
        store.acquire_lock(clients, settings, "ghost", "run-a", NOW)


def _commit(clients: Clients, settings: Settings, run: str, previous: str | None, new: str):
    return store.record_success(
        clients,
        settings,
        "orders",
        run,
        status="SUCCEEDED",
        previous_watermark=previous,
        watermark=new,
        window=WINDOW,
        rows=10,
        files=1,
        now=NOW,
    )


def test_success_writes_watermark_and_releases_lock_in_one_write(
    clients: Clients, settings: Settings
) -> None:
    put_item(clients, settings)
    store.acquire_lock(clients, settings, "orders", "run-a", NOW)
    assert _commit(clients, settings, "run-a", None, "10") is True
    item = get_item(clients, settings)
    assert item["watermark"] == "10"
    assert "lockOwner" not in item and "lockExpiresAt" not in item
    assert item["lastRunStatus"] == "SUCCEEDED" and item["lastWindow"] == WINDOW
    # a retried RecordSuccess of the same run is recognised, not an error
    assert _commit(clients, settings, "run-a", None, "10") is False


def test_watermark_conditional_write_loses_when_watermark_moved(
    clients: Clients, settings: Settings
) -> None:
    put_item(clients, settings)
    store.acquire_lock(clients, settings, "orders", "run-a", NOW)
    # someone (an operator, a stale run) moved the watermark meanwhile
    clients.dynamodb.update_item(
        TableName=settings.controller_table,
        Key={"targetTableName": {"S": "orders"}},
        UpdateExpression="SET watermark = :w",
        ExpressionAttributeValues={":w": {"S": "5"}},
    )
    with pytest.raises(store.WatermarkConflictError, match="'5'"):
        _commit(clients, settings, "run-a", None, "10")
    assert get_item(clients, settings)["watermark"] == "5"


def test_commit_without_the_lock_is_refused(clients: Clients, settings: Settings) -> None:
    put_item(clients, settings, watermark="4")
    store.acquire_lock(clients, settings, "orders", "run-a", NOW)
    later = NOW + timedelta(seconds=settings.lock_timeout_seconds + 1)
    store.acquire_lock(clients, settings, "orders", "run-b", later)  # takes over the stale lock
    with pytest.raises(store.LockLostError, match="run-b"):
        _commit(clients, settings, "run-a", "4", "10")
    item = get_item(clients, settings)
    assert item["watermark"] == "4" and item["lockOwner"] == "run-b"


def test_failure_keeps_watermark_and_releases_only_its_own_lock(
    clients: Clients, settings: Settings
) -> None:
    put_item(clients, settings, watermark="4")
    store.acquire_lock(clients, settings, "orders", "run-a", NOW)
    assert not store.record_failure(
        clients, settings, "orders", "run-x", error="boom", window=None, now=NOW
    )
    assert get_item(clients, settings)["lockOwner"] == "run-a"
    assert store.record_failure(
        clients, settings, "orders", "run-a", error="LoadFailedError: boom", window=WINDOW, now=NOW
    )
    item = get_item(clients, settings)
    assert item["watermark"] == "4"
    assert item["lastRunStatus"] == "FAILED" and "boom" in item["lastRunError"]
    assert "lockOwner" not in item


def test_scan_follows_every_page(clients: Clients, settings: Settings) -> None:
    padding = "x" * 1000  # 1,100 items of ~1 KB: more than DynamoDB's 1 MB page
    for n in range(1100):
        put_item(clients, settings, targetTableName=f"t{n:04d}", description=padding)
    pages = clients.dynamodb.scan(TableName=settings.controller_table)
    assert "LastEvaluatedKey" in pages  # the first page alone would miss items
    assert len(list(store.scan(clients, settings.controller_table))) == 1100
