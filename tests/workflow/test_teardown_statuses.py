"""Teardown in every documented DMS status: stop, wait or delete, never a refused call repeated.

A stub DMS answers one task or serverless replication in a given status and refuses what
DMS documents it refuses; each test runs one teardown pass and checks which calls it made.
The statuses come from the DMS API Reference (ReplicationTask.Status) and the DMS user
guide ("AWS DMS Serverless components"); see docs/aws-fidelity.md, "Statuses".
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from deltaload import names, replication
from deltaload.aws import Clients
from deltaload.handlers import run_step
from deltaload.local.account import ACCOUNT, REGION
from deltaload.settings import Settings
from tests.workflow.conftest import NOW

RUN = names.dms_names("orders", "orders-20240501T120000Z")
CONFIG_ARN = f"arn:aws:dms:{REGION}:{ACCOUNT}:replication-config:CFG"
TASK_ARN = f"arn:aws:dms:{REGION}:{ACCOUNT}:task:TASK"
ENDPOINT_ARN = f"arn:aws:dms:{REGION}:{ACCOUNT}:endpoint:TGT"

TASK_STATUSES = {
    "creating": "wait",
    "ready": "delete",
    "starting": "stop",
    "running": "stop",
    "stopping": "wait",
    "stopped": "delete",
    "failed": "delete",
    "deleting": "wait",
    "modifying": "wait",
    "moving": "wait",
    "failed-move": "delete",
    "testing": "wait",
}
SERVERLESS_STATUSES = {
    "": "delete",  # a config whose replication never started
    "created": "delete",
    "ready": "delete",
    **dict.fromkeys(replication.SERVERLESS_STARTING, "stop"),
    "running": "stop",
    "stopping": "wait",
    "stopped": "delete",
    "failed": "delete",
    "deleting": "wait",
}


def refused(operation: str, message: str) -> ClientError:
    return ClientError(
        {"Error": {"Code": "InvalidResourceStateFault", "Message": message}}, operation
    )


class StubDms:
    """One run's task or config in ``status``; refuses stops and deletes as DMS documents."""

    def __init__(
        self,
        status: str,
        *,
        serverless: bool,
        refuse: set[str] | None = None,
        present: bool = True,
    ) -> None:
        self.status = status
        self.serverless = serverless
        self.present = present  # False: the task / config is already gone
        self.refuse = refuse or set()
        self.calls: list[str] = []
        self.endpoint = True

    def _not_found(self) -> ClientError:
        return ClientError({"Error": {"Code": "ResourceNotFoundFault", "Message": "none"}}, "X")

    def describe_replication_configs(self, **_: Any) -> dict[str, Any]:
        if not (self.serverless and self.present):
            raise self._not_found()
        return {"ReplicationConfigs": [{"ReplicationConfigArn": CONFIG_ARN}]}

    def describe_replications(self, **_: Any) -> dict[str, Any]:
        if self.status == "":
            raise self._not_found()  # DMS: no replication before the first start
        return {"Replications": [{"ReplicationConfigArn": CONFIG_ARN, "Status": self.status}]}

    def describe_replication_tasks(self, **_: Any) -> dict[str, Any]:
        if self.serverless or not self.present:
            raise self._not_found()
        return {"ReplicationTasks": [{"ReplicationTaskArn": TASK_ARN, "Status": self.status}]}

    def describe_endpoints(self, **_: Any) -> dict[str, Any]:
        if not self.endpoint:
            raise self._not_found()
        return {"Endpoints": [{"EndpointArn": ENDPOINT_ARN, "Status": "active"}]}

    def describe_replication_instances(self, **_: Any) -> dict[str, Any]:
        raise self._not_found()

    def _act(self, operation: str, allowed: set[str]) -> dict[str, Any]:
        self.calls.append(operation)
        if operation in self.refuse or self.status not in allowed:
            raise refused(operation, f"{operation} refused: the resource is {self.status}")
        return {}

    def stop_replication(self, **_: Any) -> dict[str, Any]:
        return self._act("stop_replication", {*replication.SERVERLESS_STARTING, "running"})

    def delete_replication_config(self, **_: Any) -> dict[str, Any]:
        return self._act("delete_replication_config", {"", "created", "ready", "stopped", "failed"})

    def stop_replication_task(self, **_: Any) -> dict[str, Any]:
        return self._act("stop_replication_task", {"starting", "running"})

    def delete_replication_task(self, **_: Any) -> dict[str, Any]:
        return self._act("delete_replication_task", {"ready", "stopped", "failed", "failed-move"})

    def delete_endpoint(self, **_: Any) -> dict[str, Any]:
        self.calls.append("delete_endpoint")
        self.endpoint = False
        return {}


EXPECTED_CALL = {
    ("task", "stop"): ["stop_replication_task"],
    ("task", "delete"): ["delete_replication_task"],
    ("task", "wait"): [],
    ("serverless", "stop"): ["stop_replication"],
    ("serverless", "delete"): ["delete_replication_config"],
    ("serverless", "wait"): [],
}


@pytest.mark.parametrize(("status", "action"), sorted(TASK_STATUSES.items()))
def test_every_documented_task_status_has_its_action(status: str, action: str) -> None:
    assert replication.teardown_action("task", status) == action


@pytest.mark.parametrize(("status", "action"), sorted(SERVERLESS_STATUSES.items()))
def test_every_documented_serverless_status_has_its_action(status: str, action: str) -> None:
    assert replication.teardown_action("serverless", status) == action


def test_the_start_phases_are_the_user_guides_seven_in_order() -> None:
    assert replication.SERVERLESS_STARTING == (
        "initializing",
        "preparing_metadata_resources",
        "testing_connection",
        "fetching_metadata",
        "calculating_capacity",
        "provisioning_capacity",
        "replication_starting",
    )


def test_an_undocumented_status_is_probed() -> None:
    assert replication.teardown_action("serverless", "hibernating") == replication.PROBE
    assert replication.teardown_action("task", "hibernating") == replication.PROBE
    with pytest.raises(ValueError, match="kind"):
        replication.teardown_action("instance", "available")


@pytest.mark.parametrize(
    ("kind", "status"),
    [("task", s) for s in TASK_STATUSES] + [("serverless", s) for s in SERVERLESS_STATUSES],
)
def test_one_pass_makes_only_the_call_the_status_allows(kind: str, status: str) -> None:
    stub = StubDms(status, serverless=kind == "serverless")
    outcome = replication.teardown_pass(Clients(overrides={"dms": stub}), RUN, kind_mode(kind))
    action = (TASK_STATUSES if kind == "task" else SERVERLESS_STATUSES)[status]
    assert stub.calls == EXPECTED_CALL[(kind, action)]  # nothing DMS must refuse
    assert not outcome["done"]  # the task / config is still there after this pass
    what = f"task {RUN.task}" if kind == "task" else f"config {RUN.config}"
    assert outcome["remaining"] == [what]
    assert outcome["deleted"] == ([what] if action == "delete" else [])
    assert outcome["notes"] or action == "delete"
    if action == "wait":
        assert repr(status) in outcome["notes"][0] and "waiting" in outcome["notes"][0]


def kind_mode(kind: str) -> str:
    return "serverless" if kind == "serverless" else "instance"


def test_a_refused_delete_is_reported_never_counted_as_deleted() -> None:
    stub = StubDms("stopped", serverless=True, refuse={"delete_replication_config"})
    outcome = replication.teardown_pass(Clients(overrides={"dms": stub}), RUN, "serverless")
    assert stub.calls == ["delete_replication_config"]
    assert outcome["deleted"] == [] and not outcome["done"]
    assert "DMS refused the delete" in outcome["notes"][0]
    assert "delete_replication_config refused" in outcome["notes"][0]  # DMS's own message


def test_a_refused_stop_waits_without_trying_the_delete() -> None:
    stub = StubDms("provisioning_capacity", serverless=True, refuse={"stop_replication"})
    outcome = replication.teardown_pass(Clients(overrides={"dms": stub}), RUN, "serverless")
    assert stub.calls == ["stop_replication"]
    assert "refused the stop" in outcome["notes"][0] and not outcome["done"]


def test_an_undocumented_status_tries_stop_then_delete_then_waits() -> None:
    stub = StubDms("hibernating", serverless=True)
    outcome = replication.teardown_pass(Clients(overrides={"dms": stub}), RUN, "serverless")
    assert stub.calls == ["stop_replication", "delete_replication_config"]
    assert outcome["deleted"] == [] and "DMS refused the delete" in outcome["notes"][0]


def test_once_the_config_is_gone_the_endpoint_goes() -> None:
    stub = StubDms("stopped", serverless=False, present=False)
    outcome = replication.teardown_pass(Clients(overrides={"dms": stub}), RUN, "existing")
    assert stub.calls == ["delete_endpoint"]
    assert outcome == {
        "done": True,
        "remaining": [],
        "deleted": [f"endpoint {RUN.target_endpoint}"],
        "notes": [],
    }


def test_teardown_keeps_refusals_apart_by_backoff_and_gives_up_at_its_deadline(
    settings: Settings,
) -> None:
    """A replication DMS never lets go of: each pass waits longer, and the deadline ends it."""
    stub = StubDms("stopped", serverless=True, refuse={"delete_replication_config"})
    clients = Clients(overrides={"dms": stub})
    event: dict[str, Any] = {"table": "orders", "runId": "orders-20240501T120000Z"}
    serverless = replace(settings, replication_mode="serverless")  # a run planned serverless
    moment, waits = NOW, []
    while True:
        poll = run_step("teardown", event, clients, serverless, lambda m=moment: m)["poll"]
        if poll["failed"]:
            break
        assert not poll["done"] and "DMS refused the delete" in poll["reason"]
        waits.append(poll["waitSeconds"])
        event["poll"] = poll
        moment += timedelta(seconds=poll["waitSeconds"])
    assert poll["error"] == "WaitTimeoutError"
    assert "DMS refused the delete" in poll["reason"]
    assert waits[:4] == [30, 60, 120, 240]  # capped exponential backoff between passes
    assert max(waits) == settings.poll_max_seconds
    assert moment - NOW >= timedelta(seconds=settings.teardown_timeout_seconds)
    assert len(stub.calls) == len(waits) + 1  # one delete per pass, never a burst


# ReplicationInstance.ReplicationInstanceStatus, DMS API Reference (ReplicationInstance).
INSTANCE_STATUSES = {
    "available": "ready",
    "creating": "wait",
    "modifying": "wait",
    "upgrading": "wait",
    "rebooting": "wait",
    "resetting-master-credentials": "wait",
    "maintenance": "wait",
    "failed": "failed",
    "storage-full": "failed",
    "incompatible-credentials": "failed",
    "incompatible-network": "failed",
    "deleting": "failed",
    "deleted": "failed",
}


@pytest.mark.parametrize(("status", "verdict"), sorted(INSTANCE_STATUSES.items()))
def test_every_documented_instance_status_is_ready_waited_for_or_failed(
    status: str, verdict: str
) -> None:
    ready, failed, reported = replication.instance_readiness(
        {"ReplicationInstanceStatus": status}, "replication instance ri-1"
    )
    assert {(True, False): "ready", (False, False): "wait", (False, True): "failed"}[
        (ready, failed)
    ] == verdict
    assert status in reported
