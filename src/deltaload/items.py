"""The controller item: one DynamoDB item per source table, validated in full.

Attribute names follow the published layout (``activeflag``, ``sourceSchema``,
``ouputs3Prefix`` and so on); the Python names are descriptive. Validation
collects every problem of an item and raises one ``InvalidItemError`` that names
the table, each attribute, what was found and what is allowed.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping
from decimal import Decimal
from enum import StrEnum
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from pydantic import BaseModel, ConfigDict, Field

from deltaload.errors import InvalidItemError, Problem
from deltaload.values import ColumnKind, canonical, expected_form, infer_kind, sort_key


class FilterOperator(StrEnum):
    """The DMS source-filter operators a controller item may use."""

    LTE = "lte"
    STE = "ste"
    GTE = "gte"
    EQ = "eq"
    NOTEQ = "noteq"
    BETWEEN = "between"
    NOTBETWEEN = "notbetween"
    NULL = "null"
    NOTNULL = "notnull"


class ReplicationMode(StrEnum):
    """Where the DMS task runs: a per-run instance, a shared instance, or DMS Serverless."""

    INSTANCE = "instance"
    EXISTING = "existing"
    SERVERLESS = "serverless"


NEEDS_START = {
    FilterOperator.LTE,
    FilterOperator.STE,
    FilterOperator.GTE,
    FilterOperator.EQ,
    FilterOperator.NOTEQ,
    FilterOperator.BETWEEN,
    FilterOperator.NOTBETWEEN,
}
NEEDS_END = {FilterOperator.BETWEEN, FilterOperator.NOTBETWEEN}
# gte items may carry an endvalue: windows then stop there (a bounded backfill).
MAY_HAVE_END = NEEDS_END | {FilterOperator.GTE}

# Source identifiers are passed to DMS and to SQL; keep them to what every
# supported engine accepts unquoted, so a typo or an injection attempt is
# refused here rather than failing deep inside a DMS task.
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$#]{0,127}$")
TARGET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
S3_PREFIX = re.compile(r"^[A-Za-z0-9_.=-]+(/[A-Za-z0-9_.=-]+)*/?$")

PUBLISHED_ATTRIBUTES = (
    "activeflag",
    "sourceSchema",
    "sourceTable",
    "targetTableName",
    "filtercolumn",
    "filteroperator",
    "startvalue",
    "endvalue",
    "ouputs3Prefix",
    "replication_task_settings",
)
EXTENSION_ATTRIBUTES = ("filtercolumntype", "safetylagseconds", "replicationmode")
RUN_STATE_ATTRIBUTES = (
    "watermark",
    "lockOwner",
    "lockExpiresAt",
    "lastRunId",
    "lastRunStatus",
    "lastWindow",
    "lastRunRows",
    "lastRunFiles",
    "lastRunError",
    "lastRunStartedAt",
    "lastRunEndedAt",
)
PREFIX_ALIAS = "outputS3Prefix"
KNOWN_ATTRIBUTES = (
    *PUBLISHED_ATTRIBUTES,
    PREFIX_ALIAS,
    "description",
    *EXTENSION_ATTRIBUTES,
    *RUN_STATE_ATTRIBUTES,
)
REQUIRED = ("activeflag", "sourceSchema", "sourceTable", "targetTableName", "filtercolumn")

# One-shot items record this watermark once their slice is loaded.
ONE_SHOT_LOADED = "loaded"


class ControllerItem(BaseModel):
    """A validated controller item. Build it with ``parse_item``."""

    model_config = ConfigDict(frozen=True)

    active: bool
    source_schema: str
    source_table: str
    target_table_name: str
    filter_column: str
    filter_operator: FilterOperator
    filter_column_type: ColumnKind
    start_value: str | None = None
    end_value: str | None = None
    output_s3_prefix: str
    replication_task_settings: dict[str, Any] = Field(default_factory=dict)
    safety_lag_seconds: int | None = None
    replication_mode: ReplicationMode | None = None
    description: str | None = None
    watermark: str | None = None
    run_state: dict[str, Any] = Field(default_factory=dict)

    @property
    def is_incremental(self) -> bool:
        """True for gte items, which load contiguous windows and move a watermark."""
        return self.filter_operator is FilterOperator.GTE

    def to_plain(self) -> dict[str, Any]:
        """The item as plain JSON with the published attribute names."""
        plain: dict[str, Any] = {
            "targetTableName": self.target_table_name,
            "activeflag": "true" if self.active else "false",
            "sourceSchema": self.source_schema,
            "sourceTable": self.source_table,
            "filtercolumn": self.filter_column,
            "filteroperator": self.filter_operator.value,
            "filtercolumntype": self.filter_column_type.value,
            "ouputs3Prefix": self.output_s3_prefix,
        }
        optional = {
            "startvalue": self.start_value,
            "endvalue": self.end_value,
            "safetylagseconds": self.safety_lag_seconds,
            "replicationmode": self.replication_mode.value if self.replication_mode else None,
            "description": self.description,
            "watermark": self.watermark,
        }
        plain.update({k: v for k, v in optional.items() if v is not None})
        if self.replication_task_settings:
            plain["replication_task_settings"] = json.dumps(
                self.replication_task_settings, sort_keys=True
            )
        plain.update(self.run_state)
        return plain


def parse_item(raw: Mapping[str, Any]) -> ControllerItem:
    """Validate a plain-JSON controller item; raise InvalidItemError listing every problem."""
    if not isinstance(raw, Mapping):
        raise InvalidItemError(
            "<unknown>",
            [Problem("<item>", type(raw).__name__, "expected a JSON object of attributes")],
        )
    table = _text(raw.get("targetTableName")) or "<missing targetTableName>"
    problems: list[Problem] = []
    values: dict[str, Any] = {}

    problems += _unknown_attributes(raw)
    for name in REQUIRED:
        if _is_blank(raw.get(name)):
            problems.append(Problem(name, "nothing", "this attribute is required"))

    values["active"] = _active_flag(raw.get("activeflag"), problems)
    for name, field, pattern, allowed in (
        ("sourceSchema", "source_schema", IDENTIFIER, _IDENTIFIER_RULE),
        ("sourceTable", "source_table", IDENTIFIER, _IDENTIFIER_RULE),
        ("filtercolumn", "filter_column", IDENTIFIER, _IDENTIFIER_RULE),
        ("targetTableName", "target_table_name", TARGET_NAME, _TARGET_RULE),
    ):
        values[field] = _identifier(raw.get(name), name, pattern, allowed, problems)

    operator = _operator(raw.get("filteroperator"), problems)
    values["filter_operator"] = operator
    values["output_s3_prefix"] = _prefix(raw, problems)
    values["replication_task_settings"] = _task_settings(raw.get("replication_task_settings"))
    if isinstance(values["replication_task_settings"], Problem):
        problems.append(values.pop("replication_task_settings"))
    values["safety_lag_seconds"] = _non_negative_int(raw.get("safetylagseconds"), problems)
    values["replication_mode"] = _enum(
        raw.get("replicationmode"), "replicationmode", ReplicationMode, problems
    )
    values["description"] = _text(raw.get("description"))

    start, end = _text(raw.get("startvalue")), _text(raw.get("endvalue"))
    kind = _kind(raw.get("filtercolumntype"), start, problems)
    values["filter_column_type"] = kind
    if operator is not None:
        problems += _operator_values(operator, start, end)
    if kind is not None:
        values["start_value"] = _typed_value("startvalue", start, kind, problems)
        values["end_value"] = _typed_value("endvalue", end, kind, problems)
        values["watermark"] = _watermark(_text(raw.get("watermark")), kind, operator, problems)
        problems += _ordered(operator, kind, values["start_value"], values["end_value"])
    values["run_state"] = {
        name: _plain(raw[name])
        for name in RUN_STATE_ATTRIBUTES
        if name != "watermark" and name in raw
    }

    if problems:
        raise InvalidItemError(table, problems)
    return ControllerItem(**values)


def from_dynamodb(item: Mapping[str, Any]) -> dict[str, Any]:
    """Convert a DynamoDB-JSON item ({"attr": {"S": "..."}}) to plain JSON."""
    deserializer = TypeDeserializer()
    return {name: _plain(deserializer.deserialize(value)) for name, value in item.items()}


def to_dynamodb(plain: Mapping[str, Any]) -> dict[str, Any]:
    """Convert a plain-JSON item to DynamoDB JSON, as `aws dynamodb put-item --item` takes it."""
    serializer = TypeSerializer()
    return {name: serializer.serialize(_dynamo_value(value)) for name, value in plain.items()}


def is_dynamodb_json(item: Mapping[str, Any]) -> bool:
    """True when every attribute is a one-key type descriptor such as {"S": "..."}."""
    descriptors = {"S", "N", "B", "BOOL", "NULL", "M", "L", "SS", "NS", "BS"}
    return bool(item) and all(
        isinstance(value, Mapping) and len(value) == 1 and next(iter(value)) in descriptors
        for value in item.values()
    )


def load_items(document: Any) -> list[dict[str, Any]]:
    """Items from a parsed JSON file: one item or a list, plain or DynamoDB JSON."""
    raw_items = document if isinstance(document, list) else [document]
    items = []
    for raw in raw_items:
        if isinstance(raw, Mapping) and "Item" in raw and len(raw) == 1:
            raw = raw["Item"]  # the shape `aws dynamodb get-item` prints
        if isinstance(raw, Mapping) and is_dynamodb_json(raw):
            raw = from_dynamodb(raw)
        items.append(raw)
    return items


_IDENTIFIER_RULE = (
    "expected a plain identifier: a letter or underscore, then letters, digits, _, $ or #, "
    "at most 128 characters (no quotes, spaces or dots)"
)
TASK_SETTINGS_RULE = (
    "expected a JSON object written as a string, merged over the default task settings, "
    'for example \'{"Logging": {"EnableLogging": true}}\''
)
_TARGET_RULE = "expected a letter or underscore, then letters, digits or _, at most 128 characters"


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _text(value: Any) -> str | None:
    if _is_blank(value):
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, Decimal | int | float):
        return str(_plain(value))
    return str(value).strip() if isinstance(value, str) else None


def _describe(value: Any) -> str:
    text = json.dumps(_plain(value), default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def _unknown_attributes(raw: Mapping[str, Any]) -> list[Problem]:
    problems = []
    for name in raw:
        if name in KNOWN_ATTRIBUTES:
            continue
        close = difflib.get_close_matches(str(name), KNOWN_ATTRIBUTES, n=1, cutoff=0.7)
        allowed = (
            f"did you mean {close[0]!r}?"
            if close
            else f"allowed attributes are {', '.join(KNOWN_ATTRIBUTES)}"
        )
        problems.append(Problem(str(name), "an unknown attribute", allowed))
    if "ouputs3Prefix" in raw and PREFIX_ALIAS in raw and raw["ouputs3Prefix"] != raw[PREFIX_ALIAS]:
        problems.append(
            Problem(
                PREFIX_ALIAS,
                f"{_describe(raw[PREFIX_ALIAS])} next to "
                f"ouputs3Prefix {_describe(raw['ouputs3Prefix'])}",
                "give the output prefix once (ouputs3Prefix, or its alias outputS3Prefix)",
            )
        )
    return problems


def _active_flag(value: Any, problems: list[Problem]) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if not _is_blank(value):
        problems.append(Problem("activeflag", _describe(value), 'expected "true" or "false"'))
    return False


def _identifier(
    value: Any, name: str, pattern: re.Pattern[str], allowed: str, problems: list[Problem]
) -> str:
    if _is_blank(value):
        return ""
    if not isinstance(value, str) or not pattern.match(value):
        problems.append(Problem(name, _describe(value), allowed))
        return ""
    return value


def _operator(value: Any, problems: list[Problem]) -> FilterOperator | None:
    allowed = ", ".join(op.value for op in FilterOperator)
    if _is_blank(value):
        required = f"this attribute is required: {allowed}"
        problems.append(Problem("filteroperator", "nothing", required))
        return None
    text = str(value).strip().lower()
    try:
        return FilterOperator(text)
    except ValueError:
        problems.append(Problem("filteroperator", _describe(value), f"expected one of {allowed}"))
        return None


def _enum(value: Any, name: str, enum: type[StrEnum], problems: list[Problem]) -> Any:
    if _is_blank(value):
        return None
    try:
        return enum(str(value).strip().lower())
    except ValueError:
        allowed = ", ".join(member.value for member in enum)
        problems.append(Problem(name, _describe(value), f"expected one of {allowed}"))
        return None


def _prefix(raw: Mapping[str, Any], problems: list[Problem]) -> str:
    name = "ouputs3Prefix" if "ouputs3Prefix" in raw else PREFIX_ALIAS
    value = raw.get(name)
    if _is_blank(value):
        problems.append(
            Problem(
                "ouputs3Prefix",
                "nothing",
                "this attribute (or its alias outputS3Prefix) is required",
            )
        )
        return ""
    text = str(value).strip().strip("/") if isinstance(value, str) else ""
    if not text or ".." in text or not S3_PREFIX.match(text):
        problems.append(
            Problem(
                name,
                _describe(value),
                "expected an S3 key prefix inside the data-lake bucket, such as "
                "'datalake/sales' (letters, digits, _ . = - separated by /; no s3://, no '..')",
            )
        )
        return ""
    return text + "/"


def _task_settings(value: Any) -> dict[str, Any] | Problem:
    if _is_blank(value):
        return {}
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    try:
        parsed = json.loads(value) if isinstance(value, str) else None
    except json.JSONDecodeError as error:
        found = f"invalid JSON ({error.msg} at line {error.lineno} column {error.colno})"
        return Problem("replication_task_settings", found, TASK_SETTINGS_RULE)
    if not isinstance(parsed, dict):
        return Problem("replication_task_settings", _describe(value), TASK_SETTINGS_RULE)
    return parsed


def _non_negative_int(value: Any, problems: list[Problem]) -> int | None:
    if _is_blank(value):
        return None
    text = _text(value) or ""
    if not text.isdigit():
        problems.append(
            Problem("safetylagseconds", _describe(value), "expected a whole number of seconds >= 0")
        )
        return None
    return int(text)


def _kind(value: Any, start: str | None, problems: list[Problem]) -> ColumnKind | None:
    if _is_blank(value):
        # Published-layout items carry no type: the start value's form decides.
        return infer_kind(start) if start is not None else ColumnKind.STRING
    try:
        return ColumnKind(str(value).strip().lower())
    except ValueError:
        allowed = ", ".join(kind.value for kind in ColumnKind)
        problems.append(Problem("filtercolumntype", _describe(value), f"expected one of {allowed}"))
        return None


def _operator_values(operator: FilterOperator, start: str | None, end: str | None) -> list[Problem]:
    problems = []
    if operator in NEEDS_START and start is None:
        problems.append(
            Problem("startvalue", "nothing", f"the {operator.value} operator needs a startvalue")
        )
    if operator not in NEEDS_START and start is not None:
        problems.append(
            Problem("startvalue", _describe(start), f"the {operator.value} operator takes no value")
        )
    if operator in NEEDS_END and end is None:
        problems.append(
            Problem("endvalue", "nothing", f"the {operator.value} operator needs an endvalue")
        )
    if operator not in MAY_HAVE_END and end is not None:
        problems.append(
            Problem(
                "endvalue",
                _describe(end),
                f"the {operator.value} operator takes no endvalue "
                "(only between, notbetween and gte do)",
            )
        )
    return problems


def _typed_value(
    name: str, value: str | None, kind: ColumnKind, problems: list[Problem]
) -> str | None:
    if value is None:
        return None
    try:
        return canonical(kind, value)
    except ValueError:
        problems.append(
            Problem(
                name, _describe(value), f"the filter column is {kind.value}: {expected_form(kind)}"
            )
        )
        return None


def _watermark(
    value: str | None,
    kind: ColumnKind,
    operator: FilterOperator | None,
    problems: list[Problem],
) -> str | None:
    if value is None or (operator is not FilterOperator.GTE and value == ONE_SHOT_LOADED):
        return value
    if operator is not None and operator is not FilterOperator.GTE:
        problems.append(
            Problem(
                "watermark",
                _describe(value),
                f"a one-shot {operator.value} item only records {ONE_SHOT_LOADED!r}; "
                "remove the attribute to load the slice again",
            )
        )
        return None
    return _typed_value("watermark", value, kind, problems)


def _ordered(
    operator: FilterOperator | None, kind: ColumnKind, start: str | None, end: str | None
) -> list[Problem]:
    if operator not in MAY_HAVE_END or start is None or end is None:
        return []
    if sort_key(kind, start) > sort_key(kind, end):
        return [
            Problem("endvalue", _describe(end), f"expected a value not below startvalue {start!r}")
        ]
    return []


def _plain(value: Any) -> Any:
    """DynamoDB numbers come back as Decimal: make them int or float for JSON."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_plain(v) for v in value]
    return value


def _dynamo_value(value: Any) -> Any:
    """DynamoDB refuses floats: store them as Decimal."""
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, Mapping):
        return {k: _dynamo_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_dynamo_value(v) for v in value]
    return value
