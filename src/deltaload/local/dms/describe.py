"""Describe* helpers: DMS filters and Marker/MaxRecords pagination."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from . import errors as e
from .loader import TableStat


def filtered(
    items: Iterable[Any],
    params: dict[str, Any],
    getters: dict[str, Callable[[Any], Any]],
    what: str | None,
) -> list[Any]:
    """Apply DMS describe Filters; a filtered describe matching nothing is ResourceNotFound.

    ``what`` names the resources in that fault; None: matching nothing is an empty answer
    (table statistics).
    """
    filters = params.get("Filters") or []
    result = list(items)
    for flt in filters:
        getter = getters.get(flt.get("Name"))
        if getter is None:
            raise e.InvalidParameterValueException(
                f"Filter name {flt.get('Name')!r} is not valid here ({', '.join(getters)})"
            )
        values = set(flt.get("Values") or [])
        if str(flt.get("Name")).endswith("-id"):
            # DMS stores identifiers in lower case; match ids case-insensitively.
            values = {str(v).lower() for v in values}
            result = [x for x in result if str(getter(x)).lower() in values]
        else:
            result = [x for x in result if _matches_any(getter(x), values)]
    if filters and not result and what is not None:
        # DMS answers a filtered describe that matches nothing with ResourceNotFoundFault.
        raise e.ResourceNotFoundFault(f"No {what} found matching provided filters")
    return result


def _matches_any(value: Any, values: set[str]) -> bool:
    if isinstance(value, tuple):
        return any(v in values for v in value)
    return value in values


def paginate(
    items: Sequence[Any], params: dict[str, Any], low: int = 20, high: int = 100
) -> tuple[list[Any], str | None]:
    """One page of ``items`` per Marker/MaxRecords (DMS bounds: low..high), next Marker."""
    size = params.get("MaxRecords", high)
    if not isinstance(size, int) or not low <= size <= high:
        raise e.InvalidParameterValueException(f"MaxRecords {size!r} must be {low}..{high}")
    marker = params.get("Marker")
    try:
        start = int(marker) if marker else 0
    except ValueError:
        raise e.InvalidParameterValueException(f"Marker {marker!r} is not valid") from None
    end = start + size
    return list(items[start:end]), (str(end) if end < len(items) else None)


def listing(
    key: str,
    items: Iterable[Any],
    params: dict[str, Any],
    getters: dict[str, Callable[[Any], Any]],
    what: str,
    wire: Callable[[Any], dict[str, Any]] = lambda item: item.to_wire(),
) -> dict[str, Any]:
    """A Describe* answer: ``items`` narrowed by the Filters, one page under ``key``, Marker."""
    found, marker = paginate(filtered(items, params, getters, what), params)
    return {key: [wire(item) for item in found], "Marker": marker}


def table_items(tables: list[TableStat], params: dict[str, Any]) -> list[TableStat]:
    """Table statistics narrowed by schema-name, table-name and table-state filters."""
    getters: dict[str, Callable[[Any], Any]] = {
        "schema-name": lambda t: t.schema,
        "table-name": lambda t: t.table,
        "table-state": lambda t: t.state,
    }
    return filtered(tables, params, getters, None)
