"""Failures of AWS calls on demand, for proving the guarantees under faults.

``AwsFaults.fail("s3", "CopyObject", after=1, code="InternalError")`` makes the
second CopyObject (of any client of the runtime's session) answer with that error
once. The failure answers botocore's ``before-call`` event, so the caller gets the
ClientError the service would raise once the SDK's own retries are exhausted.
DMS-specific faults (a task that fails after N rows, a stalled task) live in the
local replication engine.

``checkpoint(name)`` marks a point where a test running the real ``deltaload`` process
may kill it or hold it, chosen by environment variables (never set in normal use):

- ``DELTALOAD_TEST_KILL_AT=<point>``: SIGKILL this process at the point (its first pass,
  or its n-th with ``<point>#<n>``);
- ``DELTALOAD_TEST_PAUSE_AT=<point>``: at the point, create the file named by
  ``DELTALOAD_TEST_PAUSE_FILE`` and wait until the command is interrupted or a file of
  that name plus ``.continue`` appears (at most five minutes).

The points: ``writer-locked`` (the folder's writer lock is taken and the state restored),
``after:<FunctionLogicalId>`` (a handler returned, e.g. ``after:AcquireLockFunction`` with
the table's lock taken, ``after:VerifyPublishFunction`` with the files published and the
watermark not yet recorded), ``mid-load`` (the engine has written a staging file),
``before-rename:<LogicalId>@<FunctionLogicalId>`` (a table's new file is written and
fsynced but not yet renamed into place) and ``after-save:<LogicalId>@<FunctionLogicalId>``
(the file is in place; the function's next write, often to the other table, is not).
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # botocore is imported only when a fault fires, not by every reader
    from botocore.awsrequest import AWSResponse

# boto3 service names whose event names (service ids) differ.
_EVENT_SERVICE = {
    "dms": "database-migration-service",
    "stepfunctions": "sfn",
    "secretsmanager": "secrets-manager",
}


class _Raw(BytesIO):
    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.getvalue()


@dataclass
class AwsFault:
    """One armed failure: skip ``after`` matching calls, then fail ``times`` of them."""

    service: str
    operation: str
    code: str
    message: str
    status: int
    after: int
    times: int
    when: Callable[[dict[str, Any]], bool] | None = None
    seen: int = 0
    fired: int = 0

    @property
    def spent(self) -> bool:
        return self.fired >= self.times


class AwsFaults:
    """Armed AWS call failures for one botocore event emitter."""

    def __init__(self, events: Any) -> None:
        self._events = events
        self._lock = threading.Lock()
        self._faults: list[AwsFault] = []
        self._registered: set[str] = set()

    def fail(
        self,
        service: str,
        operation: str,
        *,
        code: str = "InternalError",
        message: str = "injected failure",
        status: int = 500,
        after: int = 0,
        times: int = 1,
        when: Callable[[dict[str, Any]], bool] | None = None,
    ) -> AwsFault:
        """Fail ``times`` calls of ``service``.``operation`` once ``after`` calls went through.

        ``when`` sees botocore's request dict (url_path, query_string, body) and decides
        whether the call counts.
        """
        fault = AwsFault(service, operation, code, message, status, after, times, when)
        event = f"before-call.{_EVENT_SERVICE.get(service, service)}.{operation}"
        with self._lock:
            self._faults.append(fault)
            if event not in self._registered:
                self._registered.add(event)
                self._events.register_first(event, self._before_call, unique_id=f"fault-{event}")
        return fault

    def clear(self) -> None:
        """Disarm every fault."""
        with self._lock:
            self._faults.clear()

    def _before_call(self, model: Any, params: dict[str, Any], **_: Any) -> Any:
        service = model.service_model.service_name
        with self._lock:
            for fault in self._faults:
                if fault.spent or fault.operation != model.name:
                    continue
                if fault.service not in (service, model.service_model.endpoint_prefix):
                    continue
                if fault.when is not None and not fault.when(params):
                    continue
                fault.seen += 1
                if fault.seen <= fault.after:
                    continue
                fault.fired += 1
                return _error(fault)
        return None


def _error(fault: AwsFault) -> tuple[AWSResponse, dict[str, Any]]:
    """A parsed error response, as botocore's before-call short-circuit expects."""
    from botocore.awsrequest import AWSResponse

    parsed = {
        "Error": {"Code": fault.code, "Message": fault.message},
        "ResponseMetadata": {"HTTPStatusCode": fault.status, "RetryAttempts": 0},
    }
    body = _Raw(json.dumps(parsed).encode())
    response = AWSResponse("https://local.fault", fault.status, {}, body)
    return response, parsed


KILL_ENV = "DELTALOAD_TEST_KILL_AT"
PAUSE_ENV = "DELTALOAD_TEST_PAUSE_AT"
PAUSE_FILE_ENV = "DELTALOAD_TEST_PAUSE_FILE"
_passes: dict[str, int] = {}
_passes_lock = threading.Lock()
_released = threading.Event()


def checkpoint(point: str) -> None:
    """A test-only fault point: kill or hold the process here if the environment asks."""
    kill, pause = os.environ.get(KILL_ENV), os.environ.get(PAUSE_ENV)
    if not kill and not pause:
        return
    with _passes_lock:
        _passes[point] = count = _passes.get(point, 0) + 1
    if kill in (point, f"{point}#{count}"):
        os.kill(os.getpid(), signal.SIGKILL)
    if pause in (point, f"{point}#{count}"):
        marker = os.environ.get(PAUSE_FILE_ENV)
        if marker:
            Path(marker).write_text(f"{os.getpid()} {point}\n")
        # Held until the command is interrupted or the test creates "<marker>.continue".
        go_on = Path(f"{marker}.continue") if marker else None
        for _ in range(6000):
            if _released.wait(0.05) or (go_on is not None and go_on.exists()):
                break


def release_paused() -> None:
    """Let a thread held at a pause point go on (the command is being interrupted)."""
    _released.set()
