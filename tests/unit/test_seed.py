"""The shipped controller seed and JSON Schema agree with the item model."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from deltaload.errors import InvalidItemError
from deltaload.items import (
    KNOWN_ATTRIBUTES,
    FilterOperator,
    SchemaPolicy,
    from_dynamodb,
    parse_item,
)
from deltaload.values import ColumnKind

SEED = Path(__file__).resolve().parents[2] / "controller_seed"
SCHEMA = json.loads((SEED / "controller_item.schema.json").read_text())


def test_seed_forms_describe_the_same_valid_item():
    plain = json.loads((SEED / "orders.json").read_text())
    dynamo = json.loads((SEED / "orders.dynamodb.json").read_text())
    assert parse_item(plain) == parse_item(from_dynamodb(dynamo))
    item = parse_item(plain)
    assert (item.source_schema, item.source_table, item.target_table_name) == (
        "dwh",
        "orders_rds",
        "orders_s3",
    )
    assert (item.filter_column, item.filter_operator.value) == ("row_id", "gte")


def test_seed_validates_against_the_schema():
    jsonschema.validate(json.loads((SEED / "orders.json").read_text()), SCHEMA)


def test_schema_lists_exactly_the_known_attributes_and_enums():
    assert set(SCHEMA["properties"]) == set(KNOWN_ATTRIBUTES)
    assert SCHEMA["properties"]["filteroperator"]["enum"] == [op.value for op in FilterOperator]
    assert set(SCHEMA["properties"]["filtercolumntype"]["enum"]) == {k.value for k in ColumnKind}
    assert SCHEMA["properties"]["schemachanges"]["enum"] == [p.value for p in SchemaPolicy]


def test_schema_rejects_what_the_model_rejects():
    plain = json.loads((SEED / "orders.json").read_text())
    for bad in ({"filteroperator": "gt"}, {"filtercolum": "x"}, {"sourceTable": "a b"}):
        errors = list(jsonschema.Draft202012Validator(SCHEMA).iter_errors({**plain, **bad}))
        assert errors, bad


def _schema_accepts(item: dict) -> bool:
    return not list(jsonschema.Draft202012Validator(SCHEMA).iter_errors(item))


def _model_accepts(item: dict) -> bool:
    try:
        parse_item(item)
    except InvalidItemError:
        return False
    return True


@pytest.mark.parametrize(
    "change",
    [
        {"activeflag": "Y"},
        {"activeflag": "n"},
        {"activeflag": "yes"},
        {"targetTableName": "orders_s3\n"},
        {"sourceTable": "orders_rds\n"},
        {"filtercolumn": "row_id\n"},
        {"safetylagseconds": 0},
        {"safetylagseconds": "2592000"},
        {"safetylagseconds": 2592000},
        {"safetylagseconds": 2592001},
        {"safetylagseconds": "2592001"},
        {"safetylagseconds": "2599999"},
        {"safetylagseconds": "99999999999"},
        {"safetylagseconds": "\u00b2"},
        {"safetylagseconds": "300\n"},
        {"freshnesslimitseconds": 3600},
        {"freshnesslimitseconds": "31622400"},
        {"freshnesslimitseconds": 31622401},
        {"freshnesslimitseconds": "31622401"},
        {"freshnesslimitseconds": 0},
        {"freshnesslimitseconds": "0"},
        {"freshnesslimitseconds": "1.5"},
        {"keycolumns": "order_id, line_no"},
        {"keycolumns": "order_id\n"},
        {"keycolumns": "a b"},
        {"keycolumns": "x,"},
        {"keycolumns": 5},
        {"startvalue": {"value": 1}},
        {"startvalue": [1]},
        {"startvalue": "k" * 1025, "filtercolumntype": "string"},
    ],
)
def test_schema_and_model_agree(change):
    item = {**json.loads((SEED / "orders.json").read_text()), **change}
    assert _schema_accepts(item) == _model_accepts(item), change
