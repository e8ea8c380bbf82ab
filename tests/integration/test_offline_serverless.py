"""A table switched to DMS Serverless by its item, end to end offline.

The local engine walks the replication through the seven start phases of the DMS user
guide ("AWS DMS Serverless components") before it loads; the run must publish exactly the
window and leave no replication config, endpoint or staging data behind.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from deltaload.local.runtime import LocalRuntime
from tests.integration.conftest import OrdersTable, Ticks
from tests.integration.test_offline_workflow import assert_clean, ids_of, published


def test_an_item_in_serverless_mode_loads_and_leaves_nothing_behind(
    orders: OrdersTable, offline: LocalRuntime, ticks: Ticks
) -> None:
    orders.insert(range(1, 41), datetime.now(UTC) - timedelta(hours=1))
    offline.put_item(orders.item("orders_sl", replicationmode="serverless"))

    first = offline.tick(now=ticks())
    assert [e.status for e in first.executions] == ["SUCCEEDED"], first
    assert ids_of(published(offline, "orders_sl")[first.executions[0].name]) == list(range(1, 41))
    assert offline.item("orders_sl")["watermark"] == "40"
    assert offline.history("orders_sl")[-1]["replicationMode"] == "serverless"
    dms = offline.session.client("dms")
    assert dms.describe_replication_configs()["ReplicationConfigs"] == []
    assert_clean(offline)
