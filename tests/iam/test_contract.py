"""IAM contract: every AWS call each function (and the state machine) makes offline is
allowed by the role template.yaml gives it.

Each scenario runs the real workflow through the offline runtime, records every call
with the role it is made with (tests/iam/recorder.py), turns each call into what IAM
authorizes using the Service Authorization Reference (tests/iam/sar.py), and evaluates
that against the role the SAM translator makes of template.yaml (tests/iam/roles.py).
The local emulators enforce no IAM at all, so this is the only test that would see a
role missing a permission before a deployment does.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from deltaload.local.account import ACCOUNT, REGION
from deltaload.local.runtime import LocalRuntime
from tests.guarantees.conftest import old, open_runtime, sqlite_orders
from tests.iam.evaluator import evaluate
from tests.iam.recorder import STATE_MACHINE, CallRecorder
from tests.iam.roles import role_of, roles
from tests.iam.sar import Request, requests_for
from tests.integration.conftest import OrdersTable, Ticks

TARGET = "orders_iam"
KEYS = uuid.NAMESPACE_DNS
ROWS = 30


def _throttle_once(service: str, operation: str) -> Callable[[LocalRuntime], Any]:
    def arm(rt: LocalRuntime) -> Any:
        return rt.faults.fail(service, operation, code="ThrottlingException", status=400)

    return arm


def _fail_after_rows(rt: LocalRuntime) -> Any:
    rt.dms.faults.fail_after_rows("*", 10)


def _add_a_column(table: OrdersTable) -> None:
    with table.engine.begin() as conn:
        conn.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN extra VARCHAR(20)")


@dataclass(frozen=True)
class Scenario:
    """One offline run: stack parameters, item changes, a fault, and the calls it must make."""

    parameters: dict[str, str] = field(default_factory=dict)
    item: dict[str, str] = field(default_factory=dict)
    arm: Callable[[LocalRuntime], Any] | None = None
    status: str = "SUCCEEDED"
    must_call: tuple[tuple[str, str], ...] = ()  # (role, operation) the path must exercise
    retried: tuple[str, str] | None = None  # (role, operation) refused once, then made again
    existing_instance: bool = False
    # A second run of the table (with new rows) reads the first run's manifest for the
    # table's schema; its calls are checked too.
    second_run: bool = False
    # What changes at the source before the second run (a column added: UpdateTable).
    between_runs: Callable[[OrdersTable], Any] | None = None


SERVERLESS = {"ReplicationMode": "serverless"}
SCENARIOS = {
    "instance-success": Scenario(
        parameters={"MaxConcurrentRuns": "5"},  # the starter then counts running executions
        must_call=(
            ("StarterFunction", "ListExecutions"),
            ("StarterFunction", "StartExecution"),
            ("ProbeSourceFunction", "GetItem"),
            ("ProbeSourceFunction", "GetSecretValue"),
            ("CreateResourcesFunction", "CreateReplicationInstance"),
            ("VerifyPublishFunction", "CopyObject"),
            ("RecordSuccessFunction", "UpdateItem"),
            ("RecordSuccessFunction", "GetTable"),
            ("RecordSuccessFunction", "CreateTable"),
            ("RecordSuccessFunction", "BatchCreatePartition"),
            ("TeardownFunction", "DeleteReplicationInstance"),
            (STATE_MACHINE, "Invoke"),
        ),
    ),
    "instance-load-fails": Scenario(
        arm=_fail_after_rows,
        status="FAILED",
        must_call=(("RecordFailureFunction", "DeleteObjects"), (STATE_MACHINE, "Publish")),
    ),
    "instance-teardown-retried": Scenario(
        arm=_throttle_once("dms", "DeleteReplicationInstance"),
        retried=("TeardownFunction", "DeleteReplicationInstance"),
    ),
    "existing-success": Scenario(
        parameters={"ReplicationMode": "existing"},
        existing_instance=True,
        must_call=(("StartLoadFunction", "CreateReplicationTask"),),
    ),
    "serverless-success": Scenario(
        parameters=SERVERLESS,
        must_call=(
            ("CheckLoadFunction", "DescribeReplicationTableStatistics"),
            ("CreateResourcesFunction", "CreateReplicationConfig"),
            ("StartLoadFunction", "StartReplication"),
            ("TeardownFunction", "DeleteReplicationConfig"),
        ),
    ),
    "serverless-load-fails": Scenario(
        parameters=SERVERLESS,
        arm=_fail_after_rows,
        status="FAILED",
        must_call=(
            ("RecordFailureFunction", "DeleteObjects"),
            ("TeardownFunction", "DeleteReplicationConfig"),
            (STATE_MACHINE, "Publish"),
        ),
    ),
    "serverless-teardown-retried": Scenario(
        parameters=SERVERLESS,
        arm=_throttle_once("dms", "DeleteReplicationConfig"),
        retried=("TeardownFunction", "DeleteReplicationConfig"),
    ),
    "instance-second-run": Scenario(
        second_run=True,
        must_call=(
            ("RecordSuccessFunction", "GetPartitions"),
            ("RecordSuccessFunction", "ListObjectsV2"),
            ("RecordSuccessFunction", "GetObject"),
        ),
    ),
    # The catalog follows a column added at the source.
    "instance-column-added": Scenario(
        second_run=True,
        between_runs=_add_a_column,
        must_call=(("RecordSuccessFunction", "UpdateTable"),),
    ),
    # Bounded windows: a target endpoint and a task per window, loaded by the Map.
    "instance-windows": Scenario(
        item={"endvalue": str(ROWS), "windowsize": "10", "windowconcurrency": "2"},
        must_call=(
            ("CreateResourcesFunction", "CreateEndpoint"),
            ("StartLoadFunction", "CreateReplicationTask"),
            ("VerifyPublishFunction", "CopyObject"),
            ("TeardownFunction", "DeleteReplicationTask"),
            ("TeardownFunction", "DeleteEndpoint"),
        ),
    ),
    "instance-windows-on-two-instances": Scenario(
        item={
            "endvalue": str(ROWS),
            "windowsize": "10",
            "windowconcurrency": "2",
            "windowinstances": "2",
        },
        must_call=(
            ("CreateResourcesFunction", "CreateReplicationInstance"),
            ("CheckResourcesFunction", "DescribeReplicationInstances"),
            ("TeardownFunction", "DeleteReplicationInstance"),
        ),
    ),
    "existing-windows": Scenario(
        parameters={"ReplicationMode": "existing"},
        existing_instance=True,
        item={"endvalue": str(ROWS), "windowsize": "10", "windowconcurrency": "2"},
        must_call=(("StartLoadFunction", "CreateReplicationTask"),),
    ),
    # Serverless windows: a replication config per window, each started and deleted.
    "serverless-windows": Scenario(
        parameters=SERVERLESS,
        item={"endvalue": str(ROWS), "windowsize": "10", "windowconcurrency": "2"},
        must_call=(
            ("CreateResourcesFunction", "CreateReplicationConfig"),
            ("StartLoadFunction", "StartReplication"),
            ("CheckLoadFunction", "DescribeReplicationTableStatistics"),
            ("TeardownFunction", "DeleteReplicationConfig"),
            ("TeardownFunction", "DeleteEndpoint"),
        ),
    ),
    # An item may ask for DMS Serverless on a stack whose default mode is instance.
    "serverless-item-on-instance-stack": Scenario(
        item={"replicationmode": "serverless"},
        must_call=(("CreateResourcesFunction", "CreateReplicationConfig"),),
    ),
}


@pytest.fixture
def table(tmp_path: Path) -> Iterator[OrdersTable]:
    source = sqlite_orders(tmp_path / "source.sqlite")
    source.insert(range(1, ROWS + 1), old())
    try:
        yield source
    finally:
        source.engine.dispose()


def _template_tags(rt: LocalRuntime) -> dict[str, dict[str, str]]:
    """Tags the template gives its own DMS resources (the local runtime creates them bare)."""
    tags: dict[str, dict[str, str]] = {}
    for logical_id in rt.template.of_type("AWS::DMS::Endpoint"):
        listed = rt.template.properties(logical_id).get("Tags", [])
        tags[rt.template.arns[logical_id]] = {t["Key"]: t["Value"] for t in listed}
    return tags


def _topic_keys(rt: LocalRuntime, kms_arns: dict[str, str]) -> dict[str, str]:
    keys: dict[str, str] = {}
    for logical_id, resource in rt.template.of_type("AWS::SNS::Topic").items():
        key = resource.get("Properties", {}).get("KmsMasterKeyId", {})
        if isinstance(key, dict) and "Ref" in key:
            keys[rt.template.arns[logical_id]] = kms_arns[key["Ref"]]
    return keys


def denied(
    rt: LocalRuntime, recorder: CallRecorder, parameters: dict[str, str]
) -> tuple[list[str], list[Request]]:
    """Every recorded request its role does not allow, and all requests checked."""
    translated = roles(rt.template, parameters)
    # The local runtime creates no KMS key; give each one an ARN in the real key/<id> format.
    kms_arns = {
        logical_id: f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{uuid.uuid5(KEYS, logical_id)}"
        for logical_id in rt.template.of_type("AWS::KMS::Key")
    }
    tags = _template_tags(rt) | recorder.resource_tags
    problems: list[str] = []
    checked: list[Request] = []
    for call in recorder.calls:
        role = translated[role_of(call.role)]
        statements = _with_kms_arns(role["statements"], rt, kms_arns)
        for request in requests_for(call, tags, _topic_keys(rt, kms_arns)):
            checked.append(request)
            decision = evaluate(statements, request.action, request.resource, request.context)
            if not decision.allowed:
                problems.append(f"{request.call}: {decision.result} for {request}")
    return sorted(set(problems)), checked


def _with_kms_arns(
    statements: list[dict[str, Any]], rt: LocalRuntime, kms_arns: dict[str, str]
) -> list[dict[str, Any]]:
    """Replace the local runtime's placeholder KMS key ARNs with the real key/<id> format."""
    placeholder = {rt.template.arns[k]: v for k, v in kms_arns.items()}

    def fix(node: Any) -> Any:
        if isinstance(node, str):
            return placeholder.get(node, node)
        if isinstance(node, list):
            return [fix(n) for n in node]
        if isinstance(node, dict):
            return {k: fix(v) for k, v in node.items()}
        return node

    return fix(statements)


def _existing_instance(rt: LocalRuntime) -> str:
    """A shared replication instance the user owns (no deltaload tag on it)."""
    dms = rt.session.client("dms")
    arn = dms.create_replication_instance(
        ReplicationInstanceIdentifier="shared-instance",
        ReplicationInstanceClass="dms.t3.medium",
        Tags=[{"Key": "owner", "Value": "data-platform"}],
    )["ReplicationInstance"]["ReplicationInstanceArn"]
    deadline = time.monotonic() + 60
    while (
        dms.describe_replication_instances(
            Filters=[{"Name": "replication-instance-arn", "Values": [arn]}]
        )["ReplicationInstances"][0]["ReplicationInstanceStatus"]
        != "available"
    ):
        assert time.monotonic() < deadline, "the shared instance never became available"
        time.sleep(0.1)
    return arn


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_every_call_is_allowed_by_its_role(
    name: str, table: OrdersTable, tmp_path: Path, ticks: Ticks
) -> None:
    scenario = SCENARIOS[name]
    with open_runtime(tmp_path / "state", table.url, parameters=scenario.parameters) as rt:
        parameters = dict(scenario.parameters)
        recorder = CallRecorder(rt)
        if scenario.existing_instance:
            arn = _existing_instance(rt)
            # The handlers read the shared instance from their environment (the stack
            # parameter ExistingReplicationInstanceArn); the runtime restores it on exit.
            os.environ["EXISTING_INSTANCE_ARN"] = arn
            parameters["ExistingReplicationInstanceArn"] = arn
            recorder.resource_tags[arn] = {"owner": "data-platform"}
        rt.put_item(table.item(TARGET, **scenario.item))
        armed = scenario.arm(rt) if scenario.arm else None
        result = rt.tick(now=ticks())
        [execution] = result.executions
        assert execution.status == scenario.status, (execution, rt.item(TARGET))
        if armed is not None and hasattr(armed, "fired"):
            assert armed.fired == 1, f"{name}: the fault never fired"
        if scenario.second_run:
            if scenario.between_runs:
                scenario.between_runs(table)
            table.insert(range(ROWS + 1, ROWS + 6), old())
            [second] = rt.tick(now=ticks()).executions
            assert second.status == "SUCCEEDED", (second, rt.item(TARGET))
            manifests = [
                c
                for c in recorder.calls
                if (c.role, c.operation) == ("VerifyPublishFunction", "GetObject")
                and "/_manifests/" in c.params.get("Key", "")
            ]
            assert manifests, "the second run did not read the table's schema manifest"
        made = {(c.role, c.operation) for c in recorder.calls}
        missing = [c for c in scenario.must_call if c not in made]
        assert not missing, f"{name} did not exercise {missing}"
        if scenario.retried:
            # The refused attempt is recorded too: IAM authorizes a call before the
            # service refuses it.
            made_twice = [c for c in recorder.calls if (c.role, c.operation) == scenario.retried]
            assert len(made_twice) >= 2, (scenario.retried, made_twice)
        problems, checked = denied(rt, recorder, parameters)
    assert checked, "no request was evaluated"
    if any(c.operation == "Publish" for c in recorder.calls):  # the topic is KMS-encrypted
        assert any(r.action == "kms:GenerateDataKey" for r in checked), "KMS not checked"
    assert not problems, "calls the template's roles do not allow:\n" + "\n".join(problems)


CLEANUP_CALLS = {
    "instance": {"StopReplicationTask", "DeleteReplicationTask", "DeleteReplicationInstance"},
    "serverless": {"StopReplication", "DeleteReplicationConfig"},
}


def _waiting_for_load(rt: LocalRuntime, arn: str) -> bool:
    events = rt.execution_history(arn)
    last = events[-1] if events else {}
    return (
        last.get("type") == "WaitStateEntered"
        and last.get("stateEnteredEventDetails", {}).get("name") == "WaitForLoad"
    )


@pytest.mark.parametrize("mode", list(CLEANUP_CALLS))
def test_cleanup_aborted_calls_are_allowed(
    mode: str, table: OrdersTable, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cancel path: an aborted execution's failure path runs in CleanupAbortedFunction
    (the runtime has no EventBridge bus: the test delivers the status-change event)."""
    import json

    from deltaload import workflow

    monkeypatch.setattr(workflow, "_sleep", lambda seconds: time.sleep(min(seconds, 0.5)))
    # Long waits between load checks: the execution is stopped while it sits in WaitForLoad.
    slow_polls = {"POLL_INITIAL_SECONDS": "4", "POLL_MAX_SECONDS": "4"}
    parameters = {"ReplicationMode": mode}
    with open_runtime(tmp_path / "state", table.url, slow_polls, parameters=parameters) as rt:
        recorder = CallRecorder(rt)
        rt.put_item(table.item(TARGET))
        rt.dms.faults.stall("*")
        sfn = rt.session.client("stepfunctions")
        run_id = f"{TARGET}-cancelled"
        payload = json.dumps({"table": TARGET, "runId": run_id})
        arn = sfn.start_execution(stateMachineArn=rt.state_machine_arn, name=run_id, input=payload)[
            "executionArn"
        ]
        deadline = time.monotonic() + 60
        while not _waiting_for_load(rt, arn):
            assert time.monotonic() < deadline, "the load never started"
            time.sleep(0.2)
        sfn.stop_execution(executionArn=arn, error="Cancelled", cause="stopped by the test")
        [stopped] = rt.wait_for([arn])
        assert stopped.status == "ABORTED", stopped
        rt.invoke(
            "CleanupAbortedFunction",
            {
                "source": "aws.states",
                "detail-type": "Step Functions Execution Status Change",
                "detail": {
                    "executionArn": arn,
                    "stateMachineArn": rt.state_machine_arn,
                    "name": run_id,
                    "status": "ABORTED",
                    "input": payload,
                },
            },
        )
        assert rt.item(TARGET)["lastRunStatus"] == "FAILED"
        cleanup = {c.operation for c in recorder.calls if c.role == "CleanupAbortedFunction"}
        assert CLEANUP_CALLS[mode] <= cleanup, cleanup
        problems, _ = denied(rt, recorder, parameters)
    assert not problems, "calls the template's roles do not allow:\n" + "\n".join(problems)


def test_teardown_can_never_delete_the_shared_instance() -> None:
    """Existing mode: the user's instance carries no deltaload tag, so neither teardown role
    may stop or delete it, whatever the code asks."""
    from deltaload.local.template import Template
    from tests.iam.roles import ROOT

    secret = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:s-AbCdEf"
    template = Template.load(ROOT, {"SourceSecretArn": secret, "ReplicationMode": "existing"})
    translated = roles(template)
    shared = f"arn:aws:dms:{REGION}:{ACCOUNT}:rep:SHARED"
    context = {"aws:ResourceTag/owner": "data-platform"}
    for function in ("TeardownFunction", "CleanupAbortedFunction"):
        statements = translated[role_of(function)]["statements"]
        decision = evaluate(statements, "dms:DeleteReplicationInstance", shared, context)
        assert not decision.allowed, (function, decision)
        own = {
            "aws:ResourceTag/deltaload:controller-table": template.physical_ids["ControllerTable"]
        }
        assert evaluate(statements, "dms:DeleteReplicationInstance", shared, own).allowed


def test_a_missing_statement_is_caught() -> None:
    """The pipeline can fail: without StartLoadExecutions the starter cannot start a run."""
    from deltaload.local.template import Template
    from tests.iam.recorder import Call
    from tests.iam.roles import ROOT

    secret = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:s-AbCdEf"
    template = Template.load(ROOT, {"SourceSecretArn": secret})
    statements = roles(template)[role_of("StarterFunction")]["statements"]
    call = Call(
        "StarterFunction",
        "stepfunctions",
        "StartExecution",
        {"stateMachineArn": template.arns["LoadStateMachine"], "name": "r1"},
    )
    [request] = requests_for(call, {})
    assert evaluate(statements, request.action, request.resource, request.context).allowed
    without = [s for s in statements if s.get("Sid") != "StartLoadExecutions"]
    assert not evaluate(without, request.action, request.resource, request.context).allowed


def test_the_catalog_grant_is_the_stack_database_only() -> None:
    """RecordSuccess may change the tables of the stack's Glue database, no other's: the
    table ARN is part of each request, and a table of another database is denied."""
    from deltaload.local.template import Template
    from tests.iam.recorder import Call
    from tests.iam.roles import ROOT

    secret = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:s-AbCdEf"
    template = Template.load(ROOT, {"SourceSecretArn": secret})
    database = template.physical_ids["GlueDatabase"]
    statements = roles(template)[role_of("RecordSuccessFunction")]["statements"]
    table_input = {"Name": "orders", "StorageDescriptor": {}}
    for operation, params in (
        ("GetTable", {"Name": "orders"}),
        ("CreateTable", {"TableInput": table_input}),
        ("UpdateTable", {"TableInput": table_input}),
        ("GetPartitions", {"TableName": "orders"}),
        ("BatchCreatePartition", {"TableName": "orders", "PartitionInputList": []}),
    ):
        own = requests_for(
            Call("RecordSuccessFunction", "glue", operation, {"DatabaseName": database, **params}),
            {},
        )
        assert f"arn:aws:glue:{REGION}:{ACCOUNT}:table/{database}/orders" in {
            r.resource for r in own
        }
        assert all(evaluate(statements, r.action, r.resource, r.context).allowed for r in own)
        other = requests_for(
            Call("RecordSuccessFunction", "glue", operation, {"DatabaseName": "other", **params}),
            {},
        )
        assert not all(
            evaluate(statements, r.action, r.resource, r.context).allowed for r in other
        ), operation
