"""The freshness alarm and the dashboard watch the metrics the functions really emit."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from cfn_tools import load_yaml

from deltaload import observability
from deltaload.freshness import Freshness
from tests.template.test_template import TEMPLATE_PATH

SEARCH = re.compile(r"SEARCH\('\{(?P<schema>[^}]*)\} MetricName=\"(?P<metric>\w+)\"'")


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_yaml(TEMPLATE_PATH.read_text())


def _environment(template: dict[str, Any]) -> dict[str, str]:
    return template["Globals"]["Function"]["Environment"]["Variables"]


def _emitted(capsys: pytest.CaptureFixture[str]) -> dict[str, set[str]]:
    """Metric name -> its dimension names, as the package writes them (the namespace
    comes from POWERTOOLS_METRICS_NAMESPACE, which the template sets for every function)."""
    observability.metrics.clear_metrics()
    observability.run_metrics("orders", rows=1, files=1, size=1, seconds=1.0)
    observability.failure_metric("orders")
    observability.freshness_metrics([Freshness("orders", 10.0, 20.0, 5)])
    found: dict[str, set[str]] = {}
    for line in capsys.readouterr().out.splitlines():
        if not line.startswith('{"_aws"'):
            continue
        [directive] = json.loads(line)["_aws"]["CloudWatchMetrics"]
        for metric in directive["Metrics"]:
            found[metric["Name"]] = set(directive["Dimensions"][0])
    assert observability.metrics.metric_set["StaleTables"]["Value"] == [1.0]
    observability.metrics.clear_metrics()
    return found


def _body(template: dict[str, Any]) -> dict[str, Any]:
    text = template["Resources"]["LoadDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    placeholders = set(re.findall(r"\$\{([^}]+)\}", text))
    resources = template["Resources"]
    for name in placeholders - {"AWS::Region"}:
        logical_id, attribute = name.split(".")
        assert logical_id in resources and attribute == "Arn", name
    return json.loads(re.sub(r"\$\{[^}]+\}", "x", text))


def test_dashboard_plots_rows_duration_failures_and_freshness_per_table(
    template: dict[str, Any], capsys: pytest.CaptureFixture[str]
):
    emitted = _emitted(capsys)
    widgets = _body(template)["widgets"]
    plotted = {}
    for widget in widgets:
        for row in widget["properties"].get("metrics", []):
            for entry in row:
                match = SEARCH.match(entry["expression"]) if isinstance(entry, dict) else None
                if match:
                    plotted[match["metric"]] = set(match["schema"].split(","))
    wanted = ["RowsLoaded", "RunDuration", "RunFailures", "SecondsSinceLastSuccess"]
    assert {*wanted, "WatermarkLagSeconds"} <= set(plotted)
    namespace = _environment(template)["POWERTOOLS_METRICS_NAMESPACE"]
    for metric, schema in plotted.items():
        # the SEARCH schema is exactly the namespace and the dimensions the metric has
        assert schema == {namespace, *emitted[metric]}, metric
        assert "table" in schema
    alarms = next(w for w in widgets if w["type"] == "alarm")
    assert len(alarms["properties"]["alarms"]) == 4


def test_freshness_alarm_watches_stale_tables_and_notifies(template: dict[str, Any]):
    alarm = template["Resources"]["FreshnessAlarm"]["Properties"]
    environment = _environment(template)
    assert (alarm["Namespace"], alarm["MetricName"]) == (
        environment["POWERTOOLS_METRICS_NAMESPACE"],
        "StaleTables",
    )
    assert alarm["Dimensions"] == [
        {"Name": "service", "Value": environment["POWERTOOLS_SERVICE_NAME"]}
    ]
    assert (alarm["Statistic"], alarm["Threshold"], alarm["ComparisonOperator"]) == (
        "Maximum",
        1,
        "GreaterThanOrEqualToThreshold",
    )
    # ticks may be hours apart: without a datapoint the alarm keeps its state
    assert alarm["TreatMissingData"] == "ignore"
    assert {"Ref": "NotificationTopic"} in alarm["AlarmActions"]
    assert {"Ref": "NotificationTopic"} in alarm["OKActions"]
