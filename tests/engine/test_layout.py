"""DMS's S3 layout: folders, LOAD file names, splitting at MaxFileSize, nothing for no rows."""

from __future__ import annotations

import json
import re

import pyarrow as pa

from .conftest import make_sqlite, unique
from .helpers import Workflow, ids, mappings, rename_table, selection, source_filter

ORDERS_DDL = (
    "CREATE TABLE orders (row_id INTEGER, customer_id INTEGER, amount NUMERIC(12,2), "
    "status TEXT, note TEXT, created_at TIMESTAMP, updated_at TIMESTAMP)"
)


def _orders(count: int) -> list[tuple[object, ...]]:
    return [
        (
            i,
            i % 97,
            f"{i % 1000}.{i % 100:02d}",
            "open" if i % 3 else "shipped",
            f"order note {i} " + "x" * (i % 13),
            f"2024-01-{1 + i % 28:02d} 10:00:{i % 60:02d}",
            f"2024-02-{1 + i % 28:02d} 11:00:{i % 60:02d}.{i % 1000:03d}",
        )
        for i in range(1, count + 1)
    ]


def _setup(aws, dms, tmp_path, rows: int = 50):  # type: ignore[no-untyped-def]
    make_sqlite(tmp_path / "source.sqlite", ORDERS_DDL, _orders(rows))
    flow = Workflow(aws, dms)
    source = flow.dms.create_endpoint(
        EndpointIdentifier="src",
        EndpointType="source",
        EngineName="sqlite",
        DatabaseName=str(tmp_path / "source.sqlite"),
    )["Endpoint"]["EndpointArn"]
    return flow, source, flow.instance()


def test_small_max_file_size_splits_into_hex_numbered_files(aws, dms, tmp_path) -> None:  # type: ignore[no-untyped-def]
    flow, source, instance = _setup(aws, dms, tmp_path, rows=3000)
    target = flow.target_endpoint("stage/split", MaxFileSize=4)
    task = flow.task(source, target, instance, mappings(selection("orders")))
    final = flow.start_and_wait(task)
    assert final["Status"] == "stopped"
    keys = flow.keys("stage/split/")
    assert len(keys) > 16, keys  # enough files to see LOAD0000000A and LOAD00000010
    names = [k.rsplit("/", 1)[1] for k in keys]
    assert names == [f"LOAD{n:08X}.parquet" for n in range(1, len(keys) + 1)]
    assert "LOAD0000000A.parquet" in names and "LOAD00000010.parquet" in names
    assert all(k.startswith("stage/split/dwh/orders/") for k in keys)
    sizes = [o["Size"] for o in flow.s3.list_objects_v2(Bucket="lake")["Contents"]]
    assert max(sizes) < 3 * 4 * 1024  # split close to the 4 KB limit
    counts = [flow.read(k).num_rows for k in keys]
    assert sum(counts) == 3000 == flow.table_stats(task)[0]["FullLoadRows"]
    assert ids(flow.read_all("stage/split/"), "row_id") == list(range(1, 3001))


def test_default_max_file_size_writes_one_file(aws, dms, tmp_path) -> None:  # type: ignore[no-untyped-def]
    flow, source, instance = _setup(aws, dms, tmp_path, rows=3000)
    target = flow.target_endpoint("stage/one")
    task = flow.task(source, target, instance, mappings(selection("orders")))
    assert flow.start_and_wait(task)["Status"] == "stopped"
    assert flow.keys("stage/one/") == ["stage/one/dwh/orders/LOAD00000001.parquet"]


def test_empty_result_writes_no_object_but_completes(aws, dms, tmp_path) -> None:  # type: ignore[no-untyped-def]
    flow, source, instance = _setup(aws, dms, tmp_path)
    target = flow.target_endpoint("stage/empty")
    none = source_filter("row_id", {"filter-operator": "gte", "value": "100000"})
    task = flow.task(source, target, instance, mappings(selection("orders", [none])))
    final = flow.start_and_wait(task)
    assert final["Status"] == "stopped"
    assert final["StopReason"] == "Stop Reason FULL_LOAD_ONLY_FINISHED"
    assert flow.keys("stage/") == []
    [stats] = flow.table_stats(task)
    assert (stats["FullLoadRows"], stats["TableState"]) == (0, "Table completed")


def test_rename_and_timestamp_column(aws, dms, tmp_path) -> None:  # type: ignore[no-untyped-def]
    flow, source, instance = _setup(aws, dms, tmp_path, rows=10)
    target = flow.target_endpoint(
        "stage/run-1", TimestampColumnName="dms_loaded_at", ParquetVersion="parquet-2-0"
    )
    rules = mappings(
        selection("orders"),
        rename_table("orders", "orders_curated"),
        {
            "rule-type": "transformation",
            "rule-id": "91",
            "rule-name": "rename-schema",
            "rule-target": "schema",
            "object-locator": {"schema-name": "dwh"},
            "rule-action": "rename",
            "value": "sales",
        },
    )
    task = flow.task(source, target, instance, rules)
    assert flow.start_and_wait(task)["Status"] == "stopped"
    [key] = flow.keys("stage/run-1/")
    assert key == "stage/run-1/sales/orders_curated/LOAD00000001.parquet"
    loaded = flow.read(key)
    assert loaded.schema.field("dms_loaded_at").type == pa.string()
    stamps = loaded.column("dms_loaded_at").to_pylist()
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}", s) for s in stamps)
    # Table statistics name the source table.
    [stats] = flow.table_stats(task)
    assert (stats["SchemaName"], stats["TableName"], stats["FullLoadRows"]) == ("dwh", "orders", 10)


def test_wildcards_exclude_and_schema_alias(aws, dms, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "multi.sqlite"
    for name in ("orders_2023", "orders_2024", "customers"):
        make_sqlite(path, f"CREATE TABLE {name} (id INTEGER)", [(1,), (2,)])
    flow = Workflow(aws, dms)
    source = flow.source_endpoint_sqlite(path, ExtraConnectionAttributes="schemaName=shop")
    target = flow.target_endpoint("stage/wild")
    rules = mappings(
        selection("orders%", schema="sh_p"),
        selection("orders_2023", schema="shop", rule_id="2", action="exclude"),
        selection("cust%", schema="%", rule_id="3"),
    )
    task = flow.task(source, target, flow.instance(), rules)
    assert flow.start_and_wait(task)["Status"] == "stopped"
    assert [k.rsplit("/", 1)[0] for k in flow.keys("stage/wild/")] == [
        "stage/wild/shop/customers",
        "stage/wild/shop/orders_2024",
    ]
    assert sorted(s["TableName"] for s in flow.table_stats(task)) == ["customers", "orders_2024"]


def test_secret_with_local_url_extension(aws, dms, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "via-url.sqlite"
    make_sqlite(path, "CREATE TABLE items (id INTEGER)", [(1,), (2,), (3,)])
    flow = Workflow(aws, dms)
    secret = aws.client("secretsmanager").create_secret(
        Name=unique("src"), SecretString=json.dumps({"url": f"sqlite:///{path}"})
    )["ARN"]
    source = dms.create_endpoint(
        EndpointIdentifier="src-url",
        EndpointType="source",
        EngineName="postgres",
        DatabaseName="ignored-for-sqlite",
        PostgreSQLSettings={"SecretsManagerSecretId": secret},
    )["Endpoint"]
    assert "Password" not in json.dumps(source)
    target = flow.target_endpoint("stage/url")
    task = flow.task(source["EndpointArn"], target, flow.instance(), mappings(selection("items")))
    assert flow.start_and_wait(task)["Status"] == "stopped"
    assert ids(flow.read_all("stage/url/dwh/items/")) == [1, 2, 3]
