"""A table-settings rule's parallel-load option: range segments, partitions, DMS's checks.

DMS user guide, "Table and collection settings rules and operations" (section "Using
parallel load for selected tables, views, and collections").
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from .conftest import SOURCES, make_sqlite, unique
from .helpers import SCHEMA, Workflow, ids, mappings, selection, source_filter

COLUMNS = [("id", "bigint"), ("region", "varchar"), ("amount", "decimal"), ("note", "text")]


def _rows(n: int) -> list[tuple[Any, ...]]:
    # Every seventh row has no region: segments on region leave it out, as DMS does.
    return [(i, None if i % 7 == 0 else "ABC"[i % 3], i * 1.5, f"s{i}") for i in range(1, n + 1)]


def parallel(table: str, option: dict[str, Any], rule_id: str = "2") -> dict[str, Any]:
    return {
        "rule-type": "table-settings",
        "rule-id": rule_id,
        "rule-name": "parallel",
        "object-locator": {"schema-name": SCHEMA, "table-name": table},
        "parallel-load": option,
    }


@pytest.fixture
def loaded(source_db, aws, dms):  # type: ignore[no-untyped-def]
    table = unique("parallel")
    source_db.create_table(table, COLUMNS, _rows(60))
    flow = Workflow(aws, dms)
    return flow, table, flow.source_endpoint(source_db), flow.instance()


def _load(flow: Workflow, table: str, source: str, instance: str, *rules: dict[str, Any]):
    folder = f"stage/{unique('run')}"
    target = flow.target_endpoint(folder)
    arn = flow.task(source, target, instance, mappings(*rules))
    final = flow.start_and_wait(arn)
    return final, flow.keys(f"{folder}/{SCHEMA}/{table}/"), flow.read_all(f"{folder}/"), arn


@pytest.mark.parametrize("source_db", SOURCES, indirect=True)
def test_range_segments_load_every_row_once_with_the_filter(loaded) -> None:  # type: ignore[no-untyped-def]
    flow, table, source, instance = loaded
    window = selection(table, [source_filter("id", {"filter-operator": "gte", "value": "5"})])
    option = {"type": "ranges", "columns": ["id"], "boundaries": [["10"], ["30"], ["50"]]}
    final, keys, rows, arn = _load(flow, table, source, instance, window, parallel(table, option))
    assert final["Status"] == "stopped", final.get("LastFailureMessage")
    assert ids(rows) == list(range(5, 61))  # each row once: no gap, no overlap at a boundary
    assert flow.table_stats(arn)[0]["FullLoadRows"] == 56
    assert keys and all(k.rsplit("/", 1)[1].startswith("LOAD") for k in keys)


@pytest.mark.parametrize("source_db", SOURCES, indirect=True)
def test_two_column_segments_follow_the_user_guides_where_clauses(loaded) -> None:  # type: ignore[no-untyped-def]
    flow, table, source, instance = loaded
    option = {
        "type": "ranges",
        "columns": ["region", "id"],
        "boundaries": [["A", "20"], ["B", "40"]],
    }
    final, _, rows, _ = _load(
        flow, table, source, instance, selection(table), parallel(table, option)
    )
    assert final["Status"] == "stopped", final.get("LastFailureMessage")
    # Rows without a region match no segment: "Records with null values aren't replicated".
    assert ids(rows) == [i for i in range(1, 61) if i % 7 != 0]


def test_segments_share_one_file_sequence(source_db, aws, dms) -> None:  # type: ignore[no-untyped-def]
    table = unique("parallel")
    source_db.create_table(table, COLUMNS, _rows(3000))
    flow = Workflow(aws, dms)
    source, instance = flow.source_endpoint(source_db), flow.instance()
    folder = f"stage/{unique('run')}"
    target = flow.target_endpoint(folder, MaxFileSize=1)
    option = {"type": "ranges", "columns": ["id"], "boundaries": [["1000"], ["2000"]]}
    arn = flow.task(source, target, instance, mappings(selection(table), parallel(table, option)))
    assert flow.start_and_wait(arn)["Status"] == "stopped"
    names = [k.rsplit("/", 1)[1] for k in flow.keys(f"{folder}/{SCHEMA}/{table}/")]
    assert names == [f"LOAD{n:08X}.parquet" for n in range(1, len(names) + 1)]
    assert len(names) > 3 and ids(flow.read_all(f"{folder}/")) == list(range(1, 3001))


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"type": "stripes"}, "parallel-load type 'stripes' is not one of"),
        ({"type": "ranges", "columns": ["id"]}, "ranges needs boundaries"),
        ({"type": "ranges", "columns": ["id"], "boundaries": [["1", "2"]]}, "boundary 1 must be"),
        (
            {"type": "ranges", "columns": [f"c{i}" for i in range(11)], "boundaries": [["1"]]},
            "1 to 10 columns",
        ),
        ({"type": "partitions-auto", "columns": ["id"]}, "does not take columns"),
        ({"type": "partitions-list"}, "partitions-list needs partitions"),
        ("ranges", "only the parallel-load option is supported locally"),
    ],
)
def test_a_malformed_rule_is_refused_at_create(loaded, option, message) -> None:  # type: ignore[no-untyped-def]
    flow, table, source, instance = loaded
    target = flow.target_endpoint("stage/bad")
    with pytest.raises(ClientError) as refused:
        flow.create_task(
            source, target, instance, mappings(selection(table), parallel(table, option))
        )
    assert refused.value.response["Error"]["Code"] == "InvalidParameterValueException"
    assert message in refused.value.response["Error"]["Message"]


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"type": "ranges", "columns": ["nope"], "boundaries": [["1"]]}, "'nope' do not exist"),
        ({"type": "subpartitions-auto"}, "subpartitions are for Oracle sources only"),
        # TEXT is a LOB (CLOB/NCLOB) to DMS: no segment boundaries on it.
        ({"type": "ranges", "columns": ["note"], "boundaries": [["s5"]]}, "cannot bound segments"),
    ],
)
def test_a_rule_the_table_cannot_take_fails_the_task(loaded, option, message) -> None:  # type: ignore[no-untyped-def]
    flow, table, source, instance = loaded
    final, _, _, arn = _load(
        flow, table, source, instance, selection(table), parallel(table, option)
    )
    assert final["Status"] == "failed"
    assert table in final["LastFailureMessage"]
    assert message in final["LastFailureMessage"]
    assert flow.table_stats(arn)[0]["TableState"] == "Table error"


def test_a_float_column_cannot_bound_segments(aws, dms, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "floats.sqlite"
    make_sqlite(path, "CREATE TABLE readings (id INTEGER, f REAL)", [(1, 0.5), (2, 2.5)])
    flow = Workflow(aws, dms)
    source = flow.source_endpoint_sqlite(path)
    option = {"type": "ranges", "columns": ["f"], "boundaries": [["1.5"]]}
    rules = (selection("readings"), parallel("readings", option))
    final, *_ = _load(flow, "readings", source, flow.instance(), *rules)
    assert final["Status"] == "failed"
    assert "DOUBLE, FLOAT, BLOB, CLOB and NCLOB" in final["LastFailureMessage"]


@pytest.mark.parametrize("source_db", SOURCES[:2], indirect=True)
def test_partitions_need_a_source_that_has_them(loaded) -> None:  # type: ignore[no-untyped-def]
    flow, table, source, instance = loaded
    option = {"type": "partitions-auto"}
    final, *_ = _load(flow, table, source, instance, selection(table), parallel(table, option))
    assert final["Status"] == "failed"
    assert "supports only the ranges type of parallel load" in final["LastFailureMessage"]


@pytest.mark.parametrize("source_db", SOURCES[2:], indirect=True)
def test_partitions_auto_on_mysql(source_db, aws, dms) -> None:  # type: ignore[no-untyped-def]
    flow = Workflow(aws, dms)
    source, instance = flow.source_endpoint(source_db), flow.instance()
    plain = unique("plain")
    source_db.create_table(plain, COLUMNS, _rows(5))
    final, *_ = _load(
        flow,
        plain,
        source,
        instance,
        selection(plain),
        parallel(plain, {"type": "partitions-auto"}),
    )
    assert final["Status"] == "failed" and "has no partitions" in final["LastFailureMessage"]

    split = unique("split")
    source_db.create_table(split, COLUMNS, _rows(40))
    with source_db.engine.begin() as conn:
        conn.exec_driver_sql(
            f"ALTER TABLE `{SCHEMA}`.`{split}` PARTITION BY RANGE (id) "
            "(PARTITION p1 VALUES LESS THAN (20), PARTITION p2 VALUES LESS THAN MAXVALUE)"
        )
    final, _, rows, _ = _load(
        flow,
        split,
        source,
        instance,
        selection(split),
        parallel(split, {"type": "partitions-auto"}),
    )
    assert final["Status"] == "stopped", final.get("LastFailureMessage")
    assert ids(rows) == list(range(1, 41))
    listed = {"type": "partitions-list", "partitions": ["p1", "p9"]}
    final, *_ = _load(flow, split, source, instance, selection(split), parallel(split, listed))
    assert final["Status"] == "failed" and "'p9' do not exist" in final["LastFailureMessage"]


def test_the_rule_is_part_of_the_mapping_dms_answers(loaded) -> None:  # type: ignore[no-untyped-def]
    flow, table, source, instance = loaded
    option = {"type": "ranges", "columns": ["id"], "boundaries": [["10"]]}
    text = mappings(selection(table), parallel(table, option))
    arn = flow.task(source, flow.target_endpoint("stage/echo"), instance, text)
    assert json.loads(flow.describe_task(arn)["TableMappings"]) == json.loads(text)
