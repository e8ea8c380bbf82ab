"""The one shape of every Lambda handler: ``step = step_handler("<step>")``.

A step handler validates the event into the run document (``runstate.RunState``), calls
the same-named function of ``deltaload.workflow`` and returns the document with the
result under the key its model declares. Settings and clients belong to the handler's
``Container``: made on the first invocation and kept for the container's life, as a
Lambda container keeps its module. Each import of a handler module makes its own (the
offline runtime imports each module afresh), so two runtimes in one process never share
clients nor the event hooks on their sessions.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, get_type_hints

from pydantic import BaseModel, ValidationError

from deltaload import workflow
from deltaload.aws import Clients
from deltaload.observability import instrumented
from deltaload.runstate import ExecutionStatusChange, RunState, StateDocumentError, key_of
from deltaload.settings import Settings
from deltaload.starter import start_tick


class Container:
    """The settings and clients of one Lambda container, made when first needed."""

    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        self._environ = environ
        self._made: tuple[Settings, Clients] | None = None

    def get(self) -> tuple[Settings, Clients]:
        """Settings read from the environment once, and the clients made from them."""
        if self._made is None:
            self._made = (Settings.from_env(self._environ), Clients())
        return self._made

    def provide(self, settings: Settings, clients: Clients) -> None:
        """Use these instead (tests: moto tables, a DMS stand-in)."""
        self._made = (settings, clients)


@dataclass(frozen=True)
class Step:
    """One state machine step: its workflow function and the model its event validates into."""

    name: str
    function: Callable[..., Any]
    event: type[BaseModel] = RunState
    correlation_path: str = "runId"  # the run id in the event (Powertools' correlation id)

    def run(
        self,
        event: Mapping[str, Any],
        clients: Clients,
        settings: Settings,
        now: workflow.Now = workflow.utcnow,
    ) -> dict[str, Any]:
        """Validate ``event``, run the step, and return the JSON the state machine gets back."""
        try:
            model = self.event.model_validate(event)
        except ValidationError as error:
            raise StateDocumentError(_invalid(self.name, error)) from None
        result = self.function(model, clients, settings, now)
        if isinstance(model, RunState):
            return model.with_result(result).document()
        return result.document()

    @property
    def result_key(self) -> str | None:
        """The state document key this step's result goes under (None: not a run step)."""
        return key_of(get_type_hints(self.function)["return"])


def _invalid(step: str, error: ValidationError) -> str:
    problems = "; ".join(
        f"{'.'.join(str(part) for part in problem['loc']) or '(document)'}: {problem['msg']}"
        for problem in error.errors()
    )
    return (
        f"{step}: the state document is not what the state machine passes ({problems}); "
        'its input must be {"table": "<targetTableName>", "runId": "<execution name>"}'
    )


STEPS = {
    step.name: step
    for step in (
        Step("acquire_lock", workflow.acquire_lock),
        Step("probe_source", workflow.probe_source),
        Step("plan_run", workflow.plan_run),
        Step("create_resources", workflow.create_resources),
        Step("check_resources", workflow.check_resources),
        Step("start_load", workflow.start_load),
        Step("check_load", workflow.check_load),
        Step("verify_publish", workflow.verify_publish),
        Step("record_success", workflow.record_success),
        Step("record_failure", workflow.record_failure),
        Step("teardown", workflow.teardown),
        Step("cleanup_aborted", workflow.cleanup_aborted, ExecutionStatusChange, "detail.name"),
    )
}


def run_step(
    name: str,
    event: Mapping[str, Any],
    clients: Clients,
    settings: Settings,
    now: workflow.Now = workflow.utcnow,
) -> dict[str, Any]:
    """What the handler of step ``name`` returns for ``event`` (without Powertools)."""
    return STEPS[name].run(event, clients, settings, now)


class Handler:
    """A Lambda handler: Powertools around one call with its container's settings and clients."""

    def __init__(
        self,
        call: Callable[[dict, Clients, Settings], Any],
        correlation_path: str = "runId",
        definition: Step | None = None,
    ) -> None:
        self.container = Container()
        self.definition = definition  # the state machine step it runs, if it runs one
        self._call = call
        self._instrumented = instrumented(correlation_path)(self._handle)

    def _handle(self, event: dict, context: object) -> Any:
        settings, clients = self.container.get()
        return self._call(event, clients, settings)

    def __call__(self, event: dict, context: object) -> Any:
        return self._instrumented(event, context)


def step_handler(name: str) -> Handler:
    """The handler of state machine step ``name`` (a function of ``deltaload.workflow``)."""
    step = STEPS[name]
    return Handler(
        lambda event, clients, settings: step.run(event, clients, settings),
        step.correlation_path,
        step,
    )


def starter_handler() -> Handler:
    """The starter's handler: one execution per valid active item of this tick."""
    return Handler(start_tick, correlation_path="id")
