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
* LOBs: an S3 target supports neither full LOB mode ("Full LOB mode is not supported",
  Limitations to using Amazon S3 as a target,
  https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Target.S3.html) nor inline LOB
  mode ("DMS doesn't support inline LOB mode for endpoints that don't support Full LOB
  mode, like S3 and Redshift", Setting LOB support for source databases in an AWS DMS
  task, https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Tasks.LOBSupport.html).
  Limited LOB mode is left, and it truncates "LOBs that exceed the maximum LOB size ...
  and a warning is issued to the log file", nothing more. So the default limit is high
  and every run measures its files for values that reach it (publish.lob_warnings), and
  says so on the run. Which source types are LOBs, and how their size is counted, is in
  docs/engine.md ("Data types").
"""

from __future__ import annotations

import copy
from typing import Any

from deltaload.errors import InvalidItemError, Problem
from deltaload.items import ControllerItem
from deltaload.window import WindowPlan

# 4 MB: DMS's own default of 32 KB cuts ordinary text; AWS advises limited LOB mode "when
# the largest LOB size is a few megabytes or less" (knowledge center, "improve the speed
# of an AWS DMS task that has LOB data",
# https://aws.amazon.com/premiumsupport/knowledge-center/dms-improve-speed-lob-data/).
# DMS reserves LobMaxSize x CommitRate x LOB columns of memory in a full load
# (CHAP_Tasks.LOBSupport.html): items with many LOB columns or very large LOBs tune
# LobMaxSize and FullLoadSettings.CommitRate themselves.
DEFAULT_LOB_MAX_KB = 4096
LOB_MAX_KB_LIMIT = 102400  # "The maximum recommended value for LobMaxSize" (TargetMetadata)
_LOB_PAGE = "https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Tasks.LOBSupport.html"

# Defaults for a full-load-only task that writes into an empty per-run staging
# folder. Errors stop the task: a run that loses rows must fail, never publish.
DEFAULT_TASK_SETTINGS: dict[str, Any] = {
    "TargetMetadata": {
        "SupportLobs": True,
        "FullLobMode": False,
        "LimitedSizeLobMode": True,
        "LobMaxSize": DEFAULT_LOB_MAX_KB,
        "InlineLobMaxSize": 0,
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
    return {"rules": rules}


def task_settings(item: ControllerItem) -> dict[str, Any]:
    """Default task settings with the item's replication_task_settings merged over them.

    Raises InvalidItemError when the item asks for a LOB mode an S3 target does not support.
    """
    merged = deep_merge(DEFAULT_TASK_SETTINGS, item.replication_task_settings)
    problems = lob_problems(merged)
    if problems:
        raise InvalidItemError(item.target_table_name, problems)
    return merged


def lob_limit_kb(settings: dict[str, Any]) -> int | None:
    """LobMaxSize when the task runs in limited LOB mode (the S3 target's only LOB mode)."""
    meta = settings.get("TargetMetadata") or {}
    if meta.get("SupportLobs") is False or meta.get("LimitedSizeLobMode") is not True:
        return None
    return int(meta["LobMaxSize"])


def lob_problems(settings: dict[str, Any]) -> list[Problem]:
    """What is wrong with the LOB settings of merged task settings, for an S3 target."""
    meta = settings.get("TargetMetadata")
    if not isinstance(meta, dict):
        return []
    attribute = "replication_task_settings"
    found = {k: meta.get(k) for k in ("SupportLobs", "FullLobMode", "LimitedSizeLobMode")}
    problems = []
    if not isinstance(meta.get("SupportLobs"), bool):
        problems.append(
            Problem(
                f"{attribute} TargetMetadata.SupportLobs",
                repr(meta.get("SupportLobs")),
                "expected true (migrate LOB columns) or false (leave them out)",
            )
        )
    elif meta["SupportLobs"] and (
        meta.get("FullLobMode") is True or (meta.get("InlineLobMaxSize") or 0) != 0
    ):
        problems.append(
            Problem(
                f"{attribute} TargetMetadata",
                f"FullLobMode={meta.get('FullLobMode')}, "
                f"InlineLobMaxSize={meta.get('InlineLobMaxSize')}",
                "an S3 target supports neither full nor inline LOB mode (DMS user guide, "
                "Limitations to using Amazon S3 as a target, and " + _LOB_PAGE + "); use "
                "limited LOB mode with a LobMaxSize above your largest LOB",
            )
        )
    elif meta["SupportLobs"] and meta.get("LimitedSizeLobMode") is not True:
        problems.append(
            Problem(
                f"{attribute} TargetMetadata",
                ", ".join(f"{k}={v}" for k, v in found.items()),
                "with SupportLobs true DMS needs LimitedSizeLobMode true (the only LOB mode "
                "of an S3 target), or SupportLobs false to leave LOB columns out",
            )
        )
    size = meta.get("LobMaxSize")
    if meta.get("SupportLobs") is not False and (
        not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= LOB_MAX_KB_LIMIT
    ):
        problems.append(
            Problem(
                f"{attribute} TargetMetadata.LobMaxSize",
                repr(size),
                f"a whole number of kilobytes from 1 to {LOB_MAX_KB_LIMIT} (DMS's maximum "
                "recommended value); LOBs larger than it are truncated",
            )
        )
    return problems


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``base`` with ``override`` merged in, section by section."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged
