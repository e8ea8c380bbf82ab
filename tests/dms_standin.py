"""The DMS the workflow and state-machine tests talk to: our local engine, behind a thin adapter.

``DmsStandIn`` is what those tests inject as ``Clients(overrides={"dms": ...})``. Every call
goes to the local DMS engine (``deltaload.local.dms``, quick timing, quotas off) through a
real botocore client, so the DMS rules the workflow must respect (identifiers DMS rejects,
deleting an instance or endpoint a task still uses, deleting a running task, reload-target
on a task that never ran, ...) are the engine's, documented in docs/engine.md. The adapter
only adds what the tests read:

- ``calls`` / ``operations()``: every call the code under test made, in order;
- ``violations``: each call DMS answered with InvalidResourceStateFault (a rule broken);
- ``instances``, ``tasks``, ``endpoints``, ``configs``: what exists now, by identifier (the
  stack's source endpoint, which outlives every run, is left out);
- ``load_rows``: the rows of the source table (``sales.orders`` in a SQLite file) that a
  load copies, filtered by the engine as DMS filters;
- ``fail_create[operation] = code``: the next such create fails, armed on the engine's
  fault registry (``faults``);
- ``source_alias``: the fixed source endpoint ARN of the settings fixture, which exists
  before any engine does, stands for the engine's source endpoint.

A test's describe call waits (briefly) until the resources it names leave their transient
states, so a run driven step by step in Python sees an instance available on its first
check and a load finished on its first poll, as the tests' state machine does after its
Wait states. Tasks started with ``start_stalled`` stay running until stopped.

``LoadOutcome`` is the scripted layer, kept because the engine is faithful and these
answers are not reachable by copying real rows: an exact number of Parquet files
(``files``; DMS splits by MaxFileSize), table statistics that disagree with the rows
written (``reported_rows``), a table in error while the stop reason still says finished
(``table_state``, ``tables_errored``), and an instance that never becomes available
(``instance_ready_after``). Each rewrites one field of an engine answer; nothing else is
invented here.
"""

from __future__ import annotations

import io
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
from botocore.config import Config
from botocore.exceptions import ClientError

from deltaload.dmsstates import SERVERLESS_STARTING
from deltaload.local.account import REGION
from deltaload.local.dms import LocalDms, Quotas, Timing

SOURCE_SCHEMA, SOURCE_TABLE = "sales", "orders"
SUBNET_GROUP = "deltaload-subnets"
SETTLE_SECONDS = 10.0

# Statuses a resource passes through on its own (DMS user guide: "Replication instance
# status", "Replication task status"; API Reference, Replication.Status).
TRANSIENT = {
    "creating",
    "modifying",
    "deleting",
    "starting",
    "running",
    "stopping",
    *SERVERLESS_STARTING,
}
_LISTS = {
    "describe_replication_instances": ("ReplicationInstances", "ReplicationInstanceIdentifier"),
    "describe_replication_tasks": ("ReplicationTasks", "ReplicationTaskIdentifier"),
    "describe_replications": ("Replications", "ReplicationConfigIdentifier"),
}


@dataclass
class LoadOutcome:
    """Answers the engine cannot give (see the module docstring); None/defaults change nothing."""

    files: int | None = None  # split the load into exactly this many Parquet files
    reported_rows: int | None = None  # FullLoadRows answered instead of the rows written
    table_state: str | None = None  # TableState answered instead of "Table completed"
    tables_errored: int | None = None  # TablesErrored answered once the load has stopped


class _FailCreate(dict[str, str]):
    """``fail_create["create_endpoint"] = "Code"`` arms the engine's fault for the next create."""

    def __init__(self, arm: Callable[[str, str], None]) -> None:
        super().__init__()
        self._arm = arm

    def __setitem__(self, operation: str, code: str) -> None:
        super().__setitem__(operation, code)
        self._arm(operation, code)


def _camel(operation: str) -> str:
    return "".join(part.capitalize() for part in operation.split("_"))


class DmsStandIn:
    """The local DMS engine as a boto3 DMS client, with a call log and views for assertions."""

    def __init__(self, workdir: Path, *, source_alias: str | None = None) -> None:
        """``source_alias``: the source endpoint ARN the tests' settings name (see below)."""
        self.session = boto3.Session(region_name=REGION)
        self.engine = LocalDms(self.session.client, timing=Timing.quick(), quotas=Quotas.off())
        self.engine.install(self.session.events)
        self.client = self.session.client(
            "dms", config=Config(retries={"total_max_attempts": 1, "mode": "standard"})
        )
        self.faults = self.engine.faults
        self.outcome = LoadOutcome()
        self.instance_ready_after = 1  # describes before an instance is reported available
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.violations: list[str] = []
        self.fail_create = _FailCreate(
            lambda op, code: self.faults.fail_at_create("*", operation=_camel(op), code=code)
        )
        self._instance_describes: dict[str, int] = {}
        self._held: set[str] = set()
        self._split: set[str] = set()
        self._database = workdir / "source.sqlite"
        self.load_rows = []
        self.client.create_replication_subnet_group(
            ReplicationSubnetGroupIdentifier=SUBNET_GROUP,
            ReplicationSubnetGroupDescription="the stack's subnet group",
            SubnetIds=["subnet-1", "subnet-2"],
        )
        self.source_endpoint_arn = self.add_source_endpoint("deltaload-source")
        self._source_alias = source_alias

    # -- setup -----------------------------------------------------------------------
    @property
    def load_rows(self) -> list[dict[str, Any]]:
        with sqlite3.connect(self._database) as conn:
            rows = conn.execute(f"SELECT id, amount FROM {SOURCE_TABLE} ORDER BY id").fetchall()
        return [{"id": i, "amount": a} for i, a in rows]

    @load_rows.setter
    def load_rows(self, rows: list[dict[str, Any]]) -> None:
        with sqlite3.connect(self._database) as conn:
            conn.execute(f"CREATE TABLE IF NOT EXISTS {SOURCE_TABLE} (id INTEGER, amount REAL)")
            conn.execute(f"DELETE FROM {SOURCE_TABLE}")
            conn.executemany(
                f"INSERT INTO {SOURCE_TABLE} VALUES (:id, :amount)", [dict(r) for r in rows]
            )

    def add_source_endpoint(self, identifier: str) -> str:
        """A source endpoint on the SQLite source (as the stack's template creates one)."""
        return self.client.create_endpoint(
            EndpointIdentifier=identifier,
            EndpointType="source",
            EngineName="sqlite",
            DatabaseName=str(self._database),
            ExtraConnectionAttributes=f"schemaName={SOURCE_SCHEMA}",
        )["Endpoint"]["EndpointArn"]

    def add_existing_instance(self, identifier: str) -> str:
        """An available replication instance made before the code under test runs (not logged).

        The shared instance of replication mode ``existing``, or a run's own instance that a
        teardown test starts from.
        """
        arn = self.client.create_replication_instance(
            ReplicationInstanceIdentifier=identifier, ReplicationInstanceClass="dms.t3.medium"
        )["ReplicationInstance"]["ReplicationInstanceArn"]
        self._settled("describe_replication_instances", {"Filters": _by_arn("instance", arn)})
        return arn

    def start_stalled(self, task_arn: str, identifier: str) -> None:
        """Start a task that then stays running until it is stopped (``faults.stall``)."""
        self._settled("describe_replication_tasks", {"Filters": _by_arn("task", task_arn)})
        self.faults.stall(identifier)
        self._held.add(identifier)
        self.client.start_replication_task(
            ReplicationTaskArn=task_arn, StartReplicationTaskType="start-replication"
        )

    def start_held(self, config_arn: str, identifier: str) -> None:
        """Start a serverless replication that stays starting until it is stopped (``hold``)."""
        self.faults.hold(identifier, "initializing")
        self._held.add(identifier)
        self.client.start_replication(
            ReplicationConfigArn=config_arn, StartReplicationType="start-replication"
        )

    def shutdown(self) -> None:
        self.engine.uninstall(self.session.events)
        self.engine.shutdown()

    # -- views -----------------------------------------------------------------------
    def operations(self) -> list[str]:
        return [name for name, _ in self.calls]

    @property
    def instances(self) -> dict[str, dict[str, Any]]:
        found = self._settled("describe_replication_instances", {})["ReplicationInstances"]
        return {i["ReplicationInstanceIdentifier"]: i for i in found}

    @property
    def endpoints(self) -> dict[str, dict[str, Any]]:
        found = self.client.describe_endpoints()["Endpoints"]
        return {
            e["EndpointIdentifier"]: e
            for e in found
            if e["EndpointArn"] != self.source_endpoint_arn
        }

    @property
    def tasks(self) -> dict[str, dict[str, Any]]:
        found = self._settled("describe_replication_tasks", {})["ReplicationTasks"]
        started = {
            p["ReplicationTaskArn"]: p for op, p in self.calls if op == "start_replication_task"
        }
        return {
            t["ReplicationTaskIdentifier"]: {
                **t,
                "_start_type": started.get(t["ReplicationTaskArn"], {}).get(
                    "StartReplicationTaskType"
                ),
            }
            for t in found
        }

    @property
    def configs(self) -> dict[str, dict[str, Any]]:
        self._settled("describe_replications", {})  # a deleted config goes once it is deleting
        found = self.client.describe_replication_configs()["ReplicationConfigs"]
        return {c["ReplicationConfigIdentifier"]: c for c in found}

    # -- the client --------------------------------------------------------------------
    def __getattr__(self, operation: str) -> Callable[..., dict[str, Any]]:
        if operation.startswith("_") or not self.client.meta.method_to_api_mapping.get(operation):
            raise AttributeError(operation)

        def call(**params: Any) -> dict[str, Any]:
            self.calls.append((operation, params))
            if operation in ("create_replication_task", "create_replication_config"):
                params = self._aliased_source(params)
            try:
                if operation in _LISTS:
                    answer = self._settled(operation, params)
                else:
                    answer = getattr(self.client, operation)(**params)
            except ClientError as error:
                if error.response["Error"]["Code"] == "InvalidResourceStateFault":
                    self.violations.append(f"{operation}: {error.response['Error']['Message']}")
                raise
            if operation in ("stop_replication_task", "stop_replication"):
                self._held.clear()
            return self._scripted(operation, answer)

        return call

    def _aliased_source(self, params: dict[str, Any]) -> dict[str, Any]:
        """The settings fixture names the stack's source endpoint by a fixed ARN (it is built
        before any engine exists); a task or config naming it gets the engine's endpoint."""
        if self._source_alias and params.get("SourceEndpointArn") == self._source_alias:
            return {**params, "SourceEndpointArn": self.source_endpoint_arn}
        return params

    def _settled(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        """Answer a describe once the resources it lists are no longer in a transient state."""
        key, ident = _LISTS[operation]
        deadline = time.monotonic() + SETTLE_SECONDS
        while True:
            since = self.engine.changes.count
            answer = getattr(self.client, operation)(**params)
            moving = [
                item
                for item in answer[key]
                if (item[ident] not in self._held and _status(item) in TRANSIENT)
                or (item.get("ProvisionData") or {}).get("ProvisionState") == "deprovisioning"
            ]
            if not moving or time.monotonic() >= deadline:
                return answer
            self.engine.changes.wait(since, 0.5)

    # -- the scripted layer -------------------------------------------------------------
    def _scripted(self, operation: str, answer: dict[str, Any]) -> dict[str, Any]:
        outcome = self.outcome
        if operation == "describe_replication_instances":
            for item in answer["ReplicationInstances"]:
                ident = item["ReplicationInstanceIdentifier"]
                seen = self._instance_describes.get(ident, 0) + 1
                self._instance_describes[ident] = seen
                available = item["ReplicationInstanceStatus"] == "available"
                if available and seen < self.instance_ready_after:
                    item["ReplicationInstanceStatus"] = "creating"
        elif operation in ("describe_replication_tasks", "describe_replications"):
            key = (
                "ReplicationTasks" if operation == "describe_replication_tasks" else "Replications"
            )
            for item in answer[key]:
                if _status(item) != "stopped":
                    continue
                if outcome.files:
                    self._split_files(item)
                stats = item.get("ReplicationTaskStats") or item.get("ReplicationStats")
                if outcome.tables_errored is not None and stats is not None:
                    stats["TablesErrored"] = outcome.tables_errored
        elif operation in ("describe_table_statistics", "describe_replication_table_statistics"):
            key = (
                "TableStatistics"
                if operation == "describe_table_statistics"
                else "ReplicationTableStatistics"
            )
            for table in answer[key]:
                if outcome.reported_rows is not None:
                    table["FullLoadRows"] = outcome.reported_rows
                if outcome.table_state is not None:
                    table["TableState"] = outcome.table_state
        return answer

    def _split_files(self, item: dict[str, Any]) -> None:
        """Rewrite a finished load's Parquet files as exactly ``outcome.files`` files."""
        owner = item.get("ReplicationTaskArn") or item["ReplicationConfigArn"]
        if owner in self._split:
            return
        self._split.add(owner)
        target = item.get("TargetEndpointArn")
        if target is None:
            config = self.client.describe_replication_configs(
                Filters=[{"Name": "replication-config-arn", "Values": [owner]}]
            )["ReplicationConfigs"][0]
            target = config["TargetEndpointArn"]
        endpoint = self.client.describe_endpoints(
            Filters=[{"Name": "endpoint-arn", "Values": [target]}]
        )["Endpoints"][0]["S3Settings"]
        s3 = self.session.client("s3")
        listing = s3.list_objects_v2(Bucket=endpoint["BucketName"], Prefix=endpoint["BucketFolder"])
        keys = sorted(o["Key"] for o in listing.get("Contents", []) if "/LOAD" in o["Key"])
        if not keys:
            return
        tables = [
            pq.read_table(
                io.BytesIO(s3.get_object(Bucket=endpoint["BucketName"], Key=k)["Body"].read())
            )
            for k in keys
        ]
        rows = pa.concat_tables(tables)
        folder = keys[0].rsplit("/", 1)[0]
        for key in keys:
            s3.delete_object(Bucket=endpoint["BucketName"], Key=key)
        count = self.outcome.files or 1
        chunk = -(-rows.num_rows // count)
        for n in range(count):
            buffer = io.BytesIO()
            pq.write_table(rows.slice(n * chunk, chunk), buffer)
            s3.put_object(
                Bucket=endpoint["BucketName"],
                Key=f"{folder}/LOAD{n + 1:08d}.parquet",
                Body=buffer.getvalue(),
            )


def _status(item: dict[str, Any]) -> str:
    return str(item.get("ReplicationInstanceStatus") or item.get("Status") or "")


def _by_arn(kind: str, arn: str) -> list[dict[str, Any]]:
    name = {"instance": "replication-instance-arn", "task": "replication-task-arn"}[kind]
    return [{"Name": name, "Values": [arn]}]
