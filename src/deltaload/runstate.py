"""The run document: what enters a state machine execution and what each step adds.

The execution's input is ``{"table", "runId"}``; every Lambda Task passes the whole
document to its handler and gets it back with the step's result under one key (the
``KEY`` of the result's model): ``lock``, ``probe``, ``run``, ``resources``, ``poll``, ``load``,
``publish``, ``recorded``, ``failure``; a Catch puts ``{"Error", "Cause"}`` under
``error``. A run of several windows (``run.windowed``) loads them in a Map: each
iteration's document is the run's with its ``window`` (a ``PlannedWindow``), and the
Map puts every iteration's ``WindowOutcome`` under ``windows``.
``RunState`` composes them; ``state_schema()`` is its JSON Schema, the shared
artefact the ASL is checked against (statemachine/state.schema.json).

Keys are camelCase on the wire, except the window plan's (snake_case since its first
release). A key a step has not written yet is absent, never null.
"""

from __future__ import annotations

import json
from datetime import datetime
from types import UnionType
from typing import Annotated, Any, ClassVar, Literal, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    TypeAdapter,
    computed_field,
)
from pydantic.alias_generators import to_camel

from deltaload.errors import DeltaloadError
from deltaload.values import ColumnKind

Filter = dict[str, Any]
ReplicationModeName = Literal["instance", "existing", "serverless"]
# A moment of the run, written as ISO 8601 with its offset (datetime.isoformat()).
Moment = Annotated[datetime, PlainSerializer(lambda moment: moment.isoformat(), return_type=str)]


class StateDocumentError(DeltaloadError):
    """The state document a step got lacks a part it needs, or has one of the wrong shape."""


def _absent(value: Any) -> bool:
    return value is None


def _optional_only_when_absent(schema: dict[str, Any], model: type[BaseModel]) -> None:
    # Serialised, a field with a default is always written, but one with exclude_if may
    # be left out: only those are optional in the schema of the document as carried.
    omitted = {
        info.serialization_alias or info.alias or name
        for name, info in model.model_fields.items()
        if info.exclude_if is not None
    }
    if "required" in schema:
        schema["required"] = [key for key in schema["required"] if key not in omitted]


_SCHEMA_CONFIG = ConfigDict(
    json_schema_serialization_defaults_required=True,
    json_schema_extra=_optional_only_when_absent,
)


class Document(BaseModel):
    """A part of the run document: camelCase keys on the wire, immutable in Python."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        frozen=True,
        **_SCHEMA_CONFIG,
    )

    def document(self) -> dict[str, Any]:
        """The JSON-able form carried by the state machine."""
        return self.model_dump(mode="json")


# --- the window plan (window.py plans it) ------------------------------------------------


class _Window(BaseModel):
    """The slice the next run loads, the DMS filters that select it, and what to record."""

    model_config = ConfigDict(frozen=True, **_SCHEMA_CONFIG)

    table: str
    kind: ColumnKind
    lower: str | None
    upper: str | None
    lower_exclusive: bool = False
    filters: list[Filter] = Field(default_factory=list)
    empty: bool = False
    skip_reason: str | None = None
    next_watermark: str | None = None
    previous_watermark: str | None = None

    @property
    def is_open(self) -> bool:
        """True when the upper bound is only known after the load (from the loaded data)."""
        return False

    @property
    def loads_nothing(self) -> bool:
        """True when the run should not start DMS at all."""
        return self.empty or self.skip_reason is not None


class IncrementalWindow(_Window):
    """A bounded (or, for integers and strings, open-ended) window after the watermark."""

    mode: Literal["incremental"] = "incremental"

    @property
    def is_open(self) -> bool:
        """True when the upper bound is only known after the load (from the loaded data)."""
        return self.upper is None

    def describe(self) -> str:
        """A one-line human description of the window."""
        if self.skip_reason:
            return f"nothing to load: {self.skip_reason}"
        left = "(" if self.lower_exclusive else "["
        upper = self.upper if self.upper is not None else "max loaded value"
        text = f"{left}{self.lower}, {upper}]"
        return f"{text} (empty)" if self.empty else text


class OneShotWindow(_Window):
    """The item's own filter, loaded once (every operator but gte)."""

    mode: Literal["one-shot"] = "one-shot"

    def describe(self) -> str:
        """A one-line human description of the window."""
        if self.skip_reason:
            return f"nothing to load: {self.skip_reason}"
        return "one-shot filter " + " AND ".join(_describe_filter(f) for f in self.filters)


def _describe_filter(f: Filter) -> str:
    parts = []
    for c in f["filter-conditions"]:
        values = [c[k] for k in ("value", "start-value", "end-value") if k in c]
        parts.append(f"{f['column-name']} {c['filter-operator']} {' '.join(map(repr, values))}")
    return " OR ".join(parts).strip()


WindowPlan = Annotated[IncrementalWindow | OneShotWindow, Field(discriminator="mode")]
WINDOW = TypeAdapter(WindowPlan)


# --- names and keys (names.py derives them) ----------------------------------------------


class DmsNames(Document):
    """The identifiers of every DMS resource one run may create."""

    instance: str
    target_endpoint: str
    task: str
    config: str

    def identifiers(self) -> tuple[str, ...]:
        """All four identifiers."""
        return (self.instance, self.target_endpoint, self.task, self.config)


class RunKeys(Document):
    """Where one run's data lives in the bucket."""

    staging_folder: str  # the DMS BucketFolder (no trailing slash)
    staging_prefix: str  # staging_folder + "/"
    final_prefix: str  # <output>/<schema>/<table>/
    run_prefix: str  # <final_prefix>run=<runId>/
    manifest_key: str  # <final_prefix>_manifests/<runId>.json


class PlannedWindow(Document):
    """One window of a run of several: its slice, its own DMS task and target endpoint
    (on the run's compute), its staging folder, its published prefix and manifest."""

    index: int  # 1-based, in window order
    window: WindowPlan
    names: DmsNames  # task and target endpoint of the window; instance and config the run's
    keys: RunKeys
    table_mapping: dict[str, Any]


# --- what each step adds -----------------------------------------------------------------


class Lock(Document):
    """AcquireLock: whether this run holds the table's lock, and why not."""

    KEY: ClassVar[str] = "lock"

    acquired: bool
    reason: str
    owner: str | None
    expires_at: int | None


class ProbedWindowCount(Document):
    """One planned window and the rows its DMS filter selected at the source."""

    lower: str | None
    upper: str | None
    rows: int


class Probe(Document):
    """ProbeSource: the source's maximum above the watermark and each planned window's rows.

    ``enabled`` is false when the stack switched the probe off (nothing was asked);
    ``plannedAt`` is the moment PlanRun then plans at, so it plans the same windows.
    """

    KEY: ClassVar[str] = "probe"

    enabled: bool
    planned_at: Moment | None = None
    maximum: str | None = None
    windows: list[ProbedWindowCount] = Field(default_factory=list)

    def rows_of(self, lower: str | None, upper: str | None) -> int | None:
        """The probed row count of the window [lower, upper], None if it was not counted."""
        for window in self.windows:
            if (window.lower, window.upper) == (lower, upper):
                return window.rows
        return None


class RunPlan(Document):
    """PlanRun: everything the run will do, fixed once (window, mapping, names, keys)."""

    KEY: ClassVar[str] = "run"

    table: str
    run_id: str
    window: WindowPlan
    replication_mode: ReplicationModeName
    names: DmsNames
    keys: RunKeys
    source_schema: str
    source_table: str
    filter_column: str
    table_mapping: dict[str, Any]
    task_settings: dict[str, Any]
    notify_on_success: bool
    # The item's schema-change policy (items.SchemaPolicy) and the manifest that holds the
    # table's schema so far (absent before the first run that wrote files).
    schema_changes: str = "compatible"
    schema_manifest_key: str | None = None
    planned_at: Moment
    # The run's windows in order (one, the run itself, unless the item has a windowsize)
    # and how many load at once.
    windows: list[PlannedWindow] = Field(default_factory=list)
    concurrency: int = 1
    # The replication instances the windows are spread over (mode instance only).
    instances: int = 1

    @computed_field
    def windowed(self) -> bool:
        """True when the run loads several windows (the state machine's Map)."""
        return len(self.windows) > 1

    @property
    def first_loading(self) -> PlannedWindow:
        """The window whose target endpoint (and, in serverless mode, replication config) is
        created with the compute: the run itself, or in a windowed run its first window with
        rows to load (a windowed run has no run-level endpoint or config, and a window the
        probe found empty gets none)."""
        if not self.windowed:
            return PlannedWindow(
                index=1,
                window=self.window,
                names=self.names,
                keys=self.keys,
                table_mapping=self.table_mapping,
            )
        return next((w for w in self.windows if not w.window.loads_nothing), self.windows[0])

    @property
    def first_target(self) -> tuple[str, str]:
        """The identifier and staging folder of ``first_loading``'s target endpoint."""
        first = self.first_loading
        return first.names.target_endpoint, first.keys.staging_folder

    @computed_field
    def window_text(self) -> str:
        """The window in one line."""
        return self.window.describe()

    @computed_field
    def loads_nothing(self) -> bool:
        """True when no DMS work starts (empty window or a skip reason)."""
        return self.window.loads_nothing

    @computed_field
    def skip_reason(self) -> str | None:
        """Why the run loads nothing at all, if it does not."""
        return self.window.skip_reason

    @computed_field
    def previous_watermark(self) -> str | None:
        """The watermark the window was planned from (the commit's condition)."""
        return self.window.previous_watermark

    @property
    def source(self) -> str:
        """``schema.table`` of the source."""
        return f"{self.source_schema}.{self.source_table}"

    @property
    def table_names(self) -> tuple[str, str]:
        """The names DMS may report the table under (source and target)."""
        return (self.source_table, self.table)


class _Resources(Document):
    """CreateResources: the ARNs of what the run uses, so teardown knows the run's compute."""

    KEY: ClassVar[str] = "resources"

    source_endpoint_arn: str
    target_endpoint_arn: str  # a windowed run: its first window's with rows to load
    created_at: Moment
    # A windowed run: the target endpoint of each window, in window order (None for a
    # window the probe found empty: it starts no task).
    window_endpoint_arns: list[str | None] | None = Field(default=None, exclude_if=_absent)
    # Windows spread over several instances: every instance's ARN, the run's first.
    instance_arns: list[str] | None = Field(default=None, exclude_if=_absent)


class InstanceResources(_Resources):
    """A replication instance created for this run."""

    mode: Literal["instance"] = "instance"
    instance_arn: str
    instance_created: Literal[True] = True


class ExistingResources(_Resources):
    """The stack's shared replication instance (never created nor deleted by a run)."""

    mode: Literal["existing"] = "existing"
    instance_arn: str
    instance_created: Literal[False] = False


class ServerlessResources(_Resources):
    """A DMS Serverless replication config created for this run."""

    mode: Literal["serverless"] = "serverless"
    config_arn: str  # a windowed run: its first window's with rows to load
    # A windowed run: the replication config of each window, in window order (None for a
    # window the probe found empty).
    window_config_arns: list[str | None] | None = Field(default=None, exclude_if=_absent)


Resources = Annotated[
    InstanceResources | ExistingResources | ServerlessResources, Field(discriminator="mode")
]


class Poll(Document):
    """CheckResources, CheckLoad, Teardown: one look, and how long to wait for the next.

    The state machine waits ``waitSeconds`` and leaves the loop on ``done`` or ``failed``;
    ``failed`` is set once ``deadline`` (epoch seconds) passes.
    """

    KEY: ClassVar[str] = "poll"

    phase: str
    done: bool
    failed: bool
    status: str
    reason: str = ""
    error: str = ""
    wait_seconds: int
    attempt: int
    deadline: int
    full_load_rows: int | None = Field(default=None, exclude_if=_absent)  # load
    remaining: list[str] | None = Field(default=None, exclude_if=_absent)  # teardown
    deleted: list[str] | None = Field(default=None, exclude_if=_absent)  # teardown


class _Load(Document):
    """StartLoad: the full load that was started."""

    KEY: ClassVar[str] = "load"

    start_type: Literal["start-replication"] = "start-replication"
    started: bool
    started_at: Moment


class TaskLoad(_Load):
    """A full-load task on a replication instance."""

    task_arn: str


class ServerlessLoad(_Load):
    """A DMS Serverless replication."""

    config_arn: str


class SkippedLoad(_Load):
    """A window of a run of several that the source probe counted without rows: no task
    was created or started, and the window is verified and published empty."""

    skipped: Literal[True]
    reason: str


Load = TaskLoad | ServerlessLoad | SkippedLoad


class FailedWindow(Document):
    """The first window of a run that was not published, and why; it and every later
    window are loaded by the next run."""

    index: int
    error: str
    message: str


class Published(Document):
    """VerifyPublish: what was reconciled and published."""

    KEY: ClassVar[str] = "publish"

    warnings: list[str]
    rows: int
    files: int
    bytes: int
    full_load_rows: int
    loaded_max: str | None
    watermark: str | None
    run_prefix: str
    manifest_key: str
    # The manifest holding the table's schema after this run, and how the run changed it.
    schema_manifest_key: str | None = None
    schema_changes: list[dict[str, Any]] = Field(default_factory=list)
    schema_change: str | None = None
    # A window verified in its staging folder, not yet published (a Map iteration's result).
    staged: bool | None = Field(default=None, exclude_if=_absent)
    # A windowed run: the windows published, in order, and the first that was not.
    windows_published: list[int] | None = Field(default=None, exclude_if=_absent)
    failed_window: FailedWindow | None = Field(default=None, exclude_if=_absent)


class Recorded(Document):
    """RecordSuccess: the committed run state; ``warning`` (present only with one) notifies."""

    KEY: ClassVar[str] = "recorded"

    status: str
    watermark: str | None
    previous_watermark: str | None
    rows: int
    files: int
    already_recorded: bool
    warning: str | None = Field(default=None, exclude_if=_absent)
    # A windowed run that stopped at a failed window (the state machine then ends failed).
    failed_window: FailedWindow | None = Field(default=None, exclude_if=_absent)


class Failure(Document):
    """RecordFailure: what the failure path cleaned up and recorded."""

    KEY: ClassVar[str] = "failure"

    status: str
    error: str
    message: str
    committed: bool
    item_updated: bool
    objects_deleted: int


class CaughtError(BaseModel):
    """What a Catch (or a failed poll's Pass state) puts under ``error``."""

    model_config = ConfigDict(frozen=True, extra="allow", **_SCHEMA_CONFIG)

    Error: str = "Unknown"
    Cause: str = ""


def _later(default: Any = None) -> Any:
    return Field(default=default, exclude_if=_absent)


class WindowOutcome(Document):
    """What one iteration of the windows' Map ends with: the window verified in staging
    (``publish``) or the error that ended it."""

    index: int
    ok: bool
    publish: Published | None = _later()
    error: CaughtError | None = _later()


class RunState(Document):
    """The whole document, as far as the run has got."""

    model_config = ConfigDict(extra="allow")  # a step never drops what it does not know

    table: str
    run_id: str
    lock: Lock | None = _later()
    probe: Probe | None = _later()
    run: RunPlan | None = _later()
    resources: Resources | None = _later()
    poll: Poll | None = _later()
    load: Load | None = _later()
    publish: Published | None = _later()
    recorded: Recorded | None = _later()
    failure: Failure | None = _later()
    window: PlannedWindow | None = _later()  # a Map iteration's window
    windows: list[WindowOutcome] | None = _later()  # what the Map's iterations ended with
    error: CaughtError | None = _later()
    record_failure_error: CaughtError | None = _later()
    teardown_error: CaughtError | None = _later()
    notify_error: CaughtError | None = _later()

    def with_result(self, result: Document) -> RunState:
        """This document with a step's result under the key its model declares."""
        return self.model_copy(update={_FIELD_OF_KEY[result.KEY]: result})

    def part(self, key: str) -> Any:
        """The part ``key`` of the document; StateDocumentError when no step has written it."""
        value = getattr(self, _FIELD_OF_KEY[key])
        if value is None:
            raise StateDocumentError(
                f"table {self.table!r}: the state document of run {self.run_id} has no "
                f"{key!r}; the step that writes it did not run before this one"
            )
        return value

    def replication_mode(self, default: str) -> str:
        """The mode the run planned with, else ``default`` (the stack's)."""
        return self.run.replication_mode if self.run else default


# The state document's key -> RunState's field (the same word for every step's key).
_FIELD_OF_KEY = {
    (info.alias or name): name for name, info in RunState.model_fields.items() if name != "run_id"
}

STEP_RESULTS: tuple[type[Document], ...] = (
    Lock,
    Probe,
    RunPlan,
    _Resources,
    Poll,
    _Load,
    Published,
    Recorded,
    Failure,
)


def key_of(annotation: Any) -> str | None:
    """The state document key a step's result type declares (one for all of a union)."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    members = get_args(annotation) if isinstance(annotation, UnionType) else (annotation,)
    keys = {getattr(member, "KEY", None) for member in members}
    return keys.pop() if len(keys) == 1 else None


class RunInput(Document):
    """The execution input the starter gives each run."""

    table: str
    run_id: str


class ExecutionDetail(BaseModel):
    """The detail of EventBridge's "Step Functions Execution Status Change" event."""

    status: str = ""
    input: str | None = None
    error: str | None = None
    cause: str | None = None


class ExecutionStatusChange(BaseModel):
    """What CleanupAborted receives (only the parts it reads)."""

    detail: ExecutionDetail = Field(default_factory=ExecutionDetail)


class IgnoredChange(Document):
    """CleanupAborted: a status other than ABORTED or TIMED_OUT needs nothing."""

    ignored: Literal[True] = True
    status: str


class AbortedCleanup(Document):
    """CleanupAborted: the failure path's result and the last teardown pass."""

    failure: Failure
    teardown: dict[str, Any]


def state_schema() -> dict[str, Any]:
    """The JSON Schema of the run document as the state machine carries it."""
    return RunState.model_json_schema(mode="serialization", by_alias=True)


def state_schema_text() -> str:
    """``state_schema()`` as the committed file holds it."""
    return json.dumps(state_schema(), indent=2, sort_keys=True) + "\n"
