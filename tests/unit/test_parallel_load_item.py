"""An item's parallelload: validated with the attribute and what is wrong, emitted as DMS reads it.

DMS user guide, "Table and collection settings rules and operations":
https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Tasks.CustomizingTasks.TableMapping.SelectionTransformation.Tablesettings.html
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from deltaload.errors import InvalidItemError
from deltaload.items import from_dynamodb, parse_item, to_dynamodb
from deltaload.mapping import table_mapping
from deltaload.window import plan_window
from tests.orders import ORDERS

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
RANGES = {"type": "ranges", "columns": ["id"], "boundaries": [["1000"], ["2000"]]}


def problems(option: object) -> list[str]:
    with pytest.raises(InvalidItemError) as error:
        parse_item({**ORDERS, "parallelload": option})
    return [str(p) for p in error.value.problems]


def test_an_item_without_it_maps_as_before() -> None:
    item = parse_item(ORDERS)
    assert item.parallel_load == {}
    rules = table_mapping(item, plan_window(item, NOW))["rules"]
    assert [r["rule-type"] for r in rules] == ["selection"]
    assert "parallelload" not in item.to_plain()


def test_ranges_go_into_a_table_settings_rule_for_the_source_table() -> None:
    item = parse_item(
        {**ORDERS, "targetTableName": "orders_lake", "parallelload": json.dumps(RANGES)}
    )
    rules = table_mapping(item, plan_window(item, NOW))["rules"]
    settings = [r for r in rules if r["rule-type"] == "table-settings"]
    assert settings == [
        {
            "rule-type": "table-settings",
            "rule-id": "3",
            "rule-name": "parallel-load",
            "object-locator": {"schema-name": "sales", "table-name": "orders"},
            "parallel-load": RANGES,
        }
    ]
    assert len({r["rule-id"] for r in rules}) == len(rules)


def test_numbers_become_the_strings_dms_takes_and_a_dynamodb_map_reads_too() -> None:
    option = {"type": "ranges", "columns": ["id", "region"], "boundaries": [[10, "EU"], [20, "US"]]}
    item = parse_item(from_dynamodb(to_dynamodb({**ORDERS, "parallelload": option})))
    assert item.parallel_load["boundaries"] == [["10", "EU"], ["20", "US"]]
    again = parse_item(item.to_plain())
    assert again.parallel_load == item.parallel_load


@pytest.mark.parametrize(
    "option",
    [
        {"type": "partitions-auto"},
        {"type": "subpartitions-auto"},
        {"type": "partitions-list", "partitions": ["p2024", "p2025"]},
        {"type": "none"},
    ],
)
def test_the_other_types_are_passed_through(option: dict) -> None:
    item = parse_item({**ORDERS, "parallelload": option})
    rules = table_mapping(item, plan_window(item, NOW))["rules"]
    assert rules[-1]["parallel-load"] == option


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        ("{not json", "parallelload: found invalid JSON"),
        ('["ranges"]', "parallelload: found a list"),
        ({"type": "stripes"}, "parallelload.type: found 'stripes'; expected one of ranges,"),
        ({"type": "ranges", "boundaries": [["1"]]}, "parallelload.columns: found nothing"),
        (
            {"type": "ranges", "columns": [f"c{i}" for i in range(11)], "boundaries": [["1"] * 11]},
            "expected 1 to 10 column names",
        ),
        ({"type": "ranges", "columns": ["id", "id"], "boundaries": [["1", "2"]]}, "distinct"),
        (
            {"type": "ranges", "columns": ["id; drop"], "boundaries": [["1"]]},
            "parallelload.columns",
        ),
        ({"type": "ranges", "columns": ["id"]}, "parallelload.boundaries: found nothing"),
        (
            {"type": "ranges", "columns": ["id", "region"], "boundaries": [["1"]]},
            'parallelload.boundaries[1]: found ["1"]; expected an array of 2 value(s)',
        ),
        (
            {"type": "ranges", "columns": ["id"], "boundaries": [["2000"], ["1000"]]},
            "parallelload.boundaries: found 2000, 1000; expected ascending boundaries",
        ),
        ({"type": "ranges", "columns": ["id"], "boundaries": [["ten"]]}, "parallelload.boundaries"),
        ({"type": "partitions-auto", "columns": ["id"]}, "type partitions-auto takes nothing"),
        ({"type": "partitions-list"}, "partitions-list needs partitions"),
        ({"type": "partitions-list", "partitions": "p1"}, "parallelload.partitions"),
    ],
)
def test_a_bad_option_names_the_attribute_and_what_is_expected(
    option: object, expected: str
) -> None:
    found = problems(option)
    assert len(found) == 1 and expected in found[0], found
