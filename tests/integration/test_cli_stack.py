"""The `--stack` commands against a deployed stack emulated by moto.

The stack's resources are the offline runtime's (the controller and history tables, the
state machine running the real definition, the starter and the step functions answered
by their real handlers); a CloudFormation stack whose outputs name them stands for the
deployment, as `sam deploy` leaves it. The commands reach it only through the outputs.
"""

from __future__ import annotations

import io
import json
import sqlite3
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner

from deltaload import remote
from deltaload.cli import app
from deltaload.local.runtime import LocalRuntime, Source
from tests.integration.conftest import FAST, ROOT, write

SEED = ROOT / "controller_seed"
STACK = "deltaload-prod"


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", "def handler(event, context):\n    return {}\n")
    return buffer.getvalue()


def _deploy(rt: LocalRuntime) -> None:
    """What `sam deploy` leaves for the commands: the starter function and the outputs."""
    starter = rt.template.function("StarterFunction")
    role = boto3.client("iam").create_role(
        RoleName="starter-role", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17"})
    )["Role"]["Arn"]
    boto3.client("lambda").create_function(
        FunctionName=rt._functions["StarterFunction"].name,
        Runtime="python3.12",
        Role=role,
        Handler="app.handler",
        Code={"ZipFile": _zip()},
        Environment={"Variables": {**starter.environment, "SAFETY_LAG_SECONDS": "120"}},
    )
    outputs = {
        "ControllerTableName": rt.controller_table,
        "RunHistoryTableName": rt.history_table,
        "StateMachineArn": rt.state_machine_arn,
        "StarterFunctionName": rt._functions["StarterFunction"].name,
        "DataBucketName": rt.bucket,
    }
    body = {
        "Resources": {"Marker": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {key: {"Value": value} for key, value in outputs.items()},
    }
    boto3.client("cloudformation").create_stack(StackName=STACK, TemplateBody=json.dumps(body))


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Run `deltaload --stack deltaload-prod ...` against the emulated deployment."""
    source = tmp_path / "source.sqlite"
    with sqlite3.connect(source) as db:
        db.execute("CREATE TABLE orders_rds (row_id INTEGER PRIMARY KEY, status TEXT)")
        db.executemany("INSERT INTO orders_rds VALUES (?, 'NEW')", [(i,) for i in range(1, 31)])
    monkeypatch.chdir(tmp_path)  # nothing local: no template.yaml, no state folder
    monkeypatch.setattr(remote, "POLL_FIRST_SECONDS", 0.1)
    monkeypatch.setattr(remote, "POLL_MAX_SECONDS", 0.5)
    with LocalRuntime(
        ROOT,
        tmp_path / "aws",
        Source.from_url(f"sqlite:///{source}", schema="dwh"),
        # The functions log where their logs go in AWS, not into the commands' output.
        log_file=tmp_path / "functions.log",
        timing=FAST,
        environment={"POLL_INITIAL_SECONDS": "0", "POLL_MAX_SECONDS": "1"},
    ) as rt:
        _deploy(rt)
        runner = CliRunner()

        def run(*args: str) -> Any:
            return runner.invoke(app, [*args, "--stack", STACK], catch_exceptions=False)

        run.rt = rt  # type: ignore[attr-defined]
        run.tmp = tmp_path  # type: ignore[attr-defined]
        yield run


def _onboard(stack: Any, **changes: Any) -> None:
    item = {**json.loads((SEED / "orders.json").read_text()), **changes}
    result = stack("onboard", write(stack.tmp, f"{item['targetTableName']}.json", item))
    assert result.exit_code == 0, result.output
    assert f"onboarded {item['targetTableName']} into {stack.rt.controller_table}" in result.output


def test_onboard_run_status_runs_and_plan_on_the_stack(stack):
    _onboard(stack)
    run = stack("run")
    assert run.exit_code == 0, run.output
    assert "orders_s3" in run.output and "loaded" in run.output
    # The same summary as offline: the table with its window, rows, files, watermark
    # (the window ends at the maximum the source probe found).
    assert "[1, 30]" in run.output

    [item] = json.loads(stack("status", "--json").stdout)
    assert (item["watermark"], item["lastRunRows"], item["lastRunStatus"]) == (
        "30",
        30,
        "SUCCEEDED",
    )
    assert "SUCCEEDED" in stack("status").output

    runs = stack("runs", "orders_s3")
    assert runs.exit_code == 0
    [record] = json.loads(stack("runs", "orders_s3", "--json").stdout)
    arn = stack.rt.execution_arn(record["runId"])
    assert record["executionArn"] == arn
    assert record["consoleUrl"].endswith(f"#/v2/executions/details/{arn}")
    assert record["consoleUrl"] in runs.output.replace("\n", "")

    plan = json.loads(stack("plan", "orders_s3", "--json").stdout)
    assert (plan["window"], plan["watermark"]) == ("[31, max loaded value]", "30")


def test_a_failed_run_shows_its_error_and_cause(stack):
    _onboard(stack, sourceTable="missing_table")
    run = stack("run")
    assert run.exit_code == 1, run.output
    assert "failed" in run.output and "no source table matches" in run.output
    # A run's name is its table and start time to the second: the second run of the
    # table must start in a later second (the probe fails it within the first).
    time.sleep(1.1)
    [execution] = json.loads(stack("run", "--json").stdout)["executions"]
    # Where it failed and why, read from the execution's history: the source probe
    # finds no such table before any DMS resource exists.
    assert (execution["result"], execution["failedStep"], execution["error"]) == (
        "failed",
        "ProbeSource",
        "ProbeError",
    )
    assert "no source table matches dwh.missing_table" in execution["cause"]
    assert execution["reason"].startswith("in ProbeSource: ProbeError: table 'orders_s3'")
    # The table says it too, at 80 columns, whole.
    assert "failed orders_s3: in ProbeSource: ProbeError" in run.output


def test_run_without_waiting_starts_and_returns(stack):
    _onboard(stack)
    result = stack("run", "--no-wait", "--json")
    assert result.exit_code == 0, result.output
    [execution] = json.loads(result.stdout)["executions"]
    assert execution["executionArn"].startswith(
        stack.rt.state_machine_arn.replace(":stateMachine:", ":execution:")
    )
    # It goes on in the stack: wait for it before the emulated AWS is taken down.
    stack.rt.wait_for([execution["executionArn"]])


def test_retry_on_the_stack(stack):
    _onboard(stack, sourceTable="late_table")
    assert stack("retry", "orders_s3").exit_code == 1  # it has not run yet
    assert stack("run").exit_code == 1
    source = Path(str(stack.rt.source.url).removeprefix("sqlite:///"))
    with sqlite3.connect(source) as db:
        db.execute("CREATE TABLE late_table AS SELECT * FROM orders_rds")
    retried = stack("retry", "orders_s3", "--json")
    assert retried.exit_code == 0, retried.output
    [execution] = json.loads(retried.stdout)["executions"]
    assert (execution["result"], execution["rows"]) == ("loaded", 30)


def test_reset_on_the_stack_is_refused_under_a_lock_and_recorded(stack):
    _onboard(stack)
    assert stack("run").exit_code == 0
    dynamodb = boto3.client("dynamodb")
    key = {"targetTableName": {"S": "orders_s3"}}
    dynamodb.update_item(
        TableName=stack.rt.controller_table,
        Key=key,
        UpdateExpression="SET lockOwner = :run, lockExpiresAt = :until",
        ExpressionAttributeValues={":run": {"S": "run-9"}, ":until": {"N": "9999999999"}},
    )
    refused = stack("reset", "orders_s3", "--to", "10")
    assert refused.exit_code == 1
    assert "run run-9 holds the lock" in refused.output and "nothing was written" in refused.output
    dynamodb.update_item(
        TableName=stack.rt.controller_table,
        Key=key,
        UpdateExpression="REMOVE lockOwner, lockExpiresAt",
    )
    moved = stack("reset", "orders_s3", "--to", "10", "--json")
    assert moved.exit_code == 0, moved.output
    record = json.loads(moved.stdout)
    assert (record["previousWatermark"], record["watermark"]) == ("30", "10")
    assert record["by"]
    history = json.loads(stack("runs", "orders_s3", "--json").stdout)
    assert history[-1]["runId"] == record["runId"] and "executionArn" not in history[-1]


def test_validate_the_deployed_items(stack):
    _onboard(stack)
    assert "ok   orders_s3" in stack("validate").output
    boto3.client("dynamodb").put_item(
        TableName=stack.rt.controller_table,
        Item={"targetTableName": {"S": "by_hand"}, "activeflag": {"S": "maybe"}},
    )
    result = stack("validate")
    assert result.exit_code == 1
    assert "by_hand" in result.output and "activeflag" in result.output


def test_a_stack_that_does_not_exist_is_an_error_not_a_traceback(stack):
    result = CliRunner().invoke(app, ["status", "--stack", "nope"], catch_exceptions=False)
    assert result.exit_code == 1
    assert "stack 'nope': cannot read its outputs" in result.output


def test_ddl_on_the_stack(stack):
    missing = stack("ddl", "orders_s3")
    assert missing.exit_code == 1 and "no controller item 'orders_s3'" in missing.output
    _onboard(stack)
    assert stack("run").exit_code == 0
    [record] = json.loads(stack("runs", "orders_s3", "--json").stdout)
    out = stack("ddl", "orders_s3")
    assert out.exit_code == 0, out.output
    database = stack.rt.template.physical_ids["GlueDatabase"]
    assert f"CREATE EXTERNAL TABLE IF NOT EXISTS `{database}`.`orders_s3`" in out.output
    location = f"s3://{stack.rt.bucket}/datalake/dwh/orders_s3/"
    assert f"LOCATION '{location}'" in out.output
    assert f"PARTITION (run = '{record['runId']}') LOCATION '{location}run=" in out.output
    assert "CREATE OR REPLACE VIEW" not in out.output  # the item has no keycolumns
