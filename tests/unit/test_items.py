"""Controller item validation: every rule, with errors a user can act on."""

from __future__ import annotations

import json
from typing import Any

import pytest

from deltaload.errors import InvalidItemError
from deltaload.items import (
    ControllerItem,
    FilterOperator,
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
