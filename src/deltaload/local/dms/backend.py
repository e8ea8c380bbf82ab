"""The DMS operations: validation, state changes and the loads they start."""

from __future__ import annotations

import logging
import re
import secrets
import string
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from deltaload.local.account import ACCOUNT

from . import errors as e
from .describe import listing, paginate, table_items
from .faults import FaultRegistry
from .loader import (
    TABLE_COMPLETED,
    LoadCancelled,
    LoadRequest,
    LobSettings,
    TableStat,
    run_full_load,
)
from .mapping import TableMapping, parse_table_mappings
from .models import (
    SERVERLESS_PHASES,
    STOP_FATAL,
    STOP_FULL_LOAD_FINISHED,
    STOP_NORMAL,
    Config,
    Connection,
    Endpoint,
    Instance,
    LoadState,
    Replication,
    SubnetGroup,
    Task,
    now,
)
from .quotas import Clock, Quotas, TokenBucket, exceeded
from .scheduler import Changes, Scheduler, Timing
from .sources import SourceConfig, config_from_url, open_reader, read_secret, sa_url
from .validation import (
    SOURCE_ENGINES,
    attributes,
    check_migration_type,
    check_source,
    check_start_type,
    check_target,
    identifier,
    settings_json,
)
from .writer import DEFAULT_MAX_FILE_KB, TargetSettings

LOG = logging.getLogger(__name__)
_RUNNING = {"starting", "running", "stopping"}
# StopReplication stops a replication that is starting (any phase) or running; the config
# cannot be deleted while its replication is starting, running or stopping
# (API Reference, DeleteReplicationConfig: "non-RUNNING and non-STARTING state").
_SERVERLESS_STOPPABLE = {*SERVERLESS_PHASES, "running"}
_SERVERLESS_ACTIVE = {*_SERVERLESS_STOPPABLE, "stopping"}

Handler = Callable[[dict[str, Any], str], dict[str, Any]]


class DmsBackend:
    """All DMS resources of one LocalDms, guarded by one lock."""

    def __init__(
        self,
        clients_for_aws: Callable[[str], Any],
        timing: Timing,
        faults: FaultRegistry,
        quotas: Quotas | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._client_factory = clients_for_aws
        self._client_cache: dict[str, Any] = {}
        self.timing = timing
        self.faults = faults
        self._lock = threading.RLock()
        # Every timed transition, load end and connection probe is a status change.
        self.changes = Changes()
        self._scheduler = Scheduler(on_fired=self.changes.changed)
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="local-dms-load")
        self.endpoints: dict[str, Endpoint] = {}
        self.subnet_groups: dict[str, SubnetGroup] = {}
        self.instances: dict[str, Instance] = {}
        self.tasks: dict[str, Task] = {}
        self.configs: dict[str, Config] = {}
        self.connections: dict[tuple[str, str], Connection] = {}
        self.quotas = quotas or Quotas()
        self.api_bucket = (
            TokenBucket(
                self.quotas.api_bucket_size,
                self.quotas.api_refill_per_second,
                clock or time.monotonic,
            )
            if self.quotas.api_bucket_size is not None
            else None
        )
        # (operation, message) of every call refused by a resource quota or the API bucket.
        self.quota_faults: list[tuple[str, str]] = []
        self.throttled: list[str] = []

    # ------------------------------------------------------------------ plumbing

    def _clients(self, service: str) -> Any:
        """One client per service: creating boto3 clients is slow, and they are thread-safe."""
        with self._lock:
            if service not in self._client_cache:
                self._client_cache[service] = self._client_factory(service)
            return self._client_cache[service]

    def shutdown(self) -> None:
        """Stop the clock and wait for running loads (they are asked to stop)."""
        with self._lock:
            for state in [*self.tasks.values(), *(c.replication for c in self.configs.values())]:
                if state is not None:
                    state.cancel.set()
        self._scheduler.shutdown()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def handle(self, operation: str, params: dict[str, Any], region: str) -> dict[str, Any]:
        """Run one operation; raises DmsFault for errors the caller should see."""
        handler: Handler | None = getattr(self, f"op_{_snake(operation)}", None)
        if handler is None:
            raise e.UnknownOperationException(
                f"The local replication engine does not implement {operation}"
            )
        self._maybe_throttle(operation, params)
        with self._lock:
            # Transitions take this lock too: the answer reflects every change counted.
            self.changes.observe()
            try:
                return handler(params, region)
            except e.ResourceQuotaExceededFault as fault:
                self.quota_faults.append((operation, fault.message))
                raise

    def _maybe_throttle(self, operation: str, params: dict[str, Any]) -> None:
        ident = self._identifier_in(params)
        if self.faults.take("throttle", ident, operation) is not None:
            raise e.ThrottlingException(f"Rate exceeded (injected throttle on {operation})")
        # Every API call spends a token of DMS's bucket (CHAP_Limits, "Understanding API
        # request throttling"); the CLI shows it as "(ThrottlingException) ... Rate exceeded".
        if self.api_bucket is not None and not self.api_bucket.take():
            with self._lock:
                self.throttled.append(operation)
            raise e.ThrottlingException("Rate exceeded")

    def _quota(self, what: str, used: int, limit: int | None, adding: int = 1) -> None:
        message = exceeded(what, used, limit, adding)
        if message is not None:
            raise e.ResourceQuotaExceededFault(message)

    def _identifier_in(self, params: dict[str, Any]) -> str | None:
        for key in ("ReplicationTaskIdentifier", "ReplicationConfigIdentifier"):
            if key in params:
                return str(params[key])
        with self._lock:
            if (task := self.tasks.get(params.get("ReplicationTaskArn", ""))) is not None:
                return task.ident
            if (cfg := self.configs.get(params.get("ReplicationConfigArn", ""))) is not None:
                return cfg.ident
        return None

    def _arn(self, region: str, kind: str) -> str:
        suffix = "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(26))
        return f"arn:aws:dms:{region}:{ACCOUNT}:{kind}:{suffix}"

    def _create_fault(self, operation: str, ident: str) -> None:
        fault = self.faults.take("create", ident, operation)
        if fault is not None:
            raise e.injected(fault.code, fault.message)

    # ----------------------------------------------------------------- endpoints

    def op_create_endpoint(self, params: dict[str, Any], region: str) -> dict[str, Any]:
        """DMS CreateEndpoint."""
        ident = identifier(params, "EndpointIdentifier", "Endpoint")
        self._create_fault("CreateEndpoint", ident)
        if any(ep.ident == ident for ep in self.endpoints.values()):
            raise e.ResourceAlreadyExistsFault(f"Endpoint {ident} already exists")
        self._quota("endpoints per account", len(self.endpoints), self.quotas.endpoints_per_account)
        endpoint_type = str(params.get("EndpointType", "")).lower()
        engine = str(params.get("EngineName", "")).lower()
        settings = {k: v for k, v in params.items() if k not in ("Password", "Tags")}
        if endpoint_type == "source":
            check_source(ident, engine, params)
        elif endpoint_type == "target":
            settings["S3Settings"] = check_target(ident, engine, params)
        else:
            raise e.InvalidParameterValueException(
                f"Endpoint {ident}: EndpointType {endpoint_type!r} must be source or target"
            )
        endpoint = Endpoint(
            ident,
            self._arn(region, "endpoint"),
            endpoint_type,
            engine,
            settings,
            params.get("Password"),
        )
        self.endpoints[endpoint.arn] = endpoint
        return {"Endpoint": endpoint.to_wire()}

    def op_describe_endpoints(self, params: dict[str, Any], _: str) -> dict[str, Any]:
        """DMS DescribeEndpoints."""
        filters = {
            "endpoint-arn": lambda x: x.arn,
            "endpoint-id": lambda x: x.ident,
            "endpoint-type": lambda x: x.endpoint_type,
            "engine-name": lambda x: x.engine,
        }
        return listing("Endpoints", self.endpoints.values(), params, filters, "Endpoints")

    def op_delete_endpoint(self, params: dict[str, Any], _: str) -> dict[str, Any]:
        """DMS DeleteEndpoint."""
        endpoint = self._endpoint(params.get("EndpointArn", ""))
        users = [
            t.ident for t in self.tasks.values() if endpoint.arn in (t.source_arn, t.target_arn)
        ]
        users += [
            c.ident for c in self.configs.values() if endpoint.arn in (c.source_arn, c.target_arn)
        ]
        if users:
            raise e.InvalidResourceStateFault(
                f"Endpoint {endpoint.ident} is used by {', '.join(sorted(users))}; "
                "delete them first"
            )
        del self.endpoints[endpoint.arn]
        self.connections = {k: v for k, v in self.connections.items() if k[1] != endpoint.arn}
        wire = endpoint.to_wire()
        wire["Status"] = "deleting"
        return {"Endpoint": wire}

    def _endpoint(self, arn: str) -> Endpoint:
        endpoint = self.endpoints.get(arn)
        if endpoint is None:
            raise e.ResourceNotFoundFault(f"Endpoint {arn} not found")
        return endpoint

    def op_test_connection(self, params: dict[str, Any], _: str) -> dict[str, Any]:
        """DMS TestConnection."""
        instance = self._instance(params.get("ReplicationInstanceArn", ""))
        endpoint = self._endpoint(params.get("EndpointArn", ""))
        if instance.status != "available":
            raise e.InvalidResourceStateFault(
                f"Replication instance {instance.ident} is {instance.status}, not available"
            )
        connection = Connection(instance, endpoint)
        self.connections[(instance.arn, endpoint.arn)] = connection
        self._scheduler.later(
            self.timing.connection_test, lambda: self._pool.submit(self._probe, connection)
        )
        return {"Connection": connection.to_wire()}

    def _reach(self, endpoint: Endpoint) -> str | None:
        """None if the endpoint's database or bucket answers, else why not."""
        try:
            if endpoint.endpoint_type == "target":
                bucket = endpoint.settings["S3Settings"]["BucketName"]
                self._clients("s3").head_bucket(Bucket=bucket)
            else:
                with open_reader(self.source_config(endpoint)) as reader:
                    reader.list_tables({"table"})
        except Exception as exc:
            return _safe_message(exc)
        return None

    def _probe(self, connection: Connection) -> None:
        failure = self._reach(connection.endpoint)
        with self._lock:
            connection.status = "successful" if failure is None else "failed"
            connection.failure = failure
        self.changes.changed(connection.instance.ident)

    def op_describe_connections(self, params: dict[str, Any], _: str) -> dict[str, Any]:
        """DMS DescribeConnections."""
        filters = {
            "endpoint-arn": lambda x: x.endpoint.arn,
            "replication-instance-arn": lambda x: x.instance.arn,
        }
        return listing("Connections", self.connections.values(), params, filters, "Connections")

    def source_config(self, endpoint: Endpoint) -> SourceConfig:
        """Resolve a source endpoint to a SourceConfig, reading its secret if it has one."""
        settings = endpoint.settings
        engine_settings = settings.get("PostgreSQLSettings") or settings.get("MySQLSettings") or {}
        kind = SOURCE_ENGINES[endpoint.engine]
        database = engine_settings.get("DatabaseName") or settings.get("DatabaseName")
        options = attributes(settings.get("ExtraConnectionAttributes"))
        lowered = {k.lower(): v.lower() for k, v in options.items()}
        numeric_as_string = lowered.get("mapunboundednumericasstring") == "true"
        secret_id = engine_settings.get("SecretsManagerSecretId")
        if secret_id:
            secret = read_secret(self._clients("secretsmanager"), secret_id, endpoint.ident)
            if secret.get("url"):
                config = config_from_url(endpoint.ident, secret["url"], database)
            else:
                config = SourceConfig(
                    kind,
                    endpoint.ident,
                    url=sa_url(
                        kind,
                        secret.get("host", ""),
                        int(secret["port"]) if secret.get("port") else None,
                        secret.get("username", ""),
                        secret.get("password", ""),
                        database or secret.get("dbname", ""),
                    ),
                )
        elif kind == "sqlite":
            config = SourceConfig("sqlite", endpoint.ident, sqlite_path=database)
        else:
            password = endpoint.password or engine_settings.get("Password", "")
            config = SourceConfig(
                kind,
                endpoint.ident,
                url=sa_url(
                    kind,
                    settings.get("ServerName") or engine_settings.get("ServerName", ""),
                    settings.get("Port") or engine_settings.get("Port"),
                    settings.get("Username") or engine_settings.get("Username", ""),
                    password or "",
                    database or "",
                ),
            )
        # PostgreSQLSettings (or the extra connection attribute of the same name) that change
        # DMS's type mapping: https://docs.aws.amazon.com/dms/latest/APIReference/API_PostgreSQLSettings.html
        pg = settings.get("PostgreSQLSettings") or {}

        def flag(name: str) -> bool:
            return pg.get(name) is True or lowered.get(name.lower()) == "true"

        return replace(
            config,
            schema_alias=options.get("schemaName"),
            unbounded_numeric_as_string=numeric_as_string or flag("MapUnboundedNumericAsString"),
            options=options,
            map_boolean_as_boolean=flag("MapBooleanAsBoolean"),
            map_jsonb_as_clob=flag("MapJsonbAsClob"),
        )

    def target_settings(self, endpoint: Endpoint) -> TargetSettings:
        """The S3 settings of a target endpoint."""
        s3 = endpoint.settings["S3Settings"]
        return TargetSettings(
            endpoint_id=endpoint.ident,
            bucket=s3["BucketName"],
            folder=s3.get("BucketFolder") or "",
            max_file_kb=int(s3.get("MaxFileSize") or DEFAULT_MAX_FILE_KB),
            parquet_version=s3.get("ParquetVersion") or "parquet-1-0",
            enable_statistics=s3.get("EnableStatistics", True) is not False,
            compression=str(s3.get("CompressionType") or "none").lower(),
            dictionary=str(s3.get("EncodingType") or "rle-dictionary") != "plain",
            timestamp_column=s3.get("TimestampColumnName") or None,
            # DMS caps RowGroupLength at 64 * 1024 * 1024 rows.
            row_group_rows=min(int(s3.get("RowGroupLength") or 10_000), 64 * 1024 * 1024),
            data_page_bytes=s3.get("DataPageSize"),
            dictionary_page_bytes=s3.get("DictPageSizeLimit"),
        )

    # -------------------------------------------------------------- subnet groups

    def op_create_replication_subnet_group(self, params: dict[str, Any], _: str) -> dict[str, Any]:
        """DMS CreateReplicationSubnetGroup."""
        ident = str(params.get("ReplicationSubnetGroupIdentifier", ""))
        if not ident:
            raise e.InvalidParameterValueException("ReplicationSubnetGroupIdentifier is required")
        self._create_fault("CreateReplicationSubnetGroup", ident)
        if ident.lower() in self.subnet_groups:
            raise e.ResourceAlreadyExistsFault(f"Replication subnet group {ident} already exists")
        self._quota(
            "replication subnet groups per account",
            len(self.subnet_groups),
            self.quotas.subnet_groups_per_account,
        )
        group = SubnetGroup(
            ident.lower(),
            params.get("ReplicationSubnetGroupDescription", ""),
            list(params.get("SubnetIds", [])),
        )
        self.subnet_groups[group.ident] = group
        return {"ReplicationSubnetGroup": group.to_wire()}

    def op_describe_replication_subnet_groups(
        self, params: dict[str, Any], _: str
    ) -> dict[str, Any]:
        """DMS DescribeReplicationSubnetGroups."""
        filters = {"replication-subnet-group-id": lambda x: x.ident}
        return listing(
            "ReplicationSubnetGroups", self.subnet_groups.values(), params, filters, "Subnet Groups"
        )

    def op_delete_replication_subnet_group(self, params: dict[str, Any], _: str) -> dict[str, Any]:
        """DMS DeleteReplicationSubnetGroup."""
        ident = str(params.get("ReplicationSubnetGroupIdentifier", "")).lower()
        group = self.subnet_groups.get(ident)
        if group is None:
            raise e.ResourceNotFoundFault(f"Replication subnet group {ident} not found")
        users = [i.ident for i in self.instances.values() if i.subnet_group is group]
        if users:
            raise e.InvalidResourceStateFault(
                f"Replication subnet group {ident} is used by instances {', '.join(users)}"
            )
        del self.subnet_groups[ident]
        return {}

    # ----------------------------------------------------------------- instances

    def op_create_replication_instance(self, params: dict[str, Any], region: str) -> dict[str, Any]:
        """DMS CreateReplicationInstance."""
        ident = identifier(params, "ReplicationInstanceIdentifier", "Replication instance").lower()
        self._create_fault("CreateReplicationInstance", ident)
        if any(i.ident == ident for i in self.instances.values()):
            raise e.ResourceAlreadyExistsFault(f"Replication instance {ident} already exists")
        # Instances still deleting exist (DescribeReplicationInstances lists them): they count.
        self._quota(
            "replication instances per account",
            len(self.instances),
            self.quotas.instances_per_account,
        )
        self._quota(
            "total replication instance storage (GB) per account",
            sum(i.storage for i in self.instances.values()),
            self.quotas.storage_gb_per_account,
            int(params.get("AllocatedStorage") or 50),
        )
        group = None
        if params.get("ReplicationSubnetGroupIdentifier"):
            group = self.subnet_groups.get(str(params["ReplicationSubnetGroupIdentifier"]).lower())
            if group is None:
                raise e.ResourceNotFoundFault(
                    "Replication subnet group "
                    f"{params['ReplicationSubnetGroupIdentifier']} not found"
                )
        instance = Instance(
            ident,
            self._arn(region, "rep"),
            str(params.get("ReplicationInstanceClass", "dms.t3.micro")),
            "creating",
            int(params.get("AllocatedStorage") or 50),
            group,
            bool(params.get("MultiAZ", False)),
            str(params.get("EngineVersion") or "3.5.3"),
        )
        self.instances[instance.arn] = instance
        self._scheduler.later(
            self.timing.instance_create,
            lambda: self._set_instance(instance, "available"),
            key=instance.ident,
        )
        return {"ReplicationInstance": instance.to_wire()}

    def _set_instance(self, instance: Instance, status: str) -> None:
        with self._lock:
            if status == "gone":
                self.instances.pop(instance.arn, None)
                self.connections = {
                    k: v for k, v in self.connections.items() if k[0] != instance.arn
                }
            elif instance.arn in self.instances:
                instance.status = status

    def op_describe_replication_instances(self, params: dict[str, Any], _: str) -> dict[str, Any]:
        """DMS DescribeReplicationInstances."""
        filters = {
            "replication-instance-arn": lambda x: x.arn,
            "replication-instance-id": lambda x: x.ident,
            "replication-instance-class": lambda x: x.instance_class,
            "engine-version": lambda x: x.engine_version,
        }
        return listing(
            "ReplicationInstances",
            self.instances.values(),
            params,
            filters,
            "Replication Instances",
        )

    def op_delete_replication_instance(self, params: dict[str, Any], _: str) -> dict[str, Any]:
        """DMS DeleteReplicationInstance."""
        instance = self._instance(params.get("ReplicationInstanceArn", ""))
        tasks = sorted(t.ident for t in self.tasks.values() if t.instance_arn == instance.arn)
        if tasks:
            raise e.InvalidResourceStateFault(
                f"Replication instance {instance.ident} still has replication tasks "
                f"({', '.join(tasks)}); delete the tasks first"
            )
        if instance.status == "deleting":
            raise e.InvalidResourceStateFault(
                f"Replication instance {instance.ident} is already deleting"
            )
        instance.status = "deleting"
        self._scheduler.later(
            self.timing.instance_delete,
            lambda: self._set_instance(instance, "gone"),
            key=instance.ident,
        )
        return {"ReplicationInstance": instance.to_wire()}

    def _instance(self, arn: str) -> Instance:
        instance = self.instances.get(arn)
        if instance is None:
            raise e.ResourceNotFoundFault(f"Replication instance {arn} not found")
        return instance

    # --------------------------------------------------------------------- tasks

    def op_create_replication_task(self, params: dict[str, Any], region: str) -> dict[str, Any]:
        """DMS CreateReplicationTask."""
        ident = identifier(params, "ReplicationTaskIdentifier", "Replication task")
        self._create_fault("CreateReplicationTask", ident)
        if any(t.ident == ident for t in self.tasks.values()):
            raise e.ResourceAlreadyExistsFault(f"Replication task {ident} already exists")
        source, target = self._endpoints_for(ident, params)
        instance = self._instance(params.get("ReplicationInstanceArn", ""))
        if instance.status != "available":
            raise e.InvalidResourceStateFault(
                f"Replication task {ident}: replication instance {instance.ident} is "
                f"{instance.status}, not available"
            )
        check_migration_type(
            f"Replication task {ident}", params.get("MigrationType"), "MigrationType"
        )
        self._task_quotas(instance, source.arn, target.arn)
        mapping = parse_table_mappings(params.get("TableMappings", ""), ident)
        task = Task(
            status="creating",
            ident=ident,
            arn=self._arn(region, "task"),
            source_arn=source.arn,
            target_arn=target.arn,
            instance_arn=instance.arn,
            migration_type="full-load",
            mappings_text=params["TableMappings"],
            mapping=mapping,
            settings=settings_json(
                f"Replication task {ident}", params.get("ReplicationTaskSettings")
            ),
        )
        self.tasks[task.arn] = task
        self._scheduler.later(
            self.timing.task_create, lambda: self._task_created(task), key=task.ident
        )
        return {"ReplicationTask": task.to_wire()}

    def _task_quotas(self, instance: Instance, source_arn: str, target_arn: str) -> None:
        """Tasks per account and per instance, and endpoints per instance (those its tasks use)."""
        self._quota("replication tasks per account", len(self.tasks), self.quotas.tasks_per_account)
        on_instance = [t for t in self.tasks.values() if t.instance_arn == instance.arn]
        self._quota(
            f"replication tasks per replication instance ({instance.ident})",
            len(on_instance),
            self.quotas.tasks_per_instance,
        )
        used = {arn for t in on_instance for arn in (t.source_arn, t.target_arn)}
        self._quota(
            f"endpoints per replication instance ({instance.ident})",
            len(used),
            self.quotas.endpoints_per_instance,
            len({source_arn, target_arn} - used),
        )

    def _endpoints_for(self, owner: str, params: dict[str, Any]) -> tuple[Endpoint, Endpoint]:
        source = self._endpoint(params.get("SourceEndpointArn", ""))
        target = self._endpoint(params.get("TargetEndpointArn", ""))
        if source.endpoint_type != "source" or target.endpoint_type != "target":
            raise e.InvalidParameterValueException(
                f"{owner}: SourceEndpointArn must name a source endpoint and TargetEndpointArn "
                f"a target endpoint (got {source.ident}: {source.endpoint_type}, "
                f"{target.ident}: {target.endpoint_type})"
            )
        return source, target

    def _task_created(self, task: Task) -> None:
        with self._lock:
            if task.status == "creating":
                task.status = "ready"

    def op_describe_replication_tasks(self, params: dict[str, Any], _: str) -> dict[str, Any]:
        """DMS DescribeReplicationTasks."""
        filters = {
            "replication-task-arn": lambda x: x.arn,
            "replication-task-id": lambda x: x.ident,
            "replication-instance-arn": lambda x: x.instance_arn,
            "migration-type": lambda x: x.migration_type,
            "endpoint-arn": lambda x: (x.source_arn, x.target_arn),
        }
        with_settings = not params.get("WithoutSettings", False)
        return listing(
            "ReplicationTasks",
            self.tasks.values(),
            params,
            filters,
            "Tasks",
            lambda x: x.to_wire(with_settings),
        )

    def op_delete_replication_task(self, params: dict[str, Any], _: str) -> dict[str, Any]:
        """DMS DeleteReplicationTask."""
        task = self._task(params.get("ReplicationTaskArn", ""))
        if task.status in _RUNNING or task.status in ("creating", "deleting"):
            raise e.InvalidResourceStateFault(
                f"Replication task {task.ident} is {task.status}; it can be deleted when it is "
                "ready, stopped or failed"
            )
        task.status = "deleting"
        self._scheduler.later(
            self.timing.task_delete, lambda: self._drop_task(task), key=task.ident
        )
        return {"ReplicationTask": task.to_wire()}

    def _drop_task(self, task: Task) -> None:
        with self._lock:
            self.tasks.pop(task.arn, None)

    def _task(self, arn: str) -> Task:
        task = self.tasks.get(arn)
        if task is None:
            raise e.ResourceNotFoundFault(f"Replication task {arn} not found")
        return task

    def op_start_replication_task(self, params: dict[str, Any], _: str) -> dict[str, Any]:
        """DMS StartReplicationTask."""
        task = self._task(params.get("ReplicationTaskArn", ""))
        start_type = params.get("StartReplicationTaskType")
        check_start_type(f"Replication task {task.ident}", task, start_type)
        if task.status not in ("ready", "stopped", "failed"):
            raise e.InvalidResourceStateFault(
                f"Replication task {task.ident} is {task.status}; it can be started when it is "
                "ready, stopped or failed"
            )
        instance = self._instance(task.instance_arn)
        if instance.status != "available":
            raise e.InvalidResourceStateFault(
                f"Replication task {task.ident}: instance {instance.ident} is {instance.status}"
            )
        skip = _completed(task) if start_type == "resume-processing" else set()
        self._begin(task, "starting", fresh=start_type != "resume-processing")
        generation = task.generation
        if self.faults.take("hold", task.ident, "starting") is not None:
            return {"ReplicationTask": task.to_wire()}  # stays starting until stopped
        self._scheduler.later(
            self.timing.task_start,
            lambda: self._launch(
                task,
                generation,
                task.mapping,
                task.source_arn,
                task.target_arn,
                skip,
                task.settings,
            ),
            key=task.ident,
        )
        return {"ReplicationTask": task.to_wire()}

    def op_stop_replication_task(self, params: dict[str, Any], _: str) -> dict[str, Any]:
        """DMS StopReplicationTask."""
        task = self._task(params.get("ReplicationTaskArn", ""))
        if task.status not in ("starting", "running"):
            raise e.InvalidResourceStateFault(
                f"Replication task {task.ident} is {task.status}; "
                "only a running task can be stopped"
            )
        self._request_stop(task)
        return {"ReplicationTask": task.to_wire()}

    def op_describe_table_statistics(self, params: dict[str, Any], _: str) -> dict[str, Any]:
        """DMS DescribeTableStatistics."""
        task = self._task(params.get("ReplicationTaskArn", ""))
        items = table_items(task.tables, params)
        found, marker = paginate(items, params, low=10, high=500)
        return {
            "ReplicationTaskArn": task.arn,
            "TableStatistics": [t.to_wire() for t in found],
            "Marker": marker,
        }

    # -------------------------------------------------------- load run lifecycle

    def _begin(self, state: LoadState, status: str, *, fresh: bool) -> None:
        state.generation += 1
        state.status = status
        state.stop_reason = state.failure = None
        state.started = now()
        if fresh or state.fresh_start is None:
            state.fresh_start = state.started
        state.stopped = state.full_load_start = state.full_load_finish = None
        state.ever_started = True
        state.cancel = threading.Event()
        # A fresh start reloads every table; resume keeps what was completed.
        state.tables = [] if fresh else [t for t in state.tables if t.state == TABLE_COMPLETED]

    def _launch(
        self,
        state: LoadState,
        generation: int,
        mapping: TableMapping,
        source_arn: str,
        target_arn: str,
        skip: set[tuple[str, str]],
        settings_text: str = "{}",
    ) -> None:
        """Move a started task/replication to running and start its load."""
        with self._lock:
            if state.generation != generation or state.status not in (
                "starting",
                SERVERLESS_PHASES[-1],
            ):
                return
            owner = _owner(state)
            state.status = "running"
            if isinstance(state, Replication):
                state.provision_state = "provisioned"
                state.updated = now()
            state.full_load_start = now()
            if self.faults.take("stall", _ident(state)) is not None:
                return  # stays running until stopped
            rows_fault = self.faults.take("rows", _ident(state))
            try:
                request = LoadRequest(
                    owner=owner,
                    mapping=mapping,
                    source=self.source_config(self._endpoint(source_arn)),
                    target=self.target_settings(self._endpoint(target_arn)),
                    s3=self._clients("s3"),
                    cancel=state.cancel,
                    on_tables=lambda tables: self._tables_changed(state, generation, tables),
                    fail_after_rows=rows_fault.rows if rows_fault else None,
                    lobs=LobSettings.from_task_settings(settings_text),
                )
            except (e.LoadError, e.DmsFault) as exc:
                self._finish(state, generation, failure=_safe_message(exc))
                return
        request = replace(request, skip=frozenset(skip))
        self._pool.submit(self._run_load, state, generation, request)

    def _run_load(self, state: LoadState, generation: int, request: LoadRequest) -> None:
        try:
            run_full_load(request)
        except LoadCancelled:
            self._finish(state, generation, stop_reason=STOP_NORMAL)
        except Exception as exc:
            LOG.info("local DMS load of %s failed: %s", request.owner, _safe_message(exc))
            self._finish(state, generation, failure=_safe_message(exc))
        else:
            self._finish(state, generation, stop_reason=STOP_FULL_LOAD_FINISHED)

    def _tables_changed(self, state: LoadState, generation: int, tables: list[TableStat]) -> None:
        with self._lock:
            if state.generation != generation:
                return
            known = {(t.schema, t.table): t for t in state.tables}
            for table in tables:
                known[(table.schema, table.table)] = table
            state.tables = list(known.values())

    def _finish(
        self,
        state: LoadState,
        generation: int,
        *,
        stop_reason: str | None = None,
        failure: str | None = None,
    ) -> None:
        with self._lock:
            if state.generation != generation:
                return
            state.stopped = now()
            if failure is not None:
                state.status, state.failure, state.stop_reason = "failed", failure, STOP_FATAL
            else:
                state.status, state.stop_reason = "stopped", stop_reason
                if stop_reason == STOP_FULL_LOAD_FINISHED:
                    state.full_load_finish = state.stopped
            self.changes.changed(_ident(state))
            if isinstance(state, Replication):
                state.updated = state.stopped
                state.provision_state = "deprovisioning"
                self._scheduler.later(
                    self.timing.serverless_deprovision,
                    lambda: self._deprovisioned(state, generation),
                    key=_ident(state),
                )

    def _request_stop(self, state: LoadState) -> None:
        generation = state.generation
        was_starting = state.status in ("starting", *SERVERLESS_PHASES)
        state.status = "stopping"
        state.cancel.set()
        # A stalled or not yet running load has no loader to notice the cancel.
        self._scheduler.later(
            self.timing.task_stop,
            lambda: self._stop_if_idle(state, generation, was_starting),
            key=_ident(state),
        )

    def _stop_if_idle(self, state: LoadState, generation: int, was_starting: bool) -> None:
        with self._lock:
            if state.generation != generation or state.status != "stopping":
                return
            running_load = any(t.state == "Full load" for t in state.tables)
            if was_starting or not running_load:
                self._finish(state, generation, stop_reason=STOP_NORMAL)
            else:
                self._scheduler.later(
                    self.timing.task_stop,
                    lambda: self._stop_if_idle(state, generation, False),
                    key=_ident(state),
                )

    # ---------------------------------------------------------------- serverless

    def op_create_replication_config(self, params: dict[str, Any], region: str) -> dict[str, Any]:
        """DMS CreateReplicationConfig."""
        ident = identifier(params, "ReplicationConfigIdentifier", "Replication config")
        self._create_fault("CreateReplicationConfig", ident)
        if any(c.ident == ident for c in self.configs.values()):
            raise e.ResourceAlreadyExistsFault(f"Replication config {ident} already exists")
        source, target = self._endpoints_for(f"Replication config {ident}", params)
        owner = f"Replication config {ident}"
        check_migration_type(owner, params.get("ReplicationType"), "ReplicationType")
        config = Config(
            ident=ident,
            arn=self._arn(region, "replication-config"),
            source_arn=source.arn,
            target_arn=target.arn,
            compute=dict(params.get("ComputeConfig") or {}),
            replication_type="full-load",
            mappings_text=params.get("TableMappings", ""),
            mapping=parse_table_mappings(params.get("TableMappings", ""), ident),
            settings=settings_json(owner, params.get("ReplicationSettings")),
            supplemental=params.get("SupplementalSettings"),
        )
        self.configs[config.arn] = config
        return {"ReplicationConfig": config.to_wire()}

    def op_describe_replication_configs(self, params: dict[str, Any], _: str) -> dict[str, Any]:
        """DMS DescribeReplicationConfigs."""
        filters = {
            "replication-config-arn": lambda x: x.arn,
            "replication-config-id": lambda x: x.ident,
        }
        return listing(
            "ReplicationConfigs", self.configs.values(), params, filters, "Replication Configs"
        )

    def op_delete_replication_config(self, params: dict[str, Any], _: str) -> dict[str, Any]:
        """DMS DeleteReplicationConfig."""
        config = self._config(params.get("ReplicationConfigArn", ""))
        run = config.replication
        if run is not None and run.status in _SERVERLESS_ACTIVE:
            raise e.InvalidResourceStateFault(
                f"Replication config {config.ident}: its replication is {run.status}; stop it first"
            )
        if run is not None and run.status == "deleting":
            raise e.InvalidResourceStateFault(
                f"Replication config {config.ident} is already being deleted"
            )
        wire = config.to_wire()
        if run is not None:
            run.status, run.updated = "deleting", now()
        self._scheduler.later(
            self.timing.config_delete, lambda: self._drop_config(config), key=config.ident
        )
        return {"ReplicationConfig": wire}

    def _drop_config(self, config: Config) -> None:
        with self._lock:
            self.configs.pop(config.arn, None)

    def _config(self, arn: str) -> Config:
        config = self.configs.get(arn)
        if config is None:
            raise e.ResourceNotFoundFault(f"Replication config {arn} not found")
        return config

    def op_start_replication(self, params: dict[str, Any], _: str) -> dict[str, Any]:
        """DMS StartReplication."""
        config = self._config(params.get("ReplicationConfigArn", ""))
        start_type = params.get("StartReplicationType")
        run = config.replication or Replication(ident=config.ident)  # type: ignore[call-arg]
        check_start_type(f"Replication config {config.ident}", run, start_type)
        if run.status in _SERVERLESS_ACTIVE:
            raise e.InvalidResourceStateFault(
                f"Replication config {config.ident}: replication is already {run.status}"
            )
        skip = _completed(run) if start_type == "resume-processing" else set()
        config.replication = run
        self._begin(run, SERVERLESS_PHASES[0], fresh=start_type != "resume-processing")
        run.start_type, run.provision_state, run.deprovisioned = (
            str(start_type),
            "provisioning",
            None,
        )
        run.updated = now()
        generation = run.generation

        def launch() -> None:
            self._launch(
                run,
                generation,
                config.mapping,
                config.source_arn,
                config.target_arn,
                skip,
                config.settings,
            )

        endpoints = (config.source_arn, config.target_arn)
        self._enter_phase(run, generation, 0, endpoints, launch)
        return {"Replication": config.replication_wire()}

    def _enter_phase(
        self,
        run: Replication,
        generation: int,
        index: int,
        endpoints: tuple[str, str],
        launch: Callable[[], None],
    ) -> None:
        """Move a starting replication into phase ``index``; after the last one, launch."""
        phase = SERVERLESS_PHASES[index]
        with self._lock:
            if run.generation != generation or run.status not in SERVERLESS_PHASES:
                return  # stopped (or restarted) meanwhile
            run.status, run.updated = phase, now()
            if self.faults.take("hold", run.ident, phase) is not None:
                return  # stays in this phase until stopped
        step = self.timing.serverless_provision / len(SERVERLESS_PHASES)
        if index + 1 == len(SERVERLESS_PHASES):
            self._scheduler.later(step, launch, key=run.ident)
            return

        def advance() -> None:
            self._enter_phase(run, generation, index + 1, endpoints, launch)

        if phase == "testing_connection":
            # "DMS Serverless verifies that the connection to your source and target
            # databases are set up successfully" (user guide, Serverless components).
            self._scheduler.later(
                step,
                lambda: self._pool.submit(
                    self._test_connections, run, generation, endpoints, advance
                ),
            )
        else:
            self._scheduler.later(step, advance, key=run.ident)

    def _test_connections(
        self,
        run: Replication,
        generation: int,
        endpoints: tuple[str, str],
        advance: Callable[[], None],
    ) -> None:
        """Fail the replication in testing_connection if an endpoint does not answer."""
        for arn in endpoints:
            with self._lock:
                endpoint = self.endpoints.get(arn)
            failure = "the endpoint was deleted" if endpoint is None else self._reach(endpoint)
            if failure is not None:
                name = endpoint.ident if endpoint else arn
                with self._lock:  # re-entrant: _finish takes it too
                    if run.generation == generation and run.status == "testing_connection":
                        message = f"Test connection to {name} failed: {failure}"
                        self._finish(run, generation, failure=message)
                return
        advance()

    def _deprovisioned(self, run: Replication, generation: int) -> None:
        with self._lock:
            if run.generation == generation and run.provision_state == "deprovisioning":
                run.provision_state, run.deprovisioned = "deprovisioned", now()

    def op_stop_replication(self, params: dict[str, Any], _: str) -> dict[str, Any]:
        """DMS StopReplication."""
        config = self._config(params.get("ReplicationConfigArn", ""))
        run = config.replication
        if run is None or run.status not in _SERVERLESS_STOPPABLE:
            status = run.status if run else "not started"
            raise e.InvalidResourceStateFault(
                f"Replication config {config.ident}: replication is {status}; nothing to stop"
            )
        self._request_stop(run)
        return {"Replication": config.replication_wire()}

    def op_describe_replications(self, params: dict[str, Any], _: str) -> dict[str, Any]:
        """DMS DescribeReplications."""
        filters = {
            "replication-config-arn": lambda x: x.arn,
            "replication-config-id": lambda x: x.ident,
        }
        started = [c for c in self.configs.values() if c.replication is not None]
        return listing(
            "Replications", started, params, filters, "Replications", lambda x: x.replication_wire()
        )

    def op_describe_replication_table_statistics(
        self, params: dict[str, Any], _: str
    ) -> dict[str, Any]:
        """DMS DescribeReplicationTableStatistics."""
        config = self._config(params.get("ReplicationConfigArn", ""))
        tables = config.replication.tables if config.replication else []
        items = table_items(tables, params)
        found, marker = paginate(items, params, low=10, high=500)
        return {
            "ReplicationConfigArn": config.arn,
            "ReplicationTableStatistics": [t.to_wire() for t in found],
            "Marker": marker,
        }


# ---------------------------------------------------------------------- helpers


def _snake(operation: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower()


def _completed(state: LoadState) -> set[tuple[str, str]]:
    return {(t.schema, t.table) for t in state.tables if t.state == TABLE_COMPLETED}


def _ident(state: LoadState) -> str:
    return getattr(state, "ident", "")


def _owner(state: LoadState) -> str:
    kind = "Replication task" if isinstance(state, Task) else "Replication config"
    return f"{kind} {_ident(state)}"


def _safe_message(exc: BaseException) -> str:
    """The message of a load error (LoadError messages never carry credentials)."""
    if isinstance(exc, e.DmsFault):
        return exc.message
    if isinstance(exc, e.LoadError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
