"""The tick reports every table's freshness as CloudWatch metrics (EMF), active or not."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from deltaload import observability, starter
from deltaload.aws import Clients
from deltaload.settings import Settings
from deltaload.starter import start_tick
from tests.workflow.conftest import NOW, TICK_EVENT, put_item


def _emf(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith('{"_aws"')]


@pytest.fixture
def shared_metrics() -> Any:
    observability.metrics.clear_metrics()
    yield observability.metrics
    observability.metrics.clear_metrics()


def test_every_item_reports_its_freshness_and_stale_ones_are_counted(
    clients: Clients,
    tick_settings: Settings,
    capsys: pytest.CaptureFixture[str],
    shared_metrics: Any,
):
    put_item(
        clients,
        tick_settings,
        targetTableName="fresh",
        lastSucceededAt=(NOW - timedelta(minutes=5)).isoformat(),
        freshnesslimitseconds=3600,
    )
    put_item(  # switched off by mistake two hours ago
        clients,
        tick_settings,
        targetTableName="switched_off",
        activeflag="false",
        lastSucceededAt=(NOW - timedelta(hours=2)).isoformat(),
        freshnesslimitseconds=3600,
    )
    put_item(
        clients,
        tick_settings,
        targetTableName="stamped",
        filtercolumn="updated_at",
        filtercolumntype="timestamp",
        startvalue="2024-01-01 00:00:00",
        watermark="2024-05-01 11:00:00",
    )
    put_item(clients, tick_settings, targetTableName="broken", filteroperator="gt")
    start_tick(TICK_EVENT, clients, tick_settings, now=lambda: NOW)

    lines = _emf(capsys.readouterr().out)
    by_table = {line["table"]: line for line in lines if "table" in line}
    assert set(by_table) == {"fresh", "switched_off", "stamped"}  # broken: reported invalid
    assert by_table["fresh"]["SecondsSinceLastSuccess"] == [300.0]
    assert by_table["switched_off"]["SecondsSinceLastSuccess"] == [7200.0]
    assert by_table["stamped"]["WatermarkLagSeconds"] == [3600.0]
    assert "SecondsSinceLastSuccess" not in by_table["stamped"]
    for line in by_table.values():
        [directive] = line["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == observability.NAMESPACE
        assert [sorted(d) for d in directive["Dimensions"]] == [["service", "table"]]
    buffered = shared_metrics.metric_set
    assert buffered["StaleTables"]["Value"] == [1.0]


def test_a_manual_run_of_some_tables_reports_no_freshness(
    clients: Clients, tick_settings: Settings, monkeypatch: pytest.MonkeyPatch
):
    reported: list[Any] = []
    monkeypatch.setattr(starter, "freshness_metrics", reported.append)
    put_item(clients, tick_settings, targetTableName="orders")
    start_tick({**TICK_EVENT, "tables": ["orders"]}, clients, tick_settings, now=lambda: NOW)
    assert reported == []
    start_tick(TICK_EVENT, clients, tick_settings, now=lambda: NOW + timedelta(hours=1))
    [tables] = reported
    assert [t.table for t in tables] == ["orders"]
