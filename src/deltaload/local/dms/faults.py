"""Fault injection for the local DMS engine: make creates fail, loads fail, calls throttle.

Every fault is armed with a glob (``fnmatch`` syntax, case-sensitive) on the identifier
of the resource it concerns and a count of how many times it fires; once spent it is
forgotten. Thread-safe: faults are consumed from the request and the load threads.
"""

from __future__ import annotations

import fnmatch
import threading
from dataclasses import dataclass, field

CREATE_OPERATIONS = (
    "CreateEndpoint",
    "CreateReplicationInstance",
    "CreateReplicationTask",
    "CreateReplicationConfig",
    "CreateReplicationSubnetGroup",
)


@dataclass
class Fault:
    """One armed fault; ``remaining`` counts down each time it fires."""

    kind: str
    pattern: str
    remaining: int
    operation: str = "*"
    rows: int = 0
    code: str = "ResourceQuotaExceededFault"
    message: str = ""
    fired: int = field(default=0)

    def matches(self, identifier: str | None, operation: str = "*") -> bool:
        """True if this fault applies to ``identifier`` (None only matches '*')."""
        if not fnmatch.fnmatchcase(operation, self.operation):
            return False
        if identifier is None:
            return self.pattern == "*"
        return fnmatch.fnmatchcase(identifier, self.pattern)


class FaultRegistry:
    """The faults armed on one LocalDms: ``fail_*``, ``throttle`` and ``stall`` arm them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def fail_at_create(
        self,
        pattern: str,
        *,
        operation: str = "CreateReplicationTask",
        times: int = 1,
        code: str = "ResourceQuotaExceededFault",
        message: str | None = None,
    ) -> None:
        """Make the next ``times`` calls of ``operation`` whose new identifier matches fail.

        ``operation`` is one of CreateEndpoint, CreateReplicationInstance,
        CreateReplicationTask, CreateReplicationConfig, CreateReplicationSubnetGroup
        (or a glob over them); ``code`` is the DMS error code answered.
        """
        if not any(fnmatch.fnmatchcase(op, operation) for op in CREATE_OPERATIONS):
            raise ValueError(f"fail_at_create: {operation!r} matches no create operation")
        text = message or f"Injected fault: {operation} refused for identifiers {pattern!r}"
        self._arm(Fault("create", pattern, times, operation=operation, code=code, message=text))

    def fail_after_rows(self, pattern: str, rows: int, *, times: int = 1) -> None:
        """Make the next ``times`` loads of matching tasks write ``rows`` rows, then fail.

        The rows already written stay in S3 (as DMS leaves a partial load behind);
        the task ends ``failed`` with a LastFailureMessage that names the table.
        """
        if rows < 0:
            raise ValueError("fail_after_rows: rows must be >= 0")
        self._arm(Fault("rows", pattern, times, rows=rows))

    def throttle(self, calls: int, *, pattern: str = "*", operation: str = "*") -> None:
        """Answer the next ``calls`` matching DMS calls with ThrottlingException.

        With the default ``pattern='*'`` every call counts; otherwise only calls that
        name (by identifier or ARN) a task or replication config matching ``pattern``.
        """
        self._arm(Fault("throttle", pattern, calls, operation=operation))

    def stall(self, pattern: str, *, times: int = 1) -> None:
        """Keep the next ``times`` started matching tasks ``running`` until they are stopped."""
        self._arm(Fault("stall", pattern, times))

    def hold(self, pattern: str, status: str, *, times: int = 1) -> None:
        """Keep the next ``times`` started matching replications in ``status`` until stopped.

        ``status`` is one of the states a start passes through before ``running``: a
        serverless phase (``initializing`` ... ``replication_starting``) or a task's
        ``starting``. The replication stays there until StopReplication(Task).
        """
        from .models import SERVERLESS_PHASES  # a leaf module; imported here to stay light

        if status not in (*SERVERLESS_PHASES, "starting"):
            raise ValueError(
                f"hold: {status!r} is not a start phase "
                f"({', '.join((*SERVERLESS_PHASES, 'starting'))})"
            )
        self._arm(Fault("hold", pattern, times, operation=status))

    def clear(self) -> None:
        """Disarm every fault."""
        with self._lock:
            self._faults.clear()

    def armed(self) -> list[Fault]:
        """A snapshot of the faults still armed (for assertions and debugging)."""
        with self._lock:
            return [Fault(**vars(f)) for f in self._faults]

    def take(self, kind: str, identifier: str | None, operation: str = "*") -> Fault | None:
        """Consume and return the first armed fault of ``kind`` that matches, if any."""
        with self._lock:
            for fault in self._faults:
                if fault.kind == kind and fault.matches(identifier, operation):
                    fault.remaining -= 1
                    fault.fired += 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _arm(self, fault: Fault) -> None:
        if fault.remaining < 1:
            raise ValueError(f"{fault.kind} fault: the count must be at least 1")
        with self._lock:
            self._faults.append(fault)
