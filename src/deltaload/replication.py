"""Creating, monitoring and deleting the DMS resources of one run.

Each run creates its own S3 target endpoint (BucketFolder = the run's staging folder)
and its own full-load task, plus either a replication instance (mode ``instance``), a
DMS Serverless replication config (mode ``serverless``), or nothing (mode ``existing``:
a shared instance). Identifiers come from ``names.dms_names(table, runId)``, so every
create is idempotent (a retried step finds what it made) and teardown finds what a run
created by name even when the creating step failed before reporting it. Teardown only
ever looks at those per-run names: the shared instance and the template's source
endpoint are never touched.

A full-load task has succeeded only when it is ``stopped`` with a StopReason of
FULL_LOAD_ONLY_FINISHED, ``TablesErrored == 0`` and the table statistics say the table
completed: a task also stops "finished" after errors that skipped a table.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from deltaload.aws import Clients, error_code, transient_errors
from deltaload.dmsstates import SERVERLESS_STARTING

# LoadFailedError is re-exported: the workflow names a failed load by it.
from deltaload.errors import LoadFailedError as LoadFailedError
from deltaload.errors import ResourceError
from deltaload.runstate import (
    DmsNames,
    ExistingResources,
    InstanceResources,
    Load,
    Resources,
    RunPlan,
    ServerlessLoad,
    ServerlessResources,
    TaskLoad,
)
from deltaload.settings import Settings

NOT_FOUND = "ResourceNotFoundFault"
ALREADY_EXISTS = "ResourceAlreadyExistsFault"
INVALID_STATE = "InvalidResourceStateFault"
FULL_LOAD_FINISHED = "FULL_LOAD_ONLY_FINISHED"
TABLE_COMPLETED = "Table completed"
# ReplicationInstanceStatus values that never become "available" (API Reference,
# ReplicationInstance: https://docs.aws.amazon.com/dms/latest/APIReference/API_ReplicationInstance.html);
# creating, modifying, upgrading, rebooting, resetting-master-credentials and maintenance
# are waited out.
INSTANCE_FAILED = {
    "failed",
    "incompatible-credentials",
    "incompatible-network",
    "incompatible-parameters",
    "inaccessible-encryption-credentials",
    "storage-full",
    "deleting",
    "deleted",
}

# What teardown does in each documented status (docs/aws-fidelity.md, "Statuses").
STOP, WAIT, DELETE, PROBE = "stop", "wait", "delete", "probe"

# ReplicationTask.Status, DMS API Reference (ReplicationTask):
# https://docs.aws.amazon.com/dms/latest/APIReference/API_ReplicationTask.html
TASK_STOPPABLE = frozenset({"starting", "running"})
TASK_WAIT = frozenset({"stopping", "creating", "modifying", "moving", "testing", "deleting"})
TASK_DELETABLE = frozenset({"ready", "stopped", "failed", "failed-move"})
TASK_STARTED = frozenset({"starting", "running", "stopping", "stopped", "failed"})

SERVERLESS_STOPPABLE = frozenset({*SERVERLESS_STARTING, "running"})
SERVERLESS_WAIT = frozenset({"stopping", "deleting"})
# DeleteReplicationConfig: "You can delete the configuration when the replication is in a
# non-RUNNING and non-STARTING state" (API Reference, DeleteReplicationConfig). "" is a
# config whose replication was never started; created/ready a replication not yet run.
SERVERLESS_DELETABLE = frozenset({"", "created", "ready", "stopped", "failed"})
SERVERLESS_NOT_STARTED = frozenset({"", "created", "ready"})


@dataclass(frozen=True)
class Verdict:
    """What one look at a task (or serverless replication) says about the load."""

    done: bool
    failed: bool
    status: str
    reason: str = ""
    full_load_rows: int | None = None
    details: dict[str, Any] = field(default_factory=dict)


# --- lookups ---------------------------------------------------------------------------


def _describe_one(
    clients: Clients, operation: str, result_key: str, filter_name: str, value: str
) -> dict[str, Any] | None:
    """The single DMS resource a filter selects, or None (DMS answers NotFound for none)."""
    try:
        with transient_errors():
            response = getattr(clients.dms, operation)(
                Filters=[{"Name": filter_name, "Values": [value]}]
            )
    except ClientError as error:
        if error_code(error) == NOT_FOUND:
            return None
        raise
    found = response.get(result_key) or []
    return found[0] if found else None


def find_instance(clients: Clients, identifier: str) -> dict[str, Any] | None:
    """The replication instance with this identifier, or None."""
    return _describe_one(
        clients,
        "describe_replication_instances",
        "ReplicationInstances",
        "replication-instance-id",
        identifier,
    )


def find_instance_by_arn(clients: Clients, arn: str) -> dict[str, Any] | None:
    """The replication instance with this ARN, or None."""
    return _describe_one(
        clients,
        "describe_replication_instances",
        "ReplicationInstances",
        "replication-instance-arn",
        arn,
    )


def find_endpoint(clients: Clients, identifier: str) -> dict[str, Any] | None:
    """The endpoint with this identifier, or None."""
    return _describe_one(clients, "describe_endpoints", "Endpoints", "endpoint-id", identifier)


def find_task(clients: Clients, identifier: str) -> dict[str, Any] | None:
    """The replication task with this identifier, or None."""
    return _describe_one(
        clients,
        "describe_replication_tasks",
        "ReplicationTasks",
        "replication-task-id",
        identifier,
    )


def find_config(clients: Clients, identifier: str) -> dict[str, Any] | None:
    """The serverless replication config with this identifier, or None."""
    return _describe_one(
        clients,
        "describe_replication_configs",
        "ReplicationConfigs",
        "replication-config-id",
        identifier,
    )


def find_replication(clients: Clients, config_arn: str) -> dict[str, Any] | None:
    """The serverless replication of a config, or None before it was started."""
    return _describe_one(
        clients,
        "describe_replications",
        "Replications",
        "replication-config-arn",
        config_arn,
    )


# --- creation --------------------------------------------------------------------------


def _create(clients: Clients, operation: str, what: str, **params: Any) -> dict[str, Any] | None:
    """Call a DMS create; None if it already exists (a retried step), ResourceError if refused."""
    try:
        with transient_errors():
            return getattr(clients.dms, operation)(**params)
    except ClientError as error:
        if error_code(error) == ALREADY_EXISTS:
            return None
        raise ResourceError(f"DMS refused to create {what}: {error}") from error


def target_endpoint_settings(settings: Settings, staging_folder: str) -> dict[str, Any]:
    """S3Settings of the per-run target endpoint: Parquet into the run's staging folder."""
    return {
        "ServiceAccessRoleArn": settings.require("dms_s3_role_arn"),
        "BucketName": settings.data_bucket,
        "BucketFolder": staging_folder,
        "DataFormat": "parquet",
        "ParquetVersion": "parquet-2-0",
        "EnableStatistics": True,
        "MaxFileSize": settings.max_file_size_kb,
        "DatePartitionEnabled": False,
        "IncludeOpForFullLoad": False,
    }


def ensure_target_endpoint(
    clients: Clients, settings: Settings, identifier: str, staging_folder: str, tags: list
) -> str:
    """Create (or find) the run's S3 target endpoint; its ARN."""
    response = _create(
        clients,
        "create_endpoint",
        f"target endpoint {identifier}",
        EndpointIdentifier=identifier,
        EndpointType="target",
        EngineName="s3",
        S3Settings=target_endpoint_settings(settings, staging_folder),
        Tags=tags,
    )
    if response is not None:
        return response["Endpoint"]["EndpointArn"]
    found = find_endpoint(clients, identifier)
    if found is None:
        raise ResourceError(f"target endpoint {identifier} exists but cannot be described")
    return found["EndpointArn"]


def ensure_instance(clients: Clients, settings: Settings, identifier: str, tags: list) -> str:
    """Create (or find) the run's replication instance; its ARN."""
    params: dict[str, Any] = {
        "ReplicationInstanceIdentifier": identifier,
        "ReplicationInstanceClass": settings.replication_instance_class,
        "AllocatedStorage": settings.replication_allocated_storage,
        "MultiAZ": False,
        "PubliclyAccessible": False,
        "Tags": tags,
    }
    if settings.replication_subnet_group:
        params["ReplicationSubnetGroupIdentifier"] = settings.replication_subnet_group
    if settings.security_group_ids:
        params["VpcSecurityGroupIds"] = list(settings.security_group_ids)
    response = _create(
        clients, "create_replication_instance", f"replication instance {identifier}", **params
    )
    if response is not None:
        return response["ReplicationInstance"]["ReplicationInstanceArn"]
    found = find_instance(clients, identifier)
    if found is None:
        raise ResourceError(f"replication instance {identifier} exists but cannot be described")
    return found["ReplicationInstanceArn"]


def ensure_config(
    clients: Clients,
    settings: Settings,
    identifier: str,
    source_arn: str,
    target_arn: str,
    table_mapping: Mapping[str, Any],
    task_settings: Mapping[str, Any],
    tags: list,
) -> str:
    """Create (or find) the run's DMS Serverless replication config; its ARN."""
    compute: dict[str, Any] = {
        "MaxCapacityUnits": settings.serverless_max_capacity_units,
        "MultiAZ": False,
    }
    if settings.replication_subnet_group:
        compute["ReplicationSubnetGroupId"] = settings.replication_subnet_group
    if settings.security_group_ids:
        compute["VpcSecurityGroupIds"] = list(settings.security_group_ids)
    response = _create(
        clients,
        "create_replication_config",
        f"replication config {identifier}",
        ReplicationConfigIdentifier=identifier,
        SourceEndpointArn=source_arn,
        TargetEndpointArn=target_arn,
        ComputeConfig=compute,
        ReplicationType="full-load",
        TableMappings=json.dumps(table_mapping),
        ReplicationSettings=json.dumps(task_settings),
        Tags=tags,
    )
    if response is not None:
        return response["ReplicationConfig"]["ReplicationConfigArn"]
    found = find_config(clients, identifier)
    if found is None:
        raise ResourceError(f"replication config {identifier} exists but cannot be described")
    return found["ReplicationConfigArn"]


def ensure_task(
    clients: Clients,
    identifier: str,
    *,
    instance_arn: str,
    source_arn: str,
    target_arn: str,
    table_mapping: Mapping[str, Any],
    task_settings: Mapping[str, Any],
    tags: list,
) -> dict[str, Any]:
    """Create (or find) the run's full-load task; the task description."""
    response = _create(
        clients,
        "create_replication_task",
        f"replication task {identifier}",
        ReplicationTaskIdentifier=identifier,
        SourceEndpointArn=source_arn,
        TargetEndpointArn=target_arn,
        ReplicationInstanceArn=instance_arn,
        MigrationType="full-load",
        TableMappings=json.dumps(table_mapping),
        ReplicationTaskSettings=json.dumps(task_settings),
        Tags=tags,
    )
    if response is not None:
        return response["ReplicationTask"]
    found = find_task(clients, identifier)
    if found is None:
        raise ResourceError(f"replication task {identifier} exists but cannot be described")
    return found


def instance_readiness(instance: Mapping[str, Any] | None, what: str) -> tuple[bool, bool, str]:
    """(ready, failed, status) of a replication instance description."""
    if instance is None:
        return False, True, f"{what} does not exist"
    status = str(instance.get("ReplicationInstanceStatus", "unknown"))
    if status == "available":
        return True, False, status
    if status in INSTANCE_FAILED:
        return False, True, f"{what} is {status}"
    return False, False, status


def start_task(clients: Clients, task: Mapping[str, Any]) -> bool:
    """Start a new task with ``start-replication`` (a task of its own run never needs
    ``reload-target``); False when it had already been started (a retried step)."""
    status = task.get("Status")
    if status != "ready" or task.get("ReplicationTaskStartDate"):
        if status in TASK_STARTED:
            return False
        raise ResourceError(
            f"replication task {task.get('ReplicationTaskIdentifier')} is {status!r}, "
            "not ready to start"
        )
    with transient_errors():
        clients.dms.start_replication_task(
            ReplicationTaskArn=task["ReplicationTaskArn"],
            StartReplicationTaskType="start-replication",
        )
    return True


def start_serverless(clients: Clients, config_arn: str) -> bool:
    """Start the serverless replication with ``start-replication``; False if already started."""
    replication = find_replication(clients, config_arn)
    if replication is not None and (replication.get("Status") or "") not in SERVERLESS_NOT_STARTED:
        return False
    with transient_errors():
        clients.dms.start_replication(
            ReplicationConfigArn=config_arn, StartReplicationType="start-replication"
        )
    return True


# --- monitoring ------------------------------------------------------------------------


def table_statistics(
    clients: Clients, *, task_arn: str | None = None, config_arn: str | None = None
) -> list[dict[str, Any]]:
    """All table statistics of a task or serverless replication (paginated by Marker)."""
    stats: list[dict[str, Any]] = []
    marker: str | None = None
    while True:
        params: dict[str, Any] = {"MaxRecords": 100}
        if marker:
            params["Marker"] = marker
        with transient_errors():
            if task_arn:
                page = clients.dms.describe_table_statistics(ReplicationTaskArn=task_arn, **params)
                stats.extend(page.get("TableStatistics", []))
            else:
                page = clients.dms.describe_replication_table_statistics(
                    ReplicationConfigArn=config_arn, **params
                )
                stats.extend(page.get("ReplicationTableStatistics", []))
        marker = page.get("Marker")
        if not marker:
            return stats


def table_entry(
    stats: list[Mapping[str, Any]], schema: str, names: tuple[str, ...]
) -> Mapping[str, Any] | None:
    """The statistics row of our table (source or renamed target name, any case)."""
    wanted = {n.lower() for n in names}
    for row in stats:
        if (
            str(row.get("SchemaName", "")).lower() == schema.lower()
            and str(row.get("TableName", "")).lower() in wanted
        ):
            return row
    return None


def judge_load(
    status: str,
    stop_reason: str,
    tables_errored: int | None,
    failure: str,
    stats: list[Mapping[str, Any]],
    schema: str,
    tables: tuple[str, ...],
) -> Verdict:
    """Decide from one look whether a full load is still running, finished cleanly, or failed.

    Clean needs ALL of: stopped, StopReason FULL_LOAD_ONLY_FINISHED, TablesErrored == 0,
    and our table's statistics saying "Table completed".
    """
    status = status or "unknown"
    if status == "failed":
        return Verdict(False, True, status, f"DMS reports the load failed: {failure or status}")
    if status != "stopped":
        return Verdict(False, False, status)
    if FULL_LOAD_FINISHED not in (stop_reason or ""):
        return Verdict(
            False, True, status, f"task stopped with {stop_reason!r}, not {FULL_LOAD_FINISHED}"
        )
    if tables_errored is None:
        return Verdict(False, True, status, "DMS reported no TablesErrored count for the task")
    if tables_errored:
        return Verdict(False, True, status, f"DMS reports {tables_errored} table(s) errored")
    row = table_entry(stats, schema, tables)
    if row is None:
        return Verdict(
            False,
            True,
            status,
            f"DMS table statistics have no entry for {schema}.{tables[0]}: "
            "the table was not loaded",
        )
    state = str(row.get("TableState", ""))
    if state != TABLE_COMPLETED:
        return Verdict(False, True, status, f"table {schema}.{tables[0]} is {state!r}")
    rows = int(row.get("FullLoadRows", 0) or 0)
    return Verdict(True, False, status, "full load finished", rows, {"tableState": state})


def task_verdict(clients: Clients, task_arn: str, schema: str, tables: tuple[str, ...]) -> Verdict:
    """Look at a full-load task once."""
    task = _describe_one(
        clients,
        "describe_replication_tasks",
        "ReplicationTasks",
        "replication-task-arn",
        task_arn,
    )
    if task is None:
        return Verdict(False, True, "missing", f"replication task {task_arn} no longer exists")
    status = str(task.get("Status", ""))
    stats = table_statistics(clients, task_arn=task_arn) if status == "stopped" else []
    counts = task.get("ReplicationTaskStats") or {}
    return judge_load(
        status,
        str(task.get("StopReason", "")),
        counts.get("TablesErrored"),
        str(task.get("LastFailureMessage", "")),
        stats,
        schema,
        tables,
    )


def serverless_verdict(
    clients: Clients, config_arn: str, schema: str, tables: tuple[str, ...]
) -> Verdict:
    """Look at a serverless replication once."""
    replication = find_replication(clients, config_arn)
    if replication is None:
        return Verdict(False, False, "not-started")
    status = str(replication.get("Status", ""))
    stats = table_statistics(clients, config_arn=config_arn) if status == "stopped" else []
    counts = replication.get("ReplicationStats") or {}
    failures = "; ".join(replication.get("FailureMessages") or [])
    return judge_load(
        status,
        str(replication.get("StopReason", "")),
        counts.get("TablesErrored"),
        failures,
        stats,
        schema,
        tables,
    )


# --- teardown ---------------------------------------------------------------------------


def teardown_action(kind: str, status: str) -> str:
    """What teardown does with a task or serverless replication in ``status``.

    ``stop`` it, ``wait`` for DMS to move it on, ``delete`` it (its config, for a serverless
    replication), or ``probe`` a status no DMS page documents: try to stop, then to delete,
    and wait if DMS refuses both.
    """
    if kind == "task":
        stoppable, waiting, deletable = TASK_STOPPABLE, TASK_WAIT, TASK_DELETABLE
    elif kind == "serverless":
        stoppable, waiting, deletable = SERVERLESS_STOPPABLE, SERVERLESS_WAIT, SERVERLESS_DELETABLE
    else:
        raise ValueError(f"teardown_action: kind {kind!r} is not 'task' or 'serverless'")
    status = status or ""
    if status in stoppable:
        return STOP
    if status in waiting:
        return WAIT
    if status in deletable:
        return DELETE
    return PROBE


def _attempt(clients: Clients, operation: str, **params: Any) -> str | None:
    """Call a DMS stop or delete: None if DMS accepted it (or the resource is gone), else
    DMS's InvalidResourceStateFault message (the resource is not in a state for it)."""
    try:
        with transient_errors():
            getattr(clients.dms, operation)(**params)
    except ClientError as error:
        if error_code(error) == NOT_FOUND:
            return None
        if error_code(error) == INVALID_STATE:
            return str(error.response.get("Error", {}).get("Message") or INVALID_STATE)
        raise
    return None


@dataclass
class _Pass:
    """What one teardown pass did and what is left (see ``teardown_pass``)."""

    remaining: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def delete(self, clients: Clients, what: str, operation: str, **params: Any) -> None:
        """Ask DMS to delete ``what``; a refusal is noted, never counted as deleted."""
        refusal = _attempt(clients, operation, **params)
        if refusal is None:
            self.deleted.append(what)
        else:
            self.notes.append(f"{what}: DMS refused the delete ({refusal}); trying again later")

    def result(self) -> dict[str, Any]:
        return {
            "done": not self.remaining,
            "remaining": self.remaining,
            "deleted": self.deleted,
            "notes": self.notes,
        }


@dataclass(frozen=True)
class _Calls:
    """How teardown stops and deletes one kind of load (its ``teardown_action`` kind)."""

    kind: str
    arn_parameter: str
    stop: str
    delete: str


_TASK_CALLS = _Calls(
    "task", "ReplicationTaskArn", "stop_replication_task", "delete_replication_task"
)
_CONFIG_CALLS = _Calls(
    "serverless", "ReplicationConfigArn", "stop_replication", "delete_replication_config"
)


def _advance(
    clients: Clients, step: _Pass, what: str, calls: _Calls, status: str, arn: str
) -> None:
    """Stop, wait for or delete a task / serverless replication as its status allows."""
    action = teardown_action(calls.kind, status)
    params = {calls.arn_parameter: arn}
    step.remaining.append(what)
    if action == WAIT:
        step.notes.append(f"{what} is {status!r}; waiting for DMS")
        return
    if action in (STOP, PROBE):
        refusal = _attempt(clients, calls.stop, **params)
        if refusal is None:
            step.notes.append(f"{what} was {status!r}; stop requested")
            return
        if action == STOP:
            step.notes.append(f"{what} is {status!r}; DMS refused the stop ({refusal}); waiting")
            return
    step.delete(clients, what, calls.delete, **params)


def _tear_down_task(clients: Clients, step: _Pass, names: DmsNames) -> None:
    task = find_task(clients, names.task)
    if task is not None:
        status = str(task.get("Status") or "")
        arn = task["ReplicationTaskArn"]
        _advance(clients, step, f"task {names.task}", _TASK_CALLS, status, arn)


def _tear_down_config(clients: Clients, step: _Pass, names: DmsNames) -> None:
    config = find_config(clients, names.config)
    if config is not None:
        arn = config["ReplicationConfigArn"]
        status = str((find_replication(clients, arn) or {}).get("Status") or "")
        _advance(clients, step, f"config {names.config}", _CONFIG_CALLS, status, arn)


def _tear_down_endpoint(clients: Clients, step: _Pass, names: DmsNames) -> None:
    endpoint = find_endpoint(clients, names.target_endpoint)
    if endpoint is not None:
        what = f"endpoint {names.target_endpoint}"
        if endpoint.get("Status") != "deleting":
            step.delete(clients, what, "delete_endpoint", EndpointArn=endpoint["EndpointArn"])
        if find_endpoint(clients, names.target_endpoint) is not None:
            step.remaining.append(what)


def _tear_down_instance(clients: Clients, step: _Pass, names: DmsNames) -> None:
    instance = find_instance(clients, names.instance)
    if instance is not None:
        what = f"instance {names.instance}"
        status = str(instance.get("ReplicationInstanceStatus") or "")
        if status == "deleting":
            step.notes.append(f"{what} is 'deleting'; waiting for DMS")
        else:
            step.delete(
                clients,
                what,
                "delete_replication_instance",
                ReplicationInstanceArn=instance["ReplicationInstanceArn"],
            )
        step.remaining.append(what)


# --- the replication modes ---------------------------------------------------------------


@dataclass(frozen=True)
class LoadRequest:
    """What StartLoad gives a mode to start the run's load with."""

    plan: RunPlan
    resources: Resources
    tags: list[dict[str, str]]
    now: Callable[[], datetime]
    # StartLoad's in-process wait for a new task to leave "creating" (tasks only).
    until_ready: Callable[[dict[str, Any]], dict[str, Any]]


class _Replication(ABC):
    """What every replication mode does the same way, each with its own DMS calls: judge
    the load, read its statistics, tear down in dependency order."""

    judge: Callable[[Clients, str, str, tuple[str, ...]], Verdict]
    statistics_of: str  # the table_statistics parameter of the load's ARN
    tear_down_load: Callable[[Clients, _Pass, DmsNames], None]  # the task or config

    @abstractmethod
    def load_arn(self, resources: Resources, load: Load) -> str:
        """The ARN DMS reports the load's progress and statistics under."""

    def verdict(self, clients: Clients, plan: RunPlan, resources: Resources, load: Load) -> Verdict:
        """One look at the load."""
        arn = self.load_arn(resources, load)
        return self.judge(clients, arn, plan.source_schema, plan.table_names)

    def statistics(
        self, clients: Clients, resources: Resources, load: Load
    ) -> list[dict[str, Any]]:
        """The load's table statistics."""
        return table_statistics(clients, **{self.statistics_of: self.load_arn(resources, load)})

    @abstractmethod
    def _tear_down_compute(self, clients: Clients, step: _Pass, names: DmsNames) -> None:
        """Advance the deletion of the compute the run created, if any."""

    def teardown(
        self, clients: Clients, names: DmsNames, windows: Sequence[DmsNames] = ()
    ) -> dict[str, Any]:
        """One teardown pass (see ``teardown_pass``); ``windows``: the task (or config)
        and target endpoint of each window of a windowed run, on the run's compute."""
        step = _Pass()
        self.tear_down_load(clients, step, names)
        for window in windows:
            self.tear_down_load(clients, step, window)
        if step.remaining:  # endpoints and instances cannot go while a load still uses them
            return step.result()
        for window in windows:
            _tear_down_endpoint(clients, step, window)
        _tear_down_endpoint(clients, step, names)
        self._tear_down_compute(clients, step, names)
        # Windows spread over several instances: the run's other instances.
        others = sorted({w.instance for w in windows} - {names.instance})
        for instance in others:
            self._tear_down_compute(clients, step, names.model_copy(update={"instance": instance}))
        return step.result()


class TaskReplication(_Replication):
    """A full-load task on a replication instance: the per-run one or the shared one."""

    judge = staticmethod(task_verdict)
    statistics_of = "task_arn"
    tear_down_load = staticmethod(_tear_down_task)

    owns_instance: bool  # created by the run, so deleted by its teardown

    @abstractmethod
    def instance_arn(self, clients: Clients, settings: Settings, plan: RunPlan, tags: list) -> str:
        """The ARN of the instance the run's task runs on."""

    @abstractmethod
    def resources(self, **arns: Any) -> Resources:
        """The run's resources as the state document records them."""

    def create(
        self, clients: Clients, settings: Settings, plan: RunPlan, tags: list, now: datetime
    ) -> Resources:
        """Create (or find) the run's compute and its target endpoint."""
        instance_arn = self.instance_arn(clients, settings, plan, tags)
        target_arn = ensure_target_endpoint(clients, settings, *plan.first_target, tags)
        return self.resources(
            source_endpoint_arn=settings.require("source_endpoint_arn"),
            target_endpoint_arn=target_arn,
            instance_arn=instance_arn,
            created_at=now,
        )

    def readiness(self, clients: Clients, resources: Resources) -> tuple[bool, bool, str]:
        """(ready, failed, status) of the run's compute: the instance must be available."""
        arn = resources.instance_arn
        return instance_readiness(find_instance_by_arn(clients, arn), f"replication instance {arn}")

    def start(self, clients: Clients, load: LoadRequest) -> Load:
        """Create the run's task, wait until it is ready, start it with start-replication."""
        plan, resources = load.plan, load.resources
        task = ensure_task(
            clients,
            plan.names.task,
            instance_arn=resources.instance_arn,
            source_arn=resources.source_endpoint_arn,
            target_arn=resources.target_endpoint_arn,
            table_mapping=plan.table_mapping,
            task_settings=plan.task_settings,
            tags=load.tags,
        )
        task = load.until_ready(task)
        started = start_task(clients, task)
        return TaskLoad(task_arn=task["ReplicationTaskArn"], started=started, started_at=load.now())

    def load_arn(self, resources: Resources, load: Load) -> str:
        return load.task_arn

    def _tear_down_compute(self, clients: Clients, step: _Pass, names: DmsNames) -> None:
        if self.owns_instance:
            _tear_down_instance(clients, step, names)

    def create_windows(
        self, clients: Clients, settings: Settings, plan: RunPlan, resources: Resources, tags: list
    ) -> Resources:
        """Each window's task is created when the window starts (``start``)."""
        return resources


class InstanceReplication(TaskReplication):
    """Mode ``instance``: a replication instance of the run's own, deleted at teardown."""

    owns_instance = True

    def instance_arn(self, clients: Clients, settings: Settings, plan: RunPlan, tags: list) -> str:
        return ensure_instance(clients, settings, plan.names.instance, tags)

    def resources(self, **arns: Any) -> Resources:
        return InstanceResources(**arns)


class ExistingReplication(TaskReplication):
    """Mode ``existing``: the stack's shared instance, never created nor deleted by a run."""

    owns_instance = False

    def instance_arn(self, clients: Clients, settings: Settings, plan: RunPlan, tags: list) -> str:
        return settings.require("existing_instance_arn")

    def resources(self, **arns: Any) -> Resources:
        return ExistingResources(**arns)


class ServerlessReplication(_Replication):
    """Mode ``serverless``: a DMS Serverless replication config of the run's own."""

    judge = staticmethod(serverless_verdict)
    statistics_of = "config_arn"
    tear_down_load = staticmethod(_tear_down_config)

    def load_arn(self, resources: Resources, load: Load) -> str:
        return load.config_arn  # the run's config, or in a Map iteration its window's

    def create(
        self, clients: Clients, settings: Settings, plan: RunPlan, tags: list, now: datetime
    ) -> Resources:
        """Create (or find) the run's target endpoint, then its replication config."""
        source_arn = settings.require("source_endpoint_arn")
        first = plan.first_loading
        target_arn = ensure_target_endpoint(clients, settings, *plan.first_target, tags)
        config_arn = ensure_config(
            clients,
            settings,
            first.names.config,
            source_arn,
            target_arn,
            first.table_mapping,
            plan.task_settings,
            tags,
        )
        return ServerlessResources(
            source_endpoint_arn=source_arn,
            target_endpoint_arn=target_arn,
            config_arn=config_arn,
            created_at=now,
        )

    def create_windows(
        self, clients: Clients, settings: Settings, plan: RunPlan, resources: Resources, tags: list
    ) -> Resources:
        """A replication config per window, each with the window's table mapping and target
        endpoint (``window_endpoint_arns``): one config carries one table mapping. The
        first window with rows has the config ``create`` made; DMS Serverless bills
        capacity only while a replication runs, not for a config that waits."""
        assert isinstance(resources, ServerlessResources)
        targets = resources.window_endpoint_arns or []
        configs: list[str | None] = []
        for window, target_arn in zip(plan.windows, targets, strict=True):
            if target_arn is None:  # the probe found it empty: no load, no config
                configs.append(None)
            elif target_arn == resources.target_endpoint_arn:
                configs.append(resources.config_arn)
            else:
                configs.append(
                    ensure_config(
                        clients,
                        settings,
                        window.names.config,
                        resources.source_endpoint_arn,
                        target_arn,
                        window.table_mapping,
                        plan.task_settings,
                        tags,
                    )
                )
        return resources.model_copy(update={"window_config_arns": configs})

    def readiness(self, clients: Clients, resources: Resources) -> tuple[bool, bool, str]:
        """DMS Serverless provisions its capacity when the replication starts."""
        return True, False, "config created"

    def start(self, clients: Clients, load: LoadRequest) -> Load:
        """Start the serverless replication with start-replication."""
        arn = load.resources.config_arn
        started = start_serverless(clients, arn)
        return ServerlessLoad(config_arn=arn, started=started, started_at=load.now())

    def _tear_down_compute(self, clients: Clients, step: _Pass, names: DmsNames) -> None:
        """DMS Serverless releases its capacity with the config."""


Strategy = InstanceReplication | ExistingReplication | ServerlessReplication

STRATEGIES: dict[str, Strategy] = {
    "instance": InstanceReplication(),
    "existing": ExistingReplication(),
    "serverless": ServerlessReplication(),
}


def strategy(mode: str) -> Strategy:
    """The replication strategy of ``mode`` (instance, existing or serverless)."""
    try:
        return STRATEGIES[mode]
    except KeyError:
        raise ResourceError(
            f"replication mode {mode!r} is not one of {', '.join(STRATEGIES)}"
        ) from None


def teardown_pass(
    clients: Clients, names: DmsNames, mode: str, windows: Sequence[DmsNames] = ()
) -> dict[str, Any]:
    """Advance the deletion of everything the run may have created, in dependency order.

    Tasks (and a serverless config) go first; endpoints and the instance only once no
    task of the run exists any more. Each resource gets the one call its status allows
    (``teardown_action``), so a pass never repeats a call DMS must refuse; the caller
    repeats passes with backoff until ``done`` or its deadline. Returns {"done",
    "remaining", "deleted", "notes"}: ``deleted`` lists only deletes DMS accepted, and
    ``notes`` says why each remaining resource is still there.
    """
    return strategy(mode).teardown(clients, names, windows)
