"""In-memory DMS resources and their wire (API response) shapes."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from deltaload.dmsstates import SERVERLESS_STARTING

from .loader import TABLE_COMPLETED, TABLE_ERROR, TABLE_LOADING, TableStat
from .mapping import TableMapping

STOP_FULL_LOAD_FINISHED = "Stop Reason FULL_LOAD_ONLY_FINISHED"
STOP_NORMAL = "Stop Reason NORMAL"
STOP_FATAL = "Stop Reason FATAL_ERROR"

# The start phases of a serverless replication, in order (deltaload.dmsstates cites them).
SERVERLESS_PHASES = SERVERLESS_STARTING


def now() -> datetime:
    """The current time, time-zone aware (UTC)."""
    return datetime.now(UTC)


@dataclass
class Endpoint:
    """A source or target endpoint; ``settings`` never holds a password."""

    ident: str
    arn: str
    endpoint_type: str  # source | target
    engine: str
    settings: dict[str, Any]
    password: str | None
    created: datetime = field(default_factory=now)

    def to_wire(self) -> dict[str, Any]:
        """The Endpoint shape (Password is never echoed)."""
        wire = {
            "EndpointIdentifier": self.ident,
            "EndpointType": self.endpoint_type.upper(),
            "EngineName": self.engine,
            "EngineDisplayName": self.engine,
            "Status": "active",
            "EndpointArn": self.arn,
        }
        for key in ("ServerName", "Port", "DatabaseName", "Username", "ExtraConnectionAttributes"):
            if self.settings.get(key) is not None:
                wire[key] = self.settings[key]
        for key in ("S3Settings", "PostgreSQLSettings", "MySQLSettings"):
            if key in self.settings:
                wire[key] = {k: v for k, v in self.settings[key].items() if k != "Password"}
        return wire


@dataclass
class SubnetGroup:
    """A replication subnet group (accepted for the template's sake; no networking)."""

    ident: str
    description: str
    subnet_ids: list[str]

    def to_wire(self) -> dict[str, Any]:
        """The ReplicationSubnetGroup shape."""
        return {
            "ReplicationSubnetGroupIdentifier": self.ident,
            "ReplicationSubnetGroupDescription": self.description,
            "VpcId": "vpc-local",
            "SubnetGroupStatus": "Complete",
            "Subnets": [
                {
                    "SubnetIdentifier": s,
                    "SubnetAvailabilityZone": {"Name": "local-1a"},
                    "SubnetStatus": "Active",
                }
                for s in self.subnet_ids
            ],
            "SupportedNetworkTypes": ["IPV4"],
        }


@dataclass
class Instance:
    """A replication instance: creating -> available, deleting -> gone."""

    ident: str
    arn: str
    instance_class: str
    status: str
    storage: int
    subnet_group: SubnetGroup | None
    multi_az: bool
    engine_version: str
    created: datetime = field(default_factory=now)

    def to_wire(self) -> dict[str, Any]:
        """The ReplicationInstance shape."""
        return {
            "ReplicationInstanceIdentifier": self.ident,
            "ReplicationInstanceClass": self.instance_class,
            "ReplicationInstanceStatus": self.status,
            "AllocatedStorage": self.storage,
            "InstanceCreateTime": self.created,
            "VpcSecurityGroups": [],
            "AvailabilityZone": "local-1a",
            "ReplicationSubnetGroup": self.subnet_group.to_wire() if self.subnet_group else None,
            "MultiAZ": self.multi_az,
            "EngineVersion": self.engine_version,
            "AutoMinorVersionUpgrade": True,
            "ReplicationInstanceArn": self.arn,
            "ReplicationInstancePrivateIpAddress": "127.0.0.1",
            "ReplicationInstancePrivateIpAddresses": ["127.0.0.1"],
            "PubliclyAccessible": False,
            "NetworkType": "IPV4",
        }


@dataclass
class LoadState:
    """What a task and a serverless replication share: status, run dates, tables."""

    status: str = ""
    stop_reason: str | None = None
    failure: str | None = None
    fresh_start: datetime | None = None
    started: datetime | None = None
    stopped: datetime | None = None
    full_load_start: datetime | None = None
    full_load_finish: datetime | None = None
    tables: list[TableStat] = field(default_factory=list)
    ever_started: bool = False
    cancel: threading.Event = field(default_factory=threading.Event)
    generation: int = 0

    def stats(self) -> dict[str, Any]:
        """ReplicationTaskStats / ReplicationStats."""
        states = [t.state for t in self.tables]
        total = len(states)
        loaded = states.count(TABLE_COMPLETED)
        errored = states.count(TABLE_ERROR)
        loading = states.count(TABLE_LOADING)
        percent = 100 if self.full_load_finish else (100 * loaded // total if total else 0)
        end = self.stopped or now()
        elapsed = int((end - self.started).total_seconds() * 1000) if self.started else 0
        return {
            "FullLoadProgressPercent": percent,
            "ElapsedTimeMillis": elapsed,
            "TablesLoaded": loaded,
            "TablesLoading": loading,
            "TablesQueued": total - loaded - errored - loading,
            "TablesErrored": errored,
            "FreshStartDate": self.fresh_start,
            "StartDate": self.started,
            "StopDate": self.stopped,
            "FullLoadStartDate": self.full_load_start,
            "FullLoadFinishDate": self.full_load_finish,
        }


@dataclass
class Task(LoadState):
    """A replication task."""

    ident: str = ""
    arn: str = ""
    source_arn: str = ""
    target_arn: str = ""
    instance_arn: str = ""
    migration_type: str = "full-load"
    mappings_text: str = ""
    mapping: TableMapping = field(default_factory=TableMapping)
    settings: str = "{}"
    created: datetime = field(default_factory=now)

    def to_wire(self, with_settings: bool = True) -> dict[str, Any]:
        """The ReplicationTask shape."""
        return {
            "ReplicationTaskIdentifier": self.ident,
            "SourceEndpointArn": self.source_arn,
            "TargetEndpointArn": self.target_arn,
            "ReplicationInstanceArn": self.instance_arn,
            "MigrationType": self.migration_type,
            "TableMappings": self.mappings_text,
            "ReplicationTaskSettings": self.settings if with_settings else None,
            "Status": self.status,
            "LastFailureMessage": self.failure,
            "StopReason": self.stop_reason,
            "ReplicationTaskCreationDate": self.created,
            "ReplicationTaskStartDate": self.started,
            "ReplicationTaskArn": self.arn,
            "ReplicationTaskStats": self.stats() if self.ever_started else None,
        }


@dataclass
class Replication(LoadState):
    """A DMS Serverless replication (the run of a replication config)."""

    ident: str = ""
    provision_state: str = "provisioning"
    start_type: str = "start-replication"
    created: datetime = field(default_factory=now)
    updated: datetime = field(default_factory=now)
    deprovisioned: datetime | None = None


@dataclass
class Config:
    """A DMS Serverless replication config and its (latest) replication."""

    ident: str
    arn: str
    source_arn: str
    target_arn: str
    compute: dict[str, Any]
    replication_type: str
    mappings_text: str
    mapping: TableMapping
    settings: str
    supplemental: str | None
    created: datetime = field(default_factory=now)
    replication: Replication | None = None

    def to_wire(self) -> dict[str, Any]:
        """The ReplicationConfig shape."""
        return {
            "ReplicationConfigIdentifier": self.ident,
            "ReplicationConfigArn": self.arn,
            "SourceEndpointArn": self.source_arn,
            "TargetEndpointArn": self.target_arn,
            "ReplicationType": self.replication_type,
            "ComputeConfig": self.compute,
            "ReplicationSettings": self.settings,
            "SupplementalSettings": self.supplemental,
            "TableMappings": self.mappings_text,
            "ReplicationConfigCreateTime": self.created,
            "ReplicationConfigUpdateTime": self.created,
        }

    def replication_wire(self) -> dict[str, Any]:
        """The Replication shape (only once a replication was started)."""
        run = self.replication
        assert run is not None
        return {
            "ReplicationConfigIdentifier": self.ident,
            "ReplicationConfigArn": self.arn,
            "SourceEndpointArn": self.source_arn,
            "TargetEndpointArn": self.target_arn,
            "ReplicationType": self.replication_type,
            "Status": run.status,
            "ProvisionData": {
                "ProvisionState": run.provision_state,
                "ProvisionedCapacityUnits": self.compute.get("MaxCapacityUnits", 2),
                "DateProvisioned": run.started,
                "IsNewProvisioningAvailable": False,
            },
            "StopReason": run.stop_reason,
            "FailureMessages": [run.failure] if run.failure else [],
            "ReplicationStats": run.stats(),
            "StartReplicationType": run.start_type,
            "ReplicationCreateTime": run.created,
            "ReplicationUpdateTime": run.updated,
            "ReplicationLastStopTime": run.stopped,
            "ReplicationDeprovisionTime": run.deprovisioned,
        }


@dataclass
class Connection:
    """The result of TestConnection for an (instance, endpoint) pair."""

    instance: Instance
    endpoint: Endpoint
    status: str = "testing"
    failure: str | None = None

    def to_wire(self) -> dict[str, Any]:
        """The Connection shape."""
        return {
            "ReplicationInstanceArn": self.instance.arn,
            "EndpointArn": self.endpoint.arn,
            "Status": self.status,
            "LastFailureMessage": self.failure,
            "EndpointIdentifier": self.endpoint.ident,
            "ReplicationInstanceIdentifier": self.instance.ident,
        }
