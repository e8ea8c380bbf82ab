"""The controller item: one DynamoDB item per source table, validated in full.

Attribute names follow the published layout (``activeflag``, ``sourceSchema``,
``ouputs3Prefix`` and so on); the Python names are descriptive. Validation
collects every problem of an item and raises one ``InvalidItemError`` that names
the table, each attribute, what was found and what is allowed.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import sys
from collections.abc import Mapping
from decimal import Context, Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from deltaload import parallelload, tasksettings
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


class SchemaPolicy(StrEnum):
    """Which schema changes a run may publish (attribute ``schemachanges``; see schema.py)."""

    COMPATIBLE = "compatible"  # added, dropped and widened columns publish
    ANY = "any"  # every change publishes, incompatible type changes too
    NONE = "none"  # any change fails the run


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
# refused here rather than failing deep inside a DMS task. Every pattern is applied
# with fullmatch: ``$`` would also match before a trailing newline ("t\n").
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$#]{0,127}")
TARGET_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
S3_PREFIX = re.compile(r"[A-Za-z0-9_.=-]+(/[A-Za-z0-9_.=-]+)*/?")
SAFETY_LAG = re.compile(r"[0-9]+", re.ASCII)

# The longest safety lag an item may ask for: 30 days. Longer lags are almost certainly a
# unit mistake (milliseconds), and far longer ones overflow the clock arithmetic.
SAFETY_LAG_MAX = 30 * 24 * 3600
# A table may go stale for at most a year before its freshness alarm means anything.
FRESHNESS_LIMIT_MAX = 366 * 24 * 3600
# A filter value is one key of the filter column; longer ones are a mistake, and the run
# state repeats these values several times on the item (lastWindow).
FILTER_VALUE_MAX_BYTES = 1024
# DynamoDB's item size limit, attribute names plus values, 1 KB = 1024 bytes:
# https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Constraints.html#limits-items
# Part of it is kept for the run state every run writes on the item (lastRunError up to
# 2,000 characters, lastWindow holding the window's values, run ids and times).
DYNAMODB_ITEM_MAX_BYTES = 400 * 1024
RUN_STATE_RESERVE_BYTES = 20 * 1024
ITEM_DEFINITION_MAX_BYTES = DYNAMODB_ITEM_MAX_BYTES - RUN_STATE_RESERVE_BYTES

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
EXTENSION_ATTRIBUTES = (
    "filtercolumntype",
    "safetylagseconds",
    "replicationmode",
    "schemachanges",
    "freshnesslimitseconds",
    "keycolumns",
    "parallelload",
    "windowsize",
    "maxwindows",
    "windowconcurrency",
    "windowinstances",
)
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
    "schemaManifestKey",
    "lastSchemaChange",
    "lastSucceededAt",
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

# Bounded windows (windowsize, maxwindows, windowconcurrency). A run holds its windows in
# the run document and Step Functions carries at most 256 KiB of it (Quotas: "Maximum
# input or output size for a task, state, or execution", Step Functions developer guide,
# https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html), so a run loads
# at most WINDOWS_MAX of them. Each window is a task and a target endpoint of its own on
# the run's instance: 50 keeps a run well inside DMS's 100 endpoints and 200 tasks per
# replication instance (Quotas for AWS DMS,
# https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Limits.html), also with a few
# windowed tables at once on a shared (existing) instance. How many load at once is bounded
# (WINDOW_CONCURRENCY_MAX) so the windows' status polls stay inside DMS's API token bucket.
WINDOWS_MAX = 50
WINDOWS_DEFAULT = 10
WINDOW_CONCURRENCY_MAX = 10
WINDOW_SIZE_MAX_SECONDS = 366 * 24 * 3600
# Replication instances one run may spread its windows over: DMS allows 60 per account
# and Region (CHAP_Limits), shared by every table's runs.
WINDOW_INSTANCES_MAX = 5
_DURATION_SHORT = re.compile(r"([0-9]+)([smhd])", re.ASCII)
_DURATION_ISO = re.compile(
    r"P(?:([0-9]+)D)?(?:T(?:([0-9]+)H)?(?:([0-9]+)M)?(?:([0-9]+)S)?)?", re.ASCII
)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
WINDOW_SIZE_RULES = {
    ColumnKind.INTEGER: (
        "the filter column is an integer: expected a whole number above 0 (the span of "
        "filter values one window covers)"
    ),
    ColumnKind.TIMESTAMP: (
        "the filter column is a timestamp: expected a duration of at least one second "
        "such as 30m, 6h, 1d or ISO 8601 PT6H, P1D, "
        f"at most {WINDOW_SIZE_MAX_SECONDS // 86400} days"
    ),
    ColumnKind.DATE: (
        "the filter column is a date: expected a duration of whole days such as 1d, 7d "
        f"or ISO 8601 P1D, at most {WINDOW_SIZE_MAX_SECONDS // 86400} days"
    ),
}

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
    schema_changes: SchemaPolicy = SchemaPolicy.COMPATIBLE
    freshness_limit_seconds: int | None = None
    # The columns identifying a row, for the catalog's current-version view (gte items).
    key_columns: tuple[str, ...] = ()
    # The parallel-load object of a DMS table-settings rule ({}: none); deltaload.parallelload.
    parallel_load: dict[str, Any] = Field(default_factory=dict)
    # windowsize as written, and what it means: the integer span of a window, or for
    # timestamp and date columns its length in seconds (window_span).
    window_size: str | None = None
    window_span: int | None = None
    max_windows: int | None = None
    window_concurrency: int | None = None
    window_instances: int | None = None
    description: str | None = None
    watermark: str | None = None
    run_state: dict[str, Any] = Field(default_factory=dict)

    @property
    def is_incremental(self) -> bool:
        """True for gte items, which load contiguous windows and move a watermark."""
        return self.filter_operator is FilterOperator.GTE

    @property
    def windows_per_run(self) -> int:
        """The most windows one run loads (1 for an item without a windowsize)."""
        if self.window_span is None:
            return 1
        return self.max_windows if self.max_windows is not None else WINDOWS_DEFAULT

    @property
    def instances(self) -> int:
        """How many replication instances the run's windows are spread over."""
        return self.window_instances or 1

    @property
    def concurrency(self) -> int:
        """How many windows load at once."""
        return min(self.window_concurrency or 1, self.windows_per_run)

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
            "freshnesslimitseconds": self.freshness_limit_seconds,
            "windowsize": self.window_size,
            "maxwindows": self.max_windows,
            "windowconcurrency": self.window_concurrency,
            "windowinstances": self.window_instances,
            "replicationmode": self.replication_mode.value if self.replication_mode else None,
            "schemachanges": (
                self.schema_changes.value
                if self.schema_changes is not SchemaPolicy.COMPATIBLE
                else None
            ),
            "keycolumns": ",".join(self.key_columns) if self.key_columns else None,
            "description": self.description,
            "watermark": self.watermark,
        }
        plain.update({k: v for k, v in optional.items() if v is not None})
        if self.parallel_load:
            plain["parallelload"] = json.dumps(self.parallel_load)
        if self.replication_task_settings:
            plain["replication_task_settings"] = json.dumps(
                self.replication_task_settings, sort_keys=True
            )
        plain.update(self.run_state)
        return plain


def parse_item(raw: Mapping[str, Any]) -> ControllerItem:
    """Validate a plain-JSON controller item; raise InvalidItemError listing every problem."""
    try:
        return _parse_item(raw)
    except RecursionError:
        # DynamoDB nests at most 32 levels; a value nested this deep is no controller item.
        table = raw.get("targetTableName") if isinstance(raw, Mapping) else None
        raise InvalidItemError(
            table if isinstance(table, str) else "<unreadable targetTableName>",
            [Problem("<item>", "values nested too deeply to read", "expected flat attributes")],
        ) from None


def _parse_item(raw: Mapping[str, Any]) -> ControllerItem:
    if not isinstance(raw, Mapping):
        raise InvalidItemError(
            "<unknown>",
            [Problem("<item>", type(raw).__name__, "expected a JSON object of attributes")],
        )
    table = _table_name(raw.get("targetTableName"))
    # Values no JSON reader could give deltaload (a DynamoDB number such as 1e400 or abc,
    # an Infinity): report them once and check the rest of the item without them.
    unreadable = _unreadable(raw)
    raw = {name: value for name, value in raw.items() if name not in unreadable}
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
    if isinstance(values["replication_task_settings"], list):
        problems += values.pop("replication_task_settings")
    values["safety_lag_seconds"] = _safety_lag(raw.get("safetylagseconds"), problems)
    values["freshness_limit_seconds"] = _freshness_limit(raw.get("freshnesslimitseconds"), problems)
    values["replication_mode"] = _enum(
        raw.get("replicationmode"), "replicationmode", ReplicationMode, problems
    )
    values["schema_changes"] = (
        _enum(raw.get("schemachanges"), "schemachanges", SchemaPolicy, problems)
        or SchemaPolicy.COMPATIBLE
    )
    values["description"] = _description(raw.get("description"), problems)
    values["key_columns"] = _key_columns(
        raw.get("keycolumns"), values["filter_column"], operator, problems
    )

    start = _filter_value("startvalue", raw.get("startvalue"), problems)
    end = _filter_value("endvalue", raw.get("endvalue"), problems)
    start, end = _sample_between(operator, start, end)
    watermark = _filter_value("watermark", raw.get("watermark"), problems)
    kind = _kind(raw.get("filtercolumntype"), start, problems)
    values["filter_column_type"] = kind
    if operator is not None:
        problems += _operator_values(operator, start, end)
    if kind is not None:
        values["start_value"] = _typed_value("startvalue", start, kind, problems)
        values["end_value"] = _typed_value("endvalue", end, kind, problems)
        values["watermark"] = _watermark(watermark, kind, operator, problems)
        problems += _ordered(operator, kind, values["start_value"], values["end_value"])
    option = parallelload.parse(
        raw.get("parallelload"), values.get("filter_column"), kind, IDENTIFIER
    )
    if isinstance(option, list):
        problems += option
    else:
        values["parallel_load"] = option
    _windows(raw, operator, kind, values, problems)
    values["run_state"] = {
        name: _plain(raw[name])
        for name in RUN_STATE_ATTRIBUTES
        if name != "watermark" and name in raw
    }

    if not problems and not unreadable:
        item = ControllerItem(**values)
        problems += _size(item)
        if not problems:
            return item
    raise InvalidItemError(table, _merge(unreadable, problems))


class UnreadableNumber:
    """A DynamoDB number that is not one (``{"N": "abc"}``, ``{"N": "1e400"}``).

    ``from_dynamodb`` keeps it in place of the value, so that reading an item never fails
    and ``parse_item`` reports it, naming the attribute.
    """

    def __init__(self, text: Any, reason: str) -> None:
        self.text = text
        self.reason = reason

    def __repr__(self) -> str:
        return f"UnreadableNumber({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UnreadableNumber) and repr(other.text) == repr(self.text)

    def __hash__(self) -> int:
        return hash(repr(self.text))

    def __str__(self) -> str:
        return str(self.text)


# DynamoDB numbers: up to 38 significant digits, magnitude from 1E-130 to
# 9.9999999999999999999999999999999999999E+125, sent as strings; leading and trailing zeroes
# are trimmed. https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/HowItWorks.NamingRulesDataTypes.html
_DYNAMODB_NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?", re.ASCII)
_WIDE = Context(prec=200, Emax=10**6, Emin=-(10**6))
NUMBER_RULE = (
    "expected a number DynamoDB can store: digits with an optional fraction and exponent, "
    "at most 38 significant digits, magnitude between 1E-130 and 9.99E+125"
)


def dynamodb_number(text: Any) -> Decimal | UnreadableNumber:
    """The Decimal of a DynamoDB ``N`` value, or an UnreadableNumber saying why it is none."""
    if not isinstance(text, str) or not _DYNAMODB_NUMBER.fullmatch(text.strip()):
        return UnreadableNumber(text, "not a number")
    try:
        number = _WIDE.create_decimal(text.strip())
    except InvalidOperation:  # pragma: no cover - the pattern admits only decimal numbers
        return UnreadableNumber(text, "not a number")
    if number.is_zero():
        return Decimal(0)
    digits = number.normalize(_WIDE).as_tuple().digits
    if len(digits) > 38:
        return UnreadableNumber(text, f"{len(digits)} significant digits")
    if not Decimal("1E-130") <= abs(number) < Decimal("1E+126"):
        return UnreadableNumber(text, "out of DynamoDB's number range")
    return number


# boto3 is imported only to write DynamoDB JSON, not with this module: importing it costs
# a fifth to a third of a second that `--help`, `validate` and the readers need not pay.
_BOTO3_TYPES = "boto3.dynamodb.types"


def _is_binary(value: Any) -> bool:
    """True for boto3's Binary; none can exist before boto3's types module is imported."""
    types = sys.modules.get(_BOTO3_TYPES)
    return types is not None and isinstance(value, types.Binary)


# boto3's BINARY_TYPES, in its order (its error message names them).
_BINARY_TYPES = (bytearray, bytes)


class _Deserializer:
    """boto3's TypeDeserializer (boto3/dynamodb/types.py) to the letter, without importing
    boto3, and with numbers checked as DynamoDB checks them instead of raising.

    The readers (status, runs, plan) convert every item and would otherwise pay for
    importing boto3; the values and the error messages are boto3's.
    """

    def deserialize(self, value: Any) -> Any:
        """A DynamoDB JSON value as Python (binary values as their bytes)."""
        if not value:
            raise TypeError(
                "Value must be a nonempty dictionary whose key is a valid dynamodb type."
            )
        dynamodb_type = next(iter(value.keys()))
        handler = getattr(self, f"_deserialize_{dynamodb_type}".lower(), None)
        if handler is None:
            raise TypeError(f"Dynamodb type {dynamodb_type} is not supported")
        return handler(value[dynamodb_type])

    def _deserialize_null(self, value: Any) -> Any:
        return None

    def _deserialize_bool(self, value: Any) -> Any:
        return value

    def _deserialize_n(self, value: Any) -> Any:
        return dynamodb_number(value)

    def _deserialize_s(self, value: Any) -> Any:
        return value

    def _deserialize_b(self, value: Any) -> Any:
        # boto3 wraps these in its Binary, which _plain unwraps again.
        if not isinstance(value, _BINARY_TYPES):
            types = ", ".join(str(t) for t in _BINARY_TYPES)
            raise TypeError(f"Value must be of the following types: {types}")
        return value

    def _deserialize_ns(self, value: Any) -> Any:
        return [dynamodb_number(v) for v in value]

    def _deserialize_ss(self, value: Any) -> Any:
        return set(map(self._deserialize_s, value))

    def _deserialize_bs(self, value: Any) -> Any:
        return set(map(self._deserialize_b, value))

    def _deserialize_l(self, value: Any) -> Any:
        return [self.deserialize(v) for v in value]

    def _deserialize_m(self, value: Any) -> Any:
        return {k: self.deserialize(v) for k, v in value.items()}


def from_dynamodb(item: Mapping[str, Any]) -> dict[str, Any]:
    """Convert a DynamoDB-JSON item ({"attr": {"S": "..."}}) to plain JSON; never raises
    for a bad number (it becomes an UnreadableNumber that parse_item reports)."""
    deserializer = _Deserializer()
    plain: dict[str, Any] = {}
    for name, value in item.items():
        try:
            plain[name] = _plain(deserializer.deserialize(value))
        except (TypeError, ValueError, KeyError, AttributeError) as error:
            plain[name] = UnreadableNumber(value, f"not a DynamoDB attribute value ({error})")
    return plain


def to_dynamodb(plain: Mapping[str, Any]) -> dict[str, Any]:
    """Convert a plain-JSON item to DynamoDB JSON, as `aws dynamodb put-item --item` takes it."""
    from boto3.dynamodb.types import TypeSerializer

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
    text = json.dumps(_plain(value), default=describe_value)
    return text if len(text) <= 80 else text[:77] + "..."


def describe_value(value: Any) -> str:
    """JSON's fallback for values it cannot write: binary values, sets, unreadable numbers."""
    if _is_binary(value):
        value = value.value
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    if isinstance(value, set | frozenset):
        return "[" + ", ".join(sorted(describe_value(v) for v in value)) + "]"
    return str(value)


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
        problems.append(Problem(_attribute_name(name), "an unknown attribute", allowed))
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


# The published sample's starter selects items whose activeflag is "Y"
# (aws-samples/delta-data-loads-data-lakes, src/etlLambdaStartCDCWorkflow/app.py).
ACTIVE_FLAGS = {"true": True, "false": False, "y": True, "n": False}
ACTIVE_FLAG_RULE = 'expected "true" or "false" (or "Y" / "N", as the published sample writes them)'


def active_flag(value: Any) -> bool | None:
    """True or False for a valid activeflag (a boolean, true/false or Y/N), else None."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return ACTIVE_FLAGS.get(value.strip().lower())
    return None


def _attribute_name(name: Any) -> str:
    """An attribute name as shown in a problem: quoted when blank or holding odd characters."""
    text = str(name)
    return text if text and text.isprintable() and text.strip() == text else json.dumps(text)


def _active_flag(value: Any, problems: list[Problem]) -> bool:
    flag = active_flag(value)
    if flag is None and not _is_blank(value):
        problems.append(Problem("activeflag", _describe(value), ACTIVE_FLAG_RULE))
    return bool(flag)


def _identifier(
    value: Any, name: str, pattern: re.Pattern[str], allowed: str, problems: list[Problem]
) -> str:
    if _is_blank(value):
        return ""
    if not isinstance(value, str) or not pattern.fullmatch(value):
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
    if not text or ".." in text or not S3_PREFIX.fullmatch(text):
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


def _task_settings(value: Any) -> dict[str, Any] | list[Problem]:
    name = "replication_task_settings"
    if _is_blank(value):
        return {}
    if isinstance(value, Mapping):
        parsed: Any = {str(k): _plain(v) for k, v in value.items()}
    else:
        try:
            parsed = (
                json.loads(value, parse_constant=_no_constant) if isinstance(value, str) else None
            )
        except (json.JSONDecodeError, ValueError, RecursionError) as error:
            found = (
                f"invalid JSON ({error.msg} at line {error.lineno} column {error.colno})"
                if isinstance(error, json.JSONDecodeError)
                else f"invalid JSON ({error})"
            )
            return [Problem(name, found, TASK_SETTINGS_RULE)]
    if not isinstance(parsed, dict):
        return [Problem(name, _describe(value), TASK_SETTINGS_RULE)]
    problems = [
        Problem(f"{name}: {setting}", found, allowed)
        for setting, found, allowed in tasksettings.check(parsed)
    ]
    return problems or parsed


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _safety_lag(value: Any, problems: list[Problem]) -> int | None:
    if _is_blank(value):
        return None
    text = _text(value) if isinstance(value, str | int | Decimal) else None
    rule = f"expected a whole number of seconds from 0 to {SAFETY_LAG_MAX} (30 days)"
    if isinstance(value, bool) or text is None or not SAFETY_LAG.fullmatch(text):
        problems.append(Problem("safetylagseconds", _describe(value), rule))
        return None
    seconds = int(text)
    if seconds > SAFETY_LAG_MAX:
        problems.append(Problem("safetylagseconds", _describe(value), rule))
        return None
    return seconds


def _freshness_limit(value: Any, problems: list[Problem]) -> int | None:
    if _is_blank(value):
        return None
    text = _text(value) if isinstance(value, str | int | Decimal) else None
    rule = f"expected a whole number of seconds from 1 to {FRESHNESS_LIMIT_MAX} (366 days)"
    if isinstance(value, bool) or text is None or not SAFETY_LAG.fullmatch(text):
        problems.append(Problem("freshnesslimitseconds", _describe(value), rule))
        return None
    seconds = int(text)
    if not 1 <= seconds <= FRESHNESS_LIMIT_MAX:
        problems.append(Problem("freshnesslimitseconds", _describe(value), rule))
        return None
    return seconds


_KEY_COLUMNS_RULE = (
    "expected the names of the columns that identify a row, separated by commas "
    "(e.g. 'order_id' or 'order_id,line_no'): each a source identifier, each once, "
    "not the filter column"
)


def _key_columns(
    value: Any, filter_column: str | None, operator: FilterOperator | None, problems: list[Problem]
) -> tuple[str, ...]:
    """keycolumns: the row key of an incremental item, for the current-version view."""
    if _is_blank(value):
        return ()
    if not isinstance(value, str):
        problems.append(Problem("keycolumns", _describe(value), _KEY_COLUMNS_RULE))
        return ()
    names = tuple(part.strip() for part in value.split(","))
    lowered = [n.lower() for n in names]
    if (
        not all(IDENTIFIER.fullmatch(n) for n in names)
        or len(set(lowered)) != len(lowered)
        or (filter_column is not None and filter_column.lower() in lowered)
    ):
        problems.append(Problem("keycolumns", _describe(value), _KEY_COLUMNS_RULE))
        return ()
    if operator is not None and operator is not FilterOperator.GTE:
        problems.append(
            Problem(
                "keycolumns",
                _describe(value),
                "only items with filteroperator gte (which load a changed row again in a "
                f"later run) have a current version per key; this item's is {operator.value}",
            )
        )
        return ()
    return names


def _count(name: str, value: Any, low: int, high: int, problems: list[Problem]) -> int | None:
    """A whole number from ``low`` to ``high``, or None (absent, or a problem noted)."""
    if _is_blank(value):
        return None
    text = _text(value) if isinstance(value, str | int | Decimal) else None
    rule = f"expected a whole number from {low} to {high}"
    if isinstance(value, bool) or text is None or not SAFETY_LAG.fullmatch(text):
        problems.append(Problem(name, _describe(value), rule))
        return None
    number = int(text)
    if not low <= number <= high:
        problems.append(Problem(name, _describe(value), rule))
        return None
    return number


def duration_seconds(text: str) -> int | None:
    """Seconds of ``30m``, ``6h``, ``1d``, ``90s`` or ISO 8601 ``PT6H``/``P1D``/``P1DT12H``
    (days, hours, minutes, seconds; no years or months, whose length varies); None if
    ``text`` is none of them."""
    text = text.strip()
    short = _DURATION_SHORT.fullmatch(text.lower())
    if short:
        return int(short.group(1)) * _UNIT_SECONDS[short.group(2)]
    iso = _DURATION_ISO.fullmatch(text.upper())
    if iso and any(iso.groups()) and not text.upper().endswith("T"):
        days, hours, minutes, seconds = (int(part or 0) for part in iso.groups())
        return ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    return None


def window_span(kind: ColumnKind, value: Any) -> int | str:
    """What a windowsize means for a column of ``kind``: an integer span, or seconds; the
    rule it breaks (a text) when it is not a window size of that kind."""
    if kind is ColumnKind.STRING:
        return (
            "string columns cannot be cut into windows: a string has no next value and no "
            "span; remove windowsize (the item then loads one window per run)"
        )
    rule = WINDOW_SIZE_RULES[kind]
    text = (
        _text(value)
        if isinstance(value, str | int | Decimal) and not isinstance(value, bool)
        else None
    )
    if text is None:
        return rule
    if kind is ColumnKind.INTEGER:
        if not SAFETY_LAG.fullmatch(text) or int(text) < 1:
            return rule
        return int(text)
    seconds = duration_seconds(text)
    if seconds is None or not 1 <= seconds <= WINDOW_SIZE_MAX_SECONDS:
        return rule
    if kind is ColumnKind.DATE and seconds % 86400:
        return rule
    return seconds


def _windows(
    raw: Mapping[str, Any],
    operator: FilterOperator | None,
    kind: ColumnKind | None,
    values: dict[str, Any],
    problems: list[Problem],
) -> None:
    """windowsize, maxwindows and windowconcurrency: checked against the operator and kind."""
    size = raw.get("windowsize")
    maximum = _count("maxwindows", raw.get("maxwindows"), 1, WINDOWS_MAX, problems)
    concurrency = _count(
        "windowconcurrency", raw.get("windowconcurrency"), 1, WINDOW_CONCURRENCY_MAX, problems
    )
    instances = _count(
        "windowinstances", raw.get("windowinstances"), 1, WINDOW_INSTANCES_MAX, problems
    )
    values["max_windows"], values["window_concurrency"] = maximum, concurrency
    values["window_instances"] = instances
    if _is_blank(size):
        for name in ("maxwindows", "windowconcurrency", "windowinstances"):
            if not _is_blank(raw.get(name)):
                problems.append(
                    Problem(name, _describe(raw.get(name)), "it needs a windowsize on the item")
                )
        return
    if operator is not None and operator is not FilterOperator.GTE:
        problems.append(
            Problem(
                "windowsize",
                _describe(size),
                f"only gte items load windows; the {operator.value} operator loads its slice once",
            )
        )
        return
    if kind is None:
        return
    span = window_span(kind, size)
    if isinstance(span, str):
        problems.append(Problem("windowsize", _describe(size), span))
        return
    if instances is not None and instances > (concurrency or 1):
        problems.append(
            Problem(
                "windowinstances",
                _describe(raw.get("windowinstances")),
                f"expected at most windowconcurrency ({concurrency or 1}): an instance no "
                "window loads on at once would only add cost",
            )
        )
    values["window_size"] = str(_text(size))
    values["window_span"] = span
    if maximum is not None and concurrency is not None and concurrency > maximum:
        problems.append(
            Problem(
                "windowconcurrency",
                _describe(raw.get("windowconcurrency")),
                f"expected at most maxwindows ({maximum}): no more windows can load at once "
                "than one run loads",
            )
        )


def _description(value: Any, problems: list[Problem]) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        problems.append(Problem("description", _describe(value), "expected text"))
        return None
    return value.strip() or None


def _filter_value(name: str, value: Any, problems: list[Problem]) -> str | None:
    """A startvalue, endvalue or watermark as text: a string or a number, nothing else."""
    if isinstance(value, bool) or not (value is None or isinstance(value, str | int | Decimal)):
        kind = "an object" if isinstance(value, Mapping) else f"a {_json_type(value)}"
        problems.append(
            Problem(
                name,
                f"{kind} {_describe(value)}",
                "expected a single value written as text (or a number)",
            )
        )
        return None
    if isinstance(value, float) and not math.isfinite(value):  # pragma: no cover - _unreadable
        return None
    text = _text(value)
    if text is not None and len(text.encode("utf-8")) > FILTER_VALUE_MAX_BYTES:
        problems.append(
            Problem(
                name,
                f"a value of {len(text.encode('utf-8')):,} bytes",
                f"expected at most {FILTER_VALUE_MAX_BYTES} bytes: one value of the filter column",
            )
        )
        return None
    return text


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, list | tuple | set | frozenset):
        return "list"
    if isinstance(value, bytes | bytearray) or _is_binary(value):
        return "binary value"
    return type(value).__name__


def _table_name(value: Any) -> str:
    if isinstance(value, str) and value.strip():
        return value  # as written, so that a stray newline shows
    return "<missing targetTableName>" if _is_blank(value) else _describe(value)


def _unreadable(raw: Mapping[str, Any]) -> dict[str, Problem]:
    """Attributes holding a value no JSON reader gives: bad DynamoDB numbers, NaN, Infinity."""
    found: dict[str, Problem] = {}
    for name, value in raw.items():
        bad = _first_unreadable(value)
        if isinstance(bad, UnreadableNumber) and not isinstance(bad.text, str | None):
            found[str(name)] = Problem(
                str(name),
                f"the DynamoDB value {_describe(bad.text)} ({bad.reason})",
                'expected a DynamoDB attribute value such as {"S": "text"} or {"N": "5"}',
            )
        elif isinstance(bad, UnreadableNumber):
            found[str(name)] = Problem(
                str(name),
                f"the DynamoDB number {json.dumps(str(bad.text))} ({bad.reason})",
                NUMBER_RULE,
            )
        elif bad is not None:
            found[str(name)] = Problem(str(name), str(bad), "expected a finite number")
    return found


def _sample_between(
    operator: FilterOperator | None, start: str | None, end: str | None
) -> tuple[str | None, str | None]:
    """The bounds of a between item written as the published sample writes it.

    Its task function (aws-samples/delta-data-loads-data-lakes,
    src/etlCreateReplicationTaskForTable/app.py) reads both bounds of a between filter
    from startvalue, "start,end", and no endvalue; any other item is left as it is.
    """
    if operator is not FilterOperator.BETWEEN or end is not None or start is None:
        return start, end
    parts = [part.strip() for part in start.split(",")]
    if len(parts) != 2 or not all(parts):
        return start, end
    return parts[0], parts[1]


def _first_unreadable(value: Any) -> Any:
    if isinstance(value, UnreadableNumber):
        return value
    if isinstance(value, float) and not math.isfinite(value):
        return value
    if isinstance(value, Mapping):
        value = list(value.values())
    if isinstance(value, list | tuple | set | frozenset):
        for element in value:
            bad = _first_unreadable(element)
            if bad is not None:
                return bad
    return None


def _merge(unreadable: dict[str, Problem], problems: list[Problem]) -> list[Problem]:
    """All problems, one "found nothing" less wherever the attribute has a better one."""
    named = {p.attribute for p in problems if p.found != "nothing"} | set(unreadable)
    kept = [p for p in problems if not (p.found == "nothing" and p.attribute in named)]
    return [*unreadable.values(), *kept]


def _size(item: ControllerItem) -> list[Problem]:
    """The item's definition must leave room for the run state under DynamoDB's item limit."""
    plain = {k: v for k, v in item.to_plain().items() if k not in RUN_STATE_ATTRIBUTES}
    sizes = {name: dynamodb_size(name, value) for name, value in plain.items()}
    total = sum(sizes.values())
    if total <= ITEM_DEFINITION_MAX_BYTES:
        return []
    largest = max(sizes, key=lambda name: sizes[name])
    return [
        Problem(
            largest,
            f"an item of {total:,} bytes as DynamoDB counts them ({largest}: "
            f"{sizes[largest]:,} bytes)",
            f"an item may hold at most {ITEM_DEFINITION_MAX_BYTES:,} bytes (attribute names "
            f"plus values): DynamoDB's {DYNAMODB_ITEM_MAX_BYTES // 1024} KB item limit less "
            f"{RUN_STATE_RESERVE_BYTES // 1024} KB kept for the run state deltaload records on it",
        )
    ]


def dynamodb_size(name: str, value: Any) -> int:
    """Bytes an attribute takes in DynamoDB: its UTF-8 name plus its value, per
    https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html"""
    return len(name.encode("utf-8")) + _value_size(value)


def _value_size(value: Any) -> int:
    if value is None or isinstance(value, bool):
        return 1
    if isinstance(value, str):
        return len(value.encode("utf-8"))
    if _is_binary(value):
        return len(value.value)
    if isinstance(value, bytes | bytearray):
        return len(value)
    if isinstance(value, int | float | Decimal):
        # Leading and trailing zeroes are trimmed; 1 byte per two significant digits, plus 1.
        digits = len(Decimal(str(value)).normalize().as_tuple().digits)
        return 1 + (digits + 1) // 2
    if isinstance(value, Mapping):
        return 3 + sum(1 + dynamodb_size(str(k), v) for k, v in value.items())
    if isinstance(value, list | tuple | set | frozenset):
        return 3 + sum(1 + _value_size(v) for v in value)
    return len(str(value).encode("utf-8"))


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
    """DynamoDB numbers come back as Decimal: make them int or float for JSON; binary values
    as bytes (boto3's Binary has a __str__ that returns bytes)."""
    if _is_binary(value):
        return value.value
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
