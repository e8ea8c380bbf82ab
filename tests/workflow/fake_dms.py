"""A small in-test stand-in for the DMS client: the behaviour the workflow relies on.

It enforces the DMS rules the published sample tripped over: identifiers DMS rejects,
deleting an instance or endpoint while a task still uses it, deleting a running task,
``reload-target`` on a task that never ran. A started task "loads" ``load_rows`` into
the S3 staging folder as Parquet (DMS's layout) on the next describe.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from botocore.exceptions import ClientError

ACCOUNT = "123456789012"
IDENTIFIER = re.compile(r"^[A-Za-z](?:[A-Za-z0-9]|-(?=[A-Za-z0-9]))*$")


def fault(code: str, message: str, operation: str = "DMS") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


@dataclass
class LoadOutcome:
    """How the next load ends; the defaults are a clean full load."""

    status: str = "stopped"
    stop_reason: str = "Stop Reason FULL_LOAD_ONLY_FINISHED"
    tables_errored: int = 0
    table_state: str = "Table completed"
    report_table: bool = True
    reported_rows: int | None = None  # FullLoadRows; None = rows actually written
    files: int = 1
    failure_message: str = ""


@dataclass
class FakeDms:
    s3: Any = None
    load_rows: list[dict[str, Any]] = field(default_factory=list)
    outcome: LoadOutcome = field(default_factory=LoadOutcome)
    instance_ready_after: int = 1  # describes until "available"
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    instances: dict[str, dict[str, Any]] = field(default_factory=dict)
    endpoints: dict[str, dict[str, Any]] = field(default_factory=dict)
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    replications: dict[str, dict[str, Any]] = field(default_factory=dict)
    fail_create: dict[str, str] = field(default_factory=dict)  # operation -> code
    stats: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)  # DMS rules the caller broke

    # -- helpers -----------------------------------------------------------------
    def _call(self, name: str, params: dict[str, Any]) -> None:
        self.calls.append((name, params))
        if name in self.fail_create:
            raise fault(self.fail_create.pop(name), f"injected fault for {name}", name)

    def _arn(self, kind: str, identifier: str) -> str:
        return f"arn:aws:dms:us-east-1:{ACCOUNT}:{kind}:{identifier.upper()}"

    def _check_identifier(self, identifier: str, operation: str) -> None:
        if len(identifier) > 63 or not IDENTIFIER.match(identifier):
            raise fault(
                "InvalidParameterValueException",
                f"Invalid identifier {identifier!r}: letters, digits, single hyphens, "
                "start with a letter, no trailing hyphen, at most 63 characters",
                operation,
            )

    @staticmethod
    def _select(items: dict[str, dict], filters: list[dict] | None, names: dict[str, str]):
        found = list(items.values())
        for f in filters or []:
            key = names[f["Name"]]
            found = [i for i in found if i[key] in f["Values"]]
        return found

    def _by_arn(self, items: dict[str, dict], key: str, arn: str) -> dict[str, Any]:
        for item in items.values():
            if item[key] == arn:
                return item
        raise fault("ResourceNotFoundFault", f"{arn} not found")

    def operations(self) -> list[str]:
        return [name for name, _ in self.calls]

    # -- instances ---------------------------------------------------------------
    def create_replication_instance(self, **p: Any) -> dict[str, Any]:
        self._call("create_replication_instance", p)
        identifier = p["ReplicationInstanceIdentifier"]
        self._check_identifier(identifier, "CreateReplicationInstance")
        if identifier.lower() in self.instances:
            raise fault("ResourceAlreadyExistsFault", identifier)
        item = {
            "ReplicationInstanceIdentifier": identifier.lower(),
            "ReplicationInstanceArn": self._arn("rep", identifier),
            "ReplicationInstanceStatus": "creating",
            "_describes": 0,
            "_params": p,
        }
        self.instances[identifier.lower()] = item
        return {"ReplicationInstance": self._public(item)}

    def add_source_endpoint(self, identifier: str) -> str:
        item = {
            "EndpointIdentifier": identifier,
            "EndpointArn": self._arn("endpoint", identifier),
            "EndpointType": "SOURCE",
            "Status": "active",
        }
        self.endpoints[identifier] = item
        return item["EndpointArn"]

    def add_existing_instance(self, identifier: str) -> str:
        item = {
            "ReplicationInstanceIdentifier": identifier,
            "ReplicationInstanceArn": self._arn("rep", identifier),
            "ReplicationInstanceStatus": "available",
            "_describes": 0,
        }
        self.instances[identifier] = item
        return item["ReplicationInstanceArn"]

    def describe_replication_instances(self, **p: Any) -> dict[str, Any]:
        self.calls.append(("describe_replication_instances", p))
        names = {
            "replication-instance-id": "ReplicationInstanceIdentifier",
            "replication-instance-arn": "ReplicationInstanceArn",
        }
        found = self._select(self.instances, p.get("Filters"), names)
        for item in found:
            item["_describes"] += 1
            status = item["ReplicationInstanceStatus"]
            if status == "creating" and item["_describes"] >= self.instance_ready_after:
                item["ReplicationInstanceStatus"] = "available"
            elif status == "deleting" and item["_describes"] > 1:
                del self.instances[item["ReplicationInstanceIdentifier"]]
        found = [i for i in found if i["ReplicationInstanceIdentifier"] in self.instances]
        if not found:
            raise fault("ResourceNotFoundFault", "No replication instance found")
        return {"ReplicationInstances": [self._public(i) for i in found]}

    def delete_replication_instance(self, **p: Any) -> dict[str, Any]:
        self._call("delete_replication_instance", p)
        item = self._by_arn(self.instances, "ReplicationInstanceArn", p["ReplicationInstanceArn"])
        users = [
            t
            for t in self.tasks.values()
            if t["ReplicationInstanceArn"] == item["ReplicationInstanceArn"]
        ]
        if users:
            self.violations.append(
                f"deleted instance {item['ReplicationInstanceIdentifier']} with tasks"
            )
            raise fault("InvalidResourceStateFault", "instance still has tasks")
        item["ReplicationInstanceStatus"] = "deleting"
        item["_describes"] = 0
        return {"ReplicationInstance": self._public(item)}

    # -- endpoints ---------------------------------------------------------------
    def create_endpoint(self, **p: Any) -> dict[str, Any]:
        self._call("create_endpoint", p)
        identifier = p["EndpointIdentifier"]
        self._check_identifier(identifier, "CreateEndpoint")
        if identifier.lower() in self.endpoints:
            raise fault("ResourceAlreadyExistsFault", identifier)
        item = {
            "EndpointIdentifier": identifier.lower(),
            "EndpointArn": self._arn("endpoint", identifier),
            "EndpointType": p["EndpointType"].upper(),
            "Status": "active",
            "S3Settings": p.get("S3Settings", {}),
        }
        self.endpoints[identifier.lower()] = item
        return {"Endpoint": self._public(item)}

    def describe_endpoints(self, **p: Any) -> dict[str, Any]:
        self.calls.append(("describe_endpoints", p))
        names = {"endpoint-id": "EndpointIdentifier", "endpoint-arn": "EndpointArn"}
        found = self._select(self.endpoints, p.get("Filters"), names)
        if not found:
            raise fault("ResourceNotFoundFault", "No endpoint found")
        return {"Endpoints": [self._public(i) for i in found]}

    def delete_endpoint(self, **p: Any) -> dict[str, Any]:
        self._call("delete_endpoint", p)
        item = self._by_arn(self.endpoints, "EndpointArn", p["EndpointArn"])
        users = [
            t
            for t in self.tasks.values()
            if item["EndpointArn"] in (t["SourceEndpointArn"], t["TargetEndpointArn"])
        ]
        if users:
            self.violations.append(f"deleted endpoint {item['EndpointIdentifier']} in use")
            raise fault("InvalidResourceStateFault", "endpoint still used by a task")
        del self.endpoints[item["EndpointIdentifier"]]
        return {"Endpoint": self._public(item)}

    # -- tasks -------------------------------------------------------------------
    def create_replication_task(self, **p: Any) -> dict[str, Any]:
        self._call("create_replication_task", p)
        identifier = p["ReplicationTaskIdentifier"]
        self._check_identifier(identifier, "CreateReplicationTask")
        if identifier.lower() in self.tasks:
            raise fault("ResourceAlreadyExistsFault", identifier)
        item = {
            "ReplicationTaskIdentifier": identifier.lower(),
            "ReplicationTaskArn": self._arn("task", identifier),
            "ReplicationInstanceArn": p["ReplicationInstanceArn"],
            "SourceEndpointArn": p["SourceEndpointArn"],
            "TargetEndpointArn": p["TargetEndpointArn"],
            "MigrationType": p["MigrationType"],
            "TableMappings": p["TableMappings"],
            "Status": "creating",
            "_describes": 0,
        }
        self.tasks[identifier.lower()] = item
        return {"ReplicationTask": self._public(item)}

    def describe_replication_tasks(self, **p: Any) -> dict[str, Any]:
        self.calls.append(("describe_replication_tasks", p))
        names = {
            "replication-task-id": "ReplicationTaskIdentifier",
            "replication-task-arn": "ReplicationTaskArn",
        }
        found = self._select(self.tasks, p.get("Filters"), names)
        for item in found:
            item["_describes"] += 1
            if item["Status"] == "creating":
                item["Status"] = "ready"
            elif item["Status"] == "running" and "_start_type" in item:
                self._finish_load(item)
            elif item["Status"] == "stopping":
                item["Status"] = "stopped"
            elif item["Status"] == "deleting":
                del self.tasks[item["ReplicationTaskIdentifier"]]
        found = [i for i in found if i["ReplicationTaskIdentifier"] in self.tasks]
        if not found:
            raise fault("ResourceNotFoundFault", "No replication task found")
        return {"ReplicationTasks": [self._public(i) for i in found]}

    def start_replication_task(self, **p: Any) -> dict[str, Any]:
        self._call("start_replication_task", p)
        item = self._by_arn(self.tasks, "ReplicationTaskArn", p["ReplicationTaskArn"])
        kind = p["StartReplicationTaskType"]
        if kind == "reload-target" and "ReplicationTaskStartDate" not in item:
            self.violations.append("reload-target on a task that never ran")
            raise fault("InvalidResourceStateFault", "reload-target on a task that never ran")
        if item["Status"] != "ready":
            raise fault("InvalidResourceStateFault", f"task is {item['Status']}")
        item["Status"] = "running"
        item["ReplicationTaskStartDate"] = "now"
        item["_start_type"] = kind
        return {"ReplicationTask": self._public(item)}

    def stop_replication_task(self, **p: Any) -> dict[str, Any]:
        self._call("stop_replication_task", p)
        item = self._by_arn(self.tasks, "ReplicationTaskArn", p["ReplicationTaskArn"])
        item["Status"] = "stopping"
        return {"ReplicationTask": self._public(item)}

    def delete_replication_task(self, **p: Any) -> dict[str, Any]:
        self._call("delete_replication_task", p)
        item = self._by_arn(self.tasks, "ReplicationTaskArn", p["ReplicationTaskArn"])
        if item["Status"] in ("running", "starting", "stopping"):
            self.violations.append(f"deleted running task {item['ReplicationTaskIdentifier']}")
            raise fault("InvalidResourceStateFault", "task is running")
        item["Status"] = "deleting"
        return {"ReplicationTask": self._public(item)}

    def describe_table_statistics(self, **p: Any) -> dict[str, Any]:
        self.calls.append(("describe_table_statistics", p))
        return {"TableStatistics": self.stats.get(p["ReplicationTaskArn"], [])}

    # -- serverless --------------------------------------------------------------
    def create_replication_config(self, **p: Any) -> dict[str, Any]:
        self._call("create_replication_config", p)
        identifier = p["ReplicationConfigIdentifier"]
        self._check_identifier(identifier, "CreateReplicationConfig")
        item = {
            "ReplicationConfigIdentifier": identifier,
            "ReplicationConfigArn": self._arn("replication-config", identifier),
            "SourceEndpointArn": p["SourceEndpointArn"],
            "TargetEndpointArn": p["TargetEndpointArn"],
            "TableMappings": p["TableMappings"],
        }
        self.configs[identifier] = item
        return {"ReplicationConfig": self._public(item)}

    def describe_replication_configs(self, **p: Any) -> dict[str, Any]:
        self.calls.append(("describe_replication_configs", p))
        names = {
            "replication-config-id": "ReplicationConfigIdentifier",
            "replication-config-arn": "ReplicationConfigArn",
        }
        found = self._select(self.configs, p.get("Filters"), names)
        if not found:
            raise fault("ResourceNotFoundFault", "No replication config found")
        return {"ReplicationConfigs": [self._public(i) for i in found]}

    def start_replication(self, **p: Any) -> dict[str, Any]:
        self._call("start_replication", p)
        config = self._by_arn(self.configs, "ReplicationConfigArn", p["ReplicationConfigArn"])
        if p["StartReplicationType"] == "reload-target":
            raise fault(
                "InvalidResourceStateFault", "reload-target on a replication that never ran"
            )
        self.replications[config["ReplicationConfigArn"]] = {
            "ReplicationConfigArn": config["ReplicationConfigArn"],
            "Status": "running",
            "_start_type": p["StartReplicationType"],
        }
        return {}

    def describe_replications(self, **p: Any) -> dict[str, Any]:
        self.calls.append(("describe_replications", p))
        arn = p["Filters"][0]["Values"][0]
        replication = self.replications.get(arn)
        if replication is None:
            raise fault("ResourceNotFoundFault", "no replication")
        if replication["Status"] == "running" and "_start_type" in replication:
            config = self._by_arn(self.configs, "ReplicationConfigArn", arn)
            self._finish_load(replication, config)
        elif replication["Status"] == "stopping":
            replication["Status"] = "stopped"
        return {"Replications": [self._public(replication)]}

    def describe_replication_table_statistics(self, **p: Any) -> dict[str, Any]:
        self.calls.append(("describe_replication_table_statistics", p))
        return {"ReplicationTableStatistics": self.stats.get(p["ReplicationConfigArn"], [])}

    def stop_replication(self, **p: Any) -> dict[str, Any]:
        self._call("stop_replication", p)
        self.replications[p["ReplicationConfigArn"]]["Status"] = "stopping"
        return {}

    def delete_replication_config(self, **p: Any) -> dict[str, Any]:
        self._call("delete_replication_config", p)
        config = self._by_arn(self.configs, "ReplicationConfigArn", p["ReplicationConfigArn"])
        replication = self.replications.get(config["ReplicationConfigArn"], {})
        if replication.get("Status") in ("running", "stopping"):
            raise fault("InvalidResourceStateFault", "replication is running")
        del self.configs[config["ReplicationConfigIdentifier"]]
        self.replications.pop(config["ReplicationConfigArn"], None)
        return {}

    # -- the "load" --------------------------------------------------------------
    def _finish_load(self, item: dict[str, Any], config: dict[str, Any] | None = None) -> None:
        source = config or item
        mapping = json.loads(source["TableMappings"])
        selection = mapping["rules"][0]["object-locator"]
        schema, table = selection["schema-name"], selection["table-name"]
        target = next(
            (r["value"] for r in mapping["rules"] if r.get("rule-action") == "rename"), table
        )
        endpoint = self._by_arn(self.endpoints, "EndpointArn", source["TargetEndpointArn"])
        settings = endpoint["S3Settings"]
        outcome = self.outcome
        written = 0
        if self.load_rows and outcome.files:
            chunk = -(-len(self.load_rows) // outcome.files)
            for n in range(outcome.files):
                rows = self.load_rows[n * chunk : (n + 1) * chunk]
                if not rows:
                    continue
                buffer = io.BytesIO()
                pq.write_table(pa.Table.from_pylist(rows), buffer)
                key = f"{settings['BucketFolder']}/{schema}/{target}/LOAD{n + 1:08d}.parquet"
                self.s3.put_object(Bucket=settings["BucketName"], Key=key, Body=buffer.getvalue())
                written += len(rows)
        arn = item.get("ReplicationTaskArn") or item["ReplicationConfigArn"]
        if outcome.report_table:
            reported = written if outcome.reported_rows is None else outcome.reported_rows
            self.stats[arn] = [
                {
                    "SchemaName": schema,
                    "TableName": target,
                    "FullLoadRows": reported,
                    "TableState": outcome.table_state,
                }
            ]
        item["Status"] = outcome.status
        item["StopReason"] = outcome.stop_reason
        item["LastFailureMessage"] = outcome.failure_message
        counts = {"TablesErrored": outcome.tables_errored, "TablesLoaded": 1}
        item["ReplicationTaskStats" if "ReplicationTaskArn" in item else "ReplicationStats"] = (
            counts
        )
        if config is not None and outcome.failure_message:
            item["FailureMessages"] = [outcome.failure_message]

    @staticmethod
    def _public(item: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in item.items() if not k.startswith("_")}
