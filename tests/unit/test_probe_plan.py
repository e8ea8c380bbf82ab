"""PlanRun after a probe: the same windows, and a window without rows loads nothing."""

from __future__ import annotations

from datetime import UTC, datetime

from deltaload import probe
from deltaload.items import parse_item
from deltaload.runstate import ProbedWindowCount
from deltaload.window import plan_window, resolve_watermark, without_rows

NOW = datetime(2024, 3, 1, 12, tzinfo=UTC)


def _item(kind: str, start: str, **extra: str):
    return parse_item(
        {
            "targetTableName": "t",
            "activeflag": "true",
            "sourceSchema": "s",
            "sourceTable": "t",
            "filtercolumn": "c",
            "filteroperator": "gte",
            "filtercolumntype": kind,
            "startvalue": start,
            "ouputs3Prefix": "lake",
            "safetylagseconds": "0",
            **extra,
        }
    )


def test_the_probed_maximum_bounds_an_integer_window() -> None:
    [plan] = probe.planned_windows(_item("integer", "1", watermark="10"), NOW, "42", 0)
    assert (plan.lower, plan.upper, plan.next_watermark) == ("11", "42", "42")
    assert not plan.is_open


def test_an_open_window_without_rows_keeps_the_watermark() -> None:
    item = _item("integer", "1", watermark="10")
    [plan] = probe.planned_windows(item, NOW, None, 0)
    counted = [ProbedWindowCount(lower=plan.lower, upper=plan.upper, rows=0)]
    assert probe.nothing_new([plan], counted)
    empty = without_rows(plan)
    assert empty.loads_nothing and empty.filters == []
    assert resolve_watermark(empty, None) == "10"


def test_a_time_window_without_rows_records_its_upper_bound() -> None:
    item = _item("timestamp", "2024-01-01 00:00:00", watermark="2024-02-01 00:00:00")
    [plan] = probe.planned_windows(item, NOW, None, 0)
    empty = without_rows(plan)
    assert resolve_watermark(empty, None) == plan.upper == "2024-03-01 11:59:59.999999"


def test_rows_or_other_windows_are_not_nothing_new() -> None:
    plan = plan_window(_item("integer", "1"), NOW, source_max="9")
    assert not probe.nothing_new([plan], [ProbedWindowCount(lower="1", upper="9", rows=3)])
    # The probe counted another window (the item changed in between): not trusted.
    assert not probe.nothing_new([plan], [ProbedWindowCount(lower="1", upper="8", rows=0)])
    skipped = plan_window(_item("integer", "1", endvalue="5", watermark="5"), NOW)
    assert skipped.loads_nothing
    assert not probe.nothing_new([skipped], [])
    assert without_rows(skipped) is skipped
