"""Controller and history tables: the run lock, run state, watermark and run history.

Every write that decides something is one conditional UpdateItem, so two runs of a
table can never both hold the lock, and a watermark only moves from the value the
run planned from, by the run that holds the lock.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from deltaload import items
from deltaload.aws import Clients, error_code, transient_errors
from deltaload.errors import DeltaloadError
from deltaload.settings import Settings

KEY = "targetTableName"
RUNNING, SUCCEEDED, FAILED, SKIPPED = "RUNNING", "SUCCEEDED", "FAILED", "SKIPPED"
ERROR_TEXT_MAX = 2000


class ItemNotFoundError(DeltaloadError):
    """There is no controller item for the table a run was started for."""


class LockLostError(DeltaloadError):
    """The run no longer holds the table's lock (it expired and another run took it)."""


class WatermarkConflictError(DeltaloadError):
    """The watermark moved since the run planned its window; the run must not commit."""


@dataclass(frozen=True)
class LockResult:
    """The outcome of a lock attempt; ``reason`` says why when it was not acquired."""

    acquired: bool
    reason: str
    owner: str | None
    expires_at: int | None

    def to_dict(self) -> dict[str, Any]:
        """JSON form for the state document."""
        return {
            "acquired": self.acquired,
            "reason": self.reason,
            "owner": self.owner,
            "expiresAt": self.expires_at,
        }


def scan(clients: Clients, table_name: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
    """Every item of a table as plain JSON, following LastEvaluatedKey across pages."""
    paginator = clients.dynamodb.get_paginator("scan")
    with transient_errors():
        for page in paginator.paginate(TableName=table_name, **kwargs):
            for raw in page.get("Items", []):
                yield items.from_dynamodb(raw)


def get_item(clients: Clients, settings: Settings, table: str) -> dict[str, Any] | None:
    """The controller item of ``table`` as plain JSON (strongly consistent), or None."""
    with transient_errors():
        response = clients.dynamodb.get_item(
            TableName=settings.controller_table,
            Key=items.to_dynamodb({KEY: table}),
            ConsistentRead=True,
        )
    raw = response.get("Item")
    return items.from_dynamodb(raw) if raw else None


def load_item(clients: Clients, settings: Settings, table: str) -> items.ControllerItem:
    """The validated controller item of ``table``; ItemNotFoundError or InvalidItemError."""
    plain = get_item(clients, settings, table)
    if plain is None:
        raise ItemNotFoundError(
            f"table {table!r}: no controller item in {settings.controller_table}"
        )
    return items.parse_item(plain)


def acquire_lock(
    clients: Clients, settings: Settings, table: str, run_id: str, now: datetime
) -> LockResult:
    """Take the table's lock for ``run_id`` unless another unexpired run holds it."""
    epoch = int(now.timestamp())
    expires = epoch + settings.lock_timeout_seconds
    try:
        _update(
            clients,
            settings.controller_table,
            table,
            "SET lockOwner = :run, lockExpiresAt = :expires, lastRunId = :run, "
            "lastRunStatus = :running, lastRunStartedAt = :started "
            "REMOVE lastRunError, lastRunEndedAt",
            "attribute_exists(targetTableName) AND (attribute_not_exists(lockOwner) "
            "OR lockOwner = :run OR attribute_not_exists(lockExpiresAt) "
            "OR lockExpiresAt < :now)",
            {
                ":run": run_id,
                ":expires": expires,
                ":running": RUNNING,
                ":started": now.isoformat(),
                ":now": epoch,
            },
        )
    except ClientError as error:
        if error_code(error) != "ConditionalCheckFailedException":
            raise
        current = get_item(clients, settings, table)
        if current is None:
            raise ItemNotFoundError(
                f"table {table!r}: no controller item in {settings.controller_table}"
            ) from None
        owner = current.get("lockOwner")
        until = current.get("lockExpiresAt")
        until_text = datetime.fromtimestamp(int(until), UTC).isoformat() if until else "unknown"
        return LockResult(
            False,
            f"table {table!r} is locked by run {owner} until {until_text} (epoch {until})",
            owner,
            int(until) if until is not None else None,
        )
    return LockResult(True, f"lock taken by run {run_id}", run_id, expires)


def record_success(
    clients: Clients,
    settings: Settings,
    table: str,
    run_id: str,
    *,
    status: str,
    previous_watermark: str | None,
    watermark: str | None,
    window: Mapping[str, Any],
    rows: int,
    files: int,
    now: datetime,
) -> bool:
    """Commit a run: new watermark, run state and lock release in ONE conditional write.

    Returns False when this run had already committed (a retried call). Raises
    LockLostError when another run holds the lock, WatermarkConflictError when the
    watermark is no longer ``previous_watermark``.
    """
    values: dict[str, Any] = {
        ":run": run_id,
        ":status": status,
        ":window": dict(window),
        ":rows": rows,
        ":files": files,
        ":ended": now.isoformat(),
    }
    sets = [
        "lastRunStatus = :status",
        "lastWindow = :window",
        "lastRunRows = :rows",
        "lastRunFiles = :files",
        "lastRunEndedAt = :ended",
    ]
    if watermark is not None:
        sets.append("watermark = :watermark")
        values[":watermark"] = watermark
    if previous_watermark is None:
        condition = "lockOwner = :run AND attribute_not_exists(watermark)"
    else:
        condition = "lockOwner = :run AND watermark = :previous"
        values[":previous"] = previous_watermark
    try:
        _update(
            clients,
            settings.controller_table,
            table,
            "SET " + ", ".join(sets) + " REMOVE lockOwner, lockExpiresAt, lastRunError",
            condition,
            values,
        )
    except ClientError as error:
        if error_code(error) != "ConditionalCheckFailedException":
            raise
        current = get_item(clients, settings, table) or {}
        if _committed(current, run_id):
            return False
        if current.get("lockOwner") != run_id:
            raise LockLostError(
                f"table {table!r}: run {run_id} no longer holds the lock "
                f"(held by {current.get('lockOwner')}); the watermark was not moved"
            ) from None
        raise WatermarkConflictError(
            f"table {table!r}: watermark is {current.get('watermark')!r} but run {run_id} "
            f"planned from {previous_watermark!r}; the watermark was not moved"
        ) from None
    return True


def record_failure(
    clients: Clients,
    settings: Settings,
    table: str,
    run_id: str,
    *,
    error: str,
    window: Mapping[str, Any] | None,
    now: datetime,
) -> bool:
    """Mark the run FAILED and release the lock, only if this run holds it; never the watermark.

    Returns whether the item was updated (False: another run holds the lock, or none).
    """
    values: dict[str, Any] = {
        ":run": run_id,
        ":failed": FAILED,
        ":error": error[:ERROR_TEXT_MAX],
        ":ended": now.isoformat(),
    }
    sets = "lastRunStatus = :failed, lastRunError = :error, lastRunEndedAt = :ended"
    if window is not None:
        sets += ", lastWindow = :window"
        values[":window"] = dict(window)
    try:
        _update(
            clients,
            settings.controller_table,
            table,
            f"SET {sets} REMOVE lockOwner, lockExpiresAt",
            "lockOwner = :run",
            values,
        )
    except ClientError as exc:
        if error_code(exc) != "ConditionalCheckFailedException":
            raise
        return False
    return True


def run_committed(clients: Clients, settings: Settings, table: str, run_id: str) -> bool:
    """True when ``run_id`` has recorded its success on the item (its output must stay)."""
    return _committed(get_item(clients, settings, table) or {}, run_id)


def _committed(item: Mapping[str, Any], run_id: str) -> bool:
    return (
        item.get("lastRunId") == run_id
        and item.get("lastRunStatus") in (SUCCEEDED, SKIPPED)
        and item.get("lockOwner") != run_id
    )


def put_history(clients: Clients, settings: Settings, record: Mapping[str, Any]) -> None:
    """Write (or overwrite) the history record of one run: keys targetTableName and runId."""
    plain = {k: v for k, v in record.items() if v is not None}
    with transient_errors():
        clients.dynamodb.put_item(TableName=settings.history_table, Item=items.to_dynamodb(plain))


def get_history(
    clients: Clients, settings: Settings, table: str, run_id: str
) -> dict[str, Any] | None:
    """The history record of one run, or None."""
    with transient_errors():
        response = clients.dynamodb.get_item(
            TableName=settings.history_table,
            Key=items.to_dynamodb({KEY: table, "runId": run_id}),
            ConsistentRead=True,
        )
    raw = response.get("Item")
    return items.from_dynamodb(raw) if raw else None


def note_history(
    clients: Clients, settings: Settings, table: str, run_id: str, values: Mapping[str, Any]
) -> None:
    """Set attributes on a run's history record (created if absent), keeping the rest."""
    names = {f"#a{i}": name for i, name in enumerate(values)}
    placeholders = {f":a{i}": value for i, value in enumerate(values.values())}
    expression = "SET " + ", ".join(f"#a{i} = :a{i}" for i in range(len(values)))
    with transient_errors():
        clients.dynamodb.update_item(
            TableName=settings.history_table,
            Key=items.to_dynamodb({KEY: table, "runId": run_id}),
            UpdateExpression=expression,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=items.to_dynamodb(placeholders),
        )


def _update(
    clients: Clients,
    table_name: str,
    table: str,
    expression: str,
    condition: str,
    values: Mapping[str, Any],
) -> None:
    with transient_errors():
        clients.dynamodb.update_item(
            TableName=table_name,
            Key=items.to_dynamodb({KEY: table}),
            UpdateExpression=expression,
            ConditionExpression=condition,
            ExpressionAttributeValues=items.to_dynamodb(values),
        )


class LockHeldError(DeltaloadError):
    """A run holds the table's lock: the command must wait until it has finished."""


RESET = "RESET"


def reset_watermark(
    clients: Clients,
    settings: Settings,
    table: str,
    to: str | None,
    *,
    who: str,
    now: datetime,
) -> dict[str, Any]:
    """Move the watermark to ``to`` (or drop it, with None) and record it in the history.

    ``to`` is checked against the item as a recorded watermark would be (its kind, its
    operator). The write is conditional on no unexpired run lock and on the watermark being
    the one read, so a run starting meanwhile refuses it (LockHeldError). Returns the
    history record written: who, when, the previous and the new watermark.
    """
    current = get_item(clients, settings, table)
    if current is None:
        raise ItemNotFoundError(
            f"table {table!r}: no controller item in {settings.controller_table}"
        )
    epoch = int(now.timestamp())
    _refuse_if_locked(current, table, epoch)
    previous = current.get("watermark")
    new = None
    if to is not None:
        moved = {k: v for k, v in current.items() if k not in ("lockOwner", "lockExpiresAt")}
        new = items.parse_item({**moved, "watermark": to}).watermark
    values: dict[str, Any] = {":now": epoch, ":number": "N"}
    # A lock whose expiry is not a number counts as expired, as onboard reads it.
    condition = (
        "attribute_exists(targetTableName) AND (attribute_not_exists(lockOwner) "
        "OR NOT attribute_type(lockExpiresAt, :number) OR lockExpiresAt < :now)"
    )
    if previous is None:
        condition += " AND attribute_not_exists(watermark)"
    else:
        condition += " AND watermark = :seen"
        values[":seen"] = previous
    if new is None:
        expression = "REMOVE watermark"
    else:
        expression = "SET watermark = :new"
        values[":new"] = new
    try:
        _update(clients, settings.controller_table, table, expression, condition, values)
    except ClientError as error:
        if error_code(error) != "ConditionalCheckFailedException":
            raise
        again = get_item(clients, settings, table) or {}
        _refuse_if_locked(again, table, epoch)
        raise WatermarkConflictError(
            f"table {table!r}: the watermark changed from {previous!r} to "
            f"{again.get('watermark')!r} while resetting; nothing was written, reset again"
        ) from None
    record = {
        KEY: table,
        "runId": "reset-" + now.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%f")[:-3] + "Z",
        "status": RESET,
        "startedAt": now.isoformat(),
        "endedAt": now.isoformat(),
        "by": who,
        "previousWatermark": previous,
        "watermark": new,
        "note": (
            f"watermark moved from {previous!r} to {new!r}"
            if new is not None
            else f"watermark {previous!r} dropped: the next run starts at startvalue"
        ),
    }
    put_history(clients, settings, record)
    return {k: v for k, v in record.items() if v is not None}


def _refuse_if_locked(item: Mapping[str, Any], table: str, epoch: int) -> None:
    owner = item.get("lockOwner")
    try:
        until = int(item.get("lockExpiresAt"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return  # an unreadable expiry counts as expired
    if owner and until > epoch:
        when = datetime.fromtimestamp(until, UTC).isoformat()
        raise LockHeldError(
            f"table {table!r}: run {owner} holds the lock (until {when}); nothing was "
            "written: reset when it has finished"
        )
