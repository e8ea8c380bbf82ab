"""One function per state machine step; the Lambda handlers call these.

Every step takes the whole state document (``{"table", "runId", "lock", "run",
"resources", "load", "poll", "publish", "recorded", "failure", "error"}`` as far as the
run has got) and returns only its own result, which the handler stores under the
step's key (see ``STEP_KEYS``). Loops (resources, load, teardown) return a ``poll``:
``{"phase", "done", "failed", "status", "reason", "error", "waitSeconds", "attempt",
"deadline"}``; the state machine waits ``poll.waitSeconds`` and leaves the loop on
``done`` or ``failed``, and ``failed`` is set once ``deadline`` (epoch seconds) passes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from deltaload import backoff, names, publish, replication, store
from deltaload.aws import Clients, TransientError
from deltaload.errors import DeltaloadError, WaitTimeoutError
from deltaload.items import parse_item
from deltaload.mapping import lob_limit_kb, table_mapping, task_settings
from deltaload.observability import failure_metric, logger, run_metrics
from deltaload.settings import Settings
from deltaload.window import WindowPlan, plan_window, resolve_watermark

Now = Callable[[], datetime]

# Where each step's result lands in the state document (the handlers use this).
STEP_KEYS = {
    "acquire_lock": "lock",
    "plan_run": "run",
    "create_resources": "resources",
    "check_resources": "poll",
    "start_load": "load",
    "check_load": "poll",
    "verify_publish": "publish",
    "record_success": "recorded",
    "record_failure": "failure",
    "teardown": "poll",
}

# How long StartLoad waits in-process for a new task to become ready before it asks
# the state machine to retry the step (TransientError).
TASK_READY_WAIT_SECONDS = 60  # well inside the 120 s function timeout


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def _sleep(seconds: float) -> None:
    backoff.sleep(seconds)


def _table_run(event: Mapping[str, Any]) -> tuple[str, str]:
    try:
        return str(event["table"]), str(event["runId"])
    except KeyError as missing:
        raise DeltaloadError(
            f"the state document has no {missing.args[0]!r}; the state machine input must be "
            '{"table": "<targetTableName>", "runId": "<execution name>"}'
        ) from None


def _plan(run: Mapping[str, Any]) -> WindowPlan:
    return WindowPlan.from_dict(dict(run["window"]))


def _mode(event: Mapping[str, Any], settings: Settings) -> str:
    return str((event.get("run") or {}).get("replicationMode") or settings.replication_mode)


# template.yaml only allows DMS creates and deletes of resources carrying this tag.
STACK_TAG = "deltaload:controller-table"


def _tags(settings: Settings, table: str, run_id: str) -> list[dict[str, str]]:
    return [
        {"Key": STACK_TAG, "Value": settings.controller_table},
        {"Key": "deltaload:table", "Value": table},
        {"Key": "deltaload:run", "Value": run_id},
    ]


def _poll(
    event: Mapping[str, Any],
    settings: Settings,
    now: datetime,
    *,
    phase: str,
    timeout: int,
    done: bool,
    failed: bool,
    status: str,
    reason: str = "",
    error: str = "",
    **extra: Any,
) -> dict[str, Any]:
    """The next poll of a wait loop: attempt count, deadline and capped backoff wait."""
    previous = event.get("poll") or {}
    epoch = int(now.timestamp())
    if previous.get("phase") == phase:
        attempt = int(previous.get("attempt", 0)) + 1
        deadline = int(previous["deadline"])
    else:
        attempt, deadline = 0, epoch + timeout
    if not done and not failed and backoff.deadline_passed(deadline, epoch):
        failed, error = True, WaitTimeoutError.__name__
        reason = (
            f"{phase} did not finish within {timeout} seconds "
            f"(last status {status!r}{': ' + reason if reason else ''})"
        )
    wait = backoff.wait_within(
        attempt, settings.poll_initial_seconds, settings.poll_max_seconds, deadline, epoch
    )
    return {
        "phase": phase,
        "done": done,
        "failed": failed,
        "status": status,
        "reason": reason,
        "error": error if failed else "",
        "waitSeconds": 0 if done or failed else wait,
        "attempt": attempt,
        "deadline": deadline,
        **extra,
    }


# --- 1. lock ---------------------------------------------------------------------------


def acquire_lock(
    event: dict, clients: Clients, settings: Settings, now: Now = utcnow
) -> dict[str, Any]:
    """Take the table's lock for this run; a second run of the table is skipped."""
    table, run_id = _table_run(event)
    moment = now()
    result = store.acquire_lock(clients, settings, table, run_id, moment)
    if not result.acquired:
        logger.info("run skipped", extra={"table": table, "reason": result.reason})
        store.put_history(
            clients,
            settings,
            {
                "targetTableName": table,
                "runId": run_id,
                "status": store.SKIPPED,
                "reason": result.reason,
                "startedAt": moment.isoformat(),
                "endedAt": moment.isoformat(),
            },
        )
    return result.to_dict()


# --- 2. plan ---------------------------------------------------------------------------


def plan_run(event: dict, clients: Clients, settings: Settings, now: Now = utcnow) -> dict:
    """Validate the item and fix everything the run will do: window, mapping, names, keys."""
    table, run_id = _table_run(event)
    item = store.load_item(clients, settings, table)
    moment = now()
    plan = plan_window(item, moment, default_safety_lag=settings.safety_lag_seconds)
    mode = item.replication_mode.value if item.replication_mode else settings.replication_mode
    keys = names.run_keys(
        settings.staging_prefix, item.output_s3_prefix, item.source_schema, table, run_id
    )
    run = {
        "table": table,
        "runId": run_id,
        "window": plan.to_dict(),
        "windowText": plan.describe(),
        "loadsNothing": plan.loads_nothing,
        "skipReason": plan.skip_reason,
        "previousWatermark": plan.previous_watermark,
        "replicationMode": mode,
        "names": names.dms_names(table, run_id).to_dict(),
        "keys": keys.to_dict(),
        "sourceSchema": item.source_schema,
        "sourceTable": item.source_table,
        "filterColumn": item.filter_column,
        "tableMapping": table_mapping(item, plan),
        "taskSettings": task_settings(item),
        "notifyOnSuccess": settings.notify_on_success,
        "plannedAt": moment.isoformat(),
    }
    logger.info(
        "run planned",
        extra={"table": table, "window": run["windowText"], "mode": mode},
    )
    return run


# --- 3./4. resources -------------------------------------------------------------------


def create_resources(
    event: dict, clients: Clients, settings: Settings, now: Now = utcnow
) -> dict[str, Any]:
    """Create the run's target endpoint and compute (instance or serverless config)."""
    table, run_id = _table_run(event)
    run = event["run"]
    dms = names.DmsNames(**_names_kwargs(run["names"]))
    mode = run["replicationMode"]
    tags = _tags(settings, table, run_id)
    source_arn = settings.require("source_endpoint_arn")
    resources: dict[str, Any] = {"mode": mode, "sourceEndpointArn": source_arn}
    # Note the names before creating anything: an aborted run can still be torn down.
    store.note_history(
        clients,
        settings,
        table,
        run_id,
        {"status": store.RUNNING, "replicationMode": mode, "dmsNames": run["names"]},
    )
    if mode == "instance":
        arn = replication.ensure_instance(clients, settings, dms.instance, tags)
        resources["instanceArn"] = arn
        resources["instanceCreated"] = True
    elif mode == "existing":
        resources["instanceArn"] = settings.require("existing_instance_arn")
        resources["instanceCreated"] = False
    resources["targetEndpointArn"] = replication.ensure_target_endpoint(
        clients, settings, dms.target_endpoint, run["keys"]["stagingFolder"], tags
    )
    if mode == "serverless":
        resources["configArn"] = replication.ensure_config(
            clients,
            settings,
            dms.config,
            source_arn,
            resources["targetEndpointArn"],
            run["tableMapping"],
            run["taskSettings"],
            tags,
        )
    resources["createdAt"] = now().isoformat()
    return resources


def _names_kwargs(data: Mapping[str, str]) -> dict[str, str]:
    return {
        "instance": data["instance"],
        "target_endpoint": data["targetEndpoint"],
        "task": data["task"],
        "config": data["config"],
    }


def check_resources(
    event: dict, clients: Clients, settings: Settings, now: Now = utcnow
) -> dict[str, Any]:
    """One look at the run's compute: done once the instance is available."""
    resources = event["resources"]
    mode = resources["mode"]
    if mode == "serverless":
        ready, failed, status = True, False, "config created"
    else:
        instance = replication.find_instance_by_arn(clients, resources["instanceArn"])
        what = f"replication instance {resources['instanceArn']}"
        ready, failed, status = replication.instance_readiness(instance, what)
    return _poll(
        event,
        settings,
        now(),
        phase="resources",
        timeout=settings.resource_timeout_seconds,
        done=ready,
        failed=failed,
        status=status,
        reason=status if failed else "",
        error=replication.ResourceError.__name__ if failed else "",
    )


# --- 5./6. load ------------------------------------------------------------------------


def start_load(
    event: dict, clients: Clients, settings: Settings, now: Now = utcnow
) -> dict[str, Any]:
    """Create the run's full-load task, wait for it to be ready, start it (start-replication)."""
    table, run_id = _table_run(event)
    run, resources = event["run"], event["resources"]
    if resources["mode"] == "serverless":
        started = replication.start_serverless(clients, resources["configArn"])
        return {
            "configArn": resources["configArn"],
            "startType": "start-replication",
            "started": started,
            "startedAt": now().isoformat(),
        }
    task = replication.ensure_task(
        clients,
        run["names"]["task"],
        instance_arn=resources["instanceArn"],
        source_arn=resources["sourceEndpointArn"],
        target_arn=resources["targetEndpointArn"],
        table_mapping=run["tableMapping"],
        task_settings=run["taskSettings"],
        tags=_tags(settings, table, run_id),
    )
    task = _wait_until_created(clients, task, now, settings.poll_initial_seconds)
    started = replication.start_task(clients, task)
    return {
        "taskArn": task["ReplicationTaskArn"],
        "startType": "start-replication",
        "started": started,
        "startedAt": now().isoformat(),
    }


def _wait_until_created(
    clients: Clients, task: dict[str, Any], now: Now, poll_initial_seconds: int
) -> dict[str, Any]:
    # DMS creates a task in seconds: poll every 2 s (or faster when the stack polls faster).
    first_wait = min(2, poll_initial_seconds)
    identifier = task["ReplicationTaskIdentifier"]
    deadline = now().timestamp() + TASK_READY_WAIT_SECONDS
    attempt = 0
    while task.get("Status") in ("creating", "modifying"):
        moment = now().timestamp()
        if backoff.deadline_passed(deadline, moment):
            raise TransientError(
                f"replication task {identifier} is still {task.get('Status')!r} after "
                f"{TASK_READY_WAIT_SECONDS} seconds; the step will be retried"
            )
        _sleep(max(0.25, backoff.wait_within(attempt, first_wait, 15, deadline, moment)))
        attempt += 1
        task = replication.find_task(clients, identifier) or {}
    if task.get("Status") == "failed":
        raise replication.ResourceError(
            f"replication task {identifier} failed to create: {task.get('LastFailureMessage')}"
        )
    return task


def check_load(
    event: dict, clients: Clients, settings: Settings, now: Now = utcnow
) -> dict[str, Any]:
    """One look at the load: done only on a clean FULL_LOAD_ONLY_FINISHED (see replication)."""
    run, load = event["run"], event["load"]
    tables = (run["sourceTable"], run["table"])
    if "configArn" in load:
        verdict = replication.serverless_verdict(
            clients, load["configArn"], run["sourceSchema"], tables
        )
    else:
        verdict = replication.task_verdict(clients, load["taskArn"], run["sourceSchema"], tables)
    return _poll(
        event,
        settings,
        now(),
        phase="load",
        timeout=settings.load_timeout_seconds,
        done=verdict.done,
        failed=verdict.failed,
        status=verdict.status,
        reason=verdict.reason if verdict.failed else "",
        error=replication.LoadFailedError.__name__ if verdict.failed else "",
        fullLoadRows=verdict.full_load_rows,
    )


# --- 7. verify and publish -------------------------------------------------------------


def verify_publish(
    event: dict, clients: Clients, settings: Settings, now: Now = utcnow
) -> dict[str, Any]:
    """Reconcile DMS FullLoadRows with the Parquet footers, then publish with a manifest."""
    table, run_id = _table_run(event)
    run, load = event["run"], event["load"]
    plan, keys = _plan(run), run["keys"]
    tables = (run["sourceTable"], table)
    if "configArn" in load:
        stats = replication.table_statistics(clients, config_arn=load["configArn"])
    else:
        stats = replication.table_statistics(clients, task_arn=load["taskArn"])
    row = replication.table_entry(stats, run["sourceSchema"], tables)
    if row is None:
        raise publish.VerificationError(
            f"table {table!r}: DMS table statistics have no entry for "
            f"{run['sourceSchema']}.{run['sourceTable']}; nothing was published"
        )
    full_load_rows = int(row.get("FullLoadRows", 0) or 0)
    verification = publish.verify(
        clients,
        settings.data_bucket,
        keys["stagingPrefix"],
        full_load_rows,
        table=table,
        filter_column=run["filterColumn"] if plan.is_open else None,
    )
    watermark = resolve_watermark(plan, verification.loaded_max)
    limit_kb = lob_limit_kb(run["taskSettings"])
    warnings = (
        [
            str(w)
            for w in publish.lob_warnings(
                clients, settings.data_bucket, verification.files, limit_kb
            )
        ]
        if limit_kb is not None
        else []
    )
    manifest = {
        "runId": run_id,
        "table": table,
        "source": f"{run['sourceSchema']}.{run['sourceTable']}",
        "window": {
            "mode": plan.mode,
            "kind": plan.kind.value,
            "lower": plan.lower,
            "lowerExclusive": plan.lower_exclusive,
            "upper": plan.upper,
            "description": run["windowText"],
        },
        "rows": verification.rows,
        "bytes": verification.bytes,
        "fullLoadRows": full_load_rows,
        "watermark": watermark,
        "previousWatermark": plan.previous_watermark,
        "loadedMax": verification.loaded_max,
        "warnings": warnings,
        "createdAt": now().isoformat(),
    }
    publish.publish(
        clients,
        settings.data_bucket,
        verification,
        run_prefix=keys["runPrefix"],
        manifest_key=keys["manifestKey"],
        manifest=manifest,
    )
    publish.delete_prefix(clients, settings.data_bucket, keys["stagingPrefix"])
    logger.info(
        "run published",
        extra={"table": table, "rows": verification.rows, "files": len(verification.files)},
    )
    for warning in warnings:
        logger.warning("LOB values may be truncated", extra={"table": table, "warning": warning})
    return {
        "warnings": warnings,
        "rows": verification.rows,
        "files": len(verification.files),
        "bytes": verification.bytes,
        "fullLoadRows": full_load_rows,
        "loadedMax": verification.loaded_max,
        "watermark": watermark,
        "runPrefix": keys["runPrefix"],
        "manifestKey": keys["manifestKey"],
    }


# --- 8. record -------------------------------------------------------------------------


def record_success(
    event: dict, clients: Clients, settings: Settings, now: Now = utcnow
) -> dict[str, Any]:
    """Commit the watermark and run state (conditional on lock and watermark), add history."""
    table, run_id = _table_run(event)
    run = event["run"]
    plan = _plan(run)
    outcome = event.get("publish") or {}
    if run["loadsNothing"]:
        status = store.SKIPPED if run.get("skipReason") else store.SUCCEEDED
        watermark = resolve_watermark(plan, None)
    else:
        status, watermark = store.SUCCEEDED, outcome.get("watermark")
    rows, files, size = (int(outcome.get(k, 0) or 0) for k in ("rows", "files", "bytes"))
    warnings = [str(w) for w in outcome.get("warnings") or []]
    moment = now()
    window = {"lower": plan.lower, "upper": plan.upper if plan.upper else watermark}
    committed = store.record_success(
        clients,
        settings,
        table,
        run_id,
        status=status,
        previous_watermark=plan.previous_watermark,
        watermark=watermark,
        window=window,
        rows=rows,
        files=files,
        now=moment,
    )
    started = datetime.fromisoformat(run["plannedAt"])
    # Written even when this is a retry of an already committed call: the first attempt
    # may have committed and then failed writing this record (put is idempotent).
    store.put_history(
        clients,
        settings,
        {
            "targetTableName": table,
            "runId": run_id,
            "status": status,
            "window": window,
            "windowText": run["windowText"],
            "skipReason": run.get("skipReason"),
            "rows": rows,
            "files": files,
            "bytes": size,
            "watermark": watermark,
            "previousWatermark": plan.previous_watermark,
            "manifestKey": outcome.get("manifestKey"),
            "replicationMode": run["replicationMode"],
            "dmsNames": run["names"],
            "startedAt": run["plannedAt"],
            "endedAt": moment.isoformat(),
            **({"warnings": warnings} if warnings else {}),
        },
    )
    if committed:
        run_metrics(
            table,
            rows=rows,
            files=files,
            size=size,
            seconds=(moment - started).total_seconds(),
        )
    logger.info("run recorded", extra={"table": table, "status": status, "watermark": watermark})
    result = {
        "status": status,
        "watermark": watermark,
        "previousWatermark": plan.previous_watermark,
        "rows": rows,
        "files": files,
        "alreadyRecorded": not committed,
    }
    if warnings:  # the state machine notifies whenever this is present
        result["warning"] = " | ".join(warnings)
    return result


def _error_text(error: Mapping[str, Any] | None) -> tuple[str, str]:
    """(error name, readable message) of a Step Functions Catch result."""
    if not error:
        return "Unknown", "the run failed without an error description"
    name = str(error.get("Error", "Unknown"))
    cause = error.get("Cause", "")
    try:
        parsed = json.loads(cause) if isinstance(cause, str) and cause.startswith("{") else None
    except json.JSONDecodeError:
        parsed = None
    message = str(parsed.get("errorMessage", cause)) if isinstance(parsed, dict) else str(cause)
    return name, message


def record_failure(
    event: dict, clients: Clients, settings: Settings, now: Now = utcnow
) -> dict[str, Any]:
    """Delete staging and any output of this run, mark the run FAILED, release the lock.

    The watermark never moves here. A run whose success was already committed (a later
    step such as teardown failed) keeps its published output.
    """
    table, run_id = _table_run(event)
    run = event.get("run") or {}
    name, message = _error_text(event.get("error"))
    moment = now()
    committed = store.run_committed(clients, settings, table, run_id)
    keys = run.get("keys") or {}
    deleted = 0
    if not committed:
        staging = names.as_prefix(names.staging_folder(settings.staging_prefix, table, run_id))
        deleted = publish.cleanup_run(
            clients,
            settings.data_bucket,
            staging_prefix=staging,
            run_prefix=keys.get("runPrefix"),
            manifest_key=keys.get("manifestKey"),
        )
    window = None
    if run.get("window"):
        plan = _plan(run)
        window = {"lower": plan.lower, "upper": plan.upper}
    text = f"{name}: {message}"
    updated = False
    if committed:
        store.note_history(clients, settings, table, run_id, {"postCommitError": text})
    else:
        updated = store.record_failure(
            clients, settings, table, run_id, error=text, window=window, now=moment
        )
        store.put_history(
            clients,
            settings,
            {
                "targetTableName": table,
                "runId": run_id,
                "status": store.FAILED,
                "error": text[: store.ERROR_TEXT_MAX],
                "window": window,
                "windowText": run.get("windowText"),
                "previousWatermark": run.get("previousWatermark"),
                "replicationMode": _mode(event, settings),
                "dmsNames": names.dms_names(table, run_id).to_dict(),
                "startedAt": run.get("plannedAt"),
                "endedAt": moment.isoformat(),
                "objectsDeleted": deleted,
            },
        )
    failure_metric(table)
    logger.error(
        "run failed",
        extra={"table": table, "error": name, "committed": committed, "itemUpdated": updated},
    )
    return {
        "status": store.SUCCEEDED if committed else store.FAILED,
        "error": name,
        "message": message[:1000],
        "committed": committed,
        "itemUpdated": updated,
        "objectsDeleted": deleted,
    }


# --- 9. teardown -----------------------------------------------------------------------


def teardown(event: dict, clients: Clients, settings: Settings, now: Now = utcnow) -> dict:
    """One pass of deleting the run's DMS resources (found by their per-run names)."""
    table, run_id = _table_run(event)
    outcome = replication.teardown_pass(
        clients, names.dms_names(table, run_id), _mode(event, settings)
    )
    phase = "teardown-after-failure" if event.get("error") else "teardown"
    remaining = outcome["remaining"]
    why = "; ".join(outcome.get("notes") or [])
    return _poll(
        event,
        settings,
        now(),
        phase=phase,
        timeout=settings.teardown_timeout_seconds,
        done=outcome["done"],
        failed=False,
        status="deleted" if outcome["done"] else "deleting " + ", ".join(remaining),
        reason=""
        if outcome["done"]
        else "still deleting " + ", ".join(remaining) + (f" ({why})" if why else ""),
        remaining=remaining,
        deleted=outcome["deleted"],
    )


# --- outside the state machine: executions that were aborted or timed out --------------

ABORT_CLEANUP_SECONDS = 780  # stay inside a 15-minute Lambda


def cleanup_aborted(
    event: dict, clients: Clients, settings: Settings, now: Now = utcnow
) -> dict[str, Any]:
    """Handle an EventBridge "Step Functions Execution Status Change" for ABORTED/TIMED_OUT.

    No Catch runs when an execution is stopped or times out, so this does what the
    failure path would: clean up data, mark the run failed, release the lock, and tear
    the run's DMS resources down (found by name). Raises TransientError if teardown
    is not finished in time, so the asynchronous invoke is retried.
    """
    detail = event.get("detail") or {}
    status = str(detail.get("status", ""))
    if status not in ("ABORTED", "TIMED_OUT"):
        return {"ignored": True, "status": status}
    state = json.loads(detail.get("input") or "{}")
    table, run_id = _table_run(state)
    history = store.get_history(clients, settings, table, run_id) or {}
    run: dict[str, Any] = {"replicationMode": history.get("replicationMode")}
    plain = store.get_item(clients, settings, table)
    if plain is not None:
        try:
            item = parse_item(plain)
            keys = names.run_keys(
                settings.staging_prefix, item.output_s3_prefix, item.source_schema, table, run_id
            )
            run["keys"] = keys.to_dict()
        except DeltaloadError:
            pass  # an invalid item: nothing can have been published
    # The event carries the error and cause given to StopExecution, when there were any
    # (https://docs.aws.amazon.com/step-functions/latest/dg/cw-events.html).
    error = str(detail.get("error") or f"Execution{status.title().replace('_', '')}")
    state = {**state, "run": run, "error": {"Error": error, "Cause": detail.get("cause") or status}}
    failure = record_failure(state, clients, settings, now)
    deadline = now().timestamp() + ABORT_CLEANUP_SECONDS
    attempt = 0
    while True:
        outcome = replication.teardown_pass(
            clients, names.dms_names(table, run_id), _mode(state, settings)
        )
        if outcome["done"]:
            if not failure["committed"]:
                # A load that was still running wrote on until teardown stopped its task:
                # what it staged after record_failure's clean-up goes now.
                staging = names.as_prefix(
                    names.staging_folder(settings.staging_prefix, table, run_id)
                )
                failure["objectsDeleted"] += publish.delete_prefix(
                    clients, settings.data_bucket, staging
                )
            return {"failure": failure, "teardown": outcome}
        moment = now().timestamp()
        if backoff.deadline_passed(deadline, moment):
            why = "; ".join(outcome.get("notes") or [])
            raise TransientError(
                f"table {table!r}: run {run_id} still has {', '.join(outcome['remaining'])}"
                + (f" ({why})" if why else "")
            )
        _sleep(max(1, backoff.wait_within(attempt, 5, 60, deadline, moment)))
        attempt += 1
