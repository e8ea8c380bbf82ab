"""Checks on an item's ``replication_task_settings`` against the DMS task-settings reference.

The sections a task-settings document may hold are the ones the AWS DMS User Guide lists in
"Specifying task settings for AWS Database Migration Service tasks"
(https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Tasks.CustomizingTasks.TaskSettings.html)
and its sub-pages, plus the ones a saved task's settings carry ("Saving task settings",
https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Tasks.CustomizingTasks.TaskSettings.Saving.html).
A section is a JSON object; a saved task shows the sections it does not use as ``null``.

A few settings are pinned: every run relies on them, so an item may repeat them but never change
them (``PINNED`` says which and why). The LOB settings must be ones an S3 target runs
(limited LOB mode, ``deltaload.lobs``). Everything else stays the item's to choose.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from deltaload import lobs

# Section name -> the page of the DMS User Guide that documents it.
_GUIDE = "https://docs.aws.amazon.com/dms/latest/userguide/"
_PAGE = "CHAP_Tasks.CustomizingTasks.TaskSettings."
SECTIONS: dict[str, str] = {
    "TargetMetadata": _PAGE + "TargetMetadata.html",
    "FullLoadSettings": _PAGE + "FullLoad.html",
    "TTSettings": _PAGE + "TimeTravel.html",
    "Logging": _PAGE + "Logging.html",
    "ControlTablesSettings": _PAGE + "ControlTable.html",
    "StreamBufferSettings": _PAGE + "StreamBuffer.html",
    "ChangeProcessingTuning": _PAGE + "ChangeProcessingTuning.html",
    "ValidationSettings": _PAGE + "DataValidation.html",
    "ResyncSettings": _PAGE + "DataResyncSettings.html",
    "ChangeProcessingDdlHandlingPolicy": _PAGE + "DDLHandling.html",
    "CharacterSetSettings": _PAGE + "CharacterSubstitution.html",
    "BeforeImageSettings": _PAGE + "BeforeImage.html",
    "ErrorBehavior": _PAGE + "ErrorHandling.html",
    # Present (often null) in the settings DMS returns for a task; see "Saving task settings".
    "LoopbackPreventionSettings": _PAGE + "Saving.html",
    "PostProcessingRules": _PAGE + "Saving.html",
}
# Top-level settings that are a single value rather than a section.
TOP_LEVEL_VALUES: dict[str, type] = {"FailTaskWhenCleanTaskResourceFailed": bool}


@dataclass(frozen=True)
class Pinned:
    """A setting every run relies on: the only value an item may give it, and why."""

    section: str
    name: str
    value: Any
    why: str

    @property
    def path(self) -> str:
        """The setting as Section.Name."""
        return f"{self.section}.{self.name}"


_STOP = (
    "a record or table DMS cannot load must fail the run; any other policy lets DMS skip it, "
    "the Parquet footers then agree with DMS's FullLoadRows and the window is published "
    "without those rows while the watermark moves past them"
)
PINNED: tuple[Pinned, ...] = (
    Pinned(
        "FullLoadSettings",
        "TargetTablePrepMode",
        "DO_NOTHING",
        "each run loads into its own empty staging folder that deltaload verifies, publishes "
        "and deletes itself; DROP_AND_CREATE or TRUNCATE_BEFORE_LOAD would have DMS delete "
        "objects under the target folder",
    ),
    Pinned(
        "TargetMetadata",
        "TargetSchema",
        "",
        "the staging layout and the DMS table statistics that verification reads are keyed "
        "by the source schema; another target schema moves the files away from the window "
        "deltaload verifies and publishes",
    ),
    Pinned(
        "ErrorBehavior",
        "FailOnNoTablesCaptured",
        True,
        "a task whose selection matches no table must fail: with false it succeeds with no "
        "rows, an empty time-based window is published and the watermark moves over it",
    ),
    Pinned("ErrorBehavior", "DataErrorPolicy", "STOP_TASK", _STOP),
    Pinned("ErrorBehavior", "DataTruncationErrorPolicy", "STOP_TASK", _STOP),
    Pinned("ErrorBehavior", "TableErrorPolicy", "STOP_TASK", _STOP),
)
# The JSON type of the settings of the sections deltaload fills, as the reference pages and the
# saved-settings example show them ("Saving task settings"; "Full-load task settings";
# "Logging task settings"; "Error handling task settings"). A setting not listed here is
# passed to DMS unchecked; the LOB settings are checked by deltaload.lobs.
SETTING_TYPES: dict[str, dict[str, type]] = {
    "TargetMetadata": {
        "TargetSchema": str,
        "LoadMaxFileSize": int,
        "ParallelLoadThreads": int,
        "ParallelLoadBufferSize": int,
        "ParallelLoadQueuesPerThread": int,
        "ParallelApplyThreads": int,
        "ParallelApplyBufferSize": int,
        "ParallelApplyQueuesPerThread": int,
        "BatchApplyEnabled": bool,
        "TaskRecoveryTableEnabled": bool,
    },
    "FullLoadSettings": {
        "TargetTablePrepMode": str,
        "CreatePkAfterFullLoad": bool,
        "StopTaskCachedChangesApplied": bool,
        "StopTaskCachedChangesNotApplied": bool,
        "MaxFullLoadSubTasks": int,
        "TransactionConsistencyTimeout": int,
        "CommitRate": int,
    },
    "Logging": {"EnableLogging": bool, "LogComponents": list},
    "ErrorBehavior": {
        "DataErrorPolicy": str,
        "DataTruncationErrorPolicy": str,
        "DataErrorEscalationPolicy": str,
        "DataErrorEscalationCount": int,
        "EventErrorPolicy": str,
        "TableErrorPolicy": str,
        "TableErrorEscalationPolicy": str,
        "TableErrorEscalationCount": int,
        "RecoverableErrorCount": int,
        "RecoverableErrorInterval": int,
        "RecoverableErrorThrottling": bool,
        "RecoverableErrorThrottlingMax": int,
        "ApplyErrorDeletePolicy": str,
        "ApplyErrorInsertPolicy": str,
        "ApplyErrorUpdatePolicy": str,
        "ApplyErrorEscalationPolicy": str,
        "ApplyErrorEscalationCount": int,
        "FullLoadIgnoreConflicts": bool,
        "FailOnNoTablesCaptured": bool,
    },
}
# Settings whose values the "Error handling task settings" page lists.
SETTING_VALUES: dict[tuple[str, str], tuple[str, ...]] = {
    ("ErrorBehavior", "DataErrorEscalationPolicy"): ("SUSPEND_TABLE", "STOP_TASK"),
    ("ErrorBehavior", "EventErrorPolicy"): ("IGNORE", "STOP_TASK"),
}
_JSON_TYPE = {str: "string", int: "whole number", bool: "boolean", list: "list"}

# DMS refuses these on create ("Saving task settings": "Task Settings CloudWatchLogGroup or
# CloudWatchLogStream cannot be set on create"), so the run would fail after creating resources.
NOT_ON_CREATE = (("Logging", "CloudWatchLogGroup"), ("Logging", "CloudWatchLogStream"))
# Sections deltaload fills with defaults (mapping.DEFAULT_TASK_SETTINGS): a null there would
# replace those defaults, pinned settings included, with DMS's own.
DEFAULTED_SECTIONS = ("TargetMetadata", "FullLoadSettings", "Logging", "ErrorBehavior")


def check(settings: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """Every problem of a parsed task-settings object, as (setting, found, allowed) triples."""
    problems: list[tuple[str, str, str]] = []
    for name, value in settings.items():
        if name in TOP_LEVEL_VALUES:
            wanted = TOP_LEVEL_VALUES[name]
            if not isinstance(value, wanted):
                problems.append((name, _show(value), f"expected a JSON {wanted.__name__}"))
            continue
        if name not in SECTIONS:
            known = [*SECTIONS, *TOP_LEVEL_VALUES]
            close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.6)
            allowed = (
                f"did you mean {close[0]!r}?"
                if close
                else f"the DMS task-settings sections are {', '.join(known)}"
            )
            problems.append((str(name), "an unknown section", allowed))
            continue
        if value is None and name not in DEFAULTED_SECTIONS:
            continue
        if not isinstance(value, Mapping):
            allowed = f"a section is a JSON object of settings ({_GUIDE}{SECTIONS[name]})"
            if name in DEFAULTED_SECTIONS:
                allowed += "; leave the section out to keep deltaload's defaults"
            problems.append((name, _show(value), allowed))
    problems += _setting_shapes(settings)
    reported = {setting for setting, _, _ in problems}
    for pin in PINNED:
        section = settings.get(pin.section)
        if not isinstance(section, Mapping) or pin.name not in section or pin.path in reported:
            continue
        value = section[pin.name]
        if type(value) is not type(pin.value) or value != pin.value:
            problems.append(
                (
                    pin.path,
                    _show(value),
                    f"deltaload requires {json.dumps(pin.value)} (leave it out): {pin.why}",
                )
            )
    for section_name, name in NOT_ON_CREATE:
        section = settings.get(section_name)
        if isinstance(section, Mapping) and name in section:
            problems.append(
                (
                    f"{section_name}.{name}",
                    _show(section[name]),
                    "DMS refuses this setting when a task is created; remove it",
                )
            )
    # LOB modes an S3 target cannot run (deltaload.lobs), read over deltaload's defaults.
    problems += lobs.problems(settings.get("TargetMetadata"))
    return problems


def _setting_shapes(settings: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """Settings of a known type given another one, or a value the reference does not list."""
    problems = []
    for section_name, types in SETTING_TYPES.items():
        section = settings.get(section_name)
        if not isinstance(section, Mapping):
            continue
        for name, wanted in types.items():
            if name not in section:
                continue
            value = section[name]
            # bool is an int in Python; JSON tells them apart, and so does DMS.
            wrong = isinstance(value, bool) != (wanted is bool) or not isinstance(value, wanted)
            if wrong:
                problems.append(
                    (
                        f"{section_name}.{name}",
                        _show(value),
                        f"expected a JSON {_JSON_TYPE[wanted]} ({_GUIDE}{SECTIONS[section_name]})",
                    )
                )
                continue
            allowed = SETTING_VALUES.get((section_name, name))
            if allowed and value not in allowed:
                problems.append(
                    (
                        f"{section_name}.{name}",
                        _show(value),
                        f"expected one of {', '.join(allowed)}",
                    )
                )
    return problems


def _show(value: Any) -> str:
    text = json.dumps(value, default=lambda v: f"<{type(v).__name__}>")
    return text if len(text) <= 60 else text[:57] + "..."
