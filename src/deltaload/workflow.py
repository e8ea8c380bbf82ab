"""One function per state machine step; the Lambda handlers call these.

Every step takes the run document (``runstate.RunState``, as far as the run has got) and
returns only its own result, a model of ``runstate`` that declares the key it goes under
(``deltaload.handlers`` puts it there). Loops (resources, load, teardown) return a
``Poll``. The replication mode is chosen once per step (``replication.strategy``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from deltaload import backoff, catalog, lake, names, probe, publish, replication, store
from deltaload.aws import Clients, TransientError
from deltaload.errors import DeltaloadError, PlanningError, WaitTimeoutError
from deltaload.items import SchemaPolicy, parse_item
from deltaload.mapping import lob_limit_kb, table_mapping, task_settings
from deltaload.observability import failure_metric, logger, run_metrics
from deltaload.runstate import (
    AbortedCleanup,
    CaughtError,
    DmsNames,
    ExecutionStatusChange,
    FailedWindow,
    Failure,
    IgnoredChange,
    Load,
    Lock,
    PlannedWindow,
    Poll,
    Probe,
    Published,
    Recorded,
    Resources,
    RunInput,
    RunKeys,
    RunPlan,
    RunState,
    ServerlessResources,
    SkippedLoad,
    WindowPlan,
)
from deltaload.schema import SchemaChangeError
from deltaload.settings import Settings
from deltaload.window import resolve_watermark, span_of, without_rows

Now = Callable[[], datetime]

# How long StartLoad waits in-process for a new task to become ready before it asks
# the state machine to retry the step (TransientError).
TASK_READY_WAIT_SECONDS = 60  # well inside the 120 s function timeout


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def _sleep(seconds: float) -> None:
    backoff.sleep(seconds)


# template.yaml only allows DMS creates and deletes of resources carrying this tag.
STACK_TAG = "deltaload:controller-table"


def _tags(settings: Settings, table: str, run_id: str) -> list[dict[str, str]]:
    return [
        {"Key": STACK_TAG, "Value": settings.controller_table},
        {"Key": "deltaload:table", "Value": table},
        {"Key": "deltaload:run", "Value": run_id},
    ]


def _names(state: RunState) -> DmsNames:
    """The run's DMS identifiers: from its plan, or (no plan yet) from table and run id."""
    return state.run.names if state.run else names.dms_names(state.table, state.run_id)


def _window_names(state: RunState) -> list[DmsNames]:
    """The DMS identifiers of each window of a windowed run (none for a run of one)."""
    if state.run is None or not state.run.windowed:
        return []
    return [w.names for w in state.run.windows]


def _mode(state: RunState, settings: Settings) -> replication.Strategy:
    return replication.strategy(state.replication_mode(settings.replication_mode))


def _poll(
    previous: Poll | None,
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
) -> Poll:
    """The next poll of a wait loop: attempt count, deadline and capped backoff wait."""
    epoch = int(now.timestamp())
    if previous is not None and previous.phase == phase:
        attempt, deadline = previous.attempt + 1, previous.deadline
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
    return Poll(
        phase=phase,
        done=done,
        failed=failed,
        status=status,
        reason=reason,
        error=error if failed else "",
        wait_seconds=0 if done or failed else wait,
        attempt=attempt,
        deadline=deadline,
        **extra,
    )


# --- 1. lock ---------------------------------------------------------------------------


def acquire_lock(state: RunState, clients: Clients, settings: Settings, now: Now = utcnow) -> Lock:
    """Take the table's lock for this run; a second run of the table is skipped."""
    moment = now()
    lock = store.acquire_lock(clients, settings, state.table, state.run_id, moment)
    if not lock.acquired:
        logger.info("run skipped", extra={"table": state.table, "reason": lock.reason})
        record = store.SkippedRecord(
            target_table_name=state.table,
            run_id=state.run_id,
            status=store.SKIPPED,
            reason=lock.reason,
            started_at=moment.isoformat(),
            ended_at=moment.isoformat(),
        )
        store.put_history(clients, settings, record)
    return lock


# --- 2. probe the source --------------------------------------------------------------


def probe_source(state: RunState, clients: Clients, settings: Settings, now: Now = utcnow) -> Probe:
    """Ask the source for the maximum above the watermark and each planned window's rows.

    Read-only, through the source endpoint's secret; nothing is asked when the stack
    switched the probe off.
    """
    if not settings.probe_enabled:
        return Probe(enabled=False)
    item = store.load_item(clients, settings, state.table)
    moment = now()
    secret = probe.read_source_secret(clients, settings.require("source_secret_arn"))
    access = probe.source_access(secret, settings.source_engine, settings.source_database)
    outcome = probe.probe_source(
        access,
        item,
        moment,
        timeout_seconds=settings.probe_timeout_seconds or probe.DEFAULT_TIMEOUT_SECONDS,
        default_safety_lag=settings.safety_lag_seconds,
    )
    logger.info(
        "source probed",
        extra={
            "table": state.table,
            "maximum": outcome.maximum,
            "rows": [w.rows for w in outcome.windows],
        },
    )
    return Probe(enabled=True, planned_at=moment, maximum=outcome.maximum, windows=outcome.windows)


# --- 3. plan ---------------------------------------------------------------------------


def plan_run(state: RunState, clients: Clients, settings: Settings, now: Now = utcnow) -> RunPlan:
    """Validate the item and fix everything the run will do: windows, mapping, names, keys.

    After a probe, the windows are planned at the probe's moment with its maximum (the
    same windows it counted; integer items are split up to that maximum); a run whose
    windows the probe found without rows loads nothing.
    """
    table, run_id = state.table, state.run_id
    item = store.load_item(clients, settings, table)
    probed = state.probe if state.probe and state.probe.enabled else None
    moment = probed.planned_at if probed and probed.planned_at else now()
    maximum = probed.maximum if probed else None
    windows = probe.planned_windows(item, moment, maximum, settings.safety_lag_seconds)
    plan = span_of(windows, item.filter_column)
    if probed is not None and probe.nothing_new(windows, probed.windows):
        plan = without_rows(plan)
        windows = [plan]
    mode = item.replication_mode.value if item.replication_mode else settings.replication_mode
    instances = min(item.instances, len(windows))
    if instances > 1 and mode != "instance":
        raise PlanningError(
            f"table {table!r}: windowinstances needs replication mode instance (the run "
            f"creates its instances), not {mode}; set replicationmode on the item, or remove "
            "windowinstances"
        )
    run_names = names.dms_names(table, run_id)
    keys = names.run_keys(
        settings.staging_prefix, item.output_s3_prefix, item.source_schema, table, run_id
    )
    mapping = table_mapping(item, plan)
    if len(windows) == 1:
        planned = [
            PlannedWindow(index=1, window=plan, names=run_names, keys=keys, table_mapping=mapping)
        ]
    else:
        planned = [
            PlannedWindow(
                index=index,
                window=_as_probed(window, probed),
                names=names.window_names(table, run_id, index, instances),
                keys=names.window_keys(keys, run_id, index),
                table_mapping=table_mapping(item, window),
            )
            for index, window in enumerate(windows, start=1)
        ]
    run = RunPlan(
        table=table,
        run_id=run_id,
        window=plan,
        replication_mode=mode,
        names=run_names,
        keys=keys,
        source_schema=item.source_schema,
        source_table=item.source_table,
        filter_column=item.filter_column,
        table_mapping=mapping,
        task_settings=task_settings(item),
        notify_on_success=settings.notify_on_success,
        schema_changes=item.schema_changes.value,
        schema_manifest_key=item.run_state.get("schemaManifestKey"),
        planned_at=moment,
        windows=planned,
        concurrency=item.concurrency,
        instances=instances,
    )
    logger.info(
        "run planned",
        extra={"table": table, "window": run.window_text, "mode": mode, "windows": len(windows)},
    )
    return run


def _as_probed(window: WindowPlan, probed: Probe | None) -> WindowPlan:
    """A window of a run of several, marked empty when the probe counted no row in it:
    its iteration starts no task (``start_load``) and publishes it empty."""
    if probed is not None and probed.rows_of(window.lower, window.upper) == 0:
        return without_rows(window)
    return window


# --- 4./5. resources -------------------------------------------------------------------


def create_resources(
    state: RunState, clients: Clients, settings: Settings, now: Now = utcnow
) -> Resources:
    """Create the run's target endpoint and compute (instance or serverless config)."""
    plan: RunPlan = state.part("run")
    # Note the names before creating anything: an aborted run can still be torn down.
    note = store.RunningNote(
        replication_mode=plan.replication_mode,
        dms_names=plan.names,
        window_count=len(plan.windows) if plan.windowed else None,
        instance_count=plan.instances if plan.instances > 1 else None,
    )
    store.note_history(clients, settings, state.table, state.run_id, note)
    tags = _tags(settings, state.table, state.run_id)
    resources = _mode(state, settings).create(clients, settings, plan, tags, now())
    if not plan.windowed:
        return resources
    # Each window writes to a staging folder of its own: a target endpoint each, the
    # first one created with the compute (RunPlan.first_target); a window the probe found
    # empty starts no task and gets none.
    first, _ = plan.first_target
    arns: list[str | None] = []
    for w in plan.windows:
        if w.names.target_endpoint == first:
            arns.append(resources.target_endpoint_arn)
        elif w.window.loads_nothing:
            arns.append(None)
        else:
            arns.append(
                replication.ensure_target_endpoint(
                    clients, settings, w.names.target_endpoint, w.keys.staging_folder, tags
                )
            )
    update: dict[str, Any] = {"window_endpoint_arns": arns}
    if plan.instances > 1:  # the run's instance, then one more per slot
        extra = [
            replication.ensure_instance(
                clients, settings, names.instance_name(state.table, state.run_id, slot), tags
            )
            for slot in range(2, plan.instances + 1)
        ]
        update["instance_arns"] = [resources.instance_arn, *extra]
    resources = resources.model_copy(update=update)
    return _mode(state, settings).create_windows(clients, settings, plan, resources, tags)


def check_resources(
    state: RunState, clients: Clients, settings: Settings, now: Now = utcnow
) -> Poll:
    """One look at the run's compute: done once the instance is available (every instance,
    when the windows are spread over several)."""
    resources = state.part("resources")
    looks = [_mode(state, settings).readiness(clients, resources)]
    for arn in (resources.instance_arns or [])[1:]:
        found = replication.find_instance_by_arn(clients, arn)
        looks.append(replication.instance_readiness(found, f"replication instance {arn}"))
    failed = any(look[1] for look in looks)
    ready = not failed and all(look[0] for look in looks)
    # The status that holds the run up: a failed instance's, else one still on its way.
    status = next(
        (look[2] for look in looks if look[1]),
        next((look[2] for look in looks if not look[0]), looks[0][2]),
    )
    return _poll(
        state.poll,
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


# --- 6./7. load ------------------------------------------------------------------------


def start_load(state: RunState, clients: Clients, settings: Settings, now: Now = utcnow) -> Load:
    """Create the run's full-load task, wait for it to be ready, start it (start-replication).

    In a windowed run's Map iteration: the task of the iteration's window, writing to the
    window's target endpoint."""
    if state.window is not None and state.window.window.loads_nothing:
        logger.info(
            "window empty: no task", extra={"table": state.table, "window": state.window.index}
        )
        return SkippedLoad(
            started=False,
            started_at=now(),
            skipped=True,
            reason=f"the source probe counted no rows in window {state.window.index}",
        )
    plan, resources = _window_view(state)
    request = replication.LoadRequest(
        plan=plan,
        resources=resources,
        tags=_tags(settings, state.table, state.run_id),
        now=now,
        until_ready=lambda task: _wait_until_created(
            clients, task, now, settings.poll_initial_seconds
        ),
    )
    return _mode(state, settings).start(clients, request)


def _window_view(state: RunState) -> tuple[RunPlan, Resources]:
    """The plan and resources as one window's load sees them: its task name, its table
    mapping, its target endpoint (the run's own outside a Map iteration)."""
    plan, resources = state.part("run"), state.part("resources")
    window = state.window
    if window is None:
        return plan, resources
    arns = resources.window_endpoint_arns or []
    if len(arns) < window.index or arns[window.index - 1] is None:
        raise replication.ResourceError(
            f"table {state.table!r}: run {state.run_id} has no target endpoint for window "
            f"{window.index}"
        )
    plan = plan.model_copy(update={"names": window.names, "table_mapping": window.table_mapping})
    update: dict[str, Any] = {"target_endpoint_arn": arns[window.index - 1]}
    if resources.instance_arns:  # spread round robin, as names.window_names names them
        update["instance_arn"] = resources.instance_arns[
            (window.index - 1) % len(resources.instance_arns)
        ]
    if isinstance(resources, ServerlessResources) and resources.window_config_arns:
        update["config_arn"] = resources.window_config_arns[window.index - 1]
    resources = resources.model_copy(update=update)
    return plan, resources


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


def check_load(state: RunState, clients: Clients, settings: Settings, now: Now = utcnow) -> Poll:
    """One look at the load: done only on a clean FULL_LOAD_ONLY_FINISHED (see replication)."""
    load = state.part("load")
    if isinstance(load, SkippedLoad):  # an empty window: nothing to wait for
        verdict = replication.Verdict(
            done=True, failed=False, status=f"no task: {load.reason}", full_load_rows=0
        )
    else:
        verdict = _mode(state, settings).verdict(
            clients, state.part("run"), state.part("resources"), load
        )
    return _poll(
        state.poll,
        settings,
        now(),
        phase="load",
        timeout=settings.load_timeout_seconds,
        done=verdict.done,
        failed=verdict.failed,
        status=verdict.status,
        reason=verdict.reason if verdict.failed else "",
        error=replication.LoadFailedError.__name__ if verdict.failed else "",
        full_load_rows=verdict.full_load_rows,
    )


# --- 8. verify and publish -------------------------------------------------------------


def verify_publish(
    state: RunState, clients: Clients, settings: Settings, now: Now = utcnow
) -> Published:
    """Reconcile DMS FullLoadRows with the Parquet footers, then publish with a manifest.

    In a windowed run: a Map iteration verifies its window's staged files only
    (``staged``); after the Map, the windows are published in order up to the first one
    that failed (``publish_windows``)."""
    if state.window is not None:
        return _verify_window(state, clients, settings)
    if state.windows is not None:
        return publish_windows(state, clients, settings, now)
    table, plan = state.table, state.part("run")
    keys, window = plan.keys, plan.window
    full_load_rows = _full_load_rows(state, clients, settings)
    verification = publish.verify(
        clients,
        settings.data_bucket,
        keys.staging_prefix,
        full_load_rows,
        table=table,
        filter_column=plan.filter_column if window.is_open else None,
    )
    watermark = resolve_watermark(window, verification.loaded_max)
    return _publish_verified(
        clients,
        settings,
        plan,
        keys,
        verification,
        full_load_rows=full_load_rows,
        watermark=watermark,
        previous_schema_key=plan.schema_manifest_key,
        probed=state.probe,
        now=now,
    )


def _full_load_rows(state: RunState, clients: Clients, settings: Settings) -> int:
    """FullLoadRows of the run's (or the iteration's window's) table in DMS's statistics."""
    plan = state.part("run")
    if isinstance(state.load, SkippedLoad):
        return 0  # an empty window: no task, no statistics
    stats = _mode(state, settings).statistics(clients, state.part("resources"), state.part("load"))
    row = replication.table_entry(stats, plan.source_schema, plan.table_names)
    if row is None:
        where = f"window {state.window.index} of " if state.window else ""
        raise publish.VerificationError(
            f"table {state.table!r}: DMS table statistics of {where}the run have no entry for "
            f"{plan.source}; nothing was published"
        )
    return int(row.get("FullLoadRows", 0) or 0)


def _verify_window(state: RunState, clients: Clients, settings: Settings) -> Published:
    """A Map iteration: the window's staged files agree with DMS; nothing is published yet."""
    window = state.window
    assert window is not None
    full_load_rows = _full_load_rows(state, clients, settings)
    verification = publish.verify(
        clients,
        settings.data_bucket,
        window.keys.staging_prefix,
        full_load_rows,
        table=state.table,
        filter_column=None,
    )
    logger.info(
        "window verified",
        extra={"table": state.table, "window": window.index, "rows": verification.rows},
    )
    return Published(
        warnings=[],
        rows=verification.rows,
        files=len(verification.files),
        bytes=verification.bytes,
        full_load_rows=full_load_rows,
        loaded_max=verification.loaded_max,
        watermark=resolve_watermark(window.window, verification.loaded_max),
        run_prefix=window.keys.run_prefix,
        manifest_key=window.keys.manifest_key,
        staged=True,
    )


def publish_windows(
    state: RunState, clients: Clients, settings: Settings, now: Now = utcnow
) -> Published:
    """Publish a windowed run's windows in order, each with its own manifest, up to the
    first window that failed; that window and every later one are deleted from staging
    and loaded by the next run. The watermark is the last published window's upper bound.
    Raises LoadFailedError when the first window failed (nothing is published)."""
    table, plan = state.table, state.part("run")
    outcomes = {o.index: o for o in state.windows or []}
    published: list[Published] = []
    failed: FailedWindow | None = None
    schema_key = plan.schema_manifest_key
    for window in plan.windows:
        outcome = outcomes.get(window.index)
        if outcome is None or not outcome.ok or outcome.publish is None:
            name, message = _error_text(outcome.error if outcome else None)
            failed = FailedWindow(index=window.index, error=name, message=message[:1000])
            break
        try:
            verification = publish.verify(
                clients,
                settings.data_bucket,
                window.keys.staging_prefix,
                outcome.publish.full_load_rows,
                table=table,
                filter_column=None,
            )
            result = _publish_verified(
                clients,
                settings,
                plan.model_copy(
                    update={
                        "window": window.window,
                        "run_id": names.window_label(plan.run_id, window.index),
                    }
                ),
                window.keys,
                verification,
                full_load_rows=outcome.publish.full_load_rows,
                watermark=outcome.publish.watermark,
                previous_schema_key=schema_key,
                probed=state.probe,
                now=now,
            )
        except (publish.VerificationError, SchemaChangeError) as error:
            failed = FailedWindow(
                index=window.index, error=type(error).__name__, message=str(error)[:1000]
            )
            break
        published.append(result)
        schema_key = result.schema_manifest_key
    # The failed window and every later one: their staged files go, the next run loads them.
    publish.delete_prefix(clients, settings.data_bucket, plan.keys.staging_prefix)
    if not published:
        assert failed is not None
        raise replication.LoadFailedError(
            f"table {table!r}: window 1 of {len(plan.windows)} failed ({failed.error}: "
            f"{failed.message}); nothing was published"
        )
    if failed is not None:
        logger.warning(
            "windows not published",
            extra={"table": table, "failedWindow": failed.index, "error": failed.error},
        )
    last = published[-1]
    changes = [c for p in published for c in p.schema_changes]
    summaries = [
        f"window {i}: {p.schema_change}" for i, p in enumerate(published, 1) if p.schema_change
    ]
    return Published(
        warnings=[w for p in published for w in p.warnings],
        rows=sum(p.rows for p in published),
        files=sum(p.files for p in published),
        bytes=sum(p.bytes for p in published),
        full_load_rows=sum(p.full_load_rows for p in published),
        loaded_max=last.loaded_max,
        watermark=last.watermark,
        run_prefix=last.run_prefix,
        manifest_key=last.manifest_key,
        schema_manifest_key=last.schema_manifest_key,
        schema_changes=changes,
        schema_change="; ".join(summaries) or None,
        windows_published=[w.index for w in plan.windows[: len(published)]],
        failed_window=failed,
    )


def _publish_verified(
    clients: Clients,
    settings: Settings,
    plan: RunPlan,
    keys: RunKeys,
    verification: publish.Verification,
    *,
    full_load_rows: int,
    watermark: str | None,
    previous_schema_key: str | None,
    probed: Probe | None,
    now: Now,
) -> Published:
    """Check the schema, publish the verified files under ``keys`` with their manifest
    (last), and remove their staging."""
    table = plan.table
    limit_kb = lob_limit_kb(plan.task_settings)
    lob_warnings = (
        [
            str(w)
            for w in publish.lob_warnings(
                clients, settings.data_bucket, verification.files, limit_kb
            )
        ]
        if limit_kb is not None
        else []
    )
    witness = _probe_witness(probed, plan, full_load_rows, verification.rows)
    warnings = [*lob_warnings, *([witness] if witness else [])]
    # Before anything is published: a schema change the item does not allow fails here.
    schema = lake.check_run_schema(
        clients,
        settings.data_bucket,
        verification.schema,
        table=table,
        run_id=plan.run_id,
        manifest_key=keys.manifest_key,
        previous_key=previous_schema_key,
        final_prefix=keys.final_prefix,
        policy=SchemaPolicy(plan.schema_changes),
    )
    manifest = publish.Manifest.of_run(
        plan,
        verification,
        full_load_rows=full_load_rows,
        watermark=watermark,
        warnings=warnings,
        schema_fields=schema.manifest_fields(verification.schema),
        created_at=now(),
    )
    publish.publish(
        clients,
        settings.data_bucket,
        verification,
        run_prefix=keys.run_prefix,
        manifest_key=keys.manifest_key,
        manifest=manifest,
    )
    publish.delete_prefix(clients, settings.data_bucket, keys.staging_prefix)
    logger.info(
        "run published",
        extra={"table": table, "rows": verification.rows, "files": len(verification.files)},
    )
    for warning in lob_warnings:
        logger.warning("LOB values may be truncated", extra={"table": table, "warning": warning})
    if witness:
        logger.warning("source changed during the load", extra={"table": table, "warning": witness})
    if schema.drift.changes:
        logger.warning("schema changed", extra={"table": table, "changes": schema.drift.summary()})
    return Published(
        warnings=warnings,
        rows=verification.rows,
        files=len(verification.files),
        bytes=verification.bytes,
        full_load_rows=full_load_rows,
        loaded_max=verification.loaded_max,
        watermark=watermark,
        run_prefix=keys.run_prefix,
        manifest_key=keys.manifest_key,
        schema_manifest_key=schema.schema_manifest_key,
        schema_changes=[c.to_dict() for c in schema.drift.changes],
        schema_change=schema.drift.summary() or None,
    )


def _probe_witness(
    probed: Probe | None, plan: RunPlan, full_load_rows: int, footer_rows: int
) -> str | None:
    """The probe's count as a third witness: a warning when it differs from the load's.

    DMS FullLoadRows and the Parquet footers must agree (publish.verify fails the run
    otherwise); the probe counted earlier, so a difference means the source changed.
    """
    if probed is None or not probed.enabled:
        return None
    counted = probed.rows_of(plan.window.lower, plan.window.upper)
    if counted is None or counted == full_load_rows:
        return None
    when = probed.planned_at.isoformat() if probed.planned_at else "planning"
    return (
        f"table {plan.table!r}: the source probe counted {counted} rows in window "
        f"{plan.window_text} at {when}, but DMS loaded {full_load_rows} (FullLoadRows) and "
        f"the Parquet files hold {footer_rows}: rows in the window were inserted, updated "
        "or deleted at the source between the probe and the load; what DMS read is published"
    )


# --- 9. record -------------------------------------------------------------------------


def record_success(
    state: RunState, clients: Clients, settings: Settings, now: Now = utcnow
) -> Recorded:
    """Commit the watermark and run state (conditional on lock and watermark), add history."""
    table, run_id, plan = state.table, state.run_id, state.part("run")
    window, outcome = plan.window, state.publish
    if plan.loads_nothing:
        status = store.SKIPPED if plan.skip_reason else store.SUCCEEDED
        watermark = resolve_watermark(window, None)
    else:
        status, watermark = store.SUCCEEDED, outcome.watermark if outcome else None
    rows, files, size = (outcome.rows, outcome.files, outcome.bytes) if outcome else (0, 0, 0)
    warnings = list(outcome.warnings) if outcome else []
    schema_change = outcome.schema_change if outcome else None
    moment = now()
    # A windowed run that stopped at a failed window loaded up to its watermark only.
    partial = outcome is not None and outcome.failed_window is not None
    loaded = store.RecordedWindow(
        lower=window.lower, upper=watermark if partial else (window.upper or watermark)
    )
    committed = store.record_success(
        clients,
        settings,
        table,
        run_id,
        status=status,
        previous_watermark=plan.previous_watermark,
        watermark=watermark,
        window=loaded.document(),
        rows=rows,
        files=files,
        now=moment,
        schema_manifest_key=outcome.schema_manifest_key if outcome else None,
        schema_change=f"run {run_id}: {schema_change}" if schema_change else None,
    )
    if outcome is not None and status == store.SUCCEEDED:
        # After the watermark: the data is committed whatever the catalog says.
        problem = register_catalog(clients, settings, table, run_id, outcome)
        if problem:
            warnings.append(problem)
    # Written even when this is a retry of an already committed call: the first attempt
    # may have committed and then failed writing this record (put is idempotent).
    record = store.SuccessRecord(
        target_table_name=table,
        run_id=run_id,
        status=status,
        window=loaded,
        window_text=plan.window_text,
        skip_reason=plan.skip_reason,
        rows=rows,
        files=files,
        bytes=size,
        watermark=watermark,
        previous_watermark=plan.previous_watermark,
        manifest_key=outcome.manifest_key if outcome else None,
        replication_mode=plan.replication_mode,
        dms_names=plan.names,
        started_at=plan.planned_at.isoformat(),
        ended_at=moment.isoformat(),
        warnings=warnings,
        schema_changes=list(outcome.schema_changes) if outcome and schema_change else [],
    )
    store.put_history(clients, settings, record)
    if committed:
        run_metrics(
            table,
            rows=rows,
            files=files,
            size=size,
            seconds=(moment - plan.planned_at).total_seconds(),
        )
    logger.info("run recorded", extra={"table": table, "status": status, "watermark": watermark})
    notes = [*warnings, *([f"schema changed: {schema_change}"] if schema_change else [])]
    return Recorded(
        status=status,
        watermark=watermark,
        previous_watermark=plan.previous_watermark,
        rows=rows,
        files=files,
        already_recorded=not committed,
        # the state machine notifies whenever this is present
        warning=" | ".join(notes) if notes else None,
        failed_window=outcome.failed_window if outcome else None,
    )


def register_catalog(
    clients: Clients, settings: Settings, table: str, run_id: str, outcome: Published
) -> str | None:
    """Register the published run in the Glue Data Catalog; a warning text if that failed.

    A catalog failure never fails the run or touches its data: the run stays committed,
    the warning goes to the history and the notification, and the next run that publishes
    registers every partition the catalog lacks (``catalog.register``).
    """
    try:
        unit = catalog.PublishedUnit(
            run_id=run_id,
            run_prefix=outcome.run_prefix,
            table_schema=catalog.table_schema_of(
                clients, settings.data_bucket, outcome.schema_manifest_key
            ),
        )
        registration = catalog.register(clients, settings, table, [unit])
    except Exception as error:  # whatever went wrong, the run stays committed
        text = (
            f"Glue catalog not updated ({type(error).__name__}: {error}); the next run that "
            "publishes registers what is missing"
        )
        logger.warning("catalog not updated", extra={"table": table, "error": text})
        return text
    if registration is not None:
        logger.info(
            "catalog updated",
            extra={
                "table": table,
                "glueTable": f"{registration.database}.{registration.table}",
                "tableCreated": registration.created,
                "tableUpdated": registration.updated,
                "partitionsAdded": len(registration.partitions_added),
            },
        )
    return None


def _error_text(error: CaughtError | None) -> tuple[str, str]:
    """(error name, readable message) of a Step Functions Catch result."""
    if error is None:
        return "Unknown", "the run failed without an error description"
    cause = error.Cause
    try:
        parsed = json.loads(cause) if cause.startswith("{") else None
    except json.JSONDecodeError:
        parsed = None
    message = str(parsed.get("errorMessage", cause)) if isinstance(parsed, dict) else cause
    return error.Error, message


def record_failure(
    state: RunState, clients: Clients, settings: Settings, now: Now = utcnow
) -> Failure:
    """Delete staging and any output of this run, mark the run FAILED, release the lock.

    The watermark never moves here. A run whose success was already committed (a later
    step such as teardown failed) keeps its published output.
    """
    keys = state.run.keys if state.run else None
    windows = [w.keys for w in state.run.windows] if state.run and state.run.windowed else []
    return _fail(
        state,
        clients,
        settings,
        now,
        keys,
        state.replication_mode(settings.replication_mode),
        windows,
    )


def _fail(
    state: RunState,
    clients: Clients,
    settings: Settings,
    now: Now,
    keys: RunKeys | None,
    mode: str,
    window_keys: list[RunKeys] | None = None,
) -> Failure:
    table, run_id, plan = state.table, state.run_id, state.run
    name, message = _error_text(state.error)
    moment = now()
    committed = store.run_committed(clients, settings, table, run_id)
    deleted = 0
    if not committed:
        deleted = publish.cleanup_run(
            clients,
            settings.data_bucket,
            staging_prefix=_staging_prefix(settings, table, run_id),
            run_prefix=keys.run_prefix if keys else None,
            manifest_key=keys.manifest_key if keys else None,
        )
        for window_key in window_keys or []:  # manifests first, then files, per window
            deleted += publish.cleanup_run(
                clients,
                settings.data_bucket,
                staging_prefix=window_key.staging_prefix,
                run_prefix=window_key.run_prefix,
                manifest_key=window_key.manifest_key,
            )
    window = (
        store.RecordedWindow(lower=plan.window.lower, upper=plan.window.upper) if plan else None
    )
    text = f"{name}: {message}"
    updated = False
    if committed:
        note = store.PostCommitNote(post_commit_error=text)
        store.note_history(clients, settings, table, run_id, note)
    else:
        updated = store.record_failure(
            clients,
            settings,
            table,
            run_id,
            error=text,
            window=window.document() if window else None,
            now=moment,
        )
        record = store.FailureRecord(
            target_table_name=table,
            run_id=run_id,
            status=store.FAILED,
            error=text[: store.ERROR_TEXT_MAX],
            window=window,
            window_text=plan.window_text if plan else None,
            previous_watermark=plan.previous_watermark if plan else None,
            replication_mode=mode,
            dms_names=_names(state),
            started_at=plan.planned_at.isoformat() if plan else None,
            ended_at=moment.isoformat(),
            objects_deleted=deleted,
        )
        store.put_history(clients, settings, record)
    failure_metric(table)
    logger.error(
        "run failed",
        extra={"table": table, "error": name, "committed": committed, "itemUpdated": updated},
    )
    return Failure(
        status=store.SUCCEEDED if committed else store.FAILED,
        error=name,
        message=message[:1000],
        committed=committed,
        item_updated=updated,
        objects_deleted=deleted,
    )


def _staging_prefix(settings: Settings, table: str, run_id: str) -> str:
    # From the stack's staging prefix, not the plan: a run may fail before it has one.
    return names.as_prefix(names.staging_folder(settings.staging_prefix, table, run_id))


# --- 10. teardown -----------------------------------------------------------------------


def teardown(state: RunState, clients: Clients, settings: Settings, now: Now = utcnow) -> Poll:
    """One pass of deleting the run's DMS resources (found by their per-run names)."""
    outcome = _mode(state, settings).teardown(clients, _names(state), _window_names(state))
    phase = "teardown-after-failure" if state.error else "teardown"
    remaining = outcome["remaining"]
    why = "; ".join(outcome.get("notes") or [])
    return _poll(
        state.poll,
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
    event: ExecutionStatusChange, clients: Clients, settings: Settings, now: Now = utcnow
) -> AbortedCleanup | IgnoredChange:
    """Handle an EventBridge "Step Functions Execution Status Change" for ABORTED/TIMED_OUT.

    No Catch runs when an execution is stopped or times out, so this does what the
    failure path would: clean up data, mark the run failed, release the lock, and tear
    the run's DMS resources down (found by name). Raises TransientError if teardown
    is not finished in time, so the asynchronous invoke is retried.
    """
    detail = event.detail
    if detail.status not in ("ABORTED", "TIMED_OUT"):
        return IgnoredChange(status=detail.status)
    started = RunInput.model_validate_json(detail.input or "{}")
    table, run_id = started.table, started.run_id
    history = store.get_history(clients, settings, table, run_id) or {}
    mode = str(history.get("replicationMode") or settings.replication_mode)
    # A windowed run noted how many windows it has before it created anything.
    count = int(history.get("windowCount") or 0)
    spread = int(history.get("instanceCount") or 1)
    window_names = [names.window_names(table, run_id, i, spread) for i in range(1, count + 1)]
    keys = None
    plain = store.get_item(clients, settings, table)
    if plain is not None:
        try:
            item = parse_item(plain)
            keys = names.run_keys(
                settings.staging_prefix, item.output_s3_prefix, item.source_schema, table, run_id
            )
        except DeltaloadError:
            pass  # an invalid item: nothing can have been published
    # The event carries the error and cause given to StopExecution, when there were any
    # (https://docs.aws.amazon.com/step-functions/latest/dg/cw-events.html).
    error = CaughtError(
        Error=detail.error or f"Execution{detail.status.title().replace('_', '')}",
        Cause=detail.cause or detail.status,
    )
    state = RunState(table=table, run_id=run_id, error=error)
    window_keys = [names.window_keys(keys, run_id, i) for i in range(1, count + 1)] if keys else []
    failure = _fail(state, clients, settings, now, keys, mode, window_keys)
    strategy = replication.strategy(mode)
    deadline = now().timestamp() + ABORT_CLEANUP_SECONDS
    attempt = 0
    while True:
        outcome = strategy.teardown(clients, _names(state), window_names)
        if outcome["done"]:
            if not failure.committed:
                # A load that was still running wrote on until teardown stopped its task:
                # what it staged after the failure path's clean-up goes now.
                late = publish.delete_prefix(
                    clients, settings.data_bucket, _staging_prefix(settings, table, run_id)
                )
                failure = failure.model_copy(
                    update={"objects_deleted": failure.objects_deleted + late}
                )
            return AbortedCleanup(failure=failure, teardown=outcome)
        moment = now().timestamp()
        if backoff.deadline_passed(deadline, moment):
            why = "; ".join(outcome.get("notes") or [])
            raise TransientError(
                f"table {table!r}: run {run_id} still has {', '.join(outcome['remaining'])}"
                + (f" ({why})" if why else "")
            )
        _sleep(max(1, backoff.wait_within(attempt, 5, 60, deadline, moment)))
        attempt += 1
