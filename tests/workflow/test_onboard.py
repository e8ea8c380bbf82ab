"""onboard's writes against DynamoDB (moto): conditioned on what was read, all or nothing."""

from __future__ import annotations

from typing import Any

import pytest
import typer

from deltaload import items
from deltaload.aws import Clients
from deltaload.cli import _put_preserving_state
from deltaload.settings import Settings
from tests.workflow.conftest import ORDERS, get_item, put_item


class _RunStartsAfterTheRead:
    """A DynamoDB client where a run takes a table's lock just after onboard has read it."""

    def __init__(self, dynamodb: Any, table_name: str, table: str) -> None:
        self._dynamodb, self._table_name, self._table = dynamodb, table_name, table

    def __getattr__(self, name: str) -> Any:
        return getattr(self._dynamodb, name)

    def get_item(self, **kwargs: Any) -> Any:
        answer = self._dynamodb.get_item(**kwargs)
        if kwargs["Key"]["targetTableName"]["S"] == self._table:
            self._dynamodb.update_item(
                TableName=self._table_name,
                Key=kwargs["Key"],
                UpdateExpression="SET lockOwner = :run, lockExpiresAt = :until, watermark = :w",
                ExpressionAttributeValues={
                    ":run": {"S": "run-9"},
                    ":until": {"N": "9999999999"},
                    ":w": {"S": "77"},
                },
            )
        return answer


def _plain(**changes: Any) -> dict[str, Any]:
    return items.parse_item({**ORDERS, **changes}).to_plain()


def test_a_run_starting_between_read_and_write_refuses_every_write(
    clients: Clients, settings: Settings
) -> None:
    put_item(clients, settings, watermark="10")
    client = _RunStartsAfterTheRead(clients.dynamodb, settings.controller_table, "orders")
    new = _plain(targetTableName="customers")
    with pytest.raises(typer.Exit):
        _put_preserving_state(client, settings.controller_table, [new, _plain()], reset=False)
    assert get_item(clients, settings)["watermark"] == "77"  # the run's, not overwritten
    missing = clients.dynamodb.get_item(
        TableName=settings.controller_table, Key={"targetTableName": {"S": "customers"}}
    )
    assert "Item" not in missing  # nothing of the command was written


def test_an_unreadable_lock_expiry_counts_as_expired(clients: Clients, settings: Settings) -> None:
    put_item(clients, settings, watermark="10", lockOwner="run-1", lockExpiresAt="soon")
    written = _put_preserving_state(
        clients.dynamodb, settings.controller_table, [_plain(description="x")], reset=False
    )
    assert written == ["orders"]
    item = get_item(clients, settings)
    assert (item["description"], item["watermark"]) == ("x", "10")
    assert "lockOwner" not in item
