"""An item's parallelload option, offline: DMS's parallel load of a window, rows once.

The item asks for range segments; the run's table mapping carries them in a table-settings
rule and the local engine loads each segment. Against SQLite, PostgreSQL and MariaDB.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from deltaload.local.runtime import LocalRuntime
from tests.integration.conftest import OrdersTable, Ticks
from tests.integration.test_offline_workflow import assert_clean, ids_of, published

RANGES = {"type": "ranges", "columns": ["row_id"], "boundaries": [[25], [50], [75]]}


def test_range_segments_land_every_row_exactly_once(
    orders: OrdersTable, offline: LocalRuntime, ticks: Ticks
) -> None:
    orders.insert(range(1, 101), datetime.now(UTC) - timedelta(hours=1))
    offline.put_item(orders.item("orders_parallel", parallelload=json.dumps(RANGES)))

    first = offline.tick(now=ticks())
    assert [e.status for e in first.executions] == ["SUCCEEDED"], first
    assert ids_of(published(offline, "orders_parallel")[first.executions[0].name]) == list(
        range(1, 101)
    )
    assert offline.item("orders_parallel")["watermark"] == "100"
    assert_clean(offline)

    # The next window (101..) lies above every boundary: the top segment holds it all.
    orders.insert(range(101, 121), datetime.now(UTC))
    second = offline.tick(now=ticks())
    runs = published(offline, "orders_parallel")
    assert ids_of(runs[second.executions[0].name]) == list(range(101, 121))
    every = sorted(i for rows in runs.values() for i in ids_of(rows))
    assert every == list(range(1, 121))  # each row once across both runs
    assert offline.item("orders_parallel")["watermark"] == "120"
    assert_clean(offline)


def test_a_rule_the_source_refuses_fails_the_run_and_says_why(
    orders: OrdersTable, offline: LocalRuntime, ticks: Ticks
) -> None:
    orders.insert(range(1, 11), datetime.now(UTC) - timedelta(hours=1))
    # Subpartitions are for Oracle sources only; the item cannot know the source's engine.
    option = {"type": "subpartitions-auto"}
    offline.put_item(orders.item("orders_subpartitions", parallelload=json.dumps(option)))

    result = offline.tick(now=ticks())
    assert [e.status for e in result.executions] == ["FAILED"], result
    item = offline.item("orders_subpartitions")
    assert "subpartitions are for Oracle sources only" in item["lastRunError"]
    assert "watermark" not in item
    assert published(offline, "orders_subpartitions") == {}
    assert_clean(offline)
