"""Record every AWS call of the offline workflow with the role it is made with.

Calls are recorded at botocore's ``before-parameter-build`` event on the runtime's
session, which every call emits, so a call that an injected fault answers (at
``before-call``) or the local DMS engine answers is recorded all the same: on AWS it
would have been authorized first. A call made while a function's handler runs on the
calling thread belongs to that function's role; a call made by moto's Step Functions
interpreter (its clients sign with the access key ``ak``, seen at ``before-call``)
belongs to the state machine's role. Calls an emulator makes while it answers another
call (nested inside it on the same thread, e.g. the local DMS engine reading the
secret) are the service's own, not the caller's, and are left out, as is everything
that is no role's call (the test itself, the EventBridge schedule, the DMS engine's
load threads).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from deltaload.local.runtime import LocalRuntime

STATE_MACHINE = "LoadStateMachine"
# moto.stepfunctions.parser.asl.utils.boto_client signs its service integrations with it.
_INTERPRETER_ACCESS_KEY = "ak"


@dataclass
class Call:
    """One AWS API call as the SDK made it."""

    role: str | None  # the function's (or the state machine's) logical id; None: no role's
    service: str  # boto3 service name, e.g. "stepfunctions"
    operation: str  # API operation, e.g. "DescribeExecution"
    params: dict[str, Any] = field(default_factory=dict)


class CallRecorder:
    """Every AWS call of one runtime, by role, plus the tags DMS resources were created with."""

    def __init__(self, rt: LocalRuntime) -> None:
        self._rt = rt
        self._lock = threading.Lock()
        self._thread = threading.local()  # calls in flight on this thread, per running handler
        self._calls: list[Call] = []
        self.resource_tags: dict[str, dict[str, str]] = {}
        events = rt.session.events
        events.register("before-parameter-build", self._record, unique_id="iam-record")
        events.register_first("before-call", self._before_call, unique_id="iam-signer")
        events.register("after-call", self._done, unique_id="iam-done")
        events.register("after-call-error", self._done, unique_id="iam-done-error")
        events.register(
            "after-call.database-migration-service", self._after_dms, unique_id="iam-dms-tags"
        )

    @property
    def calls(self) -> list[Call]:
        """The calls made with one of the template's roles, in order."""
        with self._lock:
            return [c for c in self._calls if c.role is not None]

    def _in_flight(self) -> dict[Any, int]:
        if not hasattr(self._thread, "depth"):
            self._thread.depth = {}
        return self._thread.depth

    def _record(self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any):
        running = getattr(self._rt.running, "function", None)
        if self._in_flight().get(running, 0):
            return  # an emulator's own call while it answers another one
        call = Call(running, model.service_model.service_name, model.name, _plain(params))
        context["iam_call"] = call
        with self._lock:
            self._calls.append(call)

    def _before_call(self, context: dict[str, Any], request_signer: Any = None, **_: Any):
        call = context.get("iam_call")
        if call is None:
            return None
        credentials = getattr(request_signer, "_credentials", None)
        if call.role is None and getattr(credentials, "access_key", None) == (
            _INTERPRETER_ACCESS_KEY
        ):
            call.role = STATE_MACHINE
        running = getattr(self._rt.running, "function", None)
        context["iam_in_flight"] = running
        depth = self._in_flight()
        depth[running] = depth.get(running, 0) + 1
        return None

    def _done(self, context: dict[str, Any], **_: Any) -> None:
        if "iam_in_flight" in context:
            depth = self._in_flight()
            depth[context["iam_in_flight"]] -= 1

    def _after_dms(self, model: Any, parsed: dict[str, Any], **kwargs: Any) -> None:
        """Remember the tags each DMS Create* call gave the resource it created."""
        if not model.name.startswith("Create") or "Error" in parsed:
            return
        call = kwargs.get("context", {}).get("iam_call")
        request = call.params if call is not None else {}
        tags = {t["Key"]: t["Value"] for t in request.get("Tags", [])}
        for wrapper, value in parsed.items():  # {"ReplicationTask": {"ReplicationTaskArn": ...}}
            arn = value.get(f"{wrapper}Arn") if isinstance(value, dict) else None
            if isinstance(arn, str):
                with self._lock:
                    self.resource_tags.setdefault(arn, tags)


def _plain(node: Any) -> Any:
    """A copy of request parameters with bodies and streams left out (they name no resource)."""
    if isinstance(node, dict):
        return {k: _plain(v) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return [_plain(v) for v in node]
    if isinstance(node, str | int | float | bool) or node is None:
        return node
    return f"<{type(node).__name__}>"
