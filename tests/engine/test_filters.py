"""Every DMS filter operator on every value kind gives the same rows on all three sources."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import SOURCES, unique
from .data import COLUMNS, ROWS
from .helpers import Workflow, ids, mappings, selection, source_filter, wait_for


def cond(operator: str, *values: str) -> dict[str, Any]:
    """A filter condition: one value, a start/end pair, or none."""
    if len(values) == 2:
        return {"filter-operator": operator, "start-value": values[0], "end-value": values[1]}
    if values:
        return {"filter-operator": operator, "value": values[0]}
    return {"filter-operator": operator}


# (case id, filters, expected ids)
CASES: list[tuple[str, list[dict[str, Any]], list[int]]] = [
    ("int-gte", [source_filter("id", cond("gte", "3"))], [3, 4, 5, 6]),
    ("int-lte", [source_filter("id", cond("lte", "2"))], [1, 2]),
    ("int-ste", [source_filter("id", cond("ste", "2"))], [1, 2]),
    ("int-eq", [source_filter("id", cond("eq", "4"))], [4]),
    ("int-noteq", [source_filter("id", cond("noteq", "4"))], [1, 2, 3, 5, 6]),
    ("int-between", [source_filter("id", cond("between", "2", "4"))], [2, 3, 4]),
    ("int-notbetween", [source_filter("id", cond("notbetween", "2", "4"))], [1, 5, 6]),
    ("dec-gte", [source_filter("amount", cond("gte", "10"))], [1, 2, 6]),
    ("dec-eq", [source_filter("amount", cond("eq", "12.34"))], [2]),
    ("dec-between", [source_filter("amount", cond("between", "-5.5", "10"))], [1, 3, 4]),
    ("dec-noteq-skips-null", [source_filter("amount", cond("noteq", "0"))], [1, 2, 3, 6]),
    ("dec-null", [source_filter("amount", cond("null"))], [5]),
    ("dec-notnull", [source_filter("amount", cond("notnull"))], [1, 2, 3, 4, 6]),
    ("text-eq-quotes", [source_filter("note", cond("eq", 'it\'s "quoted"'))], [2]),
    ("text-eq-newline", [source_filter("note", cond("eq", "line1\nline2"))], [3]),
    ("text-eq-unicode", [source_filter("note", cond("eq", "ünïcødé ✓ 😀"))], [4]),
    ("text-null", [source_filter("note", cond("null"))], [5]),
    ("date-gte", [source_filter("d", cond("gte", "2024-01-01"))], [1, 2, 3, 4]),
    ("date-lte", [source_filter("d", cond("lte", "2023-12-31"))], [6]),
    ("date-between", [source_filter("d", cond("between", "2024-01-02", "2024-02-29"))], [2, 3, 4]),
    (
        "date-notbetween",
        [source_filter("d", cond("notbetween", "2024-01-02", "2024-02-29"))],
        [1, 6],
    ),
    ("ts-gte-second", [source_filter("ts", cond("gte", "2024-01-01 10:00:00"))], [1, 2, 3, 4]),
    ("ts-gte-half", [source_filter("ts", cond("gte", "2024-01-01 10:00:00.5"))], [2, 4]),
    ("ts-eq-plain", [source_filter("ts", cond("eq", "2024-01-01 10:00:00"))], [1]),
    ("ts-eq-T-form", [source_filter("ts", cond("eq", "2024-01-01T10:00:00.500"))], [2]),
    ("ts-lte-micros", [source_filter("ts", cond("lte", "2024-01-01T10:00:00.123456"))], [1, 3, 6]),
    (
        "ts-between-micros",
        [
            source_filter(
                "ts", cond("between", "2024-01-01 10:00:00.000001", "2024-01-01 10:00:00.5")
            )
        ],
        [2, 3],
    ),
    (
        "ts-notbetween",
        [
            source_filter(
                "ts", cond("notbetween", "2024-01-01 10:00:00.000001", "2024-01-01 10:00:00.5")
            )
        ],
        [1, 4, 6],
    ),
    ("tstz-eq-offset", [source_filter("tstz", cond("eq", "2024-01-01 12:00:00+02:00"))], [1, 2]),
    ("tstz-gte-Z", [source_filter("tstz", cond("gte", "2024-01-01T10:00:00Z"))], [1, 2, 3, 4]),
    (
        "tstz-lte-naive-is-utc",
        [source_filter("tstz", cond("lte", "2024-01-01 10:00:00"))],
        [1, 2, 6],
    ),
    (
        "tstz-between",
        [
            source_filter(
                "tstz", cond("between", "2024-01-01T11:00:00+01:00", "2024-01-01 10:00:00.2")
            )
        ],
        [1, 2, 3],
    ),
    # MySQL's BOOLEAN is TINYINT(1), an integer to DMS (INT1): 1/0 filter it on every source.
    ("bool-true", [source_filter("flag", cond("eq", "1"))], [1, 3, 6]),
    ("bool-false", [source_filter("flag", cond("eq", "0"))], [2, 4]),
    ("bool-noteq", [source_filter("flag", cond("noteq", "1"))], [2, 4]),
    ("bool-null", [source_filter("flag", cond("null"))], [5]),
    ("or-within-filter", [source_filter("id", cond("eq", "1"), cond("eq", "6"))], [1, 6]),
    (
        "and-between-filters",
        [source_filter("id", cond("gte", "2")), source_filter("flag", cond("eq", "1"))],
        [3, 6],
    ),
]


@pytest.fixture
def loaded(source_db, aws, dms):  # type: ignore[no-untyped-def]
    """One sample table per test and the DMS resources to load it."""
    table = unique("filters")
    source_db.create_table(table, COLUMNS, ROWS)
    flow = Workflow(aws, dms)
    return flow, table, flow.source_endpoint(source_db), flow.instance()


@pytest.mark.parametrize("source_db", SOURCES, indirect=True)
def test_every_operator_and_value_kind(loaded) -> None:  # type: ignore[no-untyped-def]
    """All cases per source on one instance: a task and a folder each, run side by side."""
    flow, table, source, instance = loaded
    tasks = {}
    for name, filters, _ in CASES:
        target = flow.target_endpoint(f"stage/{name}")
        tasks[name] = flow.task(source, target, instance, mappings(selection(table, filters)))
    for arn in tasks.values():
        flow.dms.start_replication_task(
            ReplicationTaskArn=arn, StartReplicationTaskType="start-replication"
        )
    failures = []
    for name, _, expected in CASES:
        final = wait_for(
            lambda arn=tasks[name]: flow.describe_task(arn),
            lambda t: t["Status"] in ("stopped", "failed"),
        )
        assert final["Status"] == "stopped", (name, final.get("LastFailureMessage"))
        got = ids(flow.read_all(f"stage/{name}/dwh/{table}/"))
        rows = flow.table_stats(tasks[name])[0]["FullLoadRows"]
        if got != expected or rows != len(expected):
            failures.append((name, got, expected, rows))
    assert not failures, failures


@pytest.mark.parametrize("source_db", SOURCES, indirect=True)
def test_value_that_does_not_fit_the_column_fails_the_task(loaded) -> None:  # type: ignore[no-untyped-def]
    flow, table, source, instance = loaded
    target = flow.target_endpoint("stage/bad")
    filters = [source_filter("id", cond("gte", "yesterday"))]
    task = flow.task(source, target, instance, mappings(selection(table, filters)))
    final = flow.start_and_wait(task)
    assert final["Status"] == "failed"
    message = final["LastFailureMessage"]
    assert "'id'" in message and "yesterday" in message and table in message
    assert flow.keys("stage/bad/") == []


@pytest.mark.parametrize("source_db", SOURCES, indirect=True)
def test_filter_on_unknown_column_names_the_column(loaded) -> None:  # type: ignore[no-untyped-def]
    flow, table, source, instance = loaded
    target = flow.target_endpoint("stage/unknown")
    filters = [source_filter("updated_at", cond("gte", "2024-01-01"))]
    task = flow.task(source, target, instance, mappings(selection(table, filters)))
    final = flow.start_and_wait(task)
    assert final["Status"] == "failed"
    assert "'updated_at' does not exist" in final["LastFailureMessage"]
