"""The contract between the ASL and the steps: one JSON Schema, generated from the models.

statemachine/state.schema.json is ``deltaload.runstate.RunState``'s schema; the ASL's
paths are checked against it where they are read, and every handler's output in real
executions (moto's interpreter, the real handlers) validates against it and its model.
"""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jsonschema
import pytest

from deltaload import handlers, runstate
from tests.statemachine import contract
from tests.statemachine.asl_rules import function_of
from tests.statemachine.harness import ASL, FOLDERS, load_handler
from tests.workflow.conftest import put_item

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "statemachine" / "state.schema.json"


def _script() -> Any:
    spec = importlib.util.spec_from_file_location(
        "state_document", ROOT / "scripts" / "state_document.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return json.loads(SCHEMA.read_text())


@pytest.fixture(scope="module")
def definition() -> dict[str, Any]:
    return json.loads(ASL.read_text())


def result_key(function: str) -> str | None:
    """The key the handler a ``${<LogicalId>Arn}`` placeholder invokes writes."""
    step = load_handler(FOLDERS[function[2:-4]]).step.definition
    return step.result_key


# --- the generated artefacts ---------------------------------------------------------------


def test_the_committed_schema_is_the_models_schema(schema: dict[str, Any]) -> None:
    assert SCHEMA.read_text() == runstate.state_schema_text(), (
        "statemachine/state.schema.json is out of date: run scripts/state_document.py"
    )


def test_the_architecture_page_shows_the_models() -> None:
    page = ROOT / "docs" / "architecture.md"
    assert page.read_text() == _script().architecture_text(page.read_text()), (
        "docs/architecture.md's state document section is out of date: "
        "run scripts/state_document.py"
    )


# --- the ASL against the schema --------------------------------------------------------------


def test_a_window_iteration_reading_what_its_selector_does_not_give_is_reported(
    definition: dict[str, Any], schema: dict[str, Any]
) -> None:
    broken = copy.deepcopy(definition)
    del broken["States"]["LoadWindows"]["ItemSelector"]["window.$"]
    problems = contract.problems_of(broken, schema, result_key)
    assert any("(iteration)" in p and "$.window.index" in p for p in problems), problems


def test_every_asl_path_is_a_field_present_where_it_is_read(
    definition: dict[str, Any], schema: dict[str, Any]
) -> None:
    assert contract.problems_of(definition, schema, result_key) == []


def test_every_lambda_task_says_where_its_handler_puts_the_result(
    definition: dict[str, Any],
) -> None:
    for name, state in definition["States"].items():
        function = function_of(state)
        if function:
            folder = FOLDERS[function[2:-4]]
            assert load_handler(folder).step.definition.name == folder, name
            assert f"$.{result_key(function)}." in state["Comment"], name


def test_every_step_of_the_package_has_a_handler() -> None:
    served = {load_handler(folder).step.definition.name for folder in FOLDERS.values()}
    served.add(load_handler("cleanup_aborted").step.definition.name)
    assert served == set(handlers.STEPS)


def _broken(definition: dict[str, Any], change) -> dict[str, Any]:
    d = copy.deepcopy(definition)
    change(d["States"])
    return d


def test_a_misspelt_field_is_reported(definition: dict[str, Any], schema: dict[str, Any]) -> None:
    d = _broken(definition, lambda s: s["WaitForLoad"].update(SecondsPath="$.poll.waitSecond"))
    problems = contract.problems_of(d, schema, result_key)
    assert any("WaitForLoad" in p and "'waitSecond'" in p for p in problems), problems


def test_a_field_of_the_wrong_model_is_reported(
    definition: dict[str, Any], schema: dict[str, Any]
) -> None:
    def change(s: dict[str, Any]) -> None:
        s["NotifySuccess"]["Parameters"]["Message.$"] = (
            "States.Format('{}', $.recorded.manifestKey)"
        )

    problems = contract.problems_of(_broken(definition, change), schema, result_key)
    assert any("NotifySuccess" in p and "Recorded" in p for p in problems), problems


def test_reading_a_key_before_its_step_ran_is_reported(
    definition: dict[str, Any], schema: dict[str, Any]
) -> None:
    def change(s: dict[str, Any]) -> None:
        s["NothingToLoad?"]["Choices"][0]["Variable"] = "$.publish.rows"
        s["NothingToLoad?"]["Choices"][0]["NumericEquals"] = 0
        s["NothingToLoad?"]["Choices"][0].pop("BooleanEquals")

    problems = contract.problems_of(_broken(definition, change), schema, result_key)
    assert any("NothingToLoad?" in p and "not written on every way" in p for p in problems)


def test_a_catch_writing_an_unknown_key_is_reported(
    definition: dict[str, Any], schema: dict[str, Any]
) -> None:
    d = _broken(definition, lambda s: s["StartLoad"]["Catch"][0].update(ResultPath="$.oops"))
    problems = contract.problems_of(d, schema, result_key)
    assert any("StartLoad: writes $.oops" in p for p in problems), problems


# --- every step's output in real executions --------------------------------------------------


class _Recording:
    """A handler module stand-in that keeps what the real handler returned."""

    def __init__(self, module: Any, outputs: list[tuple[str, dict, dict]]) -> None:
        self._module, self._outputs = module, outputs

    def handler(self, event: dict, context: Any) -> dict:
        result = self._module.handler(event, context)
        self._outputs.append((self._module.step.definition.name, event, result))
        return result


def _rows(n: int) -> list[dict[str, Any]]:
    return [{"id": i, "amount": i * 1.5} for i in range(1, n + 1)]


@pytest.mark.parametrize(
    ("case", "attributes"),
    [
        ("loads", {}),
        ("fails", {"watermark": "3"}),
        ("nothing to load", {"filteroperator": "eq", "startvalue": "3", "watermark": "loaded"}),
    ],
)
def test_every_step_output_validates_against_its_model(
    machine: dict[str, Any], schema: dict[str, Any], case: str, attributes: dict[str, Any]
) -> None:
    m = machine
    outputs: list[tuple[str, dict, dict]] = []
    router = m["router"]
    router.modules = {name: _Recording(module, outputs) for name, module in router.modules.items()}
    put_item(m["clients"], m["settings"], **attributes)
    m["dms"].load_rows = _rows(4)
    if case == "fails":
        m["dms"].outcome.tables_errored = 1
    from tests.statemachine.harness import run_execution

    result = run_execution(
        m["sfn"], m["arn"], {"table": "orders", "runId": "orders-20240501T1200Z"}
    )
    assert result["status"] == ("FAILED" if case == "fails" else "SUCCEEDED")
    validator = jsonschema.Draft202012Validator(schema)
    steps = {step for step, _, _ in outputs}
    assert {"acquire_lock", "plan_run", "teardown"} <= steps
    for step, event, output in outputs:
        assert list(validator.iter_errors(output)) == [], step
        state = runstate.RunState.model_validate(output)
        key = handlers.STEPS[step].result_key
        assert key in output and getattr(state, key) is not None, step
        assert {k: v for k, v in output.items() if k != key} == {
            k: v for k, v in event.items() if k != key
        }, f"{step} changed more than {key!r}"


def test_an_incomplete_document_names_what_is_missing(
    machine: dict[str, Any],
) -> None:
    module = load_handler("create_resources")
    module.step.container.provide(machine["settings"], machine["clients"])
    context = SimpleNamespace(
        function_name="f", memory_limit_in_mb=128, invoked_function_arn="arn", aws_request_id="1"
    )
    with pytest.raises(runstate.StateDocumentError, match="'run'"):
        module.handler({"table": "orders", "runId": "r1"}, context)
    with pytest.raises(runstate.StateDocumentError, match="runId"):
        module.handler({"table": "orders"}, context)
