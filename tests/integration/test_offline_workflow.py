"""The whole workflow offline: starter, state machine, handlers, local DMS, real Parquet.

Each test runs against SQLite, PostgreSQL and MariaDB and asserts what a user relies on:
the exact rows published per round (none missing, none twice), the watermark, the
manifest, no staging data and no DMS resources left behind, and the run history.
"""

from __future__ import annotations

import io
import json
import time
from datetime import UTC, datetime, timedelta

import pyarrow.parquet as pq

from deltaload.local.runtime import LocalRuntime, Source
from tests.integration.conftest import FAST, ROOT, OrdersTable, Ticks

STAGING = "_staging/"


def published(rt: LocalRuntime, target: str, schema: str = "dwh") -> dict[str, list[dict]]:
    """Rows of every published run of ``target``, by run id (only runs with a manifest)."""
    s3 = rt.session.client("s3")
    base = f"lake/{schema}/{target}/"
    manifests = {
        key.rsplit("/", 1)[1].removesuffix(".json"): json.loads(
            s3.get_object(Bucket=rt.bucket, Key=key)["Body"].read()
        )
        for key in rt.keys(base + "_manifests/")
    }
    runs: dict[str, list[dict]] = {}
    for key in rt.keys(base + "run="):
        run_id = key[len(base) + 4 :].split("/", 1)[0]
        assert run_id in manifests, f"{key} is published without a manifest"
        body = s3.get_object(Bucket=rt.bucket, Key=key)["Body"].read()
        runs.setdefault(run_id, []).extend(pq.read_table(io.BytesIO(body)).to_pylist())
    assert set(runs) <= set(manifests)
    for run_id, manifest in manifests.items():
        assert manifest["rows"] == len(runs.get(run_id, [])), manifest
    return runs


def dms_leftovers(rt: LocalRuntime) -> dict[str, list[str]]:
    """DMS resources (serverless configs included) that still exist, except the template's
    own source endpoint."""
    dms = rt.session.client("dms")
    source_arn = rt.template.arns["SourceEndpoint"]
    return {
        "tasks": [
            t["ReplicationTaskIdentifier"]
            for t in dms.describe_replication_tasks()["ReplicationTasks"]
        ],
        "instances": [
            i["ReplicationInstanceIdentifier"]
            for i in dms.describe_replication_instances()["ReplicationInstances"]
        ],
        "endpoints": [
            e["EndpointIdentifier"]
            for e in dms.describe_endpoints()["Endpoints"]
            if e["EndpointArn"] != source_arn
        ],
        "configs": [
            c["ReplicationConfigIdentifier"]
            for c in dms.describe_replication_configs()["ReplicationConfigs"]
        ],
    }


def assert_clean(rt: LocalRuntime) -> None:
    """No staging data and no DMS resource of any run left (the template's own excepted)."""
    assert rt.keys(STAGING) == [], f"staging data left behind: {rt.keys(STAGING)}"
    assert dms_leftovers(rt) == {"tasks": [], "instances": [], "endpoints": [], "configs": []}


def ids_of(rows: list[dict]) -> list[int]:
    return sorted(r["row_id"] for r in rows)


def test_initial_load_and_two_delta_rounds(
    orders: OrdersTable, offline: LocalRuntime, ticks: Ticks
):
    old = datetime.now(UTC) - timedelta(hours=2)
    orders.insert(range(1, 101), old)
    offline.put_item(orders.item("orders_s3"))

    first = offline.tick(now=ticks())
    assert [e.status for e in first.executions] == ["SUCCEEDED"], first
    runs = published(offline, "orders_s3")
    assert list(runs) == [first.executions[0].name]
    assert ids_of(next(iter(runs.values()))) == list(range(1, 101))
    assert offline.item("orders_s3")["watermark"] == "100"
    assert_clean(offline)

    orders.insert(range(101, 131), datetime.now(UTC))
    orders.update([3, 50, 100], "SHIPPED", datetime.now(UTC))  # below the watermark: not reloaded
    second = offline.tick(now=ticks())
    assert [e.status for e in second.executions] == ["SUCCEEDED"]
    runs = published(offline, "orders_s3")
    assert ids_of(runs[second.executions[0].name]) == list(range(101, 131))
    assert offline.item("orders_s3")["watermark"] == "130"
    assert_clean(offline)

    orders.insert(range(131, 136), datetime.now(UTC))
    third = offline.tick(now=ticks())
    runs = published(offline, "orders_s3")
    assert ids_of(runs[third.executions[0].name]) == list(range(131, 136))
    all_ids = [i for rows in runs.values() for i in ids_of(rows)]
    assert sorted(all_ids) == list(range(1, 136))  # every row once, none twice
    assert offline.item("orders_s3")["watermark"] == "135"
    assert_clean(offline)

    history = offline.history("orders_s3")
    assert [(h["status"], h["rows"], h["watermark"]) for h in history] == [
        ("SUCCEEDED", 100, "100"),
        ("SUCCEEDED", 30, "130"),
        ("SUCCEEDED", 5, "135"),
    ]
    assert offline.item("orders_s3")["lastRunStatus"] == "SUCCEEDED"
    assert "lockOwner" not in offline.item("orders_s3")


def test_updates_are_captured_by_an_updated_at_item(
    orders: OrdersTable, offline: LocalRuntime, ticks: Ticks
):
    orders.insert(range(1, 21), datetime.now(UTC) - timedelta(hours=1))
    offline.put_item(
        orders.item(
            "changes_s3",
            filtercolumn="updated_at",
            filtercolumntype="timestamp",
            startvalue="2000-01-01 00:00:00",
            safetylagseconds=0,
        )
    )
    first = offline.tick(now=ticks())
    assert ids_of(published(offline, "changes_s3")[first.executions[0].name]) == list(range(1, 21))

    orders.update([2, 4], "PAID", datetime.now(UTC))
    orders.insert(range(21, 24), datetime.now(UTC))
    time.sleep(1.05)  # the window ends at the last whole second
    second = offline.tick(now=ticks())
    rows = published(offline, "changes_s3")[second.executions[0].name]
    assert ids_of(rows) == [2, 4, 21, 22, 23]
    assert {r["row_id"]: r["status"] for r in rows}[2] == "PAID"
    watermark = offline.item("changes_s3")["watermark"]
    assert watermark.endswith(".999999")
    assert_clean(offline)


def test_empty_delta_is_a_success_that_keeps_the_watermark(
    orders: OrdersTable, offline: LocalRuntime, ticks: Ticks
):
    orders.insert(range(1, 6), datetime.now(UTC) - timedelta(hours=1))
    offline.put_item(orders.item("orders_s3"))
    offline.tick(now=ticks())
    again = offline.tick(now=ticks())
    assert [e.status for e in again.executions] == ["SUCCEEDED"]
    assert offline.item("orders_s3")["watermark"] == "5"
    assert offline.history("orders_s3")[-1]["rows"] == 0
    assert_clean(offline)


def test_invalid_item_is_reported_and_never_started(
    orders: OrdersTable, offline: LocalRuntime, ticks: Ticks
):
    orders.insert(range(1, 6), datetime.now(UTC))
    offline.put_item(orders.item("orders_s3", filteroperator="gt"))  # written by hand, unchecked
    result = offline.tick(now=ticks())
    assert result.executions == []
    [invalid] = result.starter["invalid"]
    assert invalid["table"] == "orders_s3"
    assert any("filteroperator" in e for e in invalid["errors"])
    assert offline.keys("lake/") == []
    assert "watermark" not in offline.item("orders_s3")
    assert_clean(offline)


def test_task_failing_mid_load_publishes_nothing_and_the_rerun_loads_the_window(
    orders: OrdersTable, offline: LocalRuntime, ticks: Ticks
):
    orders.insert(range(1, 51), datetime.now(UTC) - timedelta(hours=1))
    offline.put_item(orders.item("orders_s3"))
    offline.dms.faults.fail_after_rows("*", 10)
    failed = offline.tick(now=ticks())
    assert [e.status for e in failed.executions] == ["FAILED"]
    item = offline.item("orders_s3")
    assert "watermark" not in item
    assert item["lastRunStatus"] == "FAILED"
    assert item["lastRunError"]
    assert "lockOwner" not in item
    assert published(offline, "orders_s3") == {}
    assert offline.history("orders_s3")[-1]["status"] == "FAILED"
    assert any("orders_s3" in n["message"] for n in offline.notifications())
    assert_clean(offline)

    rerun = offline.tick(now=ticks())
    assert [e.status for e in rerun.executions] == ["SUCCEEDED"]
    assert ids_of(published(offline, "orders_s3")[rerun.executions[0].name]) == list(range(1, 51))
    assert offline.item("orders_s3")["watermark"] == "50"


def test_a_held_lock_skips_the_run_and_changes_nothing(
    orders: OrdersTable, offline: LocalRuntime, ticks: Ticks
):
    orders.insert(range(1, 6), datetime.now(UTC))
    expires = int(time.time()) + 3600
    offline.put_item(
        {
            **orders.item("orders_s3"),
            "lockOwner": "someone-else",
            "lockExpiresAt": expires,
            "watermark": "2",
        }
    )
    # The starter spends no slot on it: the table is deferred while the lock holds.
    result = offline.tick(now=ticks())
    assert result.executions == []
    (deferred,) = result.starter["deferred"]
    assert deferred["table"] == "orders_s3"
    assert deferred["reason"].startswith("run someone-else is still going (lock held until")
    # A run started anyway (by hand, or by a starter that raced the lock) is skipped.
    run_id = "orders_s3-manual"
    offline.session.client("stepfunctions").start_execution(
        stateMachineArn=offline.state_machine_arn,
        name=run_id,
        input=json.dumps({"table": "orders_s3", "runId": run_id}),
    )
    (execution,) = offline.wait_for([offline.execution_arn(run_id)])
    assert execution.status == "SUCCEEDED"
    item = offline.item("orders_s3")
    assert (item["watermark"], item["lockOwner"]) == ("2", "someone-else")
    assert offline.keys("lake/") == []
    assert_clean(offline)


def test_state_persists_between_runtimes(orders: OrdersTable, tmp_path, ticks: Ticks):

    orders.insert(range(1, 11), datetime.now(UTC) - timedelta(hours=1))
    source = Source.from_url(orders.url, schema="dwh")
    state = tmp_path / "persisted"
    with LocalRuntime(ROOT, state, source, timing=FAST) as first:
        first.put_item(orders.item("orders_s3"))
        first.tick(now=ticks())
    files = list((state / "s3").rglob("*.parquet"))
    assert len(files) == 1 and pq.read_table(files[0]).num_rows == 10
    orders.insert(range(11, 14), datetime.now(UTC))
    with LocalRuntime(ROOT, state, source, timing=FAST) as second:
        assert second.item("orders_s3")["watermark"] == "10"
        second.tick(now=ticks())
        assert sorted(
            i for rows in published(second, "orders_s3").values() for i in ids_of(rows)
        ) == list(range(1, 14))
    assert len(list((state / "s3").rglob("*.parquet"))) == 2


def test_runs_started_in_one_second_keep_their_own_ids_and_records(orders: OrdersTable, tmp_path):
    from deltaload.names import tick

    def command() -> LocalRuntime:
        """One `deltaload` command's runtime on the test's state folder."""
        return LocalRuntime(
            ROOT,
            tmp_path / "folder",
            Source.from_url(orders.url, schema="dwh"),
            timing=FAST,
            environment={"POLL_INITIAL_SECONDS": "0", "POLL_MAX_SECONDS": "1"},
        )

    orders.insert(range(1, 11), datetime.now(UTC) - timedelta(hours=2))
    # An earlier command recorded runs in this second and the next few (run ids are
    # ticks): the next command starts within them.
    now = datetime.now(UTC)
    taken = [tick(now + timedelta(seconds=s)) for s in range(4)]
    with command() as earlier:
        earlier.put_item(orders.item("orders_s3"))
        for taken_tick in taken:
            earlier.session.client("dynamodb").put_item(
                TableName=earlier.template.physical_ids["RunHistoryTable"],
                Item={"targetTableName": {"S": "other"}, "runId": {"S": f"other-{taken_tick}"}},
            )

    with command() as rt:
        first = rt.tick()
        second = rt.tick()  # at once, in the same second as the first if it was quick

        names = [e.name for r in (first, second) for e in r.executions]
        assert [e.status for r in (first, second) for e in r.executions] == ["SUCCEEDED"] * 2
        assert len(set(names)) == 2, names
        assert all(n.rsplit("-", 1)[1] > taken[-1] for n in names), (names, taken)
        records = rt.session.client("dynamodb").query(
            TableName=rt.template.physical_ids["RunHistoryTable"],
            KeyConditionExpression="targetTableName = :t",
            ExpressionAttributeValues={":t": {"S": "orders_s3"}},
        )["Items"]
        assert sorted(r["runId"]["S"] for r in records) == sorted(names)
