"""An item's ``parallelload`` option: DMS's own parallel full load inside one window (pure).

The option is the ``parallel-load`` object of a DMS table-settings rule, written on the
item as JSON (or a DynamoDB map); every run's table mapping carries it in a table-settings
rule for the source table. The rules checked here are the DMS user guide's, "Table and
collection settings rules and operations", section "Using parallel load for selected
tables, views, and collections":
https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Tasks.CustomizingTasks.TableMapping.SelectionTransformation.Tablesettings.html

* ``type`` is ``partitions-auto`` (all existing partitions), ``subpartitions-auto``
  (Oracle only), ``partitions-list`` (named ``partitions``, and ``subpartitions`` on
  Oracle), ``ranges`` (``columns`` and ``boundaries``) or ``none``;
* ``ranges``: "You can specify up to 10 columns"; ``boundaries`` is an array of
  column-value arrays, one value per column in the order of ``columns``, each the upper
  boundary of a segment, "from the bottom to the next-to-top segment"; rows above the
  last boundary make the top segment, rows with NULLs in those columns are not loaded;
* which sources allow which type: PostgreSQL (and MongoDB, DocumentDB) "support only"
  ``ranges``; partitions are loaded "only if they are already defined for the table".
  The item does not know the source engine, so those two are DMS's to refuse at load
  time (the local engine refuses them the same way).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from decimal import Decimal
from itertools import pairwise
from typing import Any

from deltaload.errors import Problem
from deltaload.values import ColumnKind, sort_key

ATTRIBUTE = "parallelload"
TYPES = ("ranges", "partitions-auto", "partitions-list", "subpartitions-auto", "none")
_TAKES = {
    "ranges": {"columns", "boundaries"},
    "partitions-list": {"partitions", "subpartitions"},
}
MAX_COLUMNS = 10
RULE = (
    "expected the parallel-load object of a DMS table-settings rule, e.g. "
    '{"type": "ranges", "columns": ["id"], "boundaries": [["1000000"], ["2000000"]]} '
    'or {"type": "partitions-auto"}'
)


def parse(
    value: Any, filter_column: str | None, kind: ColumnKind | None, identifier: re.Pattern[str]
) -> dict[str, Any] | list[Problem]:
    """The option as it goes into the table mapping ({} when unset), or what is wrong with it.

    Boundary values may be written as JSON numbers; they are emitted as strings, as DMS
    takes them. Boundaries of a single ``ranges`` column that is the filter column must
    ascend, in the filter column's order (``kind``).
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            return [_problem("", f"invalid JSON ({error.msg} at column {error.colno})")]
    if not isinstance(value, Mapping):
        return [_problem("", f"a {type(value).__name__}")]
    option = dict(value)
    kind_of_load = option.get("type")
    if kind_of_load not in TYPES:
        return [_problem(".type", repr(kind_of_load), f"expected one of {', '.join(TYPES)}")]
    extra = sorted(set(option) - {"type"} - _TAKES.get(kind_of_load, set()))
    if extra:
        takes = sorted(_TAKES.get(kind_of_load, set())) or ["nothing but type"]
        found = ", ".join(extra)
        return [_problem("", found, f"type {kind_of_load} takes {', '.join(takes)}")]
    if kind_of_load == "ranges":
        return _ranges(option, filter_column, kind, identifier)
    if kind_of_load == "partitions-list":
        return _partitions(option)
    return {"type": kind_of_load}


def table_settings_rule(
    option: Mapping[str, Any], schema: str, table: str, rule_id: str
) -> dict[str, Any]:
    """The table-settings rule that asks DMS to load ``schema.table`` in parallel."""
    return {
        "rule-type": "table-settings",
        "rule-id": rule_id,
        "rule-name": "parallel-load",
        "object-locator": {"schema-name": schema, "table-name": table},
        "parallel-load": dict(option),
    }


def _ranges(
    option: dict[str, Any],
    filter_column: str | None,
    kind: ColumnKind | None,
    identifier: re.Pattern[str],
) -> dict[str, Any] | list[Problem]:
    columns = option.get("columns")
    if not isinstance(columns, list) or not 1 <= len(columns) <= MAX_COLUMNS:
        return [_problem(".columns", _shown(columns), f"expected 1 to {MAX_COLUMNS} column names")]
    bad = [c for c in columns if not (isinstance(c, str) and identifier.fullmatch(c))]
    if bad or len(set(columns)) != len(columns):
        found = _shown(bad or columns)
        return [_problem(".columns", found, "expected distinct column names")]
    boundaries = option.get("boundaries")
    if not isinstance(boundaries, list) or not boundaries:
        return [_problem(".boundaries", _shown(boundaries), "expected a non-empty array of arrays")]
    rows: list[list[str]] = []
    for n, values in enumerate(boundaries, start=1):
        texts = _texts(values)
        if texts is None or len(texts) != len(columns):
            allowed = f"expected an array of {len(columns)} value(s), one per column in columns"
            return [_problem(f".boundaries[{n}]", _shown(values), allowed)]
        rows.append(texts)
    if columns == [filter_column] and kind is not None:
        problem = _ascending([row[0] for row in rows], kind)
        if problem:
            return [problem]
    return {"type": "ranges", "columns": list(columns), "boundaries": rows}


def _partitions(option: dict[str, Any]) -> dict[str, Any] | list[Problem]:
    found: dict[str, Any] = {"type": "partitions-list"}
    for key in ("partitions", "subpartitions"):
        names = option.get(key)
        if names is None:
            continue
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            return [_problem(f".{key}", _shown(names), "expected an array of names")]
        found[key] = list(names)
    if not found.get("partitions") and not found.get("subpartitions"):
        return [
            _problem("", "no partitions", "partitions-list needs partitions (or subpartitions)")
        ]
    return found


def _ascending(values: list[str], kind: ColumnKind) -> Problem | None:
    try:
        keys = [sort_key(kind, v) for v in values]
    except ValueError as error:
        return _problem(".boundaries", str(error), f"expected values of the {kind} filter column")
    if any(a >= b for a, b in pairwise(keys)):
        return _problem(".boundaries", ", ".join(values), "expected ascending boundaries")
    return None


def _texts(values: Any) -> list[str] | None:
    if not isinstance(values, list):
        return None
    texts = []
    for v in values:
        if isinstance(v, Decimal) and v == v.to_integral_value():
            v = int(v)  # a number of a DynamoDB map
        if isinstance(v, bool) or not isinstance(v, str | int):
            return None
        texts.append(str(v))
    return texts


def _shown(value: Any) -> str:
    return json.dumps(value, default=str) if value is not None else "nothing"


def _problem(where: str, found: str, allowed: str = RULE) -> Problem:
    return Problem(f"{ATTRIBUTE}{where}", found, allowed)
