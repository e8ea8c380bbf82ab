"""Property: the probe counts exactly the rows the engine loads for a window.

For generated items (kind, start value, watermark, end value, the moment of planning) the
window planner writes a window; the probe counts it at the source, and the local DMS
engine loads it through a real full-load task. The two must agree on SQLite, PostgreSQL
and MariaDB, with values on and next to every boundary (fractions of a second, the last
microsecond of a second, NULLs, text timestamps written with a T on SQLite). The probed
maximum is checked against the DMS filter oracle (tests/unit/dms_filters.py).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deltaload import probe
from deltaload.items import parse_item
from deltaload.values import ColumnKind, format_timestamp, sort_key
from deltaload.window import plan_window
from tests.unit.dms_filters import matches

from .conftest import SOURCES, unique
from .helpers import SourceDb, Text, Workflow, mappings, selection

DAY0 = datetime(2024, 1, 1)
COLUMNS = {
    ColumnKind.INTEGER: "id",
    ColumnKind.TIMESTAMP: "ts",
    ColumnKind.DATE: "d",
    ColumnKind.STRING: "name",
}


def _rows(kind: str) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    for i in range(40):
        stamp = DAY0 + timedelta(hours=7 * i, seconds=i % 3)
        if i % 4 == 1:
            stamp += timedelta(microseconds=500_000)
        elif i % 4 == 2:
            stamp -= timedelta(microseconds=1)  # the last microsecond before a second
        ts: Any = stamp
        if kind == "sqlite" and i % 5 == 0:
            ts = Text(stamp.isoformat(sep="T"))  # SQLite keeps the text as written
        if i % 11 == 10:
            ts = None
        day = (DAY0 + timedelta(days=i // 3)).date() if i % 13 != 12 else None
        rows.append((i * 3, ts, day, f"n{i:03d}" if i % 17 != 16 else None))
    return rows


def _text(value: Any, kind: ColumnKind) -> str | None:
    if value is None:
        return None
    if kind is ColumnKind.TIMESTAMP:
        return format_timestamp(datetime.fromisoformat(str(value)).replace(tzinfo=UTC))
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _access(db: SourceDb) -> probe.SourceAccess:
    if db.kind == "sqlite":
        return probe.source_access({"engine": "sqlite", "url": f"sqlite:///{db.sqlite_path}"}, "")
    return probe.source_access(db.secret(), db.kind)


def _start(kind: ColumnKind, n: int) -> str:
    if kind is ColumnKind.INTEGER:
        return str(n)
    if kind is ColumnKind.TIMESTAMP:
        moment = DAY0 + timedelta(seconds=n * 997)
        return format_timestamp(moment.replace(tzinfo=UTC))
    if kind is ColumnKind.DATE:
        return (DAY0 + timedelta(days=n // 9)).date().isoformat()
    return f"n{n // 3:03d}"


windows = st.tuples(
    st.sampled_from(list(ColumnKind)),
    st.integers(0, 120),  # start
    st.one_of(st.none(), st.integers(0, 120)),  # watermark (an offset above start)
    st.one_of(st.none(), st.integers(0, 120)),  # end value (an offset above start)
    st.integers(0, 14 * 24),  # the planning moment, hours after DAY0
)


@pytest.mark.parametrize("source_db", SOURCES, indirect=True)
@settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(example=windows)
def test_probe_counts_what_the_engine_loads(
    source_db: SourceDb, dms: Any, aws: Any, example: tuple[Any, ...]
) -> None:
    kind, start_n, mark_n, end_n, hours = example
    if not source_db.tables:
        source_db.create_table(
            unique("probe"),
            [("id", "bigint"), ("ts", "timestamp"), ("d", "date"), ("name", "text")],
            _rows(source_db.kind),
        )
    table = source_db.tables[0]
    column = COLUMNS[kind]
    raw: dict[str, Any] = {
        "targetTableName": table,
        "activeflag": "true",
        "sourceSchema": "dwh",
        "sourceTable": table,
        "filtercolumn": column,
        "filteroperator": "gte",
        "filtercolumntype": kind.value,
        "startvalue": _start(kind, start_n),
        "ouputs3Prefix": "lake",
        "safetylagseconds": "0",
    }
    if end_n is not None:
        raw["endvalue"] = _start(kind, start_n + end_n)
    if mark_n is not None:
        raw["watermark"] = _start(kind, start_n + mark_n)
    item = parse_item(raw)
    now = (DAY0 + timedelta(hours=hours)).replace(tzinfo=UTC)

    access = _access(source_db)
    outcome = probe.probe_source(access, item, now, default_safety_lag=0)

    # The maximum: the largest value the opening (unbounded above) window selects.
    opening = plan_window(item, now, default_safety_lag=0)
    index = list(COLUMNS.values()).index(column)
    values = [_text(row[index], kind) for row in _rows(source_db.kind)]
    if opening.loads_nothing:
        assert outcome.windows == []
        return
    selected = [v for v in values if v is not None and matches(opening.filters, v, kind)]
    expected_max = max(selected, key=lambda v: sort_key(kind, v)) if selected else None
    if kind is ColumnKind.STRING and expected_max is not None:
        assert outcome.maximum is not None  # the server's collation orders strings
    else:
        assert outcome.maximum == expected_max

    workflow = Workflow(aws, dms)
    source = workflow.source_endpoint(source_db)
    instance = workflow.instance()
    for window, plan in zip(
        outcome.windows,
        probe.planned_windows(item, now, outcome.maximum, 0),
        strict=True,
    ):
        assert (window.lower, window.upper) == (plan.lower, plan.upper)
        folder = unique("w")
        target = workflow.target_endpoint(folder)
        task = workflow.task(source, target, instance, mappings(selection(table, plan.filters)))
        finished = workflow.start_and_wait(task)
        assert finished["Status"] == "stopped", finished.get("LastFailureMessage")
        loaded = workflow.read_all(folder)
        assert window.rows == (loaded.num_rows if loaded is not None else 0), (
            f"{kind.value} window {plan.describe()}: probe {window.rows}"
        )
