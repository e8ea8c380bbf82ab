"""The starter next to every storable invalid item of the corpus still starts the valid table.

A module of its own: the offline runtime is one per process, and ``test_bad_input`` keeps one
open for its whole module.
"""

from __future__ import annotations

from pathlib import Path

from deltaload.items import to_dynamodb
from tests.guarantees.conftest import Ticks, open_runtime, sqlite_orders
from tests.guarantees.test_bad_input import CORPUS, VALID, _table


def test_starter_starts_the_valid_tables_next_to_every_invalid_one(tmp_path: Path) -> None:
    orders = sqlite_orders(tmp_path / "source.sqlite")
    orders.insert(range(1, 6), updated_at=Ticks()())
    storable = [e for e in CORPUS if not e.get("dynamodb_refuses")]
    with open_runtime(tmp_path / "state", orders.url) as rt:
        dynamodb = rt.session.client("dynamodb")
        for entry in storable:
            item = entry["item"] if entry.get("dynamodb") else to_dynamodb(entry["item"])
            dynamodb.put_item(TableName=rt.controller_table, Item=item)
        good = {**VALID, "targetTableName": "good_next_to_bad", "sourceTable": orders.name}
        dynamodb.put_item(TableName=rt.controller_table, Item=to_dynamodb(good))
        result = rt.tick(now=Ticks()())
        assert [s["table"] for s in result.starter["started"]] == ["good_next_to_bad"]
        assert {i["table"] for i in result.starter["invalid"]} == {_table(e) for e in storable}
        [execution] = result.executions
        assert execution.status == "SUCCEEDED", execution
        assert rt.item("good_next_to_bad")["watermark"] == "5"
