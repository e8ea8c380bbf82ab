"""The DMS table mapping and task settings for one run (pure).

Facts relied on, from the AWS DMS User Guide:

* Selection rules name ``schema-name`` and ``table-name`` in ``object-locator``;
  source filters sit in the rule's ``filters`` list, only apply with
  ``rule-action: include``, and need exact (not wildcard) names.
  https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Tasks.CustomizingTasks.Filters.html
* A transformation rule with ``rule-target: table``, ``rule-action: rename`` and
  ``value`` renames the table on the target; an S3 target then writes
  ``<BucketFolder>/<schema>/<new name>/LOAD00000001.parquet``.
  https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Tasks.CustomizingTasks.TableMapping.SelectionTransformation.Transformations.html
  https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Target.S3.html
* Task settings are a JSON document of sections (``TargetMetadata``,
  ``FullLoadSettings``, ``Logging``, ``ErrorBehavior``...); ``FailOnNoTablesCaptured``
  makes a task fail instead of succeeding with nothing when the selection matches
  no table. https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Tasks.CustomizingTasks.TaskSettings.html
* A table-settings rule with a ``parallel-load`` option loads the table in segments, in
  parallel (the item's ``parallelload``; deltaload.parallelload has the rules and the page).
* LOBs: an S3 target runs only limited LOB mode, which truncates larger LOBs and only
  logs it (deltaload.lobs has the pages); the defaults and the checks live there, and
  every run measures its files for values that reach the limit (publish.lob_warnings).
"""

from __future__ import annotations

import copy
from typing import Any

from deltaload import lobs, parallelload
from deltaload.errors import InvalidItemError, Problem
from deltaload.items import ControllerItem
from deltaload.window import WindowPlan

# Defaults for a full-load-only task that writes into an empty per-run staging
# folder. Errors stop the task: a run that loses rows must fail, never publish.
DEFAULT_TASK_SETTINGS: dict[str, Any] = {
    "TargetMetadata": {
        **lobs.DEFAULT_LOB_SETTINGS,
    },
    "FullLoadSettings": {
        "TargetTablePrepMode": "DO_NOTHING",
        "MaxFullLoadSubTasks": 8,
        "CommitRate": 10000,
    },
    "Logging": {"EnableLogging": True},
    "ErrorBehavior": {
        "FailOnNoTablesCaptured": True,
        "DataErrorPolicy": "STOP_TASK",
        "DataTruncationErrorPolicy": "STOP_TASK",
        "TableErrorPolicy": "STOP_TASK",
    },
}


def table_mapping(item: ControllerItem, plan: WindowPlan) -> dict[str, Any]:
    """The TableMappings document: select the window of the source table, land it as the target."""
    locator = {"schema-name": item.source_schema, "table-name": item.source_table}
    selection: dict[str, Any] = {
        "rule-type": "selection",
        "rule-id": "1",
        "rule-name": "select-window",
        "object-locator": locator,
        "rule-action": "include",
    }
    if plan.filters:
        selection["filters"] = copy.deepcopy(plan.filters)
    rules = [selection]
    if item.target_table_name != item.source_table:
        rules.append(
            {
                "rule-type": "transformation",
                "rule-id": "2",
                "rule-name": "rename-to-target",
                "rule-target": "table",
                "object-locator": dict(locator),
                "rule-action": "rename",
                "value": item.target_table_name,
            }
        )
    if item.parallel_load:
        rule_id = str(len(rules) + 1)
        rules.append(
            parallelload.table_settings_rule(
                item.parallel_load, item.source_schema, item.source_table, rule_id
            )
        )
    return {"rules": rules}


def task_settings(item: ControllerItem) -> dict[str, Any]:
    """Default task settings with the item's replication_task_settings merged over them.

    Raises InvalidItemError when the item asks for a LOB mode an S3 target does not support.
    """
    merged = deep_merge(DEFAULT_TASK_SETTINGS, item.replication_task_settings)
    problems = lobs.problems(merged.get("TargetMetadata"))
    if problems:
        name = "replication_task_settings"
        found = [Problem(f"{name}: {setting}", text, rule) for setting, text, rule in problems]
        raise InvalidItemError(item.target_table_name, found)
    return merged


lob_limit_kb = lobs.limit_kb


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``base`` with ``override`` merged in, section by section."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged
