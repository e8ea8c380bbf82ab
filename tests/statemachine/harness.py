"""Run the real state machine on moto's ASL interpreter with the real handlers in-process.

moto's interpreter calls ``boto3.client("lambda").invoke`` (boto3's default session);
a ``before-send.lambda.Invoke`` hook registered first on that session answers the call
by running ``functions/<folder>/app.py``'s handler, and reports a raised exception the
way Lambda does (``X-Amz-Function-Error: Unhandled``, payload ``{"errorType",
"errorMessage"}``), so Catch/Retry match on the exception's class name.
"""

from __future__ import annotations

import importlib.util
import io
import json
import re
import time
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any
from urllib.parse import unquote

import boto3
from botocore.awsrequest import AWSResponse

from deltaload.local.account import ACCOUNT, REGION

ROOT = Path(__file__).resolve().parents[2]
ASL = ROOT / "statemachine" / "load_table.asl.json"
FOLDERS = {
    "AcquireLockFunction": "acquire_lock",
    "PlanRunFunction": "plan_run",
    "CreateResourcesFunction": "create_resources",
    "CheckResourcesFunction": "check_resources",
    "StartLoadFunction": "start_load",
    "CheckLoadFunction": "check_load",
    "VerifyPublishFunction": "verify_publish",
    "RecordSuccessFunction": "record_success",
    "RecordFailureFunction": "record_failure",
    "TeardownFunction": "teardown",
}


def function_arn(logical_id: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{logical_id}"


def load_handler(folder: str) -> ModuleType:
    """Import functions/<folder>/app.py under a unique module name."""
    path = ROOT / "functions" / folder / "app.py"
    spec = importlib.util.spec_from_file_location(f"deltaload_fn_{folder}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def definition(topic_arn: str) -> str:
    text = ASL.read_text()
    for logical_id in FOLDERS:
        text = text.replace("${" + logical_id + "Arn}", function_arn(logical_id))
    text = text.replace("${NotificationTopicArn}", topic_arn)
    leftover = re.findall(r"\$\{[^}]+\}", text)
    assert not leftover, f"unsubstituted: {leftover}"
    return text


class _Body(io.BytesIO):
    """The raw body botocore wraps: readable (streaming Payload) and streamable."""

    def stream(self, **_: Any):
        yield self.getvalue()


class LambdaRouter:
    """Serves Lambda Invoke calls from the handlers in ``functions/``."""

    def __init__(self, modules: dict[str, ModuleType]) -> None:
        self.modules = modules  # logical id -> handler module
        self.invocations: list[str] = []
        self.faults: dict[str, list[Exception]] = {}  # logical id -> exceptions to raise

    def __call__(self, request: Any, **_: Any) -> AWSResponse:
        name = unquote(request.url.split("/functions/")[1].split("/")[0]).split(":")[-1]
        self.invocations.append(name)
        event = json.loads(request.body or b"{}")
        headers = {"Content-Type": "application/json"}
        try:
            if self.faults.get(name):
                raise self.faults[name].pop(0)
            context = SimpleNamespace(
                function_name=name,
                memory_limit_in_mb=512,
                invoked_function_arn=function_arn(name),
                aws_request_id=f"req-{len(self.invocations)}",
            )
            payload = self.modules[name].handler(event, context)
        except Exception as error:  # reported like Lambda reports an unhandled error
            headers["X-Amz-Function-Error"] = "Unhandled"
            payload = {"errorType": type(error).__name__, "errorMessage": str(error)}
        return AWSResponse(request.url, 200, headers, _Body(json.dumps(payload).encode()))

    def install(self) -> None:
        session = boto3._get_default_session()  # the session moto's interpreter uses
        session.events.register_first("before-send.lambda.Invoke", self)

    def uninstall(self) -> None:
        boto3._get_default_session().events.unregister("before-send.lambda.Invoke", self)


def run_execution(sfn: Any, state_machine_arn: str, payload: dict, timeout: float = 60) -> dict:
    """Start an execution and wait for it to end; the describe_execution result + history."""
    arn = sfn.start_execution(
        stateMachineArn=state_machine_arn, name=payload["runId"], input=json.dumps(payload)
    )["executionArn"]
    deadline = time.monotonic() + timeout
    while True:
        described = sfn.describe_execution(executionArn=arn)
        if described["status"] != "RUNNING":
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"execution still running after {timeout}s")
        time.sleep(0.05)
    events = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    described["states"] = [
        e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e
    ]
    described["events"] = events
    return described
