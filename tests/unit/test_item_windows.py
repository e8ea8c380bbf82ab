"""Item attributes of bounded windows: windowsize, maxwindows, windowconcurrency."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from deltaload.errors import InvalidItemError
from deltaload.items import WINDOWS_DEFAULT, duration_seconds, parse_item


def problems_of(raw: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(InvalidItemError) as caught:
        parse_item(raw)
    return {p.attribute: f"{p.found}: {p.allowed}" for p in caught.value.problems}


def test_an_item_without_window_attributes_loads_one_window(published_item):
    item = parse_item(published_item)
    assert item.window_span is None
    assert item.windows_per_run == 1
    assert item.concurrency == 1
    assert "windowsize" not in item.to_plain()


def test_integer_window_size_is_a_span(published_item):
    raw = {**published_item, "windowsize": Decimal("500000"), "maxwindows": 4}
    item = parse_item({**raw, "windowconcurrency": "2"})
    assert (item.window_span, item.windows_per_run, item.concurrency) == (500000, 4, 2)
    again = parse_item(item.to_plain())
    assert (again.window_span, again.max_windows, again.window_concurrency) == (500000, 4, 2)


def test_max_windows_defaults_when_only_a_size_is_given(published_item):
    item = parse_item({**published_item, "windowsize": "10"})
    assert item.windows_per_run == WINDOWS_DEFAULT
    assert item.concurrency == 1


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("6h", 6 * 3600),
        ("1d", 86400),
        ("30m", 1800),
        ("90s", 90),
        ("PT6H", 6 * 3600),
        ("P1D", 86400),
        ("P1DT12H", 36 * 3600),
        ("pt30m", 1800),
    ],
)
def test_durations(text, seconds):
    assert duration_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "P", "PT", "P1DT", "6 h", "1w", "P1M", "P1Y", "-1h", "1.5h"])
def test_not_durations(text):
    assert duration_seconds(text) is None


def test_timestamp_window_size_is_a_duration(published_item):
    raw = {**published_item, "startvalue": "2024-01-01 00:00:00", "windowsize": "PT6H"}
    assert parse_item(raw).window_span == 6 * 3600


def test_date_window_size_is_whole_days(published_item):
    raw = {**published_item, "startvalue": "2024-01-01", "windowsize": "P2D"}
    assert parse_item(raw).window_span == 2 * 86400
    problems = problems_of({**raw, "windowsize": "6h"})
    assert "the filter column is a date" in problems["windowsize"]
    assert "whole days" in problems["windowsize"]


def test_string_columns_refuse_windows_and_say_why(published_item):
    problems = problems_of({**published_item, "startvalue": "abc", "windowsize": "5"})
    assert "string columns cannot be cut into windows" in problems["windowsize"]


@pytest.mark.parametrize("size", ["1d", "0", "-5", "5.5", True, {"n": 1}])
def test_integer_window_size_must_be_a_positive_whole_number(published_item, size):
    problems = problems_of({**published_item, "windowsize": size})
    assert "the filter column is an integer" in problems["windowsize"]


@pytest.mark.parametrize("size", ["0s", "400d", "soon", 3600])
def test_timestamp_window_size_must_be_a_duration(published_item, size):
    raw = {**published_item, "startvalue": "2024-01-01 00:00:00", "windowsize": size}
    assert "the filter column is a timestamp" in problems_of(raw)["windowsize"]


def test_one_shot_items_refuse_windows(published_item):
    raw = {**published_item, "filteroperator": "eq", "windowsize": "5"}
    assert "only gte items load windows" in problems_of(raw)["windowsize"]


@pytest.mark.parametrize("name", ["maxwindows", "windowconcurrency"])
def test_window_counts_need_a_window_size(published_item, name):
    assert "needs a windowsize" in problems_of({**published_item, name: 2})[name]


@pytest.mark.parametrize(
    ("name", "value"),
    [("maxwindows", 0), ("maxwindows", 51), ("windowconcurrency", 0), ("windowconcurrency", 11)],
)
def test_window_counts_are_bounded(published_item, name, value):
    problems = problems_of({**published_item, "windowsize": "5", name: value})
    assert "expected a whole number from 1 to" in problems[name]


def test_window_instances_need_as_many_windows_at_once(published_item):
    raw = {**published_item, "windowsize": "5", "windowconcurrency": 2}
    assert parse_item({**raw, "windowinstances": "2"}).instances == 2
    assert parse_item(raw).instances == 1
    assert (
        "at most windowconcurrency (2)"
        in problems_of({**raw, "windowinstances": 3})["windowinstances"]
    )
    assert "from 1 to 5" in problems_of({**raw, "windowinstances": 6})["windowinstances"]
    assert (
        "needs a windowsize"
        in problems_of({**published_item, "windowinstances": 2})["windowinstances"]
    )


def test_concurrency_cannot_exceed_max_windows(published_item):
    raw = {**published_item, "windowsize": "5", "maxwindows": 2, "windowconcurrency": 3}
    assert "at most maxwindows (2)" in problems_of(raw)["windowconcurrency"]
