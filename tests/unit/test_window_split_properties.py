"""Property: bounded windows (windowsize) partition the value line across runs and failures.

Each run plans its windows, publishes a prefix of them (a later window "fails") and
records the last published upper bound as the watermark, as the state machine does.
Every value from startvalue up to the last published bound must be in exactly one
published window, decided by evaluating the DMS filters (tests/unit/dms_filters.py).
"""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from deltaload.items import ControllerItem, parse_item
from deltaload.values import ColumnKind, format_timestamp, parse_timestamp, sort_key, successor
from deltaload.window import plan_window, plan_windows, span_of
from tests.unit.dms_filters import matches
from tests.unit.test_window_properties import BASE, assert_partition


def run_with_failures(item: ControllerItem, ticks: list[tuple[datetime, int]]) -> list:
    """Plan each tick's windows, publish the first ``published`` of them, move the watermark."""
    published = []
    for now, keep in ticks:
        windows = plan_windows(item, now)
        assert 1 <= len(windows) <= item.windows_per_run
        whole = plan_window(item, now)
        if whole.empty:
            assert windows == [whole]
            continue
        check_contiguous(windows, whole)
        kept = windows[: min(keep, len(windows))]
        published += kept
        if kept:
            item = item.model_copy(update={"watermark": kept[-1].next_watermark})
    return published


def check_contiguous(windows, whole) -> None:
    kind = whole.kind
    assert windows[0].lower == whole.lower
    assert windows[0].previous_watermark == whole.previous_watermark
    assert sort_key(kind, windows[-1].upper) <= sort_key(kind, whole.upper)
    for before, after in itertools.pairwise(windows):
        assert after.lower == successor(kind, before.upper)
        assert after.previous_watermark == before.next_watermark == before.upper
    span = span_of(windows, "c")
    assert (span.lower, span.upper) == (windows[0].lower, windows[-1].upper)
    assert span.next_watermark == windows[-1].upper


@given(
    start=st.integers(-1000, 1000),
    length=st.integers(0, 1200),
    size=st.integers(1, 400),
    most=st.integers(1, 6),
    keeps=st.lists(st.integers(0, 6), min_size=1, max_size=8),
)
def test_integer_windows_split_up_to_endvalue(start, length, size, most, keeps):
    end = start + length
    raw = {**BASE, "startvalue": str(start), "endvalue": str(end), "filtercolumntype": "integer"}
    item = parse_item({**raw, "windowsize": size, "maxwindows": most})
    now = datetime(2024, 1, 1, tzinfo=UTC)
    windows = run_with_failures(item, [(now, keep) for keep in keeps])
    for w in windows:
        assert int(w.upper) - int(w.lower) + 1 <= size
    candidates = [str(v) for v in range(start - 3, end + 5)]
    assert_partition(windows, ColumnKind.INTEGER, str(start), candidates)
    if all(keep >= most for keep in keeps):  # nothing failed: each run took all it could
        covered = min(end, start + size * most * len(keeps) - 1)
        assert windows and windows[-1].upper == str(covered)


@given(
    start_us=st.integers(0, 10**11),
    size_s=st.integers(1, 4 * 86400),
    most=st.integers(1, 5),
    ticks=st.lists(
        st.tuples(st.integers(0, 3 * 86400 * 10**6), st.integers(0, 5)), min_size=1, max_size=6
    ),
    lag=st.integers(0, 600),
)
def test_timestamp_windows_split_up_to_the_clock(start_us, size_s, most, ticks, lag):
    origin = datetime(2024, 1, 1, tzinfo=UTC)
    start = format_timestamp(origin + timedelta(microseconds=start_us))
    raw = {**BASE, "startvalue": start, "filtercolumntype": "timestamp", "safetylagseconds": lag}
    item = parse_item({**raw, "windowsize": f"{size_s}s", "maxwindows": most})
    now, plan = origin + timedelta(microseconds=start_us), []
    for step, keep in ticks:
        now += timedelta(microseconds=step)
        plan.append((now, keep))
    windows = run_with_failures(item, plan)
    near = []
    for w in windows:
        low, high = parse_timestamp(w.lower), parse_timestamp(w.upper)
        assert high - low < timedelta(seconds=size_s)
        assert (high + timedelta(microseconds=1)).microsecond == 0  # ends before a whole second
        for b in (low, high):
            near += [b + timedelta(microseconds=d) for d in (-1, 0, 1, 500000)]
    candidates = [format_timestamp(v) for v in near]
    assert_partition(windows, ColumnKind.TIMESTAMP, start, candidates)


@given(
    start_day=st.integers(0, 3000),
    size_d=st.integers(1, 10),
    most=st.integers(1, 5),
    ticks=st.lists(st.tuples(st.integers(0, 24 * 20), st.integers(0, 5)), min_size=1, max_size=6),
)
def test_date_windows_split_in_whole_days(start_day, size_d, most, ticks):
    origin = date(2020, 1, 1)
    start = (origin + timedelta(days=start_day)).isoformat()
    raw = {**BASE, "startvalue": start, "filtercolumntype": "date", "safetylagseconds": 0}
    item = parse_item({**raw, "windowsize": f"P{size_d}D", "maxwindows": most})
    now = datetime.combine(origin + timedelta(days=start_day), datetime.min.time(), tzinfo=UTC)
    plan = []
    for step, keep in ticks:
        now += timedelta(hours=step)
        plan.append((now, keep))
    windows = run_with_failures(item, plan)
    for w in windows:
        days = (date.fromisoformat(w.upper) - date.fromisoformat(w.lower)).days + 1
        assert 1 <= days <= size_d
    candidates = [
        (origin + timedelta(days=d)).isoformat() for d in range(start_day - 3, start_day + 200)
    ]
    assert_partition(windows, ColumnKind.DATE, start, candidates)


def test_a_window_filter_selects_exactly_its_span():
    raw = {**BASE, "startvalue": "1", "endvalue": "2000000", "filtercolumntype": "integer"}
    item = parse_item({**raw, "windowsize": 500000, "maxwindows": 4})
    windows = plan_windows(item, datetime(2024, 1, 1, tzinfo=UTC))
    assert [(w.lower, w.upper) for w in windows] == [
        ("1", "500000"),
        ("500001", "1000000"),
        ("1000001", "1500000"),
        ("1500001", "2000000"),
    ]
    third = windows[2].filters
    assert [matches(third, str(v), ColumnKind.INTEGER) for v in (1000000, 1000001, 1500000)] == [
        False,
        True,
        True,
    ]
    assert not matches(third, "1500001", ColumnKind.INTEGER)


def test_an_integer_item_without_endvalue_keeps_one_open_window():
    raw = {**BASE, "startvalue": "1", "filtercolumntype": "integer", "windowsize": 10}
    item = parse_item(raw)
    now = datetime(2024, 1, 1, tzinfo=UTC)
    assert plan_windows(item, now) == [plan_window(item, now)]
    assert plan_windows(item, now)[0].is_open
    # the source maximum, when the caller knows it, bounds the split
    assert [w.upper for w in plan_windows(item, now, source_max="25")] == ["10", "20", "25"]


def test_an_item_without_windowsize_plans_what_plan_window_plans():
    raw = {**BASE, "startvalue": "2024-01-01 00:00:00", "filtercolumntype": "timestamp"}
    item = parse_item(raw)
    now = datetime(2024, 3, 1, tzinfo=UTC)
    assert plan_windows(item, now) == [plan_window(item, now)]
