"""Run the real state machine on moto's ASL interpreter with the real handlers in-process.

moto's interpreter calls ``boto3.client("lambda").invoke`` (boto3's default session); the
local runtime's in-process Lambda router (``deltaload.local.lambdas``), installed on that
session, answers the call by running ``functions/<folder>/app.py``'s handler and reports a
raised exception the way Lambda does, so Catch/Retry match on the exception's class name.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import boto3

from deltaload.local.account import ACCOUNT, REGION
from deltaload.local.lambdas import Invocation, LambdaRouter, call_handler, load_module, not_found

ROOT = Path(__file__).resolve().parents[2]
ASL = ROOT / "statemachine" / "load_table.asl.json"
FOLDERS = {
    "AcquireLockFunction": "acquire_lock",
    "ProbeSourceFunction": "probe_source",
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
    return load_module(ROOT / "functions" / folder / "app.py", f"deltaload_fn_{folder}")


def definition(topic_arn: str) -> str:
    text = ASL.read_text()
    for logical_id in FOLDERS:
        text = text.replace("${" + logical_id + "Arn}", function_arn(logical_id))
    text = text.replace("${NotificationTopicArn}", topic_arn)
    leftover = re.findall(r"\$\{[^}]+\}", text)
    assert not leftover, f"unsubstituted: {leftover}"
    return text


class Handlers:
    """The handler modules by logical id, as the shared in-process LambdaRouter's answer."""

    def __init__(self, modules: dict[str, ModuleType]) -> None:
        self.modules = modules  # logical id -> handler module
        self.invocations: list[str] = []

    def __call__(self, name: str, event: Any) -> Invocation:
        logical_id = name.split(":")[-1]  # the definition names each function by its ARN
        if logical_id not in self.modules:
            return not_found(name)
        self.invocations.append(logical_id)
        context = SimpleNamespace(
            function_name=logical_id,
            memory_limit_in_mb=512,
            invoked_function_arn=function_arn(logical_id),
            aws_request_id=f"req-{len(self.invocations)}",
        )
        return call_handler(self.modules[logical_id].handler, event, context)


def install_router(modules: dict[str, ModuleType]) -> Handlers:
    """Answer Lambda Invoke on boto3's default session (the one moto's interpreter uses)."""
    handlers = Handlers(modules)
    LambdaRouter(handlers).install(boto3._get_default_session().events)
    return handlers


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
