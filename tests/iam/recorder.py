"""Record every AWS call of the offline workflow with the role it is made with.

Calls are seen through botocore's ``before-call`` event on the runtime's session, so
a call that an injected fault answers (or the local DMS engine answers) is recorded
all the same: on AWS it would have been authorized first. A call made while a
function's handler runs on the calling thread belongs to that function's role; a
call made by moto's Step Functions interpreter (its clients sign with the access key
``ak``) belongs to the state machine's role. Everything else (the test itself, the
EventBridge schedule, the local DMS engine) is not a role's call and is left out.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from deltaload.local.runtime import LocalRuntime

STATE_MACHINE = "LoadStateMachine"
# moto.stepfunctions.parser.asl.utils.boto_client signs its service integrations with it.
_INTERPRETER_ACCESS_KEY = "ak"


@dataclass(frozen=True)
class Call:
    """One AWS API call as the SDK made it."""

    role: str  # the logical id of the function (or the state machine) that made it
    service: str  # boto3 service name, e.g. "stepfunctions"
    operation: str  # API operation, e.g. "DescribeExecution"
    params: dict[str, Any] = field(hash=False)


class CallRecorder:
    """Every AWS call of one runtime, by role, plus the tags DMS resources were created with."""

    def __init__(self, rt: LocalRuntime) -> None:
        self._rt = rt
        self._lock = threading.Lock()
        self.calls: list[Call] = []
        self.resource_tags: dict[str, dict[str, str]] = {}
        rt.session.events.register(
            "before-parameter-build", self._keep_params, unique_id="iam-params"
        )
        # register_first: ahead of the fault injector, which answers before-call itself.
        rt.session.events.register_first("before-call", self._before, unique_id="iam-recorder")
        rt.session.events.register(
            "after-call.database-migration-service", self._after_dms, unique_id="iam-dms-tags"
        )

    def _role(self, request_signer: Any) -> str | None:
        running = getattr(self._rt.running, "function", None)
        if running is not None:
            return str(running)
        credentials = getattr(request_signer, "_credentials", None)
        if getattr(credentials, "access_key", None) == _INTERPRETER_ACCESS_KEY:
            return STATE_MACHINE
        return None

    @staticmethod
    def _keep_params(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        # before-call sees the serialized request only: keep the API parameters for it.
        context["iam_params"] = _plain(params)

    def _before(
        self, model: Any, context: dict[str, Any], request_signer: Any = None, **_: Any
    ) -> None:
        role = self._role(request_signer)
        if role is None:
            return None
        params = dict(context.get("iam_params") or {})
        call = Call(role, model.service_model.service_name, model.name, params)
        with self._lock:
            self.calls.append(call)
        return None

    def _after_dms(self, model: Any, parsed: dict[str, Any], **kwargs: Any) -> None:
        """Remember the tags each DMS Create* call gave the resource it created."""
        if not model.name.startswith("Create") or "Error" in parsed:
            return
        request = kwargs.get("context", {}).get("iam_params") or {}
        tags = {t["Key"]: t["Value"] for t in request.get("Tags", [])}
        for wrapper, value in parsed.items():  # {"ReplicationTask": {"ReplicationTaskArn": ...}}
            arn = value.get(f"{wrapper}Arn") if isinstance(value, dict) else None
            if isinstance(arn, str):
                with self._lock:
                    self.resource_tags.setdefault(arn, tags)

    def by_role(self) -> dict[str, list[Call]]:
        """The recorded calls grouped by role."""
        grouped: dict[str, list[Call]] = {}
        for call in self.calls:
            grouped.setdefault(call.role, []).append(call)
        return grouped


def _plain(node: Any) -> Any:
    """A copy of request parameters with bodies and streams left out (they name no resource)."""
    if isinstance(node, dict):
        return {k: _plain(v) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return [_plain(v) for v in node]
    if isinstance(node, str | int | float | bool) or node is None:
        return node
    return f"<{type(node).__name__}>"
