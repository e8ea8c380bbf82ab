"""Lambda, in-process: Invoke calls answered by running a handler from ``functions/``.

Registered first on ``before-send.lambda.Invoke`` of a botocore event system, the router
hands the function the request names, and its event, to ``answer``, and replies as the
Lambda Invoke API does: a raised exception becomes ``X-Amz-Function-Error: Unhandled``
with a payload of ``errorType``, ``errorMessage`` and ``stackTrace``, so the state
machine's Retry and Catch match on the exception's class name
(https://docs.aws.amazon.com/lambda/latest/api/API_Invoke.html,
https://docs.aws.amazon.com/lambda/latest/dg/python-exceptions.html). The local runtime
and the state-machine tests both route their executions' Lambda tasks through it.
"""

from __future__ import annotations

import importlib.util
import json
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import unquote

from botocore.awsrequest import AWSResponse

from deltaload.local.answered import claim
from deltaload.local.errors import LocalRuntimeError

EVENT = "before-send.lambda.Invoke"


@dataclass(frozen=True)
class Invocation:
    """What one Invoke answers: the HTTP status, the payload, and whether it is an error."""

    status: int
    payload: Any
    error: bool = False


def not_found(name: str) -> Invocation:
    """Lambda's answer for a function that does not exist."""
    return Invocation(404, {"Type": "User", "message": f"Function not found: {name}"})


def unhandled(error: BaseException) -> Invocation:
    """An exception the handler raised, reported as the Lambda runtime reports it."""
    payload = {
        "errorMessage": str(error),
        "errorType": type(error).__name__,
        "stackTrace": traceback.format_exception(error),
    }
    return Invocation(200, payload, error=True)


def call_handler(handler: Callable[[Any, Any], Any], event: Any, context: Any) -> Invocation:
    """Run one handler; any exception becomes the function error Lambda would return."""
    try:
        return Invocation(200, handler(event, context))
    except Exception as error:  # the Lambda runtime turns any exception into a FunctionError
        return unhandled(error)


def load_module(path: Path, name: str) -> ModuleType:
    """Import a handler file (``functions/<step>/app.py``) under its own module name."""
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise LocalRuntimeError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Body(BytesIO):
    """A response body botocore can read and stream (the Invoke Payload)."""

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.getvalue()


class LambdaRouter:
    """Answers Lambda Invoke calls with ``answer(function name or ARN, event)``."""

    def __init__(self, answer: Callable[[str, Any], Invocation]) -> None:
        self.answer = answer

    def __call__(self, request: Any, **_: Any) -> AWSResponse:
        url = claim(request)  # moto's stubber would dispatch the answered call again
        name = unquote(url.split("/functions/", 1)[1].split("/", 1)[0])
        event = json.loads(request.body) if request.body else {}
        invocation = self.answer(name, event)
        headers = {"Content-Type": "application/json", "X-Amz-Executed-Version": "$LATEST"}
        if invocation.error:
            headers["X-Amz-Function-Error"] = "Unhandled"
        body = _Body(json.dumps(invocation.payload).encode())
        return AWSResponse(url, invocation.status, headers, body)

    def install(self, events: Any) -> None:
        """Answer the Invoke calls of clients created from ``events``'s session."""
        events.register_first(EVENT, self, unique_id=f"deltaload-lambda-{id(self)}")

    def uninstall(self, events: Any) -> None:
        """Stop answering them."""
        events.unregister(EVENT, unique_id=f"deltaload-lambda-{id(self)}")
