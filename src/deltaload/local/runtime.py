"""The offline runtime: the real template, state machine and handlers, with AWS in-process.

moto emulates DynamoDB, SNS, Secrets Manager, the Glue Data Catalog and Step Functions
(executing the real definition from ``statemachine/``); Lambda Invoke calls are answered
in-process by the template's handlers, DMS calls by the local replication engine
and S3 calls by the state folder's files (``deltaload.local.s3``), all through
botocore's ``before-send`` event, so the handlers' boto3 code is the code that
runs in AWS. State persists in a folder between commands.

A runtime that writes (the default) holds the state folder's writer lock from start to
end, writes every change of the controller and history tables through to the folder
(see ``persistence``), and on start finishes what a dead process left: offline
executions live only in the process that started them, so with the lock taken every
run lock found on an item is an orphan, and each one goes through the template's
CleanupAborted handler as AWS would after an execution was aborted. A reader
(``writer=False``) takes no lock and never writes to the folder.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
from botocore.exceptions import ClientError

from deltaload import store
from deltaload.local import faults as fault_points
from deltaload.local.account import ACCOUNT, REGION
from deltaload.local.dms import LocalDms, Timing
from deltaload.local.errors import Interrupted, LocalRuntimeError
from deltaload.local.faults import AwsFaults
from deltaload.local.lambdas import Invocation, LambdaRouter, call_handler, load_module, not_found
from deltaload.local.persistence import PERSISTED_TABLES, LockHolder, StateFolder, command_line
from deltaload.local.s3 import DiskS3
from deltaload.local.sessions import share_botocore_data
from deltaload.local.source import Source
from deltaload.local.template import LocalFunction, Template
from deltaload.names import TICK_LENGTH
from deltaload.names import tick as tick_of
from deltaload.outcome import ExecutionResult, RunOutcome, TickResult, run_outcome

# Short waits locally: the state machine takes every wait from the monitoring step.
LOCAL_ENVIRONMENT = {
    "POLL_INITIAL_SECONDS": "1",
    "POLL_MAX_SECONDS": "2",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_DEV": "false",
}
SOURCE_SECRET_NAME = "deltaload-local/source"
# Every DynamoDB operation that can change a table: each one is written through.
WRITE_OPERATIONS = ("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems")


@dataclass(frozen=True)
class RecoveredRun:
    """An orphaned run finished through the failure path when a writer started."""

    table: str
    run_id: str
    failure: dict[str, Any]


# What a window's iteration is doing, by the state it is in (statemachine/load_table.asl.json).
WINDOW_PHASES = {
    "StartWindowLoad": "starting",
    "CheckWindowLoad": "loading",
    "WindowLoadFinished?": "loading",
    "WaitForWindowLoad": "loading",
    "VerifyWindow": "verifying",
    "WindowVerified": "verified",
    "WindowLoadFailed": "failed",
    "WindowFailed": "failed",
}


class LocalRuntime:
    """The whole application offline. Use as a context manager."""

    def __init__(
        self,
        root: Path,
        state_dir: Path,
        source: Source | None = None,
        *,
        parameters: Mapping[str, str] | None = None,
        environment: Mapping[str, str] | None = None,
        timing: Timing | None = None,
        log_file: Path | None = None,
        writer: bool = True,
        command: str | None = None,
        lock_timeout: float | None = None,
        on_lock_wait: Callable[[LockHolder | None], None] | None = None,
    ) -> None:
        self.root = root.resolve()
        self.writer = writer
        self._log_file = log_file if writer else None
        self._command = command or command_line()
        self._lock_timeout = lock_timeout
        self._on_lock_wait = on_lock_wait
        self.state = StateFolder(state_dir, create=writer)
        self.source = source or Source.from_url(f"sqlite:///{self.state.path / 'source.sqlite'}")
        self._parameters = dict(parameters or {})
        self._environment = {**LOCAL_ENVIRONMENT, **(environment or {})}
        self._timing = timing
        self._mock: Any = None
        self._saved_environ: dict[str, str | None] = {}
        self._modules: dict[str, ModuleType] = {}
        self._functions: dict[str, LocalFunction] = {}
        self._invoke_lock = threading.Lock()
        # One handler at a time, as in one Lambda container: Powertools' logger, metrics
        # and the process environment are global, and concurrent runs would mix them.
        self._handler_lock = threading.RLock()
        # Which function's handler runs on this thread (its logical id), so a botocore
        # event handler can tell whose role an AWS call is made with.
        self.running = threading.local()
        self.invocations: dict[str, int] = {}
        self.recovered: list[RecoveredRun] = []
        self._local = threading.local()  # per thread: is it running the abort clean-up
        self._closing = threading.Event()  # interrupted: executions may start no handler
        self._persist_locks = {logical_id: threading.Lock() for logical_id in PERSISTED_TABLES}
        self._locked = False
        # What the interpreter tells about this runtime's executions (see ``interpreter``):
        # the state each one is in and which have ended, read by ``wait_for`` and the
        # live progress instead of the execution history.
        self._events = threading.Condition()
        self._event_count = 0
        self._steps: dict[str, str] = {}
        self._window_steps: dict[str, dict[int, str]] = {}  # a Map's iterations, by window
        self._ended: set[str] = set()
        # Per execution: the engine's change count its last step had seen, and its DMS
        # identifiers, so its Wait states end at the next change of its own resources.
        self._seen_changes: dict[str, int] = {}
        self._used_ticks: set[str] = set()  # the run ids' ticks of this folder (_unused_moment)
        self._dms_keys: dict[str, frozenset[str]] = {}
        self._previous_sleep: Callable[[float], None] | None = None
        self.template: Template
        self.dms: LocalDms
        self.session: boto3.Session

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> LocalRuntime:
        from moto import mock_aws

        # Powertools warns on every handler that records no metric; in AWS that line goes
        # to the function's log, and here it must not reach the command's output.
        warnings.filterwarnings(
            "ignore", message="No application metrics to publish", category=UserWarning
        )
        if self.writer:
            self.state.lock.acquire(
                self._command, timeout=self._lock_timeout, on_wait=self._on_lock_wait
            )
            self._locked = True
        self._set_environ(
            {
                "AWS_ACCESS_KEY_ID": "local",
                "AWS_SECRET_ACCESS_KEY": "local",
                "AWS_SESSION_TOKEN": "local",
                "AWS_DEFAULT_REGION": REGION,
                "AWS_REGION": REGION,
                "MOTO_ACCOUNT_ID": ACCOUNT,
            }
        )
        share_botocore_data()
        self._mock = mock_aws(config={"stepfunctions": {"execute_state_machine": True}})
        self._mock.start()
        try:
            boto3.setup_default_session(region_name=REGION)
            self.session = boto3.DEFAULT_SESSION  # type: ignore[assignment]
            self.dms = LocalDms(self.session.client, timing=self._timing)
            self.dms.install(self.session.events)
            self._listen()
            # The lake is served from the state folder's files, never from moto's memory.
            self.s3 = DiskS3(self.state.lake)
            self.s3.install(self.session.events)
            self.faults = AwsFaults(self.session.events)
            LambdaRouter(self._run_handler).install(self.session.events)
            self._build()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *_: object) -> None:
        # Nothing to save: tables are written through and S3 objects are files already.
        self._stop_listening()
        if hasattr(self, "dms"):
            self.dms.shutdown()
        for restore in getattr(self, "_restore_logging", []):
            restore()
        if getattr(self, "_log_stream", None) is not None:
            self._log_stream.close()
        if self._mock is not None:
            self._mock.stop()
            self._mock = None
        for name, value in self._saved_environ.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        boto3.DEFAULT_SESSION = None
        if self._locked:
            self.state.lock.release()
            self._locked = False

    # -- waits and progress: told by the interpreter and the engine, never polled ---------------

    def _listen(self) -> None:
        from deltaload import backoff
        from deltaload.local import interpreter

        interpreter.register(self)
        if self.writer:  # a reader writes nothing, not even the parse cache
            shared = interpreter.shared_cache_dir()
            interpreter.use_cache(self.state.path / "cache", *([shared] if shared else []))
        self._previous_sleep = backoff.sleep
        backoff.sleep = self._sleep_until_change

    def _stop_listening(self) -> None:
        from deltaload import backoff
        from deltaload.local import interpreter

        interpreter.unregister(self)
        interpreter.use_cache()
        if self._previous_sleep is not None:
            backoff.sleep = self._previous_sleep
            self._previous_sleep = None

    def owns(self, execution_arn: str) -> bool:
        """True for the executions of this runtime's state machine (interpreter listener)."""
        prefix = self.state_machine_arn.replace(":stateMachine:", ":execution:") + ":"
        return execution_arn.startswith(prefix)

    def state_entered(self, execution_arn: str, state: str) -> None:
        """Note the state an execution entered (interpreter listener)."""
        with self._events:
            self._steps[execution_arn] = state
            self._event_count += 1
            self._events.notify_all()

    def window_entered(self, execution_arn: str, window: int, state: str) -> None:
        """Note the state a window's iteration of the windows' Map entered (listener)."""
        with self._events:
            self._window_steps.setdefault(execution_arn, {})[window] = state
            self._event_count += 1
            self._events.notify_all()

    def execution_ended(self, execution_arn: str) -> None:
        """Note that an execution ended (interpreter listener)."""
        with self._events:
            self._ended.add(execution_arn)
            self._event_count += 1
            self._events.notify_all()

    def wait(self, execution_arn: str, seconds: int, running: Callable[[], bool]) -> None:
        """A Wait state: ``seconds`` at most, ended by the next status change of the run's DMS
        resources (interpreter listener).

        Every Wait of the definition follows a step that looked at the run's DMS resources
        and waits for them to change; the engine's transitions take fractions of a second.
        """
        changes = self.dms.changes
        since = self._seen_changes.get(execution_arn, changes.count)
        keys = self._dms_keys.get(execution_arn)
        changes.wait(since, seconds, keys=keys, stopped=lambda: not running())

    def _sleep_until_change(self, seconds: float) -> None:
        """A handler's sleep between two polls (StartLoad waiting for its task, say), ended by
        the next status change of the resources of the run it works for."""
        changes = self.dms.changes
        changes.wait(changes.seen(), seconds, keys=getattr(self._local, "dms_keys", None))

    def _note_run(self, event: Any) -> str | None:
        """Before a handler runs: the execution it works for (None if not a run's step)."""
        self.dms.changes.observe()  # the step looks at the engine from now on
        state = event if isinstance(event, dict) else {}
        if "table" not in state and isinstance(state.get("detail"), dict):
            with suppress(TypeError, ValueError):  # an execution status change event
                state = json.loads(state["detail"].get("input") or "{}")
        table, run_id = state.get("table"), state.get("runId")
        if not isinstance(table, str) or not isinstance(run_id, str):
            self._local.dms_keys = None
            return None
        from deltaload.items import WINDOW_INSTANCES_MAX, WINDOWS_MAX
        from deltaload.names import run_identifiers

        arn = self.execution_arn(run_id)
        if arn not in self._dms_keys:
            # The run's own resources and those of every window it may plan, so that the
            # waits of the windows' Map end at their tasks' changes too.
            ids = run_identifiers(table, run_id, WINDOWS_MAX, WINDOW_INSTANCES_MAX)
            self._dms_keys[arn] = frozenset(str(i).lower() for i in ids)
        self._local.dms_keys = self._dms_keys[arn]
        return arn

    def current_step(self, execution_arn: str) -> str:
        """The state the execution last entered ("" before its first); in the windows' Map,
        what each window is doing (``LoadWindows: 1 verified, 2 loading, 3 starting``)."""
        step = self._steps.get(execution_arn, "")
        windows = self._window_steps.get(execution_arn)
        if step != "LoadWindows" or not windows:
            return step
        parts = [f"{w} {WINDOW_PHASES.get(s, s)}" for w, s in sorted(dict(windows).items())]
        return f"{step}: {', '.join(parts)}"

    # -- resources -------------------------------------------------------------------------------

    def _build(self) -> None:
        secret = self.session.client("secretsmanager").create_secret(
            Name=SOURCE_SECRET_NAME, SecretString=json.dumps(self.source.secret())
        )
        overrides = {"SourceSecretArn": secret["ARN"], **self._parameters}
        self.template = Template.load(self.root, overrides)
        t = self.template
        for logical_id in t.of_type("AWS::DynamoDB::Table"):
            self._create_table(logical_id)
        for logical_id in t.of_type("AWS::S3::Bucket"):
            self.session.client("s3").create_bucket(Bucket=t.physical_ids[logical_id])
        for logical_id in t.of_type("AWS::SNS::Topic"):
            arn = self.session.client("sns").create_topic(Name=t.arns[logical_id].split(":")[-1])
            t.set_physical_id(logical_id, arn["TopicArn"])
        for logical_id in t.of_type("AWS::DMS::ReplicationSubnetGroup"):
            self._create_subnet_group(logical_id)
        for logical_id in t.of_type("AWS::DMS::Endpoint"):
            self._create_endpoint(logical_id)
        self._create_glue_databases_on_first_use(t.of_type("AWS::Glue::Database"))
        environment: dict[str, str] = {}
        for logical_id in t.of_type("AWS::Serverless::Function"):
            function = t.function(logical_id)
            self._functions[function.name] = function
            self._functions[function.arn] = function
            self._functions[logical_id] = function
            environment.update(function.environment)
        # Functions share one process here: their environments must agree.
        self._set_environ({**environment, **self._environment})
        for logical_id in t.of_type("AWS::Serverless::StateMachine"):
            self._create_state_machine(logical_id)
        if self._log_file is not None:
            self._send_function_logs_to(self._log_file)
        self._restore()
        if self.writer:
            self._write_through()
            fault_points.checkpoint("writer-locked")
            self.recovered = self.recover_orphans()

    # -- state folder ----------------------------------------------------------------------------

    def _restore(self) -> None:
        """Load the folder into the emulated services; a damaged file changes nothing."""
        keys = {
            logical_id: tuple(
                k["AttributeName"] for k in self.template.properties(logical_id)["KeySchema"]
            )
            for logical_id in PERSISTED_TABLES
        }
        tables = self.state.read_tables(keys)  # every file checked before anything is used
        if self.writer:
            self.state.remove_leftovers()  # half-written files of a killed writer
        dynamodb = self.session.client("dynamodb")
        for logical_id, items in tables.items():
            name = self.template.physical_ids[logical_id]
            for item in items:
                dynamodb.put_item(TableName=name, Item=item)
        self._used_ticks = {
            str(item["runId"]["S"])[-TICK_LENGTH:]
            for item in tables.get("RunHistoryTable", [])
            if "S" in item.get("runId", {})
        }

    def _write_through(self) -> None:
        """After each successful write to a persisted table, replace that table's file.

        Hooked on botocore's events of the runtime's session, so every client created
        from now on (the handlers', the engine's, the command line's) is covered.
        """
        self._persisted = {
            self.template.physical_ids[logical_id]: logical_id for logical_id in PERSISTED_TABLES
        }
        self._persist_client = self.session.client("dynamodb")
        events = self.session.events
        for operation in WRITE_OPERATIONS:
            _around(
                events,
                f"dynamodb.{operation}",
                (self._note_written_tables, f"deltaload-state-note-{operation}"),
                (self._persist_written_tables, f"deltaload-state-persist-{operation}"),
            )
        if os.environ.get(fault_points.KILL_ENV) or os.environ.get(fault_points.PAUSE_ENV):
            for operation in ("PutObject", "CompleteMultipartUpload"):
                _around(
                    events,
                    f"s3.{operation}",
                    (self._note_key, f"k{operation}"),
                    (self._staged_file_written, f"m{operation}"),
                )

    def _note_written_tables(self, params: Mapping[str, Any], context: dict, **_: Any) -> None:
        names = set()
        if "TableName" in params:
            names.add(params["TableName"])
        names |= set(params.get("RequestItems") or {})
        for entry in params.get("TransactItems") or []:
            names |= {action.get("TableName") for action in entry.values()}
        context["deltaload_tables"] = [self._persisted[n] for n in names if n in self._persisted]

    def _persist_written_tables(
        self, http_response: Any, parsed: Mapping[str, Any], context: dict, **_: Any
    ) -> None:
        if getattr(http_response, "status_code", 200) >= 300 or "Error" in parsed:
            return  # nothing was written (a failed condition, an injected fault)
        for logical_id in context.get("deltaload_tables", []):
            # Snapshot and replace under one lock, so a later snapshot is never overtaken.
            with self._persist_locks[logical_id]:
                items: list[dict[str, Any]] = []
                paginator = self._persist_client.get_paginator("scan")
                for page in paginator.paginate(
                    TableName=self.template.physical_ids[logical_id], ConsistentRead=True
                ):
                    items += page["Items"]
                self.state.write_table(logical_id, items, self._current_function())

    def _note_key(self, params: Mapping[str, Any], context: dict, **_: Any) -> None:
        context["deltaload_key"] = str(params.get("Key", ""))

    def _staged_file_written(self, parsed: Mapping[str, Any], context: dict, **_: Any) -> None:
        key = context.get("deltaload_key", "")
        if "Error" not in parsed and key.rsplit("/", 1)[-1].startswith("LOAD"):
            fault_points.checkpoint("mid-load")

    def _current_function(self) -> str:
        return getattr(self.running, "function", None) or "command"

    def _create_table(self, logical_id: str) -> None:
        props = self.template.properties(logical_id)
        name = self.template.physical_ids[logical_id]
        self.session.client("dynamodb").create_table(
            TableName=name,
            KeySchema=props["KeySchema"],
            AttributeDefinitions=props["AttributeDefinitions"],
            BillingMode="PAY_PER_REQUEST",
        )

    def _create_subnet_group(self, logical_id: str) -> None:
        props = self.template.properties(logical_id)
        identifier = props.get("ReplicationSubnetGroupIdentifier") or (
            self.template.physical_ids[logical_id].lower()
        )
        self.session.client("dms").create_replication_subnet_group(
            ReplicationSubnetGroupIdentifier=identifier,
            ReplicationSubnetGroupDescription=props.get("ReplicationSubnetGroupDescription", "-"),
            SubnetIds=[str(s) for s in props.get("SubnetIds", ["subnet-local"])],
        )
        self.template.set_physical_id(logical_id, identifier)

    def _create_glue_databases_on_first_use(self, logical_ids: Iterable[str]) -> None:
        """Create the template's Glue databases before the first Glue call of any client.

        A run that publishes nothing never reaches Glue, and moto's Glue is the dearest of
        the emulated services to start (about a quarter of a second): a command pays it
        only when it uses the catalog. Every caller sees the databases as deployed.
        """
        pending = list(logical_ids)
        lock = threading.RLock()

        def before_glue_call(**_: Any) -> None:
            if not pending or getattr(self._local, "creating_glue", False):
                return
            with lock:  # a second thread's first call waits until the databases exist
                if not pending:
                    return
                self._local.creating_glue = True  # the calls below pass through here
                # The deployment creates the databases, not the function whose call is
                # first: its role is not asked (the IAM contract tests check each call).
                caller = getattr(self.running, "function", None)
                self.running.function = None
                try:
                    for logical_id in pending:
                        self._create_glue_database(logical_id)
                    pending.clear()
                finally:
                    self._local.creating_glue = False
                    self.running.function = caller

        self.session.events.register("before-call.glue", before_glue_call)

    def _create_glue_database(self, logical_id: str) -> None:
        database = self.template.properties(logical_id)["DatabaseInput"]
        self.session.client("glue").create_database(
            DatabaseInput={k: v for k, v in database.items() if k in ("Name", "Description")}
        )

    def _create_endpoint(self, logical_id: str) -> None:
        """Create the template's source endpoint, pointed at the local source database."""
        props = self.template.properties(logical_id)
        identifier = props.get("EndpointIdentifier") or (
            self.template.physical_ids[logical_id].lower()
        )
        request: dict[str, Any] = {
            "EndpointIdentifier": identifier,
            "EndpointType": props["EndpointType"],
        }
        settings_keys = ("PostgreSqlSettings", "MySqlSettings")
        if self.source.engine == "sqlite":
            request |= {
                "EngineName": "sqlite",
                "DatabaseName": self.source.sqlite_path,
                "ExtraConnectionAttributes": f"schemaName={self.source.schema}",
            }
        else:
            secret_settings = next(
                (props[k] for k in (*settings_keys, "PostgreSQLSettings") if k in props), {}
            )
            key = "PostgreSQLSettings" if self.source.engine == "postgres" else "MySQLSettings"
            engine_settings = {
                "SecretsManagerSecretId": self.template.parameters["SourceSecretArn"],
                "SecretsManagerAccessRoleArn": secret_settings.get(
                    "SecretsManagerAccessRoleArn", f"arn:aws:iam::{ACCOUNT}:role/local"
                ),
            }
            if self.source.engine == "postgres":
                # The template's type-mapping settings (MapBooleanAsBoolean) reach the engine.
                pg = props.get("PostgreSqlSettings") or {}
                engine_settings |= {k: v for k, v in pg.items() if k.startswith("Map")}
            request |= {
                "EngineName": self.source.engine,
                "DatabaseName": self.source.secret()["dbname"],
                key: engine_settings,
            }
        created = self.session.client("dms").create_endpoint(**request)["Endpoint"]
        self.template.set_physical_id(logical_id, created["EndpointArn"])

    def _create_state_machine(self, logical_id: str) -> None:
        props = self.template.properties(logical_id)
        definition = (self.root / props["DefinitionUri"]).read_text()
        substitutions = props.get("DefinitionSubstitutions", {})

        def substitute(match: Any) -> str:
            name = match.group(1)
            if name not in substitutions:
                raise LocalRuntimeError(
                    f"{props['DefinitionUri']} uses ${{{name}}} but {logical_id}'s "
                    "DefinitionSubstitutions in template.yaml do not define it"
                )
            return str(substitutions[name])

        import re

        body = re.sub(r"\$\{([A-Za-z0-9_]+)\}", substitute, definition)
        json.loads(body)  # a broken definition should fail here, with the file named
        self.session.client("stepfunctions").create_state_machine(
            name=self.template.arns[logical_id].split(":")[-1],
            definition=body,
            roleArn=f"arn:aws:iam::{ACCOUNT}:role/deltaload-local-states",
        )

    def _send_function_logs_to(self, path: Path) -> None:
        """Write the handlers' JSON log lines to a file instead of stdout (CloudWatch's role)."""
        import logging

        from deltaload.observability import logger

        path.parent.mkdir(parents=True, exist_ok=True)
        stream = path.open("a", encoding="utf-8")
        self._log_stream = stream
        self._restore_logging: list[Callable[[], None]] = []
        for handler in logging.getLogger(logger.name).handlers:
            if isinstance(handler, logging.StreamHandler):
                # Assigned, not setStream(): that flushes the old stream, which a test
                # runner may already have closed.
                previous, handler.stream = handler.stream, stream
                self._restore_logging.append(lambda h=handler, p=previous: setattr(h, "stream", p))
        # moto's interpreter reports each failed state on the root logger's last resort.
        interpreter = logging.getLogger("moto.stepfunctions")
        to_file = logging.StreamHandler(stream)
        interpreter.addHandler(to_file)
        interpreter.propagate = False

        def restore_interpreter() -> None:
            interpreter.removeHandler(to_file)
            interpreter.propagate = True

        self._restore_logging.append(restore_interpreter)

    # -- Lambda, in-process ------------------------------------------------------------------------

    def _run_handler(self, name: str, event: Any) -> Invocation:
        function = self._functions.get(name)
        if function is None:
            return not_found(name)
        handler = getattr(self._module(function), function.handler_name, None)
        if handler is None:
            raise LocalRuntimeError(
                f"{function.logical_id}: {function.handler_file} defines no "
                f"{function.handler_name!r}"
            )
        if self._closing.is_set() and not getattr(self._local, "cleanup", False):
            # Interrupted: an execution's next step must not start (Lambda's own error).
            body = {
                "errorMessage": "the command was interrupted; no further step runs",
                "errorType": "Interrupted",
            }
            return Invocation(200, body, error=True)
        with self._handler_lock:
            self.invocations[function.logical_id] = self.invocations.get(function.logical_id, 0) + 1
            caller = getattr(self.running, "function", None)
            self.running.function = function.logical_id
            execution = self._note_run(event)
            try:
                result = call_handler(handler, event, _Context(function))
            finally:
                self.running.function = caller
                if execution is not None:
                    self._seen_changes[execution] = self.dms.changes.seen()
                # With metrics disabled locally Powertools never flushes, so its metric set
                # would grow from one invocation to the next.
                from deltaload.observability import metrics

                metrics.clear_metrics()
        fault_points.checkpoint(f"after:{function.logical_id}")
        return result

    def _module(self, function: LocalFunction) -> ModuleType:
        with self._invoke_lock:
            if function.logical_id not in self._modules:
                self._modules[function.logical_id] = load_module(
                    function.handler_file, f"deltaload_function_{function.logical_id}"
                )
            return self._modules[function.logical_id]

    # -- commands --------------------------------------------------------------------------------

    def invoke(self, logical_id: str, event: Any) -> Any:
        """Invoke one function of the template as `sam local invoke` would; returns its result."""
        if logical_id not in self._functions:
            known = sorted(k for k in self._functions if k[0].isupper() and ":" not in k)
            raise LocalRuntimeError(f"template.yaml has no function {logical_id!r}; try {known}")
        response = self.session.client("lambda").invoke(
            FunctionName=self._functions[logical_id].name, Payload=json.dumps(event).encode()
        )
        result = json.loads(response["Payload"].read() or b"null")
        if response.get("FunctionError"):
            raise LocalRuntimeError(
                f"{logical_id} failed: {result.get('errorType')}: {result.get('errorMessage')}"
            )
        return result

    def tick(
        self,
        tables: list[str] | None = None,
        *,
        now: datetime | None = None,
        progress: Callable[[list[ExecutionResult]], None] | None = None,
        timeout: float = 600.0,
        stop: threading.Event | None = None,
    ) -> TickResult:
        """One scheduled tick: run the starter, then wait for every execution it started.

        When ``stop`` is set (see ``interruptible``) the executions are stopped and go
        through the failure path, and Interrupted is raised.
        """
        moment = now or self._unused_moment()
        event: dict[str, Any] = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": ACCOUNT,
            "time": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": REGION,
            "resources": [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/deltaload-local-schedule"],
            "detail": {},
        }
        if tables:
            event["tables"] = list(tables)
        self._used_ticks.add(tick_of(moment))
        summary = self.invoke("StarterFunction", event)
        started = summary.get("started", [])
        executions = self.wait_for(
            [self.execution_arn(s["runId"]) for s in started], progress, timeout, stop=stop
        )
        return TickResult(starter=summary, executions=executions)

    def _unused_moment(self) -> datetime:
        """Now, in a second no run of this state folder (recorded, or ticked by this
        runtime) is named after.

        Run ids are ticks to the second. Two `deltaload run` in one second would otherwise
        share an id: the starter would skip the second as "already started for this tick"
        (as it must for EventBridge's duplicate deliveries) and its history record would
        replace the first's. Waiting for the next second keeps both; the moment is never
        moved forward, which a timestamp watermark taken from the clock could not allow.
        Only the folder's writer ticks, so the ticks read at restore and those since are all.
        """
        moment = datetime.now(UTC)
        while tick_of(moment) in self._used_ticks:
            time.sleep(1.0 - moment.microsecond / 1e6 + 0.001)
            moment = datetime.now(UTC)
        return moment

    def wait_for(
        self,
        execution_arns: list[str],
        progress: Callable[[list[ExecutionResult]], None] | None = None,
        timeout: float = 600.0,
        *,
        stop: threading.Event | None = None,
    ) -> list[ExecutionResult]:
        """Wait until each execution has ended; report progress at each state it enters.

        Woken by the interpreter (a state entered, an execution ended), so progress reads
        a small in-memory record and the executions' histories are never read.
        """
        sfn = self.session.client("stepfunctions")
        deadline = time.monotonic() + timeout
        known = {arn: self._describe(sfn, arn) for arn in execution_arns}
        while True:
            if stop is not None and stop.is_set():
                raise self.abort(execution_arns, "interrupted by Ctrl-C or SIGTERM")
            with self._events:
                count = self._event_count
                ended = set(self._ended)
            for arn in execution_arns:
                if known[arn].status == "RUNNING" and arn in ended:
                    known[arn] = self._describe(sfn, arn)
            results = [known[arn] for arn in execution_arns]
            if progress:
                progress(results)
            if all(r.status != "RUNNING" for r in results):
                return [self._with_outcome(r) for r in results]
            left = deadline - time.monotonic()
            if left <= 0:
                raise LocalRuntimeError(
                    f"executions still running after {timeout:.0f}s: "
                    + ", ".join(r.table for r in results if r.status == "RUNNING")
                )
            if not self._await_event(count, min(left, 1.0), stop):
                # Nothing told for a second: an execution ended some other way is found too.
                for arn in execution_arns:
                    if known[arn].status == "RUNNING":
                        known[arn] = self._describe(sfn, arn)

    def _await_event(self, count: int, seconds: float, stop: threading.Event | None) -> bool:
        """Wait until the interpreter tells something after ``count``, or ``stop`` is set."""
        end = time.monotonic() + seconds
        with self._events:
            while self._event_count == count:
                left = end - time.monotonic()
                if left <= 0 or (stop is not None and stop.is_set()):
                    return False
                # A stop request is an Event of its own: looked at every 0.2 s.
                self._events.wait(min(left, 0.2) if stop is not None else left)
            return True

    def abort(self, execution_arns: list[str], why: str) -> Interrupted:
        """Stop the executions and send each unfinished one through the failure path.

        As on AWS: StopExecution, then the template's CleanupAborted handler with the
        execution status change event EventBridge would deliver. A handler already
        running finishes first (it holds the handler lock) and no later step starts;
        loads the engine is running are stopped by the cleanup's teardown.
        """
        sfn = self.session.client("stepfunctions")
        cause = f"{why}: deltaload (pid {os.getpid()}) stopped the run before it finished"
        for arn in execution_arns:
            if self._describe(sfn, arn).status == "RUNNING":
                # If it ended meanwhile, the lock check below decides what to do.
                with suppress(ClientError):
                    sfn.stop_execution(executionArn=arn, error="Interrupted", cause=cause)
        self._closing.set()
        fault_points.release_paused()
        with self._handler_lock:  # the in-flight handler, if any, has returned
            pass
        locks = {i["targetTableName"]: i.get("lockOwner") for i in self.items()}
        results = []
        for arn in execution_arns:
            result = self._describe(sfn, arn)
            # A step refused after the stop may have ended the execution FAILED without
            # its failure path: what counts is whether the run still holds the lock.
            if result.status in ("RUNNING", "ABORTED") or locks.get(result.table) == result.name:
                self._cleanup_aborted(result.table, result.name, "Interrupted", cause)
                result = replace(result, status="ABORTED")
            results.append(self._with_outcome(result))
        return Interrupted(f"{why}: {len(results)} run(s) stopped", results)

    def recover_orphans(self) -> list[RecoveredRun]:
        """Finish every run whose lock outlived its process (only a writer may call this).

        Offline executions exist only in the process that started them, and this process
        holds the folder's writer lock, so a lock on any item belongs to a dead process.
        """
        previous = self.state.lock.previous
        who = f"pid {previous.pid}, {previous.command}" if previous else "an earlier command"
        cause = (
            f"interrupted: the deltaload process running it ({who}) ended before the run "
            "finished; its staging data and unrecorded output were deleted"
        )
        recovered = []
        for item in self.items():
            owner = item.get("lockOwner")
            if owner:
                failure = self._cleanup_aborted(
                    item["targetTableName"], str(owner), "ExecutionAborted", cause
                )
                recovered.append(RecoveredRun(item["targetTableName"], str(owner), failure))
        self._complete_history()
        return recovered

    def _complete_history(self) -> None:
        """Finish history records a process left RUNNING after its run had committed.

        RecordSuccess commits the item (watermark, lock released) and then writes the run's
        record; a process that died between the two left the record RUNNING. The item
        holds what the record lacks.
        """
        from deltaload.items import to_dynamodb

        items = {i["targetTableName"]: i for i in self.items()}
        for record in self.scan(self.history_table):
            if record.get("status") != store.RUNNING:
                continue
            item = items.get(record.get("targetTableName"), {})
            if item.get("lastRunId") != record.get("runId") or item.get("lockOwner"):
                continue
            if item.get("lastRunStatus") not in (store.SUCCEEDED, store.SKIPPED):
                continue
            values = {
                "status": item["lastRunStatus"],
                "rows": item.get("lastRunRows", 0),
                "files": item.get("lastRunFiles", 0),
                "window": item.get("lastWindow"),
                "watermark": item.get("watermark"),
                "endedAt": item.get("lastRunEndedAt"),
                "note": "completed from the controller item: the process ended after the "
                "run had committed",
            }
            values = {k: v for k, v in values.items() if v is not None}
            self.session.client("dynamodb").update_item(
                TableName=self.history_table,
                Key=to_dynamodb_key(record),
                UpdateExpression="SET " + ", ".join(f"#a{i} = :a{i}" for i in range(len(values))),
                ExpressionAttributeNames={f"#a{i}": k for i, k in enumerate(values)},
                ExpressionAttributeValues=to_dynamodb(
                    {f":a{i}": v for i, v in enumerate(values.values())}
                ),
            )

    def _cleanup_aborted(self, table: str, run_id: str, error: str, cause: str) -> dict[str, Any]:
        """Invoke CleanupAbortedFunction as EventBridge would for an aborted execution."""
        # The event of "Step Functions Execution Status Change" (EventBridge), see
        # https://docs.aws.amazon.com/step-functions/latest/dg/cw-events.html
        arn = self.execution_arn(run_id)
        stamp = int(time.time() * 1000)
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Step Functions Execution Status Change",
            "source": "aws.states",
            "account": ACCOUNT,
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": REGION,
            "resources": [arn],
            "detail": {
                "executionArn": arn,
                "stateMachineArn": self.state_machine_arn,
                "name": run_id,
                "status": "ABORTED",
                "startDate": stamp,
                "stopDate": stamp,
                "input": json.dumps({"table": table, "runId": run_id}),
                "output": None,
                "inputDetails": {"included": True},
                "outputDetails": None,
                "error": error,
                "cause": cause,
            },
        }
        self._local.cleanup = True
        try:
            return dict(self.invoke("CleanupAbortedFunction", event) or {})
        finally:
            self._local.cleanup = False

    def _describe(self, sfn: Any, arn: str) -> ExecutionResult:
        return ExecutionResult.described(sfn.describe_execution(executionArn=arn), arn)

    def _with_outcome(self, result: ExecutionResult) -> ExecutionResult:
        return replace(result, outcome=self.outcome(result))

    def outcome(self, result: ExecutionResult) -> RunOutcome:
        """What the run did, from its output and its run history record."""
        record = next(
            (
                r
                for r in self.scan(self.history_table)
                if r.get("runId") == result.name and r.get("targetTableName") == result.table
            ),
            {},
        )
        return run_outcome(result, record)

    def running_executions(self) -> list[str]:
        """The ARNs of the load state machine's executions still running in this process."""
        sfn = self.session.client("stepfunctions")
        arns: list[str] = []
        paginator = sfn.get_paginator("list_executions")
        for page in paginator.paginate(
            stateMachineArn=self.state_machine_arn, statusFilter="RUNNING"
        ):
            arns += [e["executionArn"] for e in page["executions"]]
        return arns

    def execution_arn(self, run_id: str) -> str:
        """The ARN of the execution named ``run_id``."""
        return f"{self.state_machine_arn.replace(':stateMachine:', ':execution:')}:{run_id}"

    def execution_history(self, execution_arn: str) -> list[dict[str, Any]]:
        """Every event of one execution (for counting state transitions)."""
        sfn = self.session.client("stepfunctions")
        events: list[dict[str, Any]] = []
        for page in sfn.get_paginator("get_execution_history").paginate(executionArn=execution_arn):
            events += page["events"]
        return events

    # -- data access -----------------------------------------------------------------------------

    @property
    def controller_table(self) -> str:
        """The controller table's local name."""
        return self.template.physical_ids["ControllerTable"]

    @property
    def history_table(self) -> str:
        """The run history table's local name."""
        return self.template.physical_ids["RunHistoryTable"]

    @property
    def bucket(self) -> str:
        """The data-lake bucket's local name."""
        return os.environ.get("DATA_BUCKET") or self.template.physical_ids["DataLakeBucket"]

    @property
    def state_machine_arn(self) -> str:
        """The load state machine's local ARN."""
        return self.template.arns["LoadStateMachine"]

    def put_item(self, plain: Mapping[str, Any]) -> None:
        """Write one (already validated) controller item."""
        from deltaload.items import to_dynamodb

        self.session.client("dynamodb").put_item(
            TableName=self.controller_table, Item=to_dynamodb(plain)
        )

    def scan(self, table_name: str) -> list[dict[str, Any]]:
        """Every item of a DynamoDB table as plain JSON."""
        from deltaload.items import from_dynamodb

        items: list[dict[str, Any]] = []
        paginator = self.session.client("dynamodb").get_paginator("scan")
        for page in paginator.paginate(TableName=table_name, ConsistentRead=True):
            items += [from_dynamodb(i) for i in page["Items"]]
        return items

    def items(self) -> list[dict[str, Any]]:
        """Every controller item."""
        return sorted(self.scan(self.controller_table), key=lambda i: i["targetTableName"])

    def item(self, table: str) -> dict[str, Any] | None:
        """One controller item, or None."""
        return next((i for i in self.items() if i["targetTableName"] == table), None)

    def history(self, table: str | None = None) -> list[dict[str, Any]]:
        """Run records, oldest first."""
        records = self.scan(self.history_table)
        if table:
            records = [r for r in records if r.get("targetTableName") == table]
        return sorted(records, key=lambda r: (str(r.get("startedAt", "")), str(r.get("runId"))))

    def keys(self, prefix: str = "") -> list[str]:
        """Every object key in the data-lake bucket under ``prefix``."""
        keys: list[str] = []
        paginator = self.session.client("s3").get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            keys += [o["Key"] for o in page.get("Contents", [])]
        return keys

    def notifications(self) -> list[dict[str, Any]]:
        """Messages published to the notification topic (subject, message)."""
        from moto.sns.models import sns_backends

        backend = sns_backends[ACCOUNT][REGION]
        sent: list[dict[str, Any]] = []
        for topic in backend.topics.values():
            sent += [
                {"subject": s, "message": m}
                for (_, m, s, *_rest) in getattr(topic, "sent_notifications", [])
            ]
        return sent

    def save(self) -> None:
        """Nothing left to save: tables are written through and S3 objects are files.

        Kept so that callers written for the old save-at-the-end runtime still work.
        """

    # -- helpers ---------------------------------------------------------------------------------

    def _set_environ(self, values: Mapping[str, str]) -> None:
        for name, value in values.items():
            self._saved_environ.setdefault(name, os.environ.get(name))
            os.environ[name] = value


def to_dynamodb_key(record: Mapping[str, Any]) -> dict[str, Any]:
    """The history table key of a run record, in DynamoDB JSON."""
    return {k: {"S": str(record[k])} for k in ("targetTableName", "runId")}


@contextmanager
def interruptible() -> Iterator[threading.Event]:
    """An event set by SIGINT or SIGTERM while the block runs (main thread only).

    The signals then only ask the command to stop: ``tick`` ends its runs through the
    failure path instead of dying with their locks held.
    """
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def ask_to_stop(signum: int, _frame: Any) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, ask_to_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class _Context:
    """The parts of the Lambda context object handlers and Powertools use."""

    def __init__(self, function: LocalFunction) -> None:
        self.function_name = function.name
        self.function_version = "$LATEST"
        self.invoked_function_arn = function.arn
        self.memory_limit_in_mb = 512
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function.name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + function.timeout

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the function's timeout."""
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _around(
    events: Any,
    call: str,
    before: tuple[Callable[..., Any], str],
    after: tuple[Callable[..., Any], str],
) -> None:
    """Register ``before`` on a call's parameter build and ``after`` on its answer (with ids)."""
    events.register(f"before-parameter-build.{call}", before[0], unique_id=before[1])
    events.register(f"after-call.{call}", after[0], unique_id=after[1])
