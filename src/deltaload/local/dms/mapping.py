"""DMS table mappings: selection rules (with source filters) and transformation rules.

Parsed and validated when the task is created, so a malformed mapping is refused with
InvalidParameterValueException there, as DMS does, and applied per table at load time.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from itertools import pairwise
from typing import Any

from .errors import InvalidParameterValueException

# Operator -> the value keys each condition needs (DMS "Using source filters" page).
OPERATORS: dict[str, tuple[str, ...]] = {
    "lte": ("value",),
    "ste": ("value",),
    "gte": ("value",),
    "eq": ("value",),
    "noteq": ("value",),
    "between": ("start-value", "end-value"),
    "notbetween": ("start-value", "end-value"),
    "null": (),
    "notnull": (),
}

_RENAME_ACTIONS = {"rename", "convert-lowercase", "convert-uppercase", "add-prefix", "add-suffix"}


@dataclass(frozen=True)
class Condition:
    """One filter condition: an operator and its (string) values."""

    operator: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class SourceFilter:
    """A source filter on one column: its conditions are ORed."""

    column: str
    conditions: tuple[Condition, ...]


@dataclass(frozen=True)
class Selection:
    """A selection rule: include/exclude tables matching schema/table patterns."""

    rule_id: str
    action: str
    schema: re.Pattern[str]
    table: re.Pattern[str]
    table_type: str
    filters: tuple[SourceFilter, ...]
    schema_literal: str | None = None  # the schema-name if it has no wildcard


@dataclass(frozen=True)
class Transformation:
    """A schema/table transformation rule (rename and its case/prefix/suffix relatives)."""

    rule_id: str
    target: str
    action: str
    schema: re.Pattern[str]
    table: re.Pattern[str] | None
    value: str


# The parallel-load types of a table-settings rule and the keys each one takes (DMS user
# guide, "Table and collection settings rules and operations", "Using parallel load for
# selected tables, views, and collections":
# https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Tasks.CustomizingTasks.TableMapping.SelectionTransformation.Tablesettings.html).
PARALLEL_LOAD_KEYS: dict[str, frozenset[str]] = {
    "none": frozenset(),
    "partitions-auto": frozenset(),
    "subpartitions-auto": frozenset(),
    "partitions-list": frozenset({"partitions", "subpartitions"}),
    "ranges": frozenset({"columns", "boundaries"}),
}
MAX_RANGE_COLUMNS = 10  # "You can specify up to 10 columns."


@dataclass(frozen=True)
class ParallelLoad:
    """A table-settings rule's parallel-load option for one (literal) table."""

    rule_id: str
    schema: str
    table: str
    type: str
    columns: tuple[str, ...] = ()
    boundaries: tuple[tuple[str, ...], ...] = ()
    partitions: tuple[str, ...] = ()
    subpartitions: tuple[str, ...] = ()


@dataclass(frozen=True)
class Segment:
    """One range segment of a ``ranges`` parallel load: rows from ``lower`` up to ``upper``.

    Bounds are column-value arrays in the rule's column order; a row belongs to the segment
    when its values are not below ``lower`` and are below ``upper`` (either may be absent:
    the bottom and the top segment), compared column by column as the DMS user guide's
    WHERE clauses do.
    """

    columns: tuple[str, ...]
    lower: tuple[str, ...] | None
    upper: tuple[str, ...] | None


@dataclass(frozen=True)
class TablePlan:
    """What to load for one source table: filters (ANDed) and the target names."""

    schema: str
    table: str
    target_schema: str
    target_table: str
    filters: tuple[SourceFilter, ...]
    parallel: ParallelLoad | None = None

    def segments(self) -> list[Segment | None]:
        """The range segments to load one after another ([None]: the table in one piece).

        ``ranges`` with N boundaries gives N + 1 segments: "the number of range-based
        segments is potentially one more than the number of segment boundaries".
        """
        if self.parallel is None or self.parallel.type != "ranges":
            return [None]
        bounds: list[tuple[str, ...] | None] = [None, *self.parallel.boundaries, None]
        columns = self.parallel.columns
        return [Segment(columns, low, high) for low, high in pairwise(bounds)]


@dataclass
class TableMapping:
    """A parsed TableMappings document."""

    selections: list[Selection] = field(default_factory=list)
    transformations: list[Transformation] = field(default_factory=list)
    parallel_loads: list[ParallelLoad] = field(default_factory=list)

    def literal_schemas(self) -> list[str]:
        """Schema names that include rules give without wildcards."""
        names = [s.schema_literal for s in self.selections if s.action != "exclude"]
        return sorted({n for n in names if n})

    def table_types(self) -> set[str]:
        """The object kinds (table/view/all) the include rules ask for."""
        return {s.table_type for s in self.selections if s.action != "exclude"}

    def plan(self, schema: str, table: str) -> TablePlan | None:
        """The load plan of a source table, or None if the mapping does not include it."""
        included = [s for s in self.selections if _matches(s.schema, s.table, schema, table)]
        if not any(s.action in ("include", "explicit") for s in included):
            return None
        if any(s.action == "exclude" for s in included):
            return None
        filters = tuple(f for s in included for f in s.filters)
        target_schema, target_table = self._rename(schema, table)
        parallel = next(
            (p for p in self.parallel_loads if (p.schema, p.table) == (schema, table)), None
        )
        return TablePlan(schema, table, target_schema, target_table, filters, parallel)

    def _rename(self, schema: str, table: str) -> tuple[str, str]:
        target_schema, target_table = schema, table
        for rule in self.transformations:
            if rule.target == "schema" and rule.schema.fullmatch(schema):
                target_schema = _apply(rule, target_schema)
            elif rule.target == "table" and _matches(rule.schema, rule.table, schema, table):
                target_table = _apply(rule, target_table)
        return target_schema, target_table


def _matches(
    schema_pattern: re.Pattern[str], table_pattern: re.Pattern[str] | None, schema: str, table: str
) -> bool:
    if not schema_pattern.fullmatch(schema):
        return False
    return table_pattern is None or bool(table_pattern.fullmatch(table))


def _apply(rule: Transformation, name: str) -> str:
    return {
        "rename": lambda: rule.value,
        "convert-lowercase": name.lower,
        "convert-uppercase": name.upper,
        "add-prefix": lambda: rule.value + name,
        "add-suffix": lambda: name + rule.value,
    }[rule.action]()


def wildcard(pattern: str) -> re.Pattern[str]:
    """Compile a DMS name pattern: % any run, _ one character, [ab]/[a-d] sets, [_] literal _."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        end = pattern.find("]", i + 1) if char == "[" else -1
        if end > i + 1:
            out.append("[" + re.sub(r"([\\^])", r"\\\1", pattern[i + 1 : end]) + "]")
            i = end + 1
            continue
        out.append({"%": ".*", "_": "."}.get(char, re.escape(char)))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def parse_table_mappings(text: str, owner: str) -> TableMapping:
    """Parse and validate a TableMappings JSON string; ``owner`` names the task in errors."""
    try:
        document = json.loads(text)
    except (TypeError, json.JSONDecodeError) as exc:
        raise _invalid(owner, f"TableMappings is not valid JSON: {exc}") from exc
    rules = document.get("rules") if isinstance(document, dict) else None
    if not isinstance(rules, list) or not rules:
        raise _invalid(owner, "TableMappings needs a non-empty 'rules' list")
    mapping = TableMapping()
    for rule in rules:
        _parse_rule(rule, owner, mapping)
    if not mapping.selections:
        raise _invalid(owner, "TableMappings needs at least one selection rule")
    return mapping


def _parse_rule(rule: Any, owner: str, mapping: TableMapping) -> None:
    if not isinstance(rule, dict):
        raise _invalid(owner, f"every rule must be a JSON object, got {rule!r}")
    rule_type = rule.get("rule-type")
    if rule_type == "selection":
        mapping.selections.append(_parse_selection(rule, owner))
    elif rule_type == "transformation":
        mapping.transformations.append(_parse_transformation(rule, owner))
    elif rule_type == "table-settings":
        mapping.parallel_loads.append(_parse_table_settings(rule, owner))
    else:
        raise _invalid(
            owner,
            f"rule {rule.get('rule-id')!r}: rule-type {rule_type!r} is not supported locally "
            "(selection, transformation, table-settings)",
        )


def _parse_table_settings(rule: dict[str, Any], owner: str) -> ParallelLoad:
    """A table-settings rule with its parallel-load option (the only one the engine reads)."""
    rule_id = str(rule.get("rule-id"))
    where = f"rule {rule_id!r} (table-settings)"
    locator = _locator(rule, owner)
    schema, table = locator.get("schema-name"), locator.get("table-name")
    if not isinstance(table, str) or any("%" in str(n) for n in (schema, table)):
        # "Wildcards in table-settings are restricted": parallel load names one table.
        raise _invalid(
            owner, f"{where}: object-locator needs a schema-name and table-name without wildcards"
        )
    option = rule.get("parallel-load")
    other = sorted(set(rule) - {"rule-type", "rule-id", "rule-name", "object-locator"})
    if other != ["parallel-load"] or not isinstance(option, dict):
        raise _invalid(
            owner,
            f"{where}: only the parallel-load option is supported locally (got {', '.join(other)})",
        )
    kind = option.get("type")
    if kind not in PARALLEL_LOAD_KEYS:
        raise _invalid(
            owner,
            f"{where}: parallel-load type {kind!r} is not one of {', '.join(PARALLEL_LOAD_KEYS)}",
        )
    extra = set(option) - {"type"} - PARALLEL_LOAD_KEYS[kind]
    if extra:
        raise _invalid(
            owner, f"{where}: parallel-load type {kind} does not take {', '.join(sorted(extra))}"
        )
    found = ParallelLoad(rule_id, str(schema), table, kind)
    if kind == "partitions-list":
        partitions = _names(option.get("partitions", []), f"{where}: partitions", owner)
        subpartitions = _names(option.get("subpartitions", []), f"{where}: subpartitions", owner)
        if not partitions and not subpartitions:
            raise _invalid(owner, f"{where}: partitions-list needs partitions or subpartitions")
        return replace(found, partitions=partitions, subpartitions=subpartitions)
    if kind != "ranges":
        return found
    columns = _names(option.get("columns"), f"{where}: columns", owner)
    if not 1 <= len(columns) <= MAX_RANGE_COLUMNS:
        raise _invalid(
            owner, f"{where}: ranges takes 1 to {MAX_RANGE_COLUMNS} columns, got {len(columns)}"
        )
    raw = option.get("boundaries")
    if not isinstance(raw, list) or not raw:
        raise _invalid(owner, f"{where}: ranges needs boundaries, a list of column-value arrays")
    boundaries = []
    for n, values in enumerate(raw, start=1):
        if not (
            isinstance(values, list)
            and len(values) == len(columns)
            and all(isinstance(v, str) for v in values)
        ):
            raise _invalid(
                owner,
                f"{where}: boundary {n} must be an array of {len(columns)} "
                f"string value(s), one per column ({', '.join(columns)}); got {values!r}",
            )
        boundaries.append(tuple(values))
    return replace(found, columns=columns, boundaries=tuple(boundaries))


def _names(raw: Any, where: str, owner: str) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(n, str) and n for n in raw):
        raise _invalid(owner, f"{where} must be an array of names, got {raw!r}")
    return tuple(raw)


def _locator(rule: dict[str, Any], owner: str) -> dict[str, Any]:
    locator = rule.get("object-locator")
    if not isinstance(locator, dict) or "schema-name" not in locator:
        raise _invalid(owner, f"rule {rule.get('rule-id')!r}: object-locator needs schema-name")
    return locator


def _parse_selection(rule: dict[str, Any], owner: str) -> Selection:
    rule_id = str(rule.get("rule-id", "?"))
    action = rule.get("rule-action")
    if action not in ("include", "exclude", "explicit"):
        raise _invalid(owner, f"rule {rule_id}: rule-action {action!r} (include/exclude/explicit)")
    locator = _locator(rule, owner)
    table_name = locator.get("table-name")
    if not isinstance(table_name, str):
        raise _invalid(owner, f"rule {rule_id}: selection object-locator needs table-name")
    table_type = locator.get("table-type", "table")
    if table_type not in ("table", "view", "all"):
        raise _invalid(owner, f"rule {rule_id}: table-type {table_type!r} (table/view/all)")
    # Filters only apply when rule-action is include (DMS source filters page).
    raw_filters = rule.get("filters") or []
    filters = tuple(_parse_filter(f, rule_id, owner) for f in raw_filters)
    compile_name = wildcard if action != "explicit" else _exact
    return Selection(
        rule_id,
        action,
        compile_name(locator["schema-name"]),
        compile_name(table_name),
        table_type,
        filters if action != "exclude" else (),
        None if re.search(r"[%\[]", locator["schema-name"]) else locator["schema-name"],
    )


def _exact(name: str) -> re.Pattern[str]:
    return re.compile(re.escape(name))


def _parse_filter(raw: Any, rule_id: str, owner: str) -> SourceFilter:
    where = f"rule {rule_id} filter"
    if not isinstance(raw, dict) or raw.get("filter-type", "source") != "source":
        raise _invalid(owner, f"{where}: filter-type must be 'source'")
    column = raw.get("column-name")
    conditions = raw.get("filter-conditions")
    if not isinstance(column, str) or not column:
        raise _invalid(owner, f"{where}: column-name is required")
    if not isinstance(conditions, list) or not conditions:
        raise _invalid(owner, f"{where} on {column!r}: filter-conditions must be a non-empty list")
    return SourceFilter(
        column, tuple(_parse_condition(c, where, column, owner) for c in conditions)
    )


def _parse_condition(raw: Any, where: str, column: str, owner: str) -> Condition:
    operator = raw.get("filter-operator") if isinstance(raw, dict) else None
    if operator not in OPERATORS:
        raise _invalid(
            owner,
            f"{where} on {column!r}: filter-operator {operator!r} is not one of "
            f"{', '.join(OPERATORS)}",
        )
    values = []
    for key in OPERATORS[operator]:
        if raw.get(key) is None:
            raise _invalid(owner, f"{where} on {column!r}: operator {operator} needs {key!r}")
        values.append(str(raw[key]))
    return Condition(operator, tuple(values))


def _parse_transformation(rule: dict[str, Any], owner: str) -> Transformation:
    rule_id = str(rule.get("rule-id", "?"))
    target = rule.get("rule-target")
    action = rule.get("rule-action")
    if target not in ("schema", "table"):
        raise _invalid(
            owner, f"rule {rule_id}: rule-target {target!r} not supported (schema/table)"
        )
    if action not in _RENAME_ACTIONS:
        raise _invalid(owner, f"rule {rule_id}: rule-action {action!r} not supported locally")
    value = rule.get("value")
    if action in ("rename", "add-prefix", "add-suffix") and not isinstance(value, str):
        raise _invalid(owner, f"rule {rule_id}: {action} needs a string 'value'")
    locator = _locator(rule, owner)
    table = locator.get("table-name") if target == "table" else None
    if target == "table" and not isinstance(table, str):
        raise _invalid(owner, f"rule {rule_id}: a table transformation needs table-name")
    return Transformation(
        rule_id,
        target,
        action,
        wildcard(locator["schema-name"]),
        wildcard(table) if table is not None else None,
        value or "",
    )


def _invalid(owner: str, message: str) -> InvalidParameterValueException:
    return InvalidParameterValueException(f"Replication task {owner}: {message}")
