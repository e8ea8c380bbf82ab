"""The window planner: bounds, successors, safety lag, one-shot operators, filters."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from deltaload.items import parse_item
from deltaload.mapping import table_mapping, task_settings
from deltaload.runstate import WINDOW
from deltaload.values import ColumnKind
from deltaload.window import WindowPlan, plan_window, resolve_watermark
from tests.unit.dms_filters import matches

NOW = datetime(2024, 3, 10, 12, 0, 30, 750000, tzinfo=UTC)


def item(published_item, **changes):
    return parse_item({**published_item, **changes})


def selects(plan: WindowPlan, value: str | None) -> bool:
    return matches(plan.filters, value, plan.kind)


# --- integers ---------------------------------------------------------------------------------


def test_first_window_starts_at_startvalue_and_is_open_without_source_max(published_item):
    plan = plan_window(item(published_item), NOW)
    assert (plan.lower, plan.upper, plan.is_open) == ("1", None, True)
    assert selects(plan, "1") and selects(plan, "1000000000")
    assert not selects(plan, "0")
    assert selects(plan, "9223372036854775807")


def test_open_window_watermark_is_the_largest_loaded_value(published_item):
    plan = plan_window(item(published_item), NOW)
    assert resolve_watermark(plan, "250") == "250"
    assert resolve_watermark(plan, None) is None  # nothing loaded: start again at startvalue


def test_next_window_starts_at_successor_of_watermark(published_item):
    plan = plan_window(item(published_item, watermark="250"), NOW)
    assert plan.lower == "251"
    assert not selects(plan, "250")  # the watermark row itself was loaded last time
    assert selects(plan, "251")


def test_source_max_bounds_an_integer_window(published_item):
    plan = plan_window(item(published_item, watermark="250"), NOW, source_max="300")
    assert (plan.lower, plan.upper, plan.next_watermark) == ("251", "300", "300")
    assert selects(plan, "300") and not selects(plan, "301")
    assert resolve_watermark(plan, "299") == "300"


def test_integer_window_without_new_rows_is_empty(published_item):
    plan = plan_window(item(published_item, watermark="300"), NOW, source_max="300")
    assert plan.empty and plan.loads_nothing
    assert plan.filters == []
    assert resolve_watermark(plan, None) == "300"


def test_null_filter_values_are_never_in_a_window(published_item):
    plan = plan_window(item(published_item, watermark="5"), NOW, source_max="9")
    assert not selects(plan, None)


def test_endvalue_caps_windows(published_item):
    capped = item(published_item, endvalue="100", watermark="90")
    plan = plan_window(capped, NOW)
    assert (plan.lower, plan.upper) == ("91", "100")
    assert not plan.is_open
    done = plan_window(item(published_item, endvalue="100", watermark="100"), NOW)
    assert done.empty


def test_window_reaching_int64_max_needs_no_upper_filter(published_item):
    plan = plan_window(item(published_item, watermark="10"), NOW, source_max="9223372036854775807")
    assert len(plan.filters) == 1
    assert selects(plan, "9223372036854775807")


# --- timestamps -------------------------------------------------------------------------------


def ts_item(published_item, **changes):
    base = {
        "filtercolumn": "updated_at",
        "filtercolumntype": "timestamp",
        "startvalue": "2024-03-01 00:00:00",
        "safetylagseconds": 60,
    }
    return item(published_item, **{**base, **changes})


def test_timestamp_upper_bound_is_the_safety_lag_behind_now_to_the_second(published_item):
    plan = plan_window(ts_item(published_item), NOW)
    assert plan.lower == "2024-03-01 00:00:00"
    assert plan.upper == "2024-03-10 11:59:29.999999"
    assert plan.next_watermark == plan.upper
    assert selects(plan, "2024-03-10 11:59:29.999999")
    assert not selects(plan, "2024-03-10 11:59:30")
    # The exclusive bound written to DMS is a whole second: no fractional comparison involved.
    # The far end is a whole second too, as DMS documents filter times (YYYY-MM-DD HH:MM:SS).
    lower_filter, upper_filter = (f["filter-conditions"][0] for f in plan.filters)
    assert lower_filter == {
        "filter-operator": "between",
        "start-value": "2024-03-01 00:00:00",
        "end-value": "9999-12-31 23:59:59",
    }
    assert upper_filter == {
        "filter-operator": "notbetween",
        "start-value": "2024-03-10 11:59:30",
        "end-value": "9999-12-31 23:59:59",
    }


@pytest.mark.parametrize("value", ["9999-12-31 23:59:59.5", "9999-12-31 23:59:59.999999"])
def test_values_past_the_whole_second_far_end_are_in_no_window(published_item, value):
    # MySQL DATETIME(6) holds these; notbetween alone would let them into every window.
    first = plan_window(ts_item(published_item), NOW)
    second = plan_window(
        ts_item(published_item, watermark=first.next_watermark), NOW + timedelta(hours=1)
    )
    assert not selects(first, value) and not selects(second, value)
    assert selects(first, "2024-03-01 00:00:00") and selects(second, "2024-03-10 11:59:30")


def test_date_windows_stop_at_the_far_end_too(published_item):
    plan = plan_window(
        item(published_item, filtercolumn="d", filtercolumntype="date", startvalue="2024-01-01"),
        NOW,
    )
    assert plan.filters[0]["filter-conditions"][0] == {
        "filter-operator": "between",
        "start-value": "2024-01-01",
        "end-value": "9999-12-31",
    }


def test_default_safety_lag_applies_when_the_item_has_none(published_item):
    raw = item(published_item, filtercolumn="updated_at", startvalue="2024-03-01 00:00:00")
    plan = plan_window(raw, NOW, default_safety_lag=600)
    assert plan.upper == "2024-03-10 11:50:29.999999"


def test_next_timestamp_window_starts_one_microsecond_after_the_watermark(published_item):
    first = plan_window(ts_item(published_item), NOW)
    second = plan_window(
        ts_item(published_item, watermark=first.next_watermark), NOW + timedelta(minutes=5)
    )
    assert second.lower == "2024-03-10 11:59:30"
    for value in ("2024-03-10 11:59:29.999999", "2024-03-10 11:59:30", "2024-03-10 11:59:30.5"):
        assert selects(first, value) != selects(second, value), value


def test_equal_timestamps_at_the_boundary_land_in_one_window(published_item):
    first = plan_window(ts_item(published_item), NOW)
    second = plan_window(
        ts_item(published_item, watermark=first.next_watermark), NOW + timedelta(hours=1)
    )
    rows = ["2024-03-10 11:59:30"] * 3 + ["2024-03-10 11:59:29.999999"] * 2
    assert sum(selects(first, r) for r in rows) == 2
    assert sum(selects(second, r) for r in rows) == 3


def test_microsecond_precision_watermarks(published_item):
    plan = plan_window(ts_item(published_item, watermark="2024-03-05 10:00:00.999999"), NOW)
    assert plan.lower == "2024-03-05 10:00:01"
    plan = plan_window(ts_item(published_item, watermark="2024-03-05 10:00:00.000001"), NOW)
    assert plan.lower == "2024-03-05 10:00:00.000002"


def test_offsets_are_converted_to_utc(published_item):
    it = ts_item(published_item, watermark="2024-03-05T12:00:00+02:00")
    assert it.watermark == "2024-03-05 10:00:00"
    plan = plan_window(it, NOW.astimezone(timezone(timedelta(hours=-5))))
    assert plan.lower == "2024-03-05 10:00:00.000001"
    assert plan.upper == "2024-03-10 11:59:29.999999"  # same instant, whatever zone now is in


def test_naive_now_is_refused(published_item):
    with pytest.raises(ValueError, match="timezone-aware"):
        plan_window(ts_item(published_item), datetime(2024, 1, 1))


def test_timestamp_window_planned_twice_in_one_second_is_empty(published_item):
    first = plan_window(ts_item(published_item), NOW)
    again = plan_window(
        ts_item(published_item, watermark=first.next_watermark), NOW + timedelta(milliseconds=100)
    )
    assert again.empty
    assert resolve_watermark(again, None) == first.next_watermark


def test_start_in_the_future_gives_an_empty_window(published_item):
    plan = plan_window(ts_item(published_item, startvalue="2030-01-01 00:00:00"), NOW)
    assert plan.empty


# --- dates ------------------------------------------------------------------------------------


def test_date_windows_stop_before_the_day_that_is_still_filling(published_item):
    it = item(
        published_item, filtercolumn="order_date", startvalue="2024-03-01", safetylagseconds=0
    )
    plan = plan_window(it, NOW)
    assert it.filter_column_type is ColumnKind.DATE
    assert (plan.lower, plan.upper) == ("2024-03-01", "2024-03-09")
    assert selects(plan, "2024-03-09") and not selects(plan, "2024-03-10")
    nxt = plan_window(
        item(
            published_item,
            filtercolumn="order_date",
            startvalue="2024-03-01",
            watermark=plan.next_watermark,
            safetylagseconds=0,
        ),
        NOW + timedelta(days=1),
    )
    assert (nxt.lower, nxt.upper) == ("2024-03-10", "2024-03-10")


def test_date_lag_can_hold_back_a_whole_day(published_item):
    it = item(published_item, filtercolumn="d", startvalue="2024-03-01", safetylagseconds=86400)
    assert plan_window(it, NOW).upper == "2024-03-08"


# --- strings ----------------------------------------------------------------------------------


def test_string_windows_exclude_the_previous_watermark(published_item):
    it = item(
        published_item,
        filtercolumn="code",
        filtercolumntype="string",
        startvalue="A",
        watermark="M",
    )
    plan = plan_window(it, NOW, source_max="T")
    assert plan.lower_exclusive and (plan.lower, plan.upper) == ("M", "T")
    assert not selects(plan, "M") and selects(plan, "M0") and selects(plan, "T")
    assert not selects(plan, "T0")


def test_string_window_equal_to_watermark_is_empty(published_item):
    it = item(
        published_item,
        filtercolumn="code",
        filtercolumntype="string",
        startvalue="A",
        watermark="M",
    )
    assert plan_window(it, NOW, source_max="M").empty


# --- one-shot operators -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operator", "values", "inside", "outside"),
    [
        ("lte", {"startvalue": "10"}, ["10", "-5"], ["11"]),
        ("ste", {"startvalue": "10"}, ["10"], ["11"]),
        ("eq", {"startvalue": "10"}, ["10"], ["9", "11"]),
        ("noteq", {"startvalue": "10"}, ["9", "11"], ["10"]),
        ("between", {"startvalue": "10", "endvalue": "20"}, ["10", "15", "20"], ["9", "21"]),
        ("notbetween", {"startvalue": "10", "endvalue": "20"}, ["9", "21"], ["10", "15", "20"]),
    ],
)
def test_one_shot_operators_select_exactly_their_slice(
    published_item, operator, values, inside, outside
):
    plan = plan_window(item(published_item, filteroperator=operator, **values), NOW)
    assert plan.mode == "one-shot" and plan.next_watermark == "loaded"
    assert all(selects(plan, v) for v in inside)
    assert not any(selects(plan, v) for v in outside)
    assert not selects(plan, None)


@pytest.mark.parametrize(("operator", "null_selected"), [("null", True), ("notnull", False)])
def test_null_operators(published_item, operator, null_selected):
    plan = plan_window(item(published_item, filteroperator=operator, startvalue=""), NOW)
    assert plan.filters[0]["filter-conditions"] == [{"filter-operator": operator}]
    assert selects(plan, None) is null_selected
    assert selects(plan, "3") is not null_selected


def test_one_shot_item_is_skipped_once_loaded(published_item):
    plan = plan_window(
        item(published_item, filteroperator="eq", startvalue="3", watermark="loaded"), NOW
    )
    assert plan.skip_reason and "remove the watermark" in plan.skip_reason
    assert plan.loads_nothing and resolve_watermark(plan, None) == "loaded"


# --- plan plumbing ----------------------------------------------------------------------------


def test_plan_round_trips_through_the_state_document(published_item):
    plan = plan_window(ts_item(published_item), NOW)
    assert WINDOW.validate_json(WINDOW.dump_json(plan)) == plan


def test_describe_is_readable(published_item):
    assert plan_window(item(published_item), NOW).describe() == "[1, max loaded value]"
    assert (
        "eq '3'"
        in plan_window(item(published_item, filteroperator="eq", startvalue="3"), NOW).describe()
    )


def test_loaded_max_below_the_window_is_an_error(published_item):
    plan = plan_window(item(published_item, watermark="100"), NOW)
    with pytest.raises(ValueError, match="did not respect the window filter"):
        resolve_watermark(plan, "7")


# --- mapping ----------------------------------------------------------------------------------


def test_table_mapping_selects_the_source_and_renames_to_the_target(published_item):
    it = item(published_item, watermark="10")
    plan = plan_window(it, NOW, source_max="20")
    mapping = table_mapping(it, plan)
    selection, rename = mapping["rules"]
    assert selection["object-locator"] == {"schema-name": "dwh", "table-name": "orders_rds"}
    assert selection["rule-action"] == "include"
    assert selection["filters"] == plan.filters
    assert rename["rule-action"] == "rename" and rename["value"] == "orders_s3"
    assert rename["rule-target"] == "table"


def test_no_rename_rule_when_names_match(published_item):
    it = item(published_item, targetTableName="orders_rds")
    assert len(table_mapping(it, plan_window(it, NOW))["rules"]) == 1


def test_task_settings_merge_over_defaults(published_item):
    it = item(
        published_item,
        replication_task_settings=json.dumps(
            {"Logging": {"EnableLogging": False}, "FullLoadSettings": {"CommitRate": 500}}
        ),
    )
    settings = task_settings(it)
    assert settings["Logging"]["EnableLogging"] is False
    assert settings["FullLoadSettings"]["CommitRate"] == 500
    assert settings["FullLoadSettings"]["TargetTablePrepMode"] == "DO_NOTHING"
    assert settings["ErrorBehavior"]["FailOnNoTablesCaptured"] is True


def test_task_settings_defaults_are_not_shared(published_item):
    first = task_settings(item(published_item))
    first["Logging"]["EnableLogging"] = False
    assert task_settings(item(published_item))["Logging"]["EnableLogging"] is True
