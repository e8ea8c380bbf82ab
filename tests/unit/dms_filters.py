"""A reference evaluator of DMS source-filter semantics, used as the tests' oracle.

Filters on one selection rule are ANDed, the conditions of one filter ORed;
between is inclusive, notbetween excludes both ends, ste is lte, NULL matches
only null/notnull (CHAP_Tasks.CustomizingTasks.Filters.html).
"""

from __future__ import annotations

from typing import Any

from deltaload.values import ColumnKind, sort_key


def matches(filters: list[dict[str, Any]], value: str | None, kind: ColumnKind) -> bool:
    """True when a row whose filter column holds ``value`` passes every filter."""
    return all(any(_condition(c, value, kind) for c in f["filter-conditions"]) for f in filters)


def _condition(condition: dict[str, Any], value: str | None, kind: ColumnKind) -> bool:
    op = condition["filter-operator"]
    if op == "null":
        return value is None
    if op == "notnull":
        return value is not None
    if value is None:
        return False
    v = sort_key(kind, value)

    def key(name: str) -> Any:
        return sort_key(kind, condition[name])

    return {
        "lte": lambda: v <= key("value"),
        "ste": lambda: v <= key("value"),
        "gte": lambda: v >= key("value"),
        "eq": lambda: v == key("value"),
        "noteq": lambda: v != key("value"),
        "between": lambda: key("start-value") <= v <= key("end-value"),
        "notbetween": lambda: v < key("start-value") or v > key("end-value"),
    }[op]()
