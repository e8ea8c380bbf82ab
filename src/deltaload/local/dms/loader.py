"""One full load: every included table, filtered, streamed to Parquet in S3.

Runs on a worker thread; reports progress through callbacks so the backend can show
table states and task statistics while the load runs, as DMS does.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from .coltypes import Column, Kind, truncate_lobs
from .errors import LoadError
from .mapping import Segment, SourceFilter, TableMapping, TablePlan
from .sources import SourceConfig, SourceReader, conform, open_reader
from .writer import ParquetSink, TargetSettings

LOG = logging.getLogger(__name__)

TABLE_COMPLETED = "Table completed"
TABLE_ERROR = "Table error"
TABLE_LOADING = "Full load"
TABLE_BEFORE_LOAD = "Before load"
TABLE_CANCELLED = "Table cancelled"
_PREFETCH_BATCHES = 2


class LoadCancelled(Exception):
    """The task was stopped while loading."""


@dataclass(frozen=True)
class LobSettings:
    """The task's LOB handling (TargetMetadata task settings).

    DMS's defaults: SupportLobs true, limited LOB mode, LobMaxSize 32 KB. SupportLobs false
    leaves LOB columns out ("Don't include LOB columns - LOB columns are excluded from the
    migration", CHAP_Introduction.Components.html); limited mode truncates a LOB to
    LobMaxSize KB and logs a warning; full mode (and inline mode, whose larger LOBs go in
    full mode) migrates every LOB whole (CHAP_Tasks.LOBSupport.html,
    CHAP_Tasks.CustomizingTasks.TaskSettings.TargetMetadata.html).
    """

    mode: str = "limited"  # none | limited | full | inline
    max_kb: int = 32

    @classmethod
    def from_task_settings(cls, text: str) -> LobSettings:
        """The LOB settings of a task settings JSON document (defaults where absent)."""
        try:
            document = json.loads(text or "{}")
        except json.JSONDecodeError:
            document = {}
        meta = document.get("TargetMetadata") if isinstance(document, dict) else None
        meta = meta if isinstance(meta, dict) else {}
        max_kb = meta.get("LobMaxSize", 32)
        max_kb = max_kb if isinstance(max_kb, int) and max_kb > 0 else 32
        if meta.get("SupportLobs", True) is False:
            return cls("none", max_kb)
        if meta.get("FullLobMode") is True:
            return cls("full", max_kb)
        inline = meta.get("InlineLobMaxSize", 0)
        if isinstance(inline, int) and inline > 0 and meta.get("LimitedSizeLobMode") is not True:
            return cls("inline", max_kb)
        return cls("limited", max_kb)


@dataclass
class TableStat:
    """Statistics of one table of a load (source names, as DMS reports them)."""

    schema: str
    table: str
    state: str = TABLE_BEFORE_LOAD
    rows: int = 0
    start: datetime | None = None
    end: datetime | None = None
    keys: list[str] = field(default_factory=list)
    lobs_truncated: dict[str, int] = field(default_factory=dict)  # column -> values cut

    def to_wire(self) -> dict[str, Any]:
        """The TableStatistics shape of the DMS API."""
        return {
            "SchemaName": self.schema,
            "TableName": self.table,
            "Inserts": 0,
            "Deletes": 0,
            "Updates": 0,
            "Ddls": 0,
            "AppliedInserts": 0,
            "AppliedDeletes": 0,
            "AppliedUpdates": 0,
            "AppliedDdls": 0,
            "FullLoadRows": self.rows,
            "FullLoadCondtnlChkFailedRows": 0,
            "FullLoadErrorRows": 0,
            "FullLoadStartTime": self.start,
            "FullLoadEndTime": self.end,
            "FullLoadReloaded": False,
            "LastUpdateTime": self.end or self.start,
            "TableState": self.state,
            "ValidationPendingRecords": 0,
            "ValidationFailedRecords": 0,
            "ValidationSuspendedRecords": 0,
            "ValidationState": "Not enabled",
        }


@dataclass
class LoadRequest:
    """Everything a full load needs; ``fail_after_rows`` comes from an injected fault."""

    owner: str
    mapping: TableMapping
    source: SourceConfig
    target: TargetSettings
    s3: Any
    cancel: threading.Event
    on_tables: Callable[[list[TableStat]], None]
    fail_after_rows: int | None = None
    skip: frozenset[tuple[str, str]] = frozenset()  # tables a resumed load already completed
    lobs: LobSettings = field(default_factory=LobSettings)


def run_full_load(request: LoadRequest) -> list[TableStat]:
    """Load every table the mapping includes; raise LoadError/LoadCancelled on failure."""
    with open_reader(request.source) as reader:
        plans = [p for p in _plans(reader, request) if (p.schema, p.table) not in request.skip]
        stats = [TableStat(p.schema, p.table) for p in plans]
        request.on_tables(stats)
        budget = [request.fail_after_rows]
        for plan, stat in zip(plans, stats, strict=True):
            _load_table(reader, plan, stat, request, budget)
    return stats


def _plans(reader: SourceReader, request: LoadRequest) -> list[TablePlan]:
    tables = reader.list_tables(request.mapping.table_types())
    if request.source.kind == "sqlite" and not request.source.schema_alias:
        # SQLite has one namespace ("main"); a schema the rules name literally can only
        # mean it, so the same mapping works against SQLite and a server database.
        names = [t for _, t in tables]
        tables += [(schema, t) for schema in request.mapping.literal_schemas() for t in names]
    plans = [p for s, t in tables if (p := request.mapping.plan(s, t)) is not None]
    if not plans:
        schemas = sorted({s for s, _ in tables}) or ["(none)"]
        raise LoadError(
            f"{request.owner}: no source table matches the selection rules "
            f"({request.source.describe()}; schemas found: {', '.join(schemas)})"
        )
    return plans


def _load_table(
    reader: SourceReader,
    plan: TablePlan,
    stat: TableStat,
    request: LoadRequest,
    budget: list[int | None],
) -> None:
    where = f"{request.owner}, table {plan.schema}.{plan.table}"
    stat.state, stat.start = TABLE_LOADING, datetime.now(UTC)
    request.on_tables([stat])
    columns = reader.columns(plan.schema, plan.table)
    if request.lobs.mode == "none":
        columns = [c for c in columns if c.lob is None]
    arrow_schema = pa.schema([c.field for c in columns])
    sink = ParquetSink(
        request.s3,
        request.target,
        plan.target_schema,
        plan.target_table,
        arrow_schema,
    )
    try:
        for filters in parallel_pieces(reader, plan, columns):
            for raw in _prefetch(reader.batches(plan.schema, plan.table, columns, filters)):
                if request.cancel.is_set():
                    raise LoadCancelled(where)
                batch = conform(raw, arrow_schema, columns)
                if request.lobs.mode == "limited":
                    batch = _limit_lobs(batch, columns, request.lobs.max_kb * 1024, stat)
                batch = _apply_row_budget(batch, budget, sink, where)
                sink.write(batch)
                stat.rows = sink.accepted
        stat.keys = sink.close()
        for column, count in stat.lobs_truncated.items():
            # DMS: "LOBs that exceed the maximum LOB size are truncated, and a warning is
            # issued to the log file" (CHAP_Tasks.LOBSupport.html). Nothing else says so.
            LOG.warning(
                "%s: %d LOB value(s) of column %r truncated to LobMaxSize %d KB (limited LOB mode)",
                where,
                count,
                column,
                request.lobs.max_kb,
            )
    except LoadCancelled:
        stat.state = TABLE_CANCELLED
        sink.discard()
        raise
    except LoadError as exc:
        stat.state = TABLE_ERROR
        with contextlib.suppress(LoadError):  # the first error is the one to report
            sink.abort()
        stat.rows, stat.keys = sink.rows, sink.keys
        raise LoadError(str(exc) if where in str(exc) else f"{where}: {exc}") from exc
    finally:
        stat.end = datetime.now(UTC)
    stat.rows, stat.state = sink.rows, TABLE_COMPLETED
    request.on_tables([stat])


def parallel_pieces(
    reader: SourceReader, plan: TablePlan, columns: list[Column]
) -> list[tuple[SourceFilter | Segment, ...]]:
    """The reads that load one table: its filters, ANDed with each range segment in turn.

    Checks the table's parallel-load rule as DMS does (user guide, "Table and collection
    settings rules and operations": the sources each type allows, "You can't use columns
    to define segment boundaries with the following AWS DMS data types: DOUBLE, FLOAT,
    BLOB, CLOB, and NCLOB", "Parallel load includes partitions or subpartitions only if
    they are already defined for the table"). Segments are read one after another through
    the table's one writer, so the files are numbered as one load's are.
    """
    rule = plan.parallel
    if rule is None or rule.type == "none":
        return [plan.filters]
    what = f"table-settings rule {rule.rule_id!r}: parallel-load {rule.type}"
    kind = reader.kind
    if rule.type == "ranges":
        by_name = {c.name: c for c in columns}
        unusable = [
            name
            for name in rule.columns
            if name in by_name and (by_name[name].kind is Kind.FLOAT or by_name[name].lob)
        ]
        if unusable:
            raise LoadError(
                f"{what}: column(s) {', '.join(map(repr, unusable))} cannot bound segments "
                "(DMS types DOUBLE, FLOAT, BLOB, CLOB and NCLOB are not allowed)"
            )
        return [(*plan.filters, segment) for segment in plan.segments() if segment is not None]
    if rule.type == "subpartitions-auto" or rule.subpartitions:
        raise LoadError(f"{what}: subpartitions are for Oracle sources only (this is {kind})")
    if kind != "mysql":
        raise LoadError(f"{what}: a {kind} source supports only the ranges type of parallel load")
    defined = reader.partitions(plan.schema, plan.table)
    if not defined:
        raise LoadError(
            f"{what}: table {plan.schema}.{plan.table} has no partitions "
            "(parallel load uses only partitions already defined for the table)"
        )
    unknown = [name for name in rule.partitions if name not in defined]
    if unknown:
        raise LoadError(
            f"{what}: partition(s) {', '.join(map(repr, unknown))} do not exist "
            f"(partitions: {', '.join(defined)})"
        )
    # Partitions split the same rows DMS would read from the table; the engine reads them
    # in one piece. partitions-list loads only the named partitions: not imitated.
    if rule.type == "partitions-list" and set(rule.partitions) != set(defined):
        raise LoadError(
            f"{what}: loading only some partitions ({', '.join(rule.partitions)} of "
            f"{', '.join(defined)}) is not supported locally"
        )
    return [plan.filters]


def _limit_lobs(
    batch: pa.RecordBatch, columns: list[Column], limit: int, stat: TableStat
) -> pa.RecordBatch:
    """Truncate the batch's LOB columns to ``limit`` bytes, counting the values cut."""
    for index, column in enumerate(columns):
        if column.lob is None:
            continue
        array, cut = truncate_lobs(batch.column(index), column.lob, limit)
        if cut:
            batch = batch.set_column(index, batch.schema.field(index), array)
            stat.lobs_truncated[column.name] = stat.lobs_truncated.get(column.name, 0) + cut
    return batch


def _apply_row_budget(
    batch: pa.RecordBatch, budget: list[int | None], sink: ParquetSink, where: str
) -> pa.RecordBatch:
    """Enforce an injected fail_after_rows fault: write up to the budget, then fail."""
    left = budget[0]
    if left is None:
        return batch
    if batch.num_rows <= left:
        budget[0] = left - batch.num_rows
        return batch
    sink.write(batch.slice(0, left))
    budget[0] = 0
    raise LoadError(
        f"{where}: injected failure after {sink.accepted} rows (fault fail_after_rows); "
        "the rows written so far were left in the target"
    )


def _prefetch(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Read the next batches on a helper thread while the caller encodes Parquet.

    Both the drivers and the Parquet writer release the GIL, so reading and writing
    overlap on two cores; the bounded queue keeps memory at a few batches.
    """
    items: queue.Queue[Any] = queue.Queue(maxsize=_PREFETCH_BATCHES)
    done = object()
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for batch in batches:
                if not put(batch):
                    return
            put(done)
        except BaseException as exc:  # handed over to the consuming thread
            put(exc)

    thread = threading.Thread(target=produce, name="dms-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()
