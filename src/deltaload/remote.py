"""A deployed stack, found by its CloudFormation outputs, read and driven from the command line.

The outputs of template.yaml name everything a command needs (ControllerTableName,
RunHistoryTableName, StateMachineArn, StarterFunctionName): ``Stack`` answers the same
questions as the offline state reader (items, item, history, function_environment) and
starts and follows runs as ``deltaload run`` does offline, through the deployed starter.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from deltaload import store
from deltaload.aws import Clients, error_code
from deltaload.errors import DeltaloadError
from deltaload.items import from_dynamodb, to_dynamodb
from deltaload.outcome import ExecutionResult, run_outcome

# template.yaml Outputs -> the attribute of Stack each one fills.
OUTPUTS = {
    "ControllerTableName": "controller_table",
    "RunHistoryTableName": "history_table",
    "StateMachineArn": "state_machine_arn",
    "StarterFunctionName": "starter_function",
}
# The state the load state machine enters when a step failed (statemachine/load_table.asl.json):
# every Catch puts the caught error at $.error, as {"Error": ..., "Cause": ...}.
FAILURE_STATE = "RecordFailure"
# Polling while following executions: starts quick, settles at one call per execution
# every few seconds (DescribeExecution is throttled per account).
POLL_FIRST_SECONDS, POLL_MAX_SECONDS = 1.0, 10.0


class StackError(DeltaloadError):
    """The stack cannot be read or driven: which stack, which output or call, and why."""


@contextlib.contextmanager
def aws_errors(what: str) -> Iterator[None]:
    """AWS and credential errors as a StackError saying what was being done."""
    try:
        yield
    except ClientError as error:
        message = error.response.get("Error", {}).get("Message", str(error))
        raise StackError(f"{what}: {error_code(error)}: {message}") from None
    except BotoCoreError as error:
        raise StackError(f"{what}: {error}") from None


@dataclass(frozen=True)
class Stack:
    """The deployed resources of one stack, and the clients to reach them."""

    name: str
    controller_table: str
    history_table: str
    state_machine_arn: str
    starter_function: str
    clients: Clients = field(repr=False, compare=False)

    @classmethod
    def read(cls, clients: Clients, name: str) -> Stack:
        """The stack's names from its outputs; StackError when it or an output is missing."""
        with aws_errors(f"stack {name!r}: cannot read its outputs"):
            stacks = clients.cloudformation.describe_stacks(StackName=name)["Stacks"]
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
        missing = [key for key in OUTPUTS if not outputs.get(key)]
        if missing:
            raise StackError(
                f"stack {name!r} has no output {', '.join(missing)}: is it a deltaload stack "
                "(deployed from template.yaml)?"
            )
        names = {attribute: str(outputs[key]) for key, attribute in OUTPUTS.items()}
        return cls(name=name, clients=clients, **names)

    @property
    def region(self) -> str:
        """The region, from the state machine's ARN."""
        return self.state_machine_arn.split(":")[3]

    # -- what the readers show -------------------------------------------------------------------

    def items(self) -> list[dict[str, Any]]:
        """Every controller item, by table name."""
        with aws_errors(f"stack {self.name!r}: cannot scan {self.controller_table}"):
            found = list(store.scan(self.clients, self.controller_table, ConsistentRead=True))
        return sorted(found, key=lambda i: str(i.get("targetTableName", "")))

    def item(self, table: str) -> dict[str, Any] | None:
        """One controller item, or None."""
        with aws_errors(f"stack {self.name!r}: cannot read {table!r}"):
            raw = self.clients.dynamodb.get_item(
                TableName=self.controller_table,
                Key=to_dynamodb({store.KEY: table}),
                ConsistentRead=True,
            ).get("Item")
        return from_dynamodb(raw) if raw else None

    def history(self, table: str) -> list[dict[str, Any]]:
        """The run records of ``table``, oldest first."""
        records: list[dict[str, Any]] = []
        paginator = self.clients.dynamodb.get_paginator("query")
        with aws_errors(f"stack {self.name!r}: cannot read the history of {table!r}"):
            for page in paginator.paginate(
                TableName=self.history_table,
                KeyConditionExpression="targetTableName = :t",
                ExpressionAttributeValues={":t": {"S": table}},
                ConsistentRead=True,
            ):
                records += [from_dynamodb(raw) for raw in page.get("Items", [])]
        return sorted(records, key=lambda r: (str(r.get("startedAt", "")), str(r.get("runId"))))

    def function_environment(self, name: str) -> str | None:
        """A variable of the deployed functions' environment (read from the starter)."""
        with aws_errors(f"stack {self.name!r}: cannot read {self.starter_function}'s settings"):
            config = self.clients.lambda_.get_function_configuration(
                FunctionName=self.starter_function
            )
        value = (config.get("Environment") or {}).get("Variables", {}).get(name)
        return str(value) if value is not None else None

    def lake_object(self, bucket: str, key: str) -> bytes | None:
        """An object of the stack's lake, or None."""
        try:
            with aws_errors(f"stack {self.name!r}: cannot read s3://{bucket}/{key}"):
                return self.clients.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except StackError as error:
            if "NoSuchKey" in str(error):
                return None
            raise

    def lake_keys(self, bucket: str, prefix: str) -> list[str]:
        """The keys of the stack's lake under ``prefix``, sorted."""
        keys: list[str] = []
        paginator = self.clients.s3.get_paginator("list_objects_v2")
        with aws_errors(f"stack {self.name!r}: cannot list s3://{bucket}/{prefix}"):
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
                keys += [entry["Key"] for entry in page.get("Contents", [])]
        return sorted(keys)

    def execution_arn(self, run_id: str) -> str:
        """The ARN of the execution of run ``run_id`` (runs are named after their execution)."""
        return f"{self.state_machine_arn.replace(':stateMachine:', ':execution:')}:{run_id}"

    def console_url(self, execution_arn: str) -> str:
        """The Step Functions console page of an execution."""
        region = self.region
        return (
            f"https://{region}.console.aws.amazon.com/states/home?region={region}"
            f"#/v2/executions/details/{execution_arn}"
        )

    # -- starting and following runs -------------------------------------------------------------

    def start(self, tables: list[str] | None) -> dict[str, Any]:
        """Invoke the deployed starter (for ``tables`` only, if given); its summary."""
        event: dict[str, Any] = {"tables": list(tables)} if tables else {}
        with aws_errors(f"stack {self.name!r}: cannot invoke {self.starter_function}"):
            response = self.clients.lambda_.invoke(
                FunctionName=self.starter_function, Payload=json.dumps(event).encode()
            )
        payload = json.loads(response["Payload"].read() or b"null")
        if response.get("FunctionError"):
            detail = payload if isinstance(payload, dict) else {}
            raise StackError(
                f"stack {self.name!r}: {self.starter_function} failed: "
                f"{detail.get('errorType', 'error')}: {detail.get('errorMessage', payload)}"
            )
        return payload if isinstance(payload, dict) else {}

    def describe(self, execution_arn: str) -> ExecutionResult:
        """An execution's status and output; for one that did not succeed, why, from its
        history."""
        with aws_errors(f"stack {self.name!r}: cannot describe {execution_arn}"):
            described = self.clients.sfn.describe_execution(executionArn=execution_arn)
        result = ExecutionResult.described(described, execution_arn)
        if result.status not in ("RUNNING", "SUCCEEDED"):
            step, error, cause = self.failure(execution_arn)
            if error:
                result = replace(result, error=error, cause=cause, failed_step=step or None)
        return result

    def events(self, execution_arn: str, **kwargs: Any) -> list[dict[str, Any]]:
        """The events of an execution's history (every page)."""
        events: list[dict[str, Any]] = []
        paginator = self.clients.sfn.get_paginator("get_execution_history")
        with aws_errors(f"stack {self.name!r}: cannot read the history of {execution_arn}"):
            for page in paginator.paginate(executionArn=execution_arn, **kwargs):
                events += page.get("events", [])
        return events

    def failure(self, execution_arn: str) -> tuple[str, str, str]:
        """(step, error, cause) of the failure that ended a run, read from its history."""
        return failure_of(self.events(execution_arn))

    def current_step(self, execution_arn: str) -> str:
        """The last state a running execution entered (one page of its newest events)."""
        with aws_errors(f"stack {self.name!r}: cannot read the history of {execution_arn}"):
            page = self.clients.sfn.get_execution_history(
                executionArn=execution_arn, reverseOrder=True, maxResults=25
            )
        for event in page.get("events", []):
            entered = event.get("stateEnteredEventDetails")
            if entered:
                return str(entered.get("name", ""))
        return ""

    def follow(
        self,
        execution_arns: list[str],
        progress: Callable[[list[ExecutionResult]], None] | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> list[ExecutionResult]:
        """Poll the executions until each has ended; each one's outcome as offline.

        Stopping the command (Ctrl-C) stops the following only: the runs go on in AWS.
        """
        known = {arn: self.describe(arn) for arn in execution_arns}
        wait = POLL_FIRST_SECONDS
        while True:
            results = [known[arn] for arn in execution_arns]
            if progress:
                progress(results)
            if all(r.status != "RUNNING" for r in results):
                return [self.with_outcome(r) for r in results]
            sleep(wait)
            wait = min(wait * 2, POLL_MAX_SECONDS)
            for arn in execution_arns:
                if known[arn].status == "RUNNING":
                    known[arn] = self.describe(arn)

    def with_outcome(self, result: ExecutionResult) -> ExecutionResult:
        """The result with what the run did, from its history record."""
        with aws_errors(f"stack {self.name!r}: cannot read run {result.name}"):
            raw = self.clients.dynamodb.get_item(
                TableName=self.history_table,
                Key=to_dynamodb({store.KEY: result.table, "runId": result.name}),
                ConsistentRead=True,
            ).get("Item")
        outcome = run_outcome(result, from_dynamodb(raw) if raw else {})
        if outcome.result in ("failed", "interrupted") and result.failed_step:
            # The history record says what the run recorded; the execution says where, and
            # why when the record does not say it already.
            reason = outcome.reason
            if result.cause and result.cause not in reason:
                reason = f"{reason} ({result.error}: {result.cause})"
            outcome = replace(outcome, reason=f"in {result.failed_step}: {reason}")
        return replace(result, outcome=outcome)


def failure_of(events: list[dict[str, Any]]) -> tuple[str, str, str]:
    """(step, error, cause) of the failure in an execution's history events.

    The step whose error the state machine caught (the state before it entered
    RecordFailure, whose input has that error at ``$.error``); else the execution's own
    failure, timeout or abort.
    """
    previous = ""
    current = ""
    for event in events:
        entered = event.get("stateEnteredEventDetails")
        if entered:
            previous, current = current, str(entered.get("name", ""))
            if current == FAILURE_STATE:
                caught = _json(entered.get("input")).get("error") or {}
                if isinstance(caught, dict) and caught.get("Error"):
                    return previous, str(caught["Error"]), readable_cause(caught.get("Cause"))
    for event in reversed(events):
        for key in (
            "executionFailedEventDetails",
            "executionTimedOutEventDetails",
            "executionAbortedEventDetails",
        ):
            details = event.get(key)
            if details is not None:
                error = str(details.get("error") or event.get("type", ""))
                return current, error, readable_cause(details.get("cause"))
    return "", "", ""


def readable_cause(cause: Any) -> str:
    """A Lambda error's cause (a JSON document) as ``errorType: errorMessage``."""
    if not cause:
        return ""
    parsed = _json(cause)
    if parsed.get("errorMessage"):
        kind = parsed.get("errorType")
        return f"{kind}: {parsed['errorMessage']}" if kind else str(parsed["errorMessage"])
    return str(cause)


def _json(text: Any) -> dict[str, Any]:
    try:
        value = json.loads(text) if isinstance(text, str) else text
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
