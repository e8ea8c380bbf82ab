"""Controller item validation: every rule, with errors a user can act on."""

from __future__ import annotations

import contextlib
import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deltaload import tasksettings, values
from deltaload.errors import InvalidItemError
from deltaload.items import (
    FILTER_VALUE_MAX_BYTES,
    ITEM_DEFINITION_MAX_BYTES,
    KNOWN_ATTRIBUTES,
    ControllerItem,
    FilterOperator,
    SchemaPolicy,
    UnreadableNumber,
    dynamodb_size,
    from_dynamodb,
    load_items,
    parse_item,
    to_dynamodb,
)
from deltaload.values import ColumnKind


def problems_of(raw: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(InvalidItemError) as caught:
        parse_item(raw)
    return {p.attribute: f"{p.found} | {p.allowed}" for p in caught.value.problems}


def test_published_layout_item_is_valid_unchanged(published_item):
    item = parse_item(published_item)
    assert item.active is True
    assert item.filter_operator is FilterOperator.GTE
    assert item.filter_column_type is ColumnKind.INTEGER  # inferred from startvalue "1"
    assert item.output_s3_prefix == "datalake/"
    assert item.end_value is None
    assert item.replication_task_settings == {}


@pytest.mark.parametrize(
    ("flag", "expected"),
    [
        ("true", True),
        ("false", False),
        (True, True),
        (False, False),
        ("TRUE", True),
        (" False ", False),
    ],
)
def test_activeflag_accepts_strings_and_booleans(published_item, flag, expected):
    assert parse_item({**published_item, "activeflag": flag}).active is expected


@pytest.mark.parametrize("flag", ["yes", "1", 1, "active", "t"])
def test_activeflag_rejects_anything_else(published_item, flag):
    problems = problems_of({**published_item, "activeflag": flag})
    assert "activeflag" in problems
    assert '"true" or "false"' in problems["activeflag"]


def test_error_names_table_attribute_found_and_allowed(published_item):
    with pytest.raises(InvalidItemError) as caught:
        parse_item({**published_item, "filteroperator": "gt"})
    message = str(caught.value)
    assert "'orders_s3'" in message
    assert "filteroperator" in message
    assert '"gt"' in message
    assert "lte, ste, gte, eq, noteq, between, notbetween, null, notnull" in message


def test_all_problems_are_reported_at_once(published_item):
    raw = {
        **published_item,
        "activeflag": "maybe",
        "sourceSchema": "dw h",
        "filteroperator": "between",
        "startvalue": "10",
        "endvalue": "",
        "replication_task_settings": "{not json",
    }
    problems = problems_of(raw)
    assert set(problems) == {"activeflag", "sourceSchema", "endvalue", "replication_task_settings"}


@pytest.mark.parametrize(
    "missing",
    [
        "activeflag",
        "sourceSchema",
        "sourceTable",
        "targetTableName",
        "filtercolumn",
        "filteroperator",
        "ouputs3Prefix",
    ],
)
def test_required_attributes(published_item, missing):
    raw = dict(published_item)
    del raw[missing]
    problems = problems_of(raw)
    assert missing in problems
    assert "required" in problems[missing]


def test_missing_table_name_is_said_in_the_error(published_item):
    raw = dict(published_item)
    del raw["targetTableName"]
    with pytest.raises(InvalidItemError) as caught:
        parse_item(raw)
    assert caught.value.table == "<missing targetTableName>"


def test_misspelled_attribute_gets_a_suggestion(published_item):
    raw = {**published_item, "filtercolum": "row_id"}
    problems = problems_of(raw)
    assert "did you mean 'filtercolumn'?" in problems["filtercolum"]


def test_unknown_attribute_lists_the_allowed_ones(published_item):
    problems = problems_of({**published_item, "zzz": 1})
    assert "allowed attributes are activeflag" in problems["zzz"]


@pytest.mark.parametrize(
    ("attribute", "value"),
    [
        ("sourceSchema", 'dwh"; drop table x; --'),
        ("sourceTable", "orders rds"),
        ("sourceTable", "orders.rds"),
        ("sourceTable", "ordérs"),
        ("filtercolumn", "row'id"),
        ("filtercolumn", "1row"),
        ("targetTableName", "orders-s3"),
        ("targetTableName", "x" * 129),
        ("sourceSchema", ["dwh"]),
    ],
)
def test_identifiers_reject_quotes_spaces_unicode_and_sql(published_item, attribute, value):
    problems = problems_of({**published_item, attribute: value})
    assert attribute in problems
    assert "expected" in problems[attribute]


def test_identifiers_accept_oracle_style_names(published_item):
    item = parse_item({**published_item, "sourceSchema": "HR", "sourceTable": "EMP$HIST#1"})
    assert item.source_table == "EMP$HIST#1"


def test_operator_is_case_insensitive(published_item):
    assert parse_item({**published_item, "filteroperator": "GTE"}).filter_operator.value == "gte"


@pytest.mark.parametrize("operator", ["lte", "ste", "gte", "eq", "noteq"])
def test_single_value_operators_need_a_startvalue(published_item, operator):
    problems = problems_of({**published_item, "filteroperator": operator, "startvalue": ""})
    assert "needs a startvalue" in problems["startvalue"]


@pytest.mark.parametrize("operator", ["between", "notbetween"])
def test_range_operators_need_both_values(published_item, operator):
    problems = problems_of({**published_item, "filteroperator": operator})
    assert "needs an endvalue" in problems["endvalue"]


@pytest.mark.parametrize("operator", ["null", "notnull"])
def test_null_operators_take_no_value(published_item, operator):
    problems = problems_of({**published_item, "filteroperator": operator})
    assert "takes no value" in problems["startvalue"]
    item = parse_item({**published_item, "filteroperator": operator, "startvalue": ""})
    assert item.start_value is None


@pytest.mark.parametrize("operator", ["lte", "eq", "noteq"])
def test_endvalue_only_with_range_operators_and_gte(published_item, operator):
    problems = problems_of({**published_item, "filteroperator": operator, "endvalue": "9"})
    assert "takes no endvalue" in problems["endvalue"]


def test_endvalue_below_startvalue_is_rejected(published_item):
    raw = {**published_item, "filteroperator": "between", "startvalue": "10", "endvalue": "9"}
    assert "not below startvalue" in problems_of(raw)["endvalue"]


@pytest.mark.parametrize(
    ("kind", "good", "bad"),
    [
        ("integer", "42", "4.2"),
        ("integer", "-7", "9223372036854775808"),
        ("date", "2024-02-29", "2024-02-30"),
        ("date", "2024-01-01", "01/02/2024"),
        ("timestamp", "2024-01-01 10:00:00", "2024-13-01 10:00:00"),
        ("timestamp", "2024-01-01T10:00:00.123456+02:00", "yesterday"),
    ],
)
def test_values_must_match_the_column_type(published_item, kind, good, bad):
    assert parse_item({**published_item, "filtercolumntype": kind, "startvalue": good})
    problems = problems_of({**published_item, "filtercolumntype": kind, "startvalue": bad})
    assert f"the filter column is {kind}" in problems["startvalue"]


def test_unknown_column_type(published_item):
    problems = problems_of({**published_item, "filtercolumntype": "float"})
    assert "integer, timestamp, date, string" in problems["filtercolumntype"]


@pytest.mark.parametrize(
    ("start", "kind"),
    [
        ("100", ColumnKind.INTEGER),
        ("2024-01-01", ColumnKind.DATE),
        ("2024-01-01 00:00:00", ColumnKind.TIMESTAMP),
        ("2024-01-01T00:00:00Z", ColumnKind.TIMESTAMP),
        ("A-100", ColumnKind.STRING),
    ],
)
def test_column_type_is_inferred_from_startvalue(published_item, start, kind):
    assert parse_item({**published_item, "startvalue": start}).filter_column_type is kind


def test_timestamps_are_normalised_to_utc(published_item):
    raw = {**published_item, "startvalue": "2024-01-01T10:00:00.250000+02:00"}
    assert parse_item(raw).start_value == "2024-01-01 08:00:00.250000"


def test_nanosecond_fractions_that_would_be_lost_are_rejected(published_item):
    raw = {
        **published_item,
        "filtercolumntype": "timestamp",
        "startvalue": "2024-01-01 10:00:00.1234567",
    }
    assert "startvalue" in problems_of(raw)
    raw["startvalue"] = "2024-01-01 10:00:00.123456000"
    assert parse_item(raw).start_value == "2024-01-01 10:00:00.123456"


def test_numeric_values_from_dynamodb_are_accepted(published_item):
    from decimal import Decimal

    item = parse_item({**published_item, "startvalue": Decimal("5"), "safetylagseconds": 60})
    assert item.start_value == "5"
    assert item.safety_lag_seconds == 60


def test_safety_lag_must_be_a_non_negative_whole_number(published_item):
    assert "safetylagseconds" in problems_of({**published_item, "safetylagseconds": "-1"})
    assert "safetylagseconds" in problems_of({**published_item, "safetylagseconds": "soon"})


@pytest.mark.parametrize("prefix", ["s3://bucket/x", "/", "a//b", "a/../b", "with space", ""])
def test_output_prefix_rules(published_item, prefix):
    assert "ouputs3Prefix" in problems_of({**published_item, "ouputs3Prefix": prefix})


def test_output_prefix_is_normalised_to_one_trailing_slash(published_item):
    assert parse_item({**published_item, "ouputs3Prefix": "/lake/raw//"}).output_s3_prefix == (
        "lake/raw/"
    )


def test_correctly_spelled_prefix_alias(published_item):
    raw = dict(published_item)
    raw["outputS3Prefix"] = raw.pop("ouputs3Prefix")
    assert parse_item(raw).output_s3_prefix == "datalake/"


def test_both_prefix_spellings_must_agree(published_item):
    problems = problems_of({**published_item, "outputS3Prefix": "elsewhere"})
    assert "outputS3Prefix" in problems


@pytest.mark.parametrize("settings", ["{", "[]", "42", '"text"', "{'single': 'quotes'}"])
def test_task_settings_must_be_a_json_object(published_item, settings):
    problems = problems_of({**published_item, "replication_task_settings": settings})
    assert "JSON object" in problems["replication_task_settings"]


def test_task_settings_parse(published_item):
    raw = {**published_item, "replication_task_settings": '{"Logging": {"EnableLogging": false}}'}
    assert parse_item(raw).replication_task_settings == {"Logging": {"EnableLogging": False}}


def test_replication_mode_override(published_item):
    assert parse_item({**published_item, "replicationmode": "serverless"}).replication_mode
    assert "replicationmode" in problems_of({**published_item, "replicationmode": "lambda"})


def test_schema_changes_policy(published_item):
    assert parse_item(published_item).schema_changes is SchemaPolicy.COMPATIBLE
    item = parse_item({**published_item, "schemachanges": " Any "})
    assert item.schema_changes is SchemaPolicy.ANY
    assert item.to_plain()["schemachanges"] == "any"
    assert "schemachanges" not in parse_item(published_item).to_plain()
    problem = problems_of({**published_item, "schemachanges": "loose"})["schemachanges"]
    assert "compatible, any, none" in problem


def test_freshness_limit(published_item):
    assert parse_item(published_item).freshness_limit_seconds is None
    item = parse_item({**published_item, "freshnesslimitseconds": "3600"})
    assert item.freshness_limit_seconds == 3600
    assert item.to_plain()["freshnesslimitseconds"] == 3600
    for bad in ("0", "-5", "1.5", "an hour", 31622401, True):
        problems = problems_of({**published_item, "freshnesslimitseconds": bad})
        assert "from 1 to 31622400" in problems["freshnesslimitseconds"], bad


def test_watermark_must_have_the_column_type(published_item):
    assert parse_item({**published_item, "watermark": "10"}).watermark == "10"
    assert "watermark" in problems_of({**published_item, "watermark": "2024-01-01"})


def test_one_shot_watermark_is_only_loaded(published_item):
    raw = {**published_item, "filteroperator": "eq", "startvalue": "5"}
    assert parse_item({**raw, "watermark": "loaded"}).watermark == "loaded"
    assert "watermark" in problems_of({**raw, "watermark": "5"})


def test_not_an_object():
    with pytest.raises(InvalidItemError, match="expected a JSON object"):
        parse_item(["not", "an", "item"])  # type: ignore[arg-type]


def test_run_state_survives_a_round_trip(published_item):
    raw = {
        **published_item,
        "watermark": "10",
        "lastRunId": "r1",
        "lastRunRows": 5,
        "lastWindow": {"lower": "1", "upper": "10"},
    }
    item = parse_item(raw)
    plain = item.to_plain()
    assert plain["lastRunId"] == "r1"
    assert plain["lastWindow"] == {"lower": "1", "upper": "10"}
    assert parse_item(plain) == item


def test_plain_and_dynamodb_json_round_trip(published_item):
    item = parse_item({**published_item, "safetylagseconds": 30, "lastRunRows": 12})
    dynamo = to_dynamodb(item.to_plain())
    assert dynamo["targetTableName"] == {"S": "orders_s3"}
    assert dynamo["safetylagseconds"] == {"N": "30"}
    assert parse_item(from_dynamodb(dynamo)) == item


def test_load_items_accepts_every_file_shape(published_item):
    dynamo = to_dynamodb(published_item)
    for document in (published_item, [published_item], dynamo, [dynamo], {"Item": dynamo}):
        loaded = load_items(json.loads(json.dumps(document)))
        assert [parse_item(raw) for raw in loaded] == [parse_item(published_item)]


def test_item_is_immutable(published_item):
    item: ControllerItem = parse_item(published_item)
    with pytest.raises(ValueError):
        item.source_table = "other"  # type: ignore[misc]


# --- values that used to crash validation or slip through it ------------------------------------


@pytest.mark.parametrize("flag", ["Y", "N", "y", " n "])
def test_activeflag_accepts_the_published_samples_y_and_n(published_item, flag):
    expected = flag.strip().lower() == "y"
    item = parse_item({**published_item, "activeflag": flag})
    assert item.active is expected
    assert item.to_plain()["activeflag"] == ("true" if expected else "false")


def test_a_between_written_as_the_published_sample_writes_it(published_item):
    # Its task function reads both bounds from startvalue, "start,end", with no endvalue.
    item = parse_item({**published_item, "filteroperator": "between", "startvalue": "1, 10"})
    assert (item.start_value, item.end_value) == ("1", "10")
    plain = item.to_plain()
    assert (plain["startvalue"], plain["endvalue"]) == ("1", "10")


@pytest.mark.parametrize("start", ["1", "1,", "1,2,3"])
def test_a_between_without_both_bounds_still_needs_its_endvalue(published_item, start):
    problems = problems_of({**published_item, "filteroperator": "between", "startvalue": start})
    assert "needs an endvalue" in problems["endvalue"]


def test_a_comma_is_only_read_as_two_bounds_for_between(published_item):
    raw = {**published_item, "filteroperator": "gte", "startvalue": "a,b"}
    raw.pop("endvalue", None)
    item = parse_item({**raw, "filtercolumntype": "string"})
    assert (item.start_value, item.end_value) == ("a,b", None)


@pytest.mark.parametrize("lag", ["\u00b2", "\uff13\uff10\uff10", "1.5", 1.5, True, "99999999999"])
def test_safety_lag_takes_ascii_digits_within_thirty_days(published_item, lag):
    problems = problems_of({**published_item, "safetylagseconds": lag})
    assert "from 0 to 2592000 (30 days)" in problems["safetylagseconds"]


def test_safety_lag_bound_is_inclusive(published_item):
    assert parse_item({**published_item, "safetylagseconds": "2592000"}).safety_lag_seconds == (
        2592000
    )
    assert "safetylagseconds" in problems_of({**published_item, "safetylagseconds": 2592001})


@pytest.mark.parametrize(
    ("attribute", "value"),
    [
        ("startvalue", "0001-01-01 00:00:00+01:00"),
        ("endvalue", "9999-12-31 23:59:59-01:00"),
        ("startvalue", "0000-06-01 00:00:00"),
    ],
)
def test_timestamps_outside_the_utc_range_are_refused(published_item, attribute, value):
    raw = {**published_item, "filtercolumntype": "timestamp", "startvalue": "2024-01-01 00:00:00"}
    problems = problems_of({**raw, attribute: value})
    assert "9999-12-31 23:59:59.999999 once converted to UTC" in problems[attribute]


def test_timestamps_at_the_edges_of_the_range_are_accepted(published_item):
    raw = {**published_item, "filtercolumntype": "timestamp"}
    item = parse_item({**raw, "startvalue": "0001-01-01 00:00:00-01:00"})
    assert item.start_value == "0001-01-01 01:00:00"
    end = "9999-12-31 23:59:59.999999"
    item = parse_item({**raw, "startvalue": "9999-12-31 22:59:59+00:00", "endvalue": end})
    assert (item.start_value, item.end_value) == ("9999-12-31 22:59:59", end)


@pytest.mark.parametrize(
    ("attribute", "value"),
    [
        ("targetTableName", "t\n"),
        ("sourceSchema", "dwh\n"),
        ("sourceTable", "orders_rds\n"),
        ("filtercolumn", "row_id\n"),
        ("startvalue", "5\n"),
    ],
)
def test_a_trailing_newline_is_not_an_identifier_or_number(published_item, attribute, value):
    raw = {**published_item, "filtercolumntype": "integer", attribute: value}
    if attribute == "startvalue":  # values are trimmed like every text attribute
        assert parse_item(raw).start_value == "5"
        return
    assert attribute in problems_of(raw)


@pytest.mark.parametrize(
    ("value", "found"),
    [
        ({"value": 1}, 'an object {"value": 1}'),
        ([1, 2], "a list [1, 2]"),
        (True, "a boolean true"),
        (b"\x01", "a binary value"),
    ],
)
def test_filter_values_must_be_single_values(published_item, value, found):
    for attribute in ("startvalue", "endvalue", "watermark"):
        problems = problems_of({**published_item, "filteroperator": "between", attribute: value})
        assert problems[attribute].startswith(found), problems
        assert "expected a single value" in problems[attribute]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_refused(published_item, value):
    problems = problems_of({**published_item, "filtercolumntype": "string", "startvalue": value})
    assert list(problems) == ["startvalue"]
    assert "expected a finite number" in problems["startvalue"]


def test_description_must_be_text(published_item):
    assert "expected text" in problems_of({**published_item, "description": ["a"]})["description"]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("1e400", "out of DynamoDB's number range"),
        ("1e-131", "out of DynamoDB's number range"),
        ("abc", "not a number"),
        ("NaN", "not a number"),
        ("Infinity", "not a number"),
        ("1" * 39, "39 significant digits"),
        ("", "not a number"),
    ],
)
def test_dynamodb_numbers_are_checked_as_dynamodb_checks_them(published_item, text, reason):
    dynamo = to_dynamodb(published_item) | {"startvalue": {"N": text}}
    plain = from_dynamodb(dynamo)  # never raises
    assert isinstance(plain["startvalue"], UnreadableNumber)
    problems = problems_of(plain)
    assert list(problems) == ["startvalue"]  # and no "found nothing" on top
    assert reason in problems["startvalue"] and "38 significant digits" in problems["startvalue"]


@pytest.mark.parametrize(
    ("text", "value"),
    [("5", 5), ("-5.50", 5.5 * -1), ("1E+125", 10**125), ("0", 0), ("1" * 38, int("1" * 38))],
)
def test_dynamodb_numbers_in_range_are_read(text, value):
    assert from_dynamodb({"n": {"N": text}}) == {"n": value}


def test_bad_numbers_inside_maps_and_sets_are_reported(published_item):
    settings = {"M": {"Logging": {"M": {"EnableLogging": {"N": "abc"}}}}}
    dynamo = to_dynamodb(published_item) | {"replication_task_settings": settings}
    assert "replication_task_settings" in problems_of(from_dynamodb(dynamo))
    dynamo = to_dynamodb(published_item) | {"description": {"NS": ["1", "x"]}}
    assert "description" in problems_of(from_dynamodb(dynamo))


def test_filter_values_are_at_most_a_kilobyte(published_item):
    raw = {**published_item, "filtercolumntype": "string"}
    assert parse_item({**raw, "startvalue": "k" * FILTER_VALUE_MAX_BYTES}).start_value
    problems = problems_of({**raw, "startvalue": "\u00e9" * 600})  # 1,200 bytes in UTF-8
    assert "a value of 1,200 bytes" in problems["startvalue"]


def test_item_size_is_counted_as_dynamodb_counts_it():
    # Examples from "DynamoDB item sizes and formats" (CapacityUnitCalculations.html).
    assert dynamodb_size("name", "Jö") == 4 + 3
    assert dynamodb_size("n", 123) == 1 + 1 + 2  # three significant digits: two bytes, plus one
    assert dynamodb_size("n", 1000) == 1 + 1 + 1  # trailing zeroes are trimmed
    assert dynamodb_size("flag", True) == 4 + 1
    assert dynamodb_size("m", {"a": "x"}) == 1 + 3 + 1 + (1 + 1)
    assert dynamodb_size("l", ["x", None]) == 1 + 3 + (1 + 1) + (1 + 1)


def test_an_item_too_large_for_dynamodb_and_its_run_state_is_refused(published_item):
    room = ITEM_DEFINITION_MAX_BYTES - sum(
        dynamodb_size(k, v)
        for k, v in parse_item(published_item).to_plain().items()
        if k != "description"
    )
    fits = "d" * (room - len("description"))
    assert parse_item({**published_item, "description": fits}).description == fits
    problems = problems_of({**published_item, "description": fits + "d"})
    assert list(problems) == ["description"]
    assert f"at most {ITEM_DEFINITION_MAX_BYTES:,} bytes" in problems["description"]
    assert "400 KB item limit" in problems["description"]


# --- replication_task_settings against the DMS task-settings reference --------------------------


def _settings_problems(published_item, settings: Any) -> dict[str, str]:
    raw = {**published_item, "replication_task_settings": json.dumps(settings)}
    return {k.removeprefix("replication_task_settings: "): v for k, v in problems_of(raw).items()}


@pytest.mark.parametrize(
    ("settings", "setting", "says"),
    [
        ({"Logging": True}, "Logging", "a section is a JSON object"),
        ({"FullLoadSettings": "DO_NOTHING"}, "FullLoadSettings", "a section is a JSON object"),
        ({"ErrorBehavior": None}, "ErrorBehavior", "keep deltaload's defaults"),
        ({"ErrorBehaviour": {}}, "ErrorBehaviour", "did you mean 'ErrorBehavior'?"),
        ({"Whatever": {}}, "Whatever", "the DMS task-settings sections are TargetMetadata"),
        (
            {"FullLoadSettings": {"TargetTablePrepMode": "TRUNCATE_BEFORE_LOAD"}},
            "FullLoadSettings.TargetTablePrepMode",
            'requires "DO_NOTHING"',
        ),
        (
            {"TargetMetadata": {"TargetSchema": "lake"}},
            "TargetMetadata.TargetSchema",
            'requires ""',
        ),
        (
            {"ErrorBehavior": {"FailOnNoTablesCaptured": "true"}},
            "ErrorBehavior.FailOnNoTablesCaptured",
            "expected a JSON boolean",
        ),
        (
            {"ErrorBehavior": {"FailOnNoTablesCaptured": False}},
            "ErrorBehavior.FailOnNoTablesCaptured",
            "requires true",
        ),
        (
            {"FullLoadSettings": {"MaxFullLoadSubTasks": "8"}},
            "FullLoadSettings.MaxFullLoadSubTasks",
            "expected a JSON whole number",
        ),
        (
            {"FullLoadSettings": {"CommitRate": True}},
            "FullLoadSettings.CommitRate",
            "expected a JSON whole number",
        ),
        (
            {"Logging": {"EnableLogging": 1}},
            "Logging.EnableLogging",
            "expected a JSON boolean",
        ),
        (
            {"Logging": {"LogComponents": {"Id": "SOURCE_UNLOAD"}}},
            "Logging.LogComponents",
            "expected a JSON list",
        ),
        (
            {"ErrorBehavior": {"EventErrorPolicy": "LOG_ERROR"}},
            "ErrorBehavior.EventErrorPolicy",
            "expected one of IGNORE, STOP_TASK",
        ),
        (
            {"ErrorBehavior": {"DataErrorPolicy": "IGNORE_RECORD"}},
            "ErrorBehavior.DataErrorPolicy",
            'requires "STOP_TASK"',
        ),
        (
            {"Logging": {"CloudWatchLogStream": "s"}},
            "Logging.CloudWatchLogStream",
            "DMS refuses this setting when a task is created",
        ),
        (
            {"FailTaskWhenCleanTaskResourceFailed": 1},
            "FailTaskWhenCleanTaskResourceFailed",
            "expected a JSON bool",
        ),
    ],
)
def test_task_settings_are_checked_against_the_reference(published_item, settings, setting, says):
    problems = _settings_problems(published_item, settings)
    assert setting in problems, problems
    assert says in problems[setting]


def test_every_problem_of_the_task_settings_is_reported(published_item):
    bad = {"ErrorBehavior": {"DataErrorPolicy": "IGNORE_RECORD", "FailOnNoTablesCaptured": False}}
    problems = _settings_problems(published_item, bad)
    assert set(problems) == {
        "ErrorBehavior.DataErrorPolicy",
        "ErrorBehavior.FailOnNoTablesCaptured",
    }


def test_settings_deltaload_does_not_rely_on_stay_settable(published_item):
    settings = {
        # The LOB settings are the item's to choose, within the one LOB mode an S3 target
        # runs (limited; full and inline are refused: tests/unit/test_lob_settings.py).
        "TargetMetadata": {
            "SupportLobs": True,
            "FullLobMode": False,
            "LimitedSizeLobMode": True,
            "LobChunkSize": 64,
            "LobMaxSize": 65536,
            "InlineLobMaxSize": 0,
            "TargetSchema": "",
        },
        "FullLoadSettings": {"MaxFullLoadSubTasks": 4, "TargetTablePrepMode": "DO_NOTHING"},
        "ErrorBehavior": {"DataErrorPolicy": "STOP_TASK", "RecoverableErrorCount": 3},
        "Logging": {"EnableLogging": True, "LogComponents": [{"Id": "SOURCE_UNLOAD"}]},
        "BeforeImageSettings": None,
        "ValidationSettings": {"EnableValidation": False},
        "FailTaskWhenCleanTaskResourceFailed": False,
    }
    raw = {**published_item, "replication_task_settings": json.dumps(settings)}
    assert parse_item(raw).replication_task_settings == settings


def test_the_defaults_hold_every_pinned_setting():
    from deltaload.mapping import DEFAULT_TASK_SETTINGS

    for pin in tasksettings.PINNED:
        section = DEFAULT_TASK_SETTINGS.get(pin.section, {})
        assert section.get(pin.name, pin.value) == pin.value, pin.path
    assert set(DEFAULT_TASK_SETTINGS) <= set(tasksettings.DEFAULTED_SECTIONS)
    assert not tasksettings.check(DEFAULT_TASK_SETTINGS)


# --- fuzzing: parse_item only ever raises InvalidItemError --------------------------------------

_TEXT = st.text(st.characters(codec="utf-8"), max_size=12)
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=False, allow_infinity=False, places=None),
    _TEXT,
    st.from_regex(values._TIMESTAMP, fullmatch=True),
    st.from_regex(values._DATE, fullmatch=True),
    st.from_regex(values._INTEGER, fullmatch=True),
    st.sampled_from(["Y", "N", "true", "gte", "between", "integer", "timestamp", "\u00b2", "t\n"]),
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=6,
)
# published_item is only read, never changed, so sharing it between examples is safe.
_UNCHANGED_FIXTURE = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
_NAMES = st.sampled_from([*KNOWN_ATTRIBUTES, "x", "activeFlag", ""])


@settings(max_examples=400, deadline=None, suppress_health_check=_UNCHANGED_FIXTURE)
@given(changes=st.dictionaries(_NAMES, _JSON, max_size=6), drop=st.lists(_NAMES, max_size=3))
def test_fuzz_parse_item_only_raises_invalid_item_error(published_item, changes, drop):
    raw = {**published_item, "filtercolumntype": "timestamp", **changes}
    for name in drop:
        raw.pop(name, None)
    try:
        item = parse_item(raw)
    except InvalidItemError as error:
        assert error.problems and all(p.attribute for p in error.problems)
        return
    assert parse_item(item.to_plain()) == item  # what is accepted survives a round trip


_DESCRIPTORS = st.recursive(
    st.one_of(
        st.builds(lambda t: {"S": t}, _TEXT),
        st.builds(
            lambda t: {"N": t},
            st.one_of(_TEXT, st.from_regex(r"-?[0-9]{0,45}(e-?[0-9]{1,3})?", fullmatch=True)),
        ),
        st.builds(lambda b: {"BOOL": b}, st.booleans()),
        st.just({"NULL": True}),
        st.builds(lambda b: {"B": b}, st.binary(max_size=4)),
        st.builds(lambda t: {"NS": t}, st.lists(_TEXT, min_size=1, max_size=2)),
        st.builds(lambda t: {"SS": t}, st.lists(_TEXT, min_size=1, max_size=2)),
        st.builds(lambda t: {"X": t}, _TEXT),
        _JSON,
    ),
    lambda inner: (
        st.builds(lambda v: {"L": v}, st.lists(inner, max_size=2))
        | st.builds(lambda v: {"M": v}, st.dictionaries(_TEXT, inner, max_size=2))
    ),
    max_leaves=5,
)


@settings(max_examples=400, deadline=None, suppress_health_check=_UNCHANGED_FIXTURE)
@given(changes=st.dictionaries(_NAMES, _DESCRIPTORS, max_size=5))
def test_fuzz_dynamodb_items_never_crash_reading_or_validation(published_item, changes):
    dynamo = to_dynamodb(published_item) | changes
    plain = from_dynamodb(dynamo)  # never raises
    with contextlib.suppress(InvalidItemError):
        parse_item(plain)


@pytest.mark.parametrize(
    "attribute", ["startvalue", "targetTableName", "replication_task_settings"]
)
def test_values_nested_too_deeply_are_an_invalid_item(published_item, attribute):
    deep: Any = []
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(InvalidItemError, match="nested too deeply"):
        parse_item({**published_item, attribute: deep})


@pytest.mark.parametrize("kind", [ColumnKind.INTEGER, ColumnKind.DATE, ColumnKind.TIMESTAMP])
def test_the_largest_value_of_a_kind_has_no_successor(kind):
    with pytest.raises(ValueError, match="is the largest"):
        values.successor(kind, values.KIND_MAX[kind])
    below = values.predecessor(kind, values.KIND_MAX[kind])
    assert values.successor(kind, below) == values.KIND_MAX[kind]


# -- from_dynamodb converts as boto3's TypeDeserializer does ----------------------------------

_ATTRIBUTE_VALUES = st.recursive(
    st.one_of(
        st.fixed_dictionaries({"S": st.text(max_size=5)}),
        st.fixed_dictionaries({"N": st.sampled_from(["1", "-2.50", "1e3", "x", "1E+200", "0"])}),
        st.fixed_dictionaries({"B": st.one_of(st.binary(max_size=4), st.text(max_size=3))}),
        st.fixed_dictionaries({"BOOL": st.booleans()}),
        st.just({"NULL": True}),
        st.fixed_dictionaries({"SS": st.lists(st.text(max_size=3), max_size=3)}),
        st.fixed_dictionaries({"NS": st.lists(st.sampled_from(["1", "2.5", "z"]), max_size=3)}),
        st.fixed_dictionaries({"BS": st.lists(st.binary(max_size=3), max_size=3)}),
        st.sampled_from([{}, {"X": "1"}, {"s": "lower-case type"}, "not an object", 7]),
    ),
    lambda children: st.one_of(
        st.fixed_dictionaries({"L": st.lists(children, max_size=3)}),
        st.fixed_dictionaries({"M": st.dictionaries(st.text(max_size=3), children, max_size=3)}),
    ),
    max_leaves=8,
)


def _boto3_from_dynamodb(item: dict[str, Any]) -> dict[str, Any]:
    """from_dynamodb as it was written on boto3's TypeDeserializer (the reference)."""
    from boto3.dynamodb.types import TypeDeserializer

    from deltaload import items

    class Reference(TypeDeserializer):
        def _deserialize_n(self, value: Any) -> Any:
            return items.dynamodb_number(value)

        def _deserialize_ns(self, value: Any) -> Any:
            return [items.dynamodb_number(v) for v in value]

    reference = Reference()
    plain: dict[str, Any] = {}
    for name, value in item.items():
        try:
            plain[name] = items._plain(reference.deserialize(value))
        except (TypeError, ValueError, KeyError, AttributeError) as error:
            plain[name] = items.UnreadableNumber(value, f"not a DynamoDB attribute value ({error})")
    return plain


def _comparable(value: Any) -> Any:
    """Values with sets (whose order is arbitrary) and unreadable numbers made comparable."""
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items()}
    if isinstance(value, list):
        return sorted((_comparable(v) for v in value), key=repr)
    if type(value).__name__ == "UnreadableNumber":
        return ("unreadable", repr(value), value.reason)
    return value


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.text(max_size=3), _ATTRIBUTE_VALUES, max_size=4))
def test_from_dynamodb_converts_as_boto3s_deserializer_does(item: dict[str, Any]) -> None:
    from deltaload.items import from_dynamodb

    assert _comparable(from_dynamodb(item)) == _comparable(_boto3_from_dynamodb(item))


def test_key_columns(published_item):
    assert parse_item(published_item).key_columns == ()
    raw = {
        **published_item,
        "filtercolumn": "updated_at",
        "filtercolumntype": "timestamp",
        "startvalue": "2026-01-01 00:00:00",
    }
    item = parse_item({**raw, "keycolumns": " order_id , line_no "})
    assert item.key_columns == ("order_id", "line_no")
    assert item.to_plain()["keycolumns"] == "order_id,line_no"
    assert parse_item({**raw, "keycolumns": ""}).key_columns == ()
    for bad in (",", "order id", "a,,b", "a,A", "updated_at", "id,Updated_At", 5, ["order_id"]):
        problems = problems_of({**raw, "keycolumns": bad})
        assert "separated by commas" in problems["keycolumns"], bad
    one_shot = {**published_item, "filteroperator": "eq", "startvalue": "5", "keycolumns": "id"}
    assert "filteroperator gte" in problems_of(one_shot)["keycolumns"]
