"""Property: any sequence of planned windows partitions the value line.

No value lies in two windows, and every value between the first lower bound and
the last upper bound lies in exactly one. Membership is decided by evaluating the
DMS filters themselves (tests/unit/dms_filters.py), not by the planner's own bounds.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from deltaload.items import ControllerItem, parse_item
from deltaload.values import ColumnKind, format_timestamp, sort_key
from deltaload.window import WindowPlan, plan_window, resolve_watermark
from tests.unit.dms_filters import matches

BASE = {
    "targetTableName": "t",
    "activeflag": "true",
    "sourceSchema": "s",
    "sourceTable": "t",
    "filtercolumn": "c",
    "filteroperator": "gte",
    "ouputs3Prefix": "lake",
}


def run_sequence(
    item: ControllerItem, ticks: list[tuple[datetime, str | None, str | None]]
) -> list[WindowPlan]:
    """Plan, 'load' and record each tick in turn; returns the non-empty windows."""
    windows = []
    for now, source_max, loaded_max in ticks:
        plan = plan_window(item, now, source_max=source_max)
        watermark = resolve_watermark(plan, loaded_max)
        if not plan.empty:
            windows.append(plan)
        item = item.model_copy(update={"watermark": watermark})
    return windows


def assert_partition(windows: list[WindowPlan], kind: ColumnKind, start: str, candidates) -> None:
    last_upper = next((w.upper for w in reversed(windows) if w.upper is not None), None)
    for value in candidates:
        hits = sum(matches(w.filters, value, kind) for w in windows)
        assert hits <= 1, f"{value!r} is in {hits} windows"
        inside = sort_key(kind, value) >= sort_key(kind, start) and (
            last_upper is not None and sort_key(kind, value) <= sort_key(kind, last_upper)
        )
        if inside:
            assert hits == 1, f"{value!r} is in no window"
        elif sort_key(kind, value) < sort_key(kind, start):
            assert hits == 0, f"{value!r} precedes the start but was selected"


@given(
    start=st.integers(-1000, 1000),
    maxima=st.lists(st.integers(-50, 200), min_size=1, max_size=8),
)
def test_integer_windows_partition_the_line(start, maxima):
    item = parse_item({**BASE, "startvalue": str(start), "filtercolumntype": "integer"})
    now = datetime(2024, 1, 1, tzinfo=UTC)
    ticks, high = [], start - 1
    for step in maxima:
        high += step  # the source max may also shrink (rows deleted)
        ticks.append((now, str(high), None))
    windows = run_sequence(item, ticks)
    candidates = [str(v) for v in range(start - 5, start + 1300)]
    assert_partition(windows, ColumnKind.INTEGER, str(start), candidates)


@given(
    start_us=st.integers(0, 10**12),
    steps_us=st.lists(st.integers(0, 5 * 10**9), min_size=1, max_size=8),
    lag=st.integers(0, 120),
    probes=st.lists(st.integers(0, 5 * 10**10), max_size=40),
)
def test_timestamp_windows_partition_the_line(start_us, steps_us, lag, probes):
    origin = datetime(2024, 1, 1, tzinfo=UTC)
    start = format_timestamp(origin + timedelta(microseconds=start_us))
    item = parse_item(
        {**BASE, "startvalue": start, "filtercolumntype": "timestamp", "safetylagseconds": lag}
    )
    now, ticks = origin + timedelta(microseconds=start_us), []
    for step in steps_us:
        now += timedelta(microseconds=step)
        ticks.append((now, None, None))
    windows = run_sequence(item, ticks)
    near_bounds = []
    for w in windows:
        for bound in (w.lower, w.upper):
            b = datetime.fromisoformat(bound).replace(tzinfo=UTC)
            near_bounds += [b + timedelta(microseconds=d) for d in (-1, 0, 1, 500000)]
    probed = [origin + timedelta(microseconds=start_us + p) for p in probes]
    candidates = [format_timestamp(v) for v in near_bounds + probed]
    assert_partition(windows, ColumnKind.TIMESTAMP, start, candidates)


@given(
    start_day=st.integers(0, 3000),
    steps_h=st.lists(st.integers(0, 24 * 10), min_size=1, max_size=8),
    lag=st.integers(0, 3 * 86400),
)
def test_date_windows_partition_the_line(start_day, steps_h, lag):
    origin = date(2020, 1, 1)
    start = (origin + timedelta(days=start_day)).isoformat()
    item = parse_item(
        {**BASE, "startvalue": start, "filtercolumntype": "date", "safetylagseconds": lag}
    )
    now = datetime.combine(origin + timedelta(days=start_day), datetime.min.time(), tzinfo=UTC)
    ticks = []
    for step in steps_h:
        now += timedelta(hours=step)
        ticks.append((now, None, None))
    windows = run_sequence(item, ticks)
    candidates = [
        (origin + timedelta(days=d)).isoformat() for d in range(start_day - 3, start_day + 400)
    ]
    assert_partition(windows, ColumnKind.DATE, start, candidates)


@given(
    maxima=st.lists(st.text(alphabet="abcz0", min_size=1, max_size=4), min_size=1, max_size=8),
    probes=st.lists(st.text(alphabet="abcz0", max_size=5), max_size=60),
)
def test_string_windows_partition_the_line(maxima, probes):
    start = "a"
    item = parse_item({**BASE, "startvalue": start, "filtercolumntype": "string"})
    now = datetime(2024, 1, 1, tzinfo=UTC)
    windows = run_sequence(item, [(now, m, None) for m in sorted(maxima)])
    candidates = probes + maxima + [m + "0" for m in maxima] + [start]
    assert_partition(windows, ColumnKind.STRING, start, candidates)


@given(batches=st.lists(st.integers(0, 30), min_size=1, max_size=10))
def test_open_integer_windows_load_each_inserted_row_once(batches):
    """Without a source maximum, a monotonic key is loaded exactly once across runs."""
    item = parse_item({**BASE, "startvalue": "1", "filtercolumntype": "integer"})
    now = datetime(2024, 1, 1, tzinfo=UTC)
    rows: list[int] = []
    loaded: list[int] = []
    for batch in batches:
        rows += range(len(rows) + 1, len(rows) + 1 + batch)  # the sequence hands out ids
        plan = plan_window(item, now)
        selected = [r for r in rows if matches(plan.filters, str(r), ColumnKind.INTEGER)]
        loaded += selected
        watermark = resolve_watermark(plan, str(max(selected)) if selected else None)
        item = item.model_copy(update={"watermark": watermark})
    assert sorted(loaded) == rows
