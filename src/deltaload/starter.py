"""The schedule tick: start one execution per valid active controller item.

The execution name is ``<sanitised table>-<tick>`` (tick = the schedule event's time to
the second), so a redelivered event cannot start a table twice: Step Functions refuses
the duplicate name. Invalid items are reported with every problem and never started.

Fairness and quotas: candidates go in the order they have waited (never started first, then
the oldest last start), a table whose run is still going is deferred without taking a slot,
and the tick stops short of MAX_CONCURRENT_RUNS, of MAX_REPLICATION_INSTANCES per-run
instances (instance mode) and of MAX_TASKS_PER_SHARED_INSTANCE tasks on the shared instance
(existing mode), so runs never meet DMS's quotas ("Quotas for AWS Database Migration
Service", https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Limits.html). A table that
cannot be started for any other reason than throttling is reported on the notification topic
and fails the invocation (StarterErrorsAlarm) once every other table has been started.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from deltaload import backoff, names, store
from deltaload.aws import Clients, error_code, is_throttling
from deltaload.errors import InvalidItemError, StartFailedError
from deltaload.freshness import Freshness, table_freshness
from deltaload.items import active_flag, parse_item
from deltaload.observability import freshness_metrics, logger, starter_metrics
from deltaload.settings import REPLICATION_MODES, Settings
from deltaload.workflow import utcnow

START_ATTEMPTS = 6
_TICK_SUFFIX = len("-") + names.TICK_LENGTH


@dataclass(frozen=True)
class Candidate:
    """A valid active table and the run state the tick decides on."""

    table: str
    mode: str  # the replication mode its run will use
    last_started: datetime | None
    lock_owner: str | None
    lock_expires: int | None

    def wait_key(self) -> tuple[bool, datetime, str]:
        """Sort key: never started first, then the oldest last start, then the name."""
        never = self.last_started is None
        return (not never, self.last_started or datetime.min.replace(tzinfo=UTC), self.table)

    def run_going(self, now_epoch: int) -> bool:
        """True while another run holds the table's lock and it has not expired."""
        if not self.lock_owner:
            return False
        return self.lock_expires is None or self.lock_expires >= now_epoch


def _started_at(value: Any) -> datetime | None:
    """lastRunStartedAt as an aware datetime; None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _epoch(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def fair_order(candidates: Iterable[Candidate]) -> list[Candidate]:
    """Candidates in the order they have waited (see Candidate.wait_key)."""
    return sorted(candidates, key=Candidate.wait_key)


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


def running_executions(clients: Clients, state_machine_arn: str) -> list[str]:
    """The names of the state machine's RUNNING executions (all pages)."""
    paginator = clients.sfn.get_paginator("list_executions")
    found: list[str] = []
    for page in paginator.paginate(stateMachineArn=state_machine_arn, statusFilter="RUNNING"):
        found += [str(e.get("name", "")) for e in page.get("executions", [])]
    return found


def table_of_execution(name: str, prefixes: Mapping[str, str]) -> str | None:
    """The table an execution name ``<sanitised table>-<tick>`` belongs to, if known."""
    return prefixes.get(name[:-_TICK_SUFFIX]) if len(name) > _TICK_SUFFIX else None


def _prefix(table: str) -> str:
    return names.execution_name(table, names.tick(datetime(2000, 1, 1, tzinfo=UTC)))[:-_TICK_SUFFIX]


def _start(
    clients: Clients,
    state_machine_arn: str,
    name: str,
    payload: dict[str, Any],
    sleep: Callable[[float], None],
) -> str:
    """Start one execution; 'started' or 'exists'. Throttling is retried with backoff.

    StartExecution answers ExecutionAlreadyExists for a closed execution of the same name,
    and success for a RUNNING one with the same name and input: the tick finds those in
    ListExecutions before it gets here (Step Functions API Reference, StartExecution).
    """
    for attempt in range(START_ATTEMPTS):
        try:
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


def _mode_of(raw: Mapping[str, Any], default: str) -> str:
    """The replication mode a table's runs use: the item's own, else the stack's."""
    mode = str(raw.get("replicationmode") or "").strip().lower()
    return mode if mode in REPLICATION_MODES else default


def _caps(settings: Settings) -> dict[str, tuple[str, int]]:
    """Per replication mode, the setting that caps its concurrent runs (0 = no cap)."""
    return {
        "instance": ("MAX_REPLICATION_INSTANCES", settings.max_replication_instances),
        "existing": ("MAX_TASKS_PER_SHARED_INSTANCE", settings.max_tasks_per_shared_instance),
    }


def _freshness_of(raw: Mapping[str, Any], moment: datetime) -> list[Freshness]:
    """The item's freshness, or nothing for an item that does not validate (the tick
    reports it as invalid); never an error that would stop the tick's loads."""
    try:
        return [table_freshness(parse_item(raw), moment)]
    except Exception:  # InvalidItemError, or a validator bug the tick logs below
        return []


def start_tick(
    event: dict,
    clients: Clients,
    settings: Settings,
    *,
    now: Callable[[], datetime] = utcnow,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Start this tick's runs. Returns {"started", "skipped", "invalid", "deferred", "errors"}.

    Raises StartFailedError (after starting every other table) when a table could not be
    started for a reason other than throttling or a cap.
    """
    state_machine_arn = settings.require("state_machine_arn")
    moment = now()
    epoch = int(moment.timestamp())
    tick = event_tick(event or {}, moment)
    only = event.get("tables") if isinstance(event, Mapping) else None
    wanted = {str(t) for t in only} if only else None

    candidates: list[Candidate] = []
    invalid: list[dict[str, Any]] = []
    prefixes: dict[str, str] = {}  # execution name prefix -> table, for every item
    modes: dict[str, str] = {}
    freshness: list[Freshness] = []
    for raw in store.scan(clients, settings.controller_table):
        table = str(raw.get("targetTableName", ""))
        if wanted is None:  # every item's freshness on a scheduled tick, active or not
            freshness += _freshness_of(raw, moment)
        if table:
            prefixes[_prefix(table)] = table
            modes[table] = _mode_of(raw, settings.replication_mode)
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
        candidates.append(
            Candidate(
                table=table,
                mode=modes[table],
                last_started=_started_at(raw.get("lastRunStartedAt")),
                lock_owner=str(raw["lockOwner"]) if raw.get("lockOwner") else None,
                lock_expires=_epoch(raw.get("lockExpiresAt")),
            )
        )

    # Every RUNNING execution holds its DMS resources until its teardown has finished, which
    # is after it released the lock: the caps count executions, not locks.
    running = running_executions(clients, state_machine_arn)
    going: dict[str, list[str]] = {}
    in_use = {mode: 0 for mode in REPLICATION_MODES}
    for name in running:
        owner = table_of_execution(name, prefixes)
        if owner is not None:
            going.setdefault(owner, []).append(name)
        # An execution of an unknown table counts against the stack's mode.
        in_use[modes.get(owner or "", settings.replication_mode)] += 1
    runs_left = (
        settings.max_concurrent_runs - len(running) if settings.max_concurrent_runs else None
    )
    caps = _caps(settings)
    left = {mode: limit - in_use[mode] for mode, (_, limit) in caps.items() if limit}

    started: list[dict[str, str]] = []
    skipped: list[dict[str, str]] = []
    deferred: list[dict[str, str]] = []
    errors: list[dict[str, str]] = []
    for candidate in fair_order(candidates):
        table = candidate.table
        name = names.execution_name(table, tick)
        if name in going.get(table, ()):
            skipped.append(
                {"table": table, "runId": name, "reason": "already started for this tick"}
            )
            continue
        reason = _still_going(candidate, going.get(table, []), epoch)
        if reason is None and runs_left is not None and runs_left <= 0:
            reason = f"MAX_CONCURRENT_RUNS={settings.max_concurrent_runs} reached"
        if reason is None and left.get(candidate.mode, 1) <= 0:
            variable, limit = caps[candidate.mode]
            reason = f"{variable}={limit} reached ({candidate.mode} mode)"
        if reason is not None:
            deferred.append({"table": table, "reason": reason})
            continue
        try:
            outcome = _start(
                clients, state_machine_arn, name, {"table": table, "runId": name}, sleep
            )
        except ClientError as error:
            # One table's refusal must not stop the others.
            if is_throttling(error):
                deferred.append({"table": table, "reason": f"StartExecution throttled: {error}"})
            else:
                logger.error("could not start run", extra={"table": table, "error": str(error)})
                errors.append({"table": table, "error": f"StartExecution failed: {error}"})
            continue
        if outcome == "exists":
            skipped.append(
                {"table": table, "runId": name, "reason": "already started for this tick"}
            )
            continue
        started.append({"table": table, "runId": name})
        if runs_left is not None:
            runs_left -= 1
        if candidate.mode in left:
            left[candidate.mode] -= 1

    if wanted:
        known = {c.table for c in candidates} | {i["table"] for i in invalid}
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
            "errors": len(errors),
        },
    )
    for entry in invalid:
        logger.warning("invalid controller item", extra=entry)
    if deferred:  # one line per tick, however many tables wait
        logger.info("runs deferred", extra={"deferred": deferred})
    starter_metrics(len(started), len(skipped), len(invalid), len(deferred))
    if wanted is None:
        freshness_metrics(freshness)
    summary = {
        "tick": tick,
        "started": started,
        "skipped": skipped,
        "invalid": invalid,
        "deferred": deferred,
        "errors": errors,
    }
    if errors:
        _notify_start_failures(clients, settings, tick, errors)
        raise StartFailedError(
            f"tick {tick}: {len(errors)} table(s) could not be started: "
            + "; ".join(f"{e['table']}: {e['error']}" for e in errors),
            summary,
        )
    return summary


def _still_going(candidate: Candidate, executions: list[str], epoch: int) -> str | None:
    """Why the table's previous run still occupies it, or None."""
    if candidate.run_going(epoch):
        until = candidate.lock_expires
        until_text = datetime.fromtimestamp(until, UTC).isoformat() if until else "unknown"
        return f"run {candidate.lock_owner} is still going (lock held until {until_text})"
    if executions:
        return f"run {sorted(executions)[0]} is still going (its teardown has not finished)"
    return None


def _notify_start_failures(
    clients: Clients, settings: Settings, tick: str, errors: list[dict[str, str]]
) -> None:
    """Tell the notification topic which tables could not be started, and why."""
    if not settings.topic_arn:
        return
    lines = [f"- {e['table']}: {e['error']}" for e in errors]
    message = (
        f"deltaload tick {tick}: {len(errors)} table(s) could not be started; every other "
        "table was handled. They are tried again on the next tick.\n" + "\n".join(lines)
    )
    try:
        clients.sns.publish(
            TopicArn=settings.topic_arn,
            Subject=f"deltaload: {len(errors)} table(s) not started"[:100],
            Message=message[:200_000],
        )
    except ClientError as error:  # the invocation still fails, so the alarm still fires
        logger.error("could not publish the start failures", extra={"error": str(error)})
