"""The schedule tick: start one execution per valid active controller item.

The execution name is ``<sanitised table>-<tick>`` (tick = the schedule event's time to
the second), so a redelivered event cannot start a table twice: Step Functions refuses
the duplicate name. Invalid items are reported with every problem and never started.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from deltaload import backoff, names, store
from deltaload.aws import Clients, error_code, is_throttling
from deltaload.errors import InvalidItemError
from deltaload.items import active_flag, parse_item
from deltaload.observability import logger, starter_metrics
from deltaload.settings import Settings
from deltaload.workflow import utcnow

START_ATTEMPTS = 6


def _is_switched_off(raw: Mapping[str, Any]) -> bool:
    """True only for a valid false activeflag (false, "false" or the sample's "N"). A missing
    or malformed flag is not "off": the item is validated and reported as invalid instead."""
    return active_flag(raw.get("activeflag")) is False


def event_tick(event: Mapping[str, Any], now: datetime) -> str:
    """The tick of a schedule event (its ``time``), or of ``now`` for a manual invoke."""
    when = event.get("time")
    if isinstance(when, str) and when:
        return names.tick(datetime.fromisoformat(when.replace("Z", "+00:00")))
    return names.tick(now)


def running_executions(clients: Clients, state_machine_arn: str) -> int:
    """How many executions of the state machine are RUNNING (all pages)."""
    paginator = clients.sfn.get_paginator("list_executions")
    count = 0
    for page in paginator.paginate(stateMachineArn=state_machine_arn, statusFilter="RUNNING"):
        count += len(page.get("executions", []))
    return count


def _start(
    clients: Clients,
    state_machine_arn: str,
    name: str,
    payload: dict[str, Any],
    sleep: Callable[[float], None],
) -> str:
    """Start one execution; 'started' or 'exists'. Throttling is retried with backoff.

    StartExecution is idempotent for a RUNNING execution with the same name and input
    (it answers success), so an existing execution is looked up first to report it.
    """
    execution_arn = state_machine_arn.replace(":stateMachine:", ":execution:", 1) + ":" + name
    for attempt in range(START_ATTEMPTS):
        try:
            try:
                clients.sfn.describe_execution(executionArn=execution_arn)
                return "exists"
            except ClientError as error:
                if error_code(error) != "ExecutionDoesNotExist":
                    raise
            clients.sfn.start_execution(
                stateMachineArn=state_machine_arn, name=name, input=json.dumps(payload)
            )
            return "started"
        except ClientError as error:
            if error_code(error) == "ExecutionAlreadyExists":
                return "exists"
            if not is_throttling(error) or attempt == START_ATTEMPTS - 1:
                raise
            sleep(backoff.next_wait(attempt, 1, 20))
    raise AssertionError("unreachable")  # pragma: no cover


def start_tick(
    event: dict,
    clients: Clients,
    settings: Settings,
    *,
    now: Callable[[], datetime] = utcnow,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Start this tick's runs. Returns {"started", "skipped", "invalid", "deferred"}."""
    state_machine_arn = settings.require("state_machine_arn")
    tick = event_tick(event or {}, now())
    only = event.get("tables") if isinstance(event, Mapping) else None
    wanted = {str(t) for t in only} if only else None

    candidates: list[str] = []
    invalid: list[dict[str, Any]] = []
    for raw in store.scan(clients, settings.controller_table):
        table = str(raw.get("targetTableName", ""))
        if wanted is not None and table not in wanted:
            continue
        if _is_switched_off(raw):
            continue
        try:
            parse_item(raw)
        except InvalidItemError as error:
            invalid.append(
                {
                    "table": table or "<missing targetTableName>",
                    "errors": [str(p) for p in error.problems],
                }
            )
            continue
        except Exception as error:  # a validator bug must not stop the other tables
            logger.exception("controller item could not be validated", extra={"table": table})
            invalid.append(
                {
                    "table": table or "<missing targetTableName>",
                    "errors": [f"<item>: found {error!r}; the item could not be validated"],
                }
            )
            continue
        candidates.append(table)
    candidates.sort()

    capacity = None
    if settings.max_concurrent_runs:
        running = running_executions(clients, state_machine_arn)
        capacity = max(0, settings.max_concurrent_runs - running)

    started: list[dict[str, str]] = []
    skipped: list[dict[str, str]] = []
    deferred: list[dict[str, str]] = []
    for table in candidates:
        name = names.execution_name(table, tick)
        if capacity is not None and len(started) >= capacity:
            deferred.append(
                {
                    "table": table,
                    "reason": f"MAX_CONCURRENT_RUNS={settings.max_concurrent_runs} reached",
                }
            )
            continue
        try:
            outcome = _start(
                clients, state_machine_arn, name, {"table": table, "runId": name}, sleep
            )
        except ClientError as error:
            # One table's refusal must not stop the others; it is retried next tick.
            logger.error("could not start run", extra={"table": table, "error": str(error)})
            deferred.append({"table": table, "reason": f"StartExecution failed: {error}"})
            continue
        if outcome == "exists":
            skipped.append(
                {"table": table, "runId": name, "reason": "already started for this tick"}
            )
        else:
            started.append({"table": table, "runId": name})

    if wanted:
        known = set(candidates) | {i["table"] for i in invalid}
        for table in sorted(wanted - known):
            skipped.append({"table": table, "reason": "no active controller item"})

    logger.info(
        "tick done",
        extra={
            "tick": tick,
            "started": len(started),
            "skipped": len(skipped),
            "invalid": len(invalid),
            "deferred": len(deferred),
        },
    )
    for entry in invalid:
        logger.warning("invalid controller item", extra=entry)
    starter_metrics(len(started), len(skipped), len(invalid), len(deferred))
    return {
        "tick": tick,
        "started": started,
        "skipped": skipped,
        "invalid": invalid,
        "deferred": deferred,
    }
