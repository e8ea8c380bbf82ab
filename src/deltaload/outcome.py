"""How one run ended, in the words the command line prints: the same offline and deployed.

``run_outcome`` decides from what Step Functions says of the execution and the run's
history record, so ``deltaload run`` prints one summary whichever side ran it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from deltaload.store import FAILED


@dataclass
class ExecutionResult:
    """How one table's run ended."""

    table: str
    name: str
    status: str
    output: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    cause: str | None = None
    outcome: RunOutcome | None = None
    arn: str | None = None
    failed_step: str | None = None  # the state whose error ended the run (deployed runs)

    @classmethod
    def described(cls, description: dict[str, Any], arn: str) -> ExecutionResult:
        """The result of a Step Functions DescribeExecution answer."""
        execution_input = json.loads(description.get("input") or "{}")
        output = json.loads(description["output"]) if description.get("output") else {}
        return cls(
            table=str(execution_input.get("table", "?")),
            name=description["name"],
            status=description["status"],
            output=output if isinstance(output, dict) else {"output": output},
            error=description.get("error"),
            cause=description.get("cause"),
            arn=arn,
        )

    def to_json(self) -> dict[str, Any]:
        """The run as JSON for ``--json``: its execution and what it did."""
        described = {
            "table": self.table,
            "runId": self.name,
            "status": self.status,
            "executionArn": self.arn,
            "error": self.error,
            "cause": self.cause,
            "failedStep": self.failed_step,
        }
        return described | (asdict(self.outcome) if self.outcome else {})


@dataclass(frozen=True)
class RunOutcome:
    """What one run did, in the words the command line prints."""

    result: str  # loaded | nothing to load | skipped | failed | interrupted | running
    reason: str = ""
    window: str = ""
    rows: int | None = None
    files: int | None = None
    watermark: str | None = None


def run_outcome(result: ExecutionResult, record: dict[str, Any]) -> RunOutcome:
    """What the run did, from its execution's output and its run history record."""
    output = result.output
    run = output.get("run") or {}
    recorded = output.get("recorded") or {}
    window = str(run.get("windowText") or record.get("windowText") or "")
    if not window and record.get("window"):
        window = f"{record['window'].get('lower')} .. {record['window'].get('upper')}"
    lock = output.get("lock") or {}
    if result.status == "SUCCEEDED" and lock.get("acquired") is False:
        reason = str(lock.get("reason") or record.get("reason") or "")
        return RunOutcome("skipped", reason)
    status = str(record.get("status") or "")
    if result.status == "SUCCEEDED" and status != FAILED:
        rows = recorded.get("rows", record.get("rows"))
        files = recorded.get("files", record.get("files"))
        skip = run.get("skipReason") or record.get("skipReason")
        if skip:
            return RunOutcome("skipped", str(skip), window, rows, files, recorded.get("watermark"))
        what = "loaded" if int(rows or 0) or int(files or 0) else "nothing to load"
        return RunOutcome(
            what,
            "",
            window,
            int(rows or 0),
            int(files or 0),
            recorded.get("watermark", record.get("watermark")),
        )
    if result.status == "RUNNING":
        return RunOutcome("running", "", window)
    error = str(record.get("error") or "")
    if not error and result.error:
        error = f"{result.error}: {result.cause or ''}".strip(": ")
    what = "interrupted" if result.status == "ABORTED" else "failed"
    return RunOutcome(what, error or result.status, window)


@dataclass
class TickResult:
    """One scheduled tick: the starter's summary and every execution's end."""

    starter: dict[str, Any]
    executions: list[ExecutionResult]

    @property
    def failed(self) -> list[ExecutionResult]:
        """Executions that did not succeed."""
        return [e for e in self.executions if e.status != "SUCCEEDED"]
