"""store.reset_watermark against DynamoDB (moto): refused under a run's lock, recorded."""

from __future__ import annotations

from typing import Any

import pytest

from deltaload import store
from deltaload.aws import Clients
from deltaload.errors import InvalidItemError
from deltaload.settings import Settings
from tests.workflow.conftest import NOW, get_item, put_item

LOCKED_UNTIL = int(NOW.timestamp()) + 600


def _history(clients: Clients, settings: Settings) -> list[dict[str, Any]]:
    return list(store.scan(clients, settings.history_table))


def test_reset_is_refused_while_a_run_holds_the_lock(clients: Clients, settings: Settings):
    put_item(clients, settings, watermark="10", lockOwner="run-7", lockExpiresAt=LOCKED_UNTIL)
    with pytest.raises(store.LockHeldError, match="run run-7 holds the lock"):
        store.reset_watermark(clients, settings, "orders", "5", who="ana@host", now=NOW)
    assert get_item(clients, settings)["watermark"] == "10"
    assert _history(clients, settings) == []


def test_a_run_taking_the_lock_after_the_read_refuses_the_reset(
    clients: Clients, settings: Settings
):
    put_item(clients, settings, watermark="10")

    class RunStartsAfterTheRead:
        def __getattr__(self, name: str) -> Any:
            return getattr(clients.dynamodb, name)

        def update_item(self, **kwargs: Any) -> Any:
            store.acquire_lock(clients, settings, "orders", "run-8", NOW)
            return clients.dynamodb.update_item(**kwargs)

    racing = Clients(overrides={"dynamodb": RunStartsAfterTheRead()})
    with pytest.raises(store.LockHeldError, match="run run-8 holds the lock"):
        store.reset_watermark(racing, settings, "orders", None, who="ana@host", now=NOW)
    assert get_item(clients, settings)["watermark"] == "10"
    assert _history(clients, settings) == []


def test_an_expired_lock_does_not_refuse_it(clients: Clients, settings: Settings):
    put_item(clients, settings, watermark="10", lockOwner="run-7", lockExpiresAt=1)
    record = store.reset_watermark(clients, settings, "orders", "5", who="ana@host", now=NOW)
    assert get_item(clients, settings)["watermark"] == "5"
    assert record["previousWatermark"] == "10"


def test_reset_records_who_when_old_and_new(clients: Clients, settings: Settings):
    put_item(clients, settings, watermark="10")
    record = store.reset_watermark(clients, settings, "orders", "0005", who="ana@host", now=NOW)
    [stored] = _history(clients, settings)
    assert stored == record
    assert (stored["status"], stored["by"], stored["startedAt"]) == (
        "RESET",
        "ana@host",
        NOW.isoformat(),
    )
    # The new value is kept in the item's canonical form, as a run would record it.
    assert (stored["previousWatermark"], stored["watermark"]) == ("10", "5")
    assert get_item(clients, settings)["watermark"] == "5"


def test_drop_removes_the_watermark(clients: Clients, settings: Settings):
    put_item(clients, settings, watermark="10")
    record = store.reset_watermark(clients, settings, "orders", None, who="ana@host", now=NOW)
    assert "watermark" not in get_item(clients, settings)
    assert "watermark" not in record and record["previousWatermark"] == "10"


def test_a_value_the_item_cannot_hold_is_refused(clients: Clients, settings: Settings):
    put_item(clients, settings, watermark="10")
    with pytest.raises(InvalidItemError, match="watermark"):
        store.reset_watermark(clients, settings, "orders", "abc", who="ana@host", now=NOW)
    assert get_item(clients, settings)["watermark"] == "10"


def test_an_unknown_table(clients: Clients, settings: Settings):
    with pytest.raises(store.ItemNotFoundError, match="'nope'"):
        store.reset_watermark(clients, settings, "nope", None, who="ana@host", now=NOW)
