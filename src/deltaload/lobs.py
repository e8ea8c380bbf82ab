"""The LOB settings deltaload runs DMS with, and what an S3 target allows of them.

An S3 target supports neither full LOB mode ("Full LOB mode is not supported", Limitations
to using Amazon S3 as a target, https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Target.S3.html)
nor inline LOB mode ("DMS doesn't support inline LOB mode for endpoints that don't support
Full LOB mode, like S3 and Redshift", Setting LOB support for source databases in an AWS DMS
task, https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Tasks.LOBSupport.html). Limited
LOB mode is left; it truncates larger LOBs to LobMaxSize and only logs a warning, so the
default limit is high and every run measures its files for values that reach it
(publish.lob_warnings).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# 4 MB: DMS's own default of 32 KB cuts ordinary text; AWS advises limited LOB mode "when
# the largest LOB size is a few megabytes or less" (knowledge center, "improve the speed
# of an AWS DMS task that has LOB data",
# https://aws.amazon.com/premiumsupport/knowledge-center/dms-improve-speed-lob-data/).
# DMS reserves LobMaxSize x CommitRate x LOB columns of memory in a full load
# (CHAP_Tasks.LOBSupport.html): items with many LOB columns or very large LOBs tune
# LobMaxSize and FullLoadSettings.CommitRate themselves.
DEFAULT_LOB_MAX_KB = 4096
LOB_MAX_KB_LIMIT = 102400  # "The maximum recommended value for LobMaxSize" (TargetMetadata)
LOB_PAGE = "https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Tasks.LOBSupport.html"

DEFAULT_LOB_SETTINGS: dict[str, Any] = {
    "SupportLobs": True,
    "FullLobMode": False,
    "LimitedSizeLobMode": True,
    "LobMaxSize": DEFAULT_LOB_MAX_KB,
    "InlineLobMaxSize": 0,
}


def limit_kb(settings: Mapping[str, Any]) -> int | None:
    """LobMaxSize when merged task settings run limited LOB mode (the S3 target's only one)."""
    meta = settings.get("TargetMetadata") or {}
    if meta.get("SupportLobs") is False or meta.get("LimitedSizeLobMode") is not True:
        return None
    return int(meta["LobMaxSize"])


def problems(target_metadata: Any) -> list[tuple[str, str, str]]:
    """(setting, found, allowed) for the LOB settings of a TargetMetadata section, read over
    deltaload's defaults, that an S3 target cannot run."""
    if target_metadata is not None and not isinstance(target_metadata, Mapping):
        return []  # the section's own shape is checked by tasksettings
    meta = {**DEFAULT_LOB_SETTINGS, **(target_metadata or {})}
    support, full, limited = (
        meta.get(k) for k in ("SupportLobs", "FullLobMode", "LimitedSizeLobMode")
    )
    inline = meta.get("InlineLobMaxSize")
    found: list[tuple[str, str, str]] = []
    if not isinstance(support, bool):
        found.append(
            (
                "TargetMetadata.SupportLobs",
                repr(support),
                "expected true (migrate LOB columns) or false (leave them out)",
            )
        )
        return found
    if not support:
        return found
    if full is True or (inline not in (0, None, False)):
        found.append(
            (
                "TargetMetadata",
                f"FullLobMode={full}, InlineLobMaxSize={inline}",
                "an S3 target supports neither full nor inline LOB mode (DMS user guide, "
                "Limitations to using Amazon S3 as a target, and " + LOB_PAGE + "); use "
                "limited LOB mode with a LobMaxSize above your largest LOB",
            )
        )
    elif limited is not True:
        found.append(
            (
                "TargetMetadata.LimitedSizeLobMode",
                repr(limited),
                "with SupportLobs true DMS needs LimitedSizeLobMode true (the only LOB mode "
                "of an S3 target), or SupportLobs false to leave LOB columns out",
            )
        )
    size = meta.get("LobMaxSize")
    if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= LOB_MAX_KB_LIMIT:
        found.append(
            (
                "TargetMetadata.LobMaxSize",
                repr(size),
                f"a whole number of kilobytes from 1 to {LOB_MAX_KB_LIMIT} (DMS's maximum "
                "recommended value); LOBs larger than it are truncated",
            )
        )
    return found
