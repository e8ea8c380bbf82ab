"""onboard's writes against DynamoDB (moto): one conditional write per item that keeps the
run state, all or nothing, refused while a run holds the lock (also when it takes it between
onboard's read and its write)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from deltaload import cli, items, store
from deltaload.aws import Clients
from deltaload.cli import _put_preserving_state
from deltaload.settings import Settings
from tests.workflow.conftest import NOW, ORDERS, get_item, put_item


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


# -- store.onboard_items: one conditional write per item, the run state kept -------------------

LOCKED_UNTIL = 4102444800  # 2100-01-01T00:00:00+00:00


def _onboard(clients: Clients, settings: Settings, *definitions: dict[str, Any], reset=False):
    return store.onboard_items(
        clients, settings.controller_table, list(definitions), reset=reset, now=NOW
    )


class _RunBetweenReadAndWrite:
    """A DynamoDB client on which ``change`` happens just after onboard has read the item."""

    def __init__(self, dynamodb: Any, change: Any) -> None:
        self._dynamodb, self._change = dynamodb, change

    def __getattr__(self, name: str) -> Any:
        return getattr(self._dynamodb, name)

    def get_item(self, **kwargs: Any) -> Any:
        answer = self._dynamodb.get_item(**kwargs)
        self._change()
        return answer


def test_a_held_lock_refuses_naming_the_table_the_run_and_the_expiry(
    clients: Clients, settings: Settings
) -> None:
    put_item(clients, settings, watermark="10", lockOwner="run-1", lockExpiresAt=LOCKED_UNTIL)
    before = get_item(clients, settings)
    for reset in (False, True):
        with pytest.raises(store.OnboardRefusedError) as refused:
            _onboard(clients, settings, _plain(description="x"), reset=reset)
        assert refused.value.refusals == [
            "orders: run run-1 holds the lock until 2100-01-01T00:00:00+00:00 "
            f"(epoch {LOCKED_UNTIL}); onboard again when it has finished"
        ]
        assert get_item(clients, settings) == before


def test_a_lock_taken_between_read_and_write_refuses_and_is_kept(
    clients: Clients, settings: Settings
) -> None:
    put_item(clients, settings, watermark="10")
    run = store.acquire_lock
    client = _RunBetweenReadAndWrite(
        clients.dynamodb, lambda: run(clients, settings, "orders", "run-9", NOW)
    )
    racing = Clients(overrides={"dynamodb": client})
    with pytest.raises(store.OnboardRefusedError) as refused:
        _onboard(racing, settings, _plain(description="x"))
    until = int(NOW.timestamp()) + settings.lock_timeout_seconds
    [message] = refused.value.refusals
    assert message.startswith("orders: run run-9 took the lock while onboarding")
    assert f"(epoch {until})" in message
    item = get_item(clients, settings)
    assert (item["lockOwner"], item["lockExpiresAt"], item["lastRunId"]) == (
        "run-9",
        until,
        "run-9",
    )
    assert "description" not in item


def test_a_run_ending_between_read_and_write_keeps_what_it_recorded(
    clients: Clients, settings: Settings
) -> None:
    # The run takes the lock, finds nothing new and releases it: the watermark is as read,
    # and onboard may write, but the run's state must survive the write.
    put_item(clients, settings, watermark="10", lastRunId="run-1", lastRunStatus="SUCCEEDED")

    def whole_run() -> None:
        store.acquire_lock(clients, settings, "orders", "run-2", NOW)
        store.record_success(
            clients, settings, "orders", "run-2", status=store.SKIPPED,
            previous_watermark="10", watermark=None, window={}, rows=0, files=0, now=NOW,
        )  # fmt: skip

    racing = Clients(overrides={"dynamodb": _RunBetweenReadAndWrite(clients.dynamodb, whole_run)})
    assert _onboard(racing, settings, _plain(description="x")) == ["orders"]
    item = get_item(clients, settings)
    assert (item["lastRunId"], item["lastRunStatus"]) == ("run-2", store.SKIPPED)
    assert (item["watermark"], item["description"]) == ("10", "x")


def test_the_new_definition_replaces_the_old_one_whole(
    clients: Clients, settings: Settings
) -> None:
    put_item(clients, settings, watermark="10", description="old", lastRunRows=3)
    assert _onboard(clients, settings, _plain(startvalue="5")) == ["orders"]
    item = get_item(clients, settings)
    assert "description" not in item  # dropped from the file, dropped from the item
    assert (item["startvalue"], item["watermark"], item["lastRunRows"]) == ("5", "10", 3)


def test_reset_drops_the_run_state_and_an_expired_lock(
    clients: Clients, settings: Settings
) -> None:
    put_item(
        clients, settings, watermark="10", lastRunId="run-1", lockOwner="run-1", lockExpiresAt=5
    )
    assert _onboard(clients, settings, _plain(), reset=True) == ["orders"]
    item = get_item(clients, settings)
    assert not set(item) & set(items.RUN_STATE_ATTRIBUTES)
    assert item == _plain()


@pytest.mark.parametrize("target", [["--table", "deltaload-controller"], ["--stack", "prod"]])
def test_onboard_into_a_deployed_table_uses_the_same_conditional_write(
    clients: Clients,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    target: list[str],
) -> None:
    # moto's CloudFormation needs extras this project does not install: the stack's output
    # is answered here, the rest of the path is the command's own.
    monkeypatch.setattr(
        cli,
        "remote_stack",
        lambda _clients=None: SimpleNamespace(
            controller_table={"prod": "deltaload-controller"}[cli.Options.stack]
        ),
    )
    file = tmp_path / "orders.json"
    file.write_text(json.dumps(ORDERS))
    put_item(clients, settings, watermark="10", lastRunId="run-1")
    written = CliRunner().invoke(cli.app, ["onboard", *target, str(file)])
    assert written.exit_code == 0, written.output
    assert "onboarded orders into deltaload-controller" in written.output
    kept = get_item(clients, settings)
    assert (kept["watermark"], kept["lastRunId"]) == ("10", "run-1")
    put_item(clients, settings, watermark="10", lockOwner="run-2", lockExpiresAt=LOCKED_UNTIL)
    refused = CliRunner().invoke(cli.app, ["onboard", *target, str(file)])
    assert refused.exit_code == 1
    assert "orders: run run-2 holds the lock until" in refused.output
    assert "nothing was written" in refused.output
