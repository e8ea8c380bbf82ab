"""Walk the state machine definition: the guarantees must be visible in the graph."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

from tests.statemachine import asl_rules
from tests.statemachine.harness import ASL, FOLDERS


@pytest.fixture
def definition() -> dict[str, Any]:
    return json.loads(ASL.read_text())


def test_definition_has_no_problems(definition: dict[str, Any]) -> None:
    assert asl_rules.problems_of(definition) == []


def test_substitutions_are_exactly_the_contract(definition: dict[str, Any]) -> None:
    used = set(re.findall(r"\$\{([^}]+)\}", ASL.read_text()))
    assert used == {f"{logical_id}Arn" for logical_id in FOLDERS} | {"NotificationTopicArn"}


# --- the checks themselves must be able to fail ------------------------------------------


def _broken(definition: dict[str, Any], change) -> list[str]:
    d = copy.deepcopy(definition)
    change(d["States"])
    return asl_rules.problems_of(d)


def test_a_task_without_catch_is_reported(definition: dict[str, Any]) -> None:
    problems = _broken(definition, lambda s: s["CheckLoad"].pop("Catch"))
    assert any("CheckLoad: no Catch" in p for p in problems)


def test_a_catch_that_skips_teardown_is_reported(definition: dict[str, Any]) -> None:
    def change(s: dict[str, Any]) -> None:
        s["StartLoad"]["Catch"][0]["Next"] = "NotifyFailure"

    assert any(
        "StartLoad: its Catch does not reach teardown" in p for p in _broken(definition, change)
    )


def test_a_catch_that_ends_in_success_is_reported(definition: dict[str, Any]) -> None:
    def change(s: dict[str, Any]) -> None:
        s["NotifyFailure"]["Next"] = "Succeeded"

    assert any("can end in success" in p for p in _broken(definition, change))


def test_skipping_verification_is_reported(definition: dict[str, Any]) -> None:
    def change(s: dict[str, Any]) -> None:
        shortcut = {"Variable": "$.poll.status", "StringEquals": "stopped", "Next": "RecordSuccess"}
        s["LoadFinished?"]["Choices"].insert(0, shortcut)

    assert any("skips verify" in p for p in _broken(definition, change))


def test_a_fixed_wait_is_reported(definition: dict[str, Any]) -> None:
    def change(s: dict[str, Any]) -> None:
        s["WaitForLoad"].pop("SecondsPath")
        s["WaitForLoad"]["Seconds"] = 30

    assert any("WaitForLoad: Wait must use SecondsPath" in p for p in _broken(definition, change))


def test_a_loop_without_timeout_exit_is_reported(definition: dict[str, Any]) -> None:
    def change(s: dict[str, Any]) -> None:
        s["ResourcesReady?"]["Choices"] = s["ResourcesReady?"]["Choices"][1:]

    problems = _broken(definition, change)
    assert any("no exit on $.poll.failed" in p and "CheckResources" in p for p in problems)


def test_missing_retry_of_transient_errors_is_reported(definition: dict[str, Any]) -> None:
    def change(s: dict[str, Any]) -> None:
        s["VerifyPublish"]["Retry"][0]["ErrorEquals"].remove("TransientError")

    assert any("VerifyPublish: transient errors" in p for p in _broken(definition, change))


def test_jsonata_is_reported(definition: dict[str, Any]) -> None:
    assert any(
        "JSONata" in p
        for p in _broken(definition, lambda s: s["PlanRun"].update(QueryLanguage="JSONata"))
    )


def test_a_window_task_without_catch_is_reported(definition: dict[str, Any]) -> None:
    def change(s: dict[str, Any]) -> None:
        del s["LoadWindows"]["ItemProcessor"]["States"]["CheckWindowLoad"]["Catch"]

    assert any("CheckWindowLoad: its Catch" in p for p in _broken(definition, change))


def test_a_window_failure_that_fails_the_map_is_reported(definition: dict[str, Any]) -> None:
    def change(s: dict[str, Any]) -> None:
        inner = s["LoadWindows"]["ItemProcessor"]["States"]
        inner["WindowFailed"] = {"Type": "Fail", "Error": "WindowFailed"}

    assert any("VerifyWindow: its Catch" in p for p in _broken(definition, change))


def test_a_window_loop_without_timeout_exit_is_reported(definition: dict[str, Any]) -> None:
    def change(s: dict[str, Any]) -> None:
        choice = s["LoadWindows"]["ItemProcessor"]["States"]["WindowLoadFinished?"]
        choice["Choices"] = choice["Choices"][1:]

    assert any("no exit on $.poll.failed" in p for p in _broken(definition, change))


def test_a_map_without_concurrency_is_reported(definition: dict[str, Any]) -> None:
    def change(s: dict[str, Any]) -> None:
        del s["LoadWindows"]["MaxConcurrencyPath"]

    assert any("no MaxConcurrency" in p for p in _broken(definition, change))
