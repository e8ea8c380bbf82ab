"""Controller and history tables: the run lock, run state, watermark and run history.

Every write that decides something is one conditional UpdateItem, so two runs of a
table can never both hold the lock, and a watermark only moves from the value the
run planned from, by the run that holds the lock.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError
from pydantic import Field

from deltaload import items
from deltaload.aws import Clients, error_code, transient_errors
from deltaload.errors import (
    InvalidItemError,
    ItemNotFoundError,
    LockHeldError,
    LockLostError,
    OnboardRefusedError,
    WatermarkConflictError,
)
from deltaload.runstate import DmsNames, Document, Lock
from deltaload.settings import Settings

KEY = "targetTableName"
RUNNING, SUCCEEDED, FAILED, SKIPPED = "RUNNING", "SUCCEEDED", "FAILED", "SKIPPED"
ERROR_TEXT_MAX = 2000


# --- the run history: one record per run, keys targetTableName and runId ---------------


class RecordedWindow(Document):
    """The window a run loaded, as the item's ``lastWindow`` and its history record say."""

    lower: str | None
    upper: str | None


class HistoryRecord(Document):
    """What every history record says: which run, its status, when it started and ended."""

    target_table_name: str
    run_id: str
    status: str
    started_at: str | None = None
    ended_at: str | None = None


class SkippedRecord(HistoryRecord):
    """A run that found the table locked by another run."""

    reason: str


class _PlannedRecord(HistoryRecord):
    """A run that got as far as its plan (or was found by its names after an abort)."""

    window: RecordedWindow | None = None
    window_text: str | None = None
    previous_watermark: str | None = None
    replication_mode: str
    dms_names: DmsNames


class SuccessRecord(_PlannedRecord):
    """A committed run (SUCCEEDED, or SKIPPED when it had nothing to do)."""

    skip_reason: str | None = None
    rows: int
    files: int
    bytes: int
    watermark: str | None
    manifest_key: str | None = None
    warnings: list[str] = Field(default_factory=list, exclude_if=lambda value: not value)
    # How the run changed the table's schema (deltaload.schema); absent when it did not.
    schema_changes: list[dict[str, Any]] = Field(
        default_factory=list, exclude_if=lambda value: not value
    )


class FailureRecord(_PlannedRecord):
    """A failed run; the watermark did not move."""

    error: str
    objects_deleted: int


class ResetRecord(HistoryRecord):
    """A deliberate move (or drop) of the watermark: who, when, the old and the new value."""

    status: str = "RESET"
    by: str
    previous_watermark: str | None
    watermark: str | None
    note: str


class RunningNote(Document):
    """Noted on the history record before any DMS resource is created, so an aborted run
    can still be torn down by name."""

    status: str = RUNNING
    replication_mode: str
    dms_names: DmsNames
    # A windowed run: how many windows (each a task and endpoint named by names.window_names).
    window_count: int | None = Field(default=None, exclude_if=lambda value: value is None)
    instance_count: int | None = Field(default=None, exclude_if=lambda value: value is None)


class PostCommitNote(Document):
    """A failure after the run committed (its output stays published)."""

    post_commit_error: str


def scan(clients: Clients, table_name: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
    """Every item of a table as plain JSON, following LastEvaluatedKey across pages."""
    paginator = clients.dynamodb.get_paginator("scan")
    with transient_errors():
        for page in paginator.paginate(TableName=table_name, **kwargs):
            for raw in page.get("Items", []):
                yield items.from_dynamodb(raw)


def get_item(clients: Clients, settings: Settings, table: str) -> dict[str, Any] | None:
    """The controller item of ``table`` as plain JSON (strongly consistent), or None."""
    raw = _read(clients, settings.controller_table, table)
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
) -> Lock:
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
        return Lock(
            acquired=False,
            reason=f"table {table!r} is locked by run {owner} until {until_text} (epoch {until})",
            owner=owner,
            expires_at=int(until) if until is not None else None,
        )
    return Lock(
        acquired=True, reason=f"lock taken by run {run_id}", owner=run_id, expires_at=expires
    )


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
    schema_manifest_key: str | None = None,
    schema_change: str | None = None,
) -> bool:
    """Commit a run: new watermark, run state and lock release in ONE conditional write.

    ``schema_manifest_key`` points at the manifest holding the table's schema after the
    run; ``schema_change`` (text) is set when the run changed it.

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
    if status == SUCCEEDED:  # what freshness counts from (a SKIPPED run loaded nothing)
        sets.append("lastSucceededAt = :ended")
    if schema_manifest_key is not None:
        sets.append("schemaManifestKey = :schemaKey")
        values[":schemaKey"] = schema_manifest_key
    if schema_change is not None:
        sets.append("lastSchemaChange = :schemaChange")
        values[":schemaChange"] = schema_change[:ERROR_TEXT_MAX]
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


def put_history(clients: Clients, settings: Settings, record: HistoryRecord) -> None:
    """Write (or overwrite) the history record of one run: keys targetTableName and runId."""
    plain = {k: v for k, v in record.document().items() if v is not None}
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
    clients: Clients, settings: Settings, table: str, run_id: str, note: Document
) -> None:
    """Set attributes on a run's history record (created if absent), keeping the rest."""
    values = note.document()
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


# -- onboarding ----------------------------------------------------------------------------------

# DynamoDB's TransactWriteItems takes at most 100 actions and applies all or none:
# https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactWriteItems.html
TRANSACTION_MAX_ITEMS = 100
LOCK_ATTRIBUTES = ("lockOwner", "lockExpiresAt")
# A lock is held while its owner is set and its expiry is a number not yet passed; an
# expiry that is not a number counts as expired (as the starter and the recovery read it).
LOCK_FREE = (
    "(attribute_not_exists(lockOwner) OR NOT attribute_type(lockExpiresAt, :number)"
    " OR lockExpiresAt < :now)"
)


def onboard_items(
    clients: Clients,
    controller_table: str,
    definitions: list[dict[str, Any]],
    *,
    reset: bool,
    now: datetime,
) -> list[str]:
    """Write validated item definitions, keeping each table's run state unless ``reset``.

    Each item is read first to refuse, before anything is written, a table whose run holds
    its lock or whose watermark belongs to another filter. The write of each item is then
    ONE conditional UpdateItem (all items in one transaction): it sets the definition and
    never the run state, on condition that no lock is held and the watermark is the one
    checked, so a run that takes the lock in between refuses the whole command instead of
    losing its lock. Returns the tables written; OnboardRefusedError says why not.
    """
    epoch = int(now.timestamp())
    updates: list[dict[str, Any]] = []
    refusals: list[str] = []
    for definition in definitions:
        table = definition[KEY]
        raw = _read(clients, controller_table, table)
        existing = items.from_dynamodb(raw)
        refusal = _lock_refusal(table, existing, epoch) or _watermark_refusal(
            definition, existing, reset
        )
        if refusal:
            refusals.append(refusal)
            continue
        updates.append(_onboard_update(controller_table, definition, raw, reset, epoch))
    if refusals:
        raise OnboardRefusedError(refusals)
    written: list[str] = []
    for start in range(0, len(updates), TRANSACTION_MAX_ITEMS):
        chunk = updates[start : start + TRANSACTION_MAX_ITEMS]
        try:
            with transient_errors():
                clients.dynamodb.transact_write_items(TransactItems=chunk)
        except ClientError as error:
            if error_code(error) != "TransactionCanceledException":
                raise
            raise OnboardRefusedError(
                _race_refusals(clients, controller_table, chunk, error, epoch), written
            ) from None
        written += [items.from_dynamodb(u["Update"]["Key"])[KEY] for u in chunk]
    return written


def _lock_refusal(table: str, existing: Mapping[str, Any], epoch: int) -> str | None:
    """Why a held lock refuses onboarding ``table``, naming its run and expiry, or None."""
    owner = existing.get("lockOwner")
    try:
        until = int(existing.get("lockExpiresAt"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if not owner or until <= epoch:
        return None
    return (
        f"{table}: run {owner} holds the lock until "
        f"{datetime.fromtimestamp(until, UTC).isoformat()} (epoch {until}); "
        "onboard again when it has finished"
    )


def _watermark_refusal(
    definition: Mapping[str, Any], existing: Mapping[str, Any], reset: bool
) -> str | None:
    """Why the recorded watermark cannot stay on the new definition, or None."""
    watermark = existing.get("watermark")
    if reset or watermark is None:
        return None
    reason = _watermark_mismatch(definition, existing)
    if reason is None:
        return None
    return (
        f"{definition[KEY]}: the recorded watermark {watermark!r} {reason}; pass --reset to "
        "drop it (and the run state) so the next run starts from startvalue, "
        "or onboard the item with its previous filter"
    )


def _watermark_mismatch(definition: Mapping[str, Any], existing: Mapping[str, Any]) -> str | None:
    """Why the existing watermark does not fit the new definition, or None when it does."""
    old_column = existing.get("filtercolumn")
    if old_column != definition.get("filtercolumn"):
        return (
            f"was recorded on filter column {old_column!r}, not {definition.get('filtercolumn')!r}"
        )
    try:
        old_item = items.parse_item(dict(existing))
    except InvalidItemError:
        old_item = None
    new_kind = definition.get("filtercolumntype")
    if old_item is not None and old_item.filter_column_type.value != new_kind:
        return (
            f"was recorded for {old_item.filter_column_type.value} values of {old_column!r}, "
            f"not {new_kind} ones"
        )
    try:
        items.parse_item({**definition, "watermark": existing["watermark"]})
    except InvalidItemError as error:
        return "does not fit the new item (" + "; ".join(str(p) for p in error.problems) + ")"
    return None


def _onboard_update(
    controller_table: str,
    definition: Mapping[str, Any],
    raw: Mapping[str, Any],
    reset: bool,
    epoch: int,
) -> dict[str, Any]:
    """The TransactWriteItems Update writing one definition, conditioned on what was read.

    It sets the definition's attributes and removes every other definition attribute (the
    new definition replaces the old one whole), plus the lock (held by no one, or expired)
    and, with ``reset``, the rest of the run state; the run state it keeps is never
    rewritten, so nothing a run records in between is lost.
    """
    values = {k: v for k, v in definition.items() if k not in items.RUN_STATE_ATTRIBUTES}
    values.pop(KEY)
    dropped = items.RUN_STATE_ATTRIBUTES if reset else LOCK_ATTRIBUTES
    removed = sorted(
        {
            name
            for name in (*items.KNOWN_ATTRIBUTES, *raw)
            if name != KEY
            and name not in values
            and (name in dropped or name not in items.RUN_STATE_ATTRIBUTES)
        }
    )
    names = {f"#s{i}": name for i, name in enumerate(values)}
    names |= {f"#r{i}": name for i, name in enumerate(removed)}
    expression = "SET " + ", ".join(f"#s{i} = :s{i}" for i in range(len(values)))
    if removed:
        expression += " REMOVE " + ", ".join(f"#r{i}" for i in range(len(removed)))
    placeholders = items.to_dynamodb({f":s{i}": v for i, v in enumerate(values.values())})
    placeholders |= {":now": {"N": str(epoch)}, ":number": {"S": "N"}}
    condition = LOCK_FREE
    if "watermark" in raw:
        condition += " AND watermark = :seen"
        placeholders[":seen"] = raw["watermark"]
    else:
        condition += " AND attribute_not_exists(watermark)"
    return {
        "Update": {
            "TableName": controller_table,
            "Key": items.to_dynamodb({KEY: definition[KEY]}),
            "UpdateExpression": expression,
            "ConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": placeholders,
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
    }


def _race_refusals(
    clients: Clients,
    controller_table: str,
    chunk: list[dict[str, Any]],
    error: ClientError,
    epoch: int,
) -> list[str]:
    """What changed on each table between onboard's read and its write (a run took the lock,
    or the watermark moved), from the transaction's cancellation reasons."""
    reasons = error.response.get("CancellationReasons") or []
    refusals: list[str] = []
    for update, reason in zip(chunk, reasons, strict=False):
        if reason.get("Code") in (None, "None"):
            continue
        table = items.from_dynamodb(update["Update"]["Key"])[KEY]
        if reason.get("Code") != "ConditionalCheckFailed":
            refusals.append(f"{table}: the write was cancelled ({reason.get('Message')})")
            continue
        current = items.from_dynamodb(reason.get("Item") or _read(clients, controller_table, table))
        lock = _lock_refusal(table, current, epoch)
        refusals.append(
            lock.replace(" holds the lock", " took the lock while onboarding, and holds it")
            if lock
            else f"{table}: a run recorded the watermark {current.get('watermark')!r} while "
            "onboarding; onboard again"
        )
    return refusals or [f"the onboarding transaction was cancelled ({error})"]


def _read(clients: Clients, controller_table: str, table: str) -> dict[str, Any]:
    """The controller item of ``table`` as DynamoDB JSON (strongly consistent), or {}."""
    with transient_errors():
        response = clients.dynamodb.get_item(
            TableName=controller_table,
            Key=items.to_dynamodb({KEY: table}),
            ConsistentRead=True,
        )
    return dict(response.get("Item", {}))


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
    record = ResetRecord(
        target_table_name=table,
        run_id="reset-" + now.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%f")[:-3] + "Z",
        started_at=now.isoformat(),
        ended_at=now.isoformat(),
        by=who,
        previous_watermark=previous,
        watermark=new,
        note=(
            f"watermark moved from {previous!r} to {new!r}"
            if new is not None
            else f"watermark {previous!r} dropped: the next run starts at startvalue"
        ),
    )
    put_history(clients, settings, record)
    return {k: v for k, v in record.document().items() if v is not None}


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
