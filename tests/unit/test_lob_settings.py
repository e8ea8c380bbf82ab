"""The LOB settings an item may give: only limited LOB mode runs against an S3 target.

"Full LOB mode is not supported" (Using Amazon S3 as a target, Limitations) and inline LOB
mode is not supported where full LOB mode is not (Setting LOB support for source databases
in an AWS DMS task). An item is refused with the reason, by item validation (validate,
onboard, the starter) and again when a run is planned.
"""

from __future__ import annotations

import pytest

from deltaload import lobs, mapping, tasksettings
from deltaload.errors import InvalidItemError
from deltaload.items import parse_item


def _meta_problems(meta: dict) -> list[str]:
    return [setting for setting, _, _ in tasksettings.check({"TargetMetadata": meta})]


def test_the_default_is_limited_lob_mode_with_a_4_mb_limit() -> None:
    meta = mapping.DEFAULT_TASK_SETTINGS["TargetMetadata"]
    assert (meta["SupportLobs"], meta["FullLobMode"], meta["LimitedSizeLobMode"]) == (
        True,
        False,
        True,
    )
    assert meta["LobMaxSize"] == 4096 and meta["InlineLobMaxSize"] == 0
    assert lobs.limit_kb(mapping.DEFAULT_TASK_SETTINGS) == 4096


@pytest.mark.parametrize(
    ("meta", "setting"),
    [
        ({"FullLobMode": True}, "TargetMetadata"),
        ({"InlineLobMaxSize": 64}, "TargetMetadata"),
        ({"LimitedSizeLobMode": False}, "TargetMetadata.LimitedSizeLobMode"),
        ({"LobMaxSize": 0}, "TargetMetadata.LobMaxSize"),
        ({"LobMaxSize": 102401}, "TargetMetadata.LobMaxSize"),
        ({"LobMaxSize": "64"}, "TargetMetadata.LobMaxSize"),
        ({"SupportLobs": "yes"}, "TargetMetadata.SupportLobs"),
    ],
)
def test_what_an_s3_target_cannot_run_is_refused(meta: dict, setting: str) -> None:
    assert _meta_problems(meta) == [setting]


@pytest.mark.parametrize(
    "meta",
    [{}, {"LobMaxSize": 64}, {"LobMaxSize": 102400}, {"SupportLobs": False, "FullLobMode": True}],
)
def test_limited_mode_and_no_lobs_are_accepted(meta: dict) -> None:
    assert _meta_problems(meta) == []


def test_support_lobs_false_runs_without_a_limit() -> None:
    settings = mapping.deep_merge(
        mapping.DEFAULT_TASK_SETTINGS, {"TargetMetadata": {"SupportLobs": False}}
    )
    assert lobs.limit_kb(settings) is None


def test_an_item_asking_for_full_lob_mode_is_invalid(published_item: dict) -> None:
    raw = {
        **published_item,
        "replication_task_settings": '{"TargetMetadata": {"FullLobMode": true}}',
    }
    with pytest.raises(InvalidItemError, match="neither full nor inline LOB mode") as caught:
        parse_item(raw)
    assert "replication_task_settings: TargetMetadata" in str(caught.value)
