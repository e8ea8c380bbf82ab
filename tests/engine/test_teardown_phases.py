"""The serverless start phases in the local engine, and teardown of a run caught in each.

The engine walks a started replication through the seven states of the DMS user guide's
"AWS DMS Serverless components" page; ``faults.hold`` keeps it in one of them so the
teardown the workflow runs meets that exact state. Teardown must stop it there, never
send a delete DMS refuses, and end with nothing left.
"""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from deltaload import names, replication
from deltaload.aws import Clients, error_code
from deltaload.local.account import ACCOUNT
from deltaload.local.dms.models import SERVERLESS_PHASES

from .conftest import BUCKET, make_sqlite
from .helpers import Workflow, mappings, selection, wait_for


class Recorder:
    """Wraps the DMS client: every call with DMS's answer ('ok' or the error code)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.calls: list[tuple[str, str]] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)

        def call(**params: Any) -> Any:
            try:
                result = method(**params)
            except ClientError as error:
                self.calls.append((name, error_code(error)))
                raise
            self.calls.append((name, "ok"))
            return result

        return call

    def actions(self) -> list[tuple[str, str]]:
        return [c for c in self.calls if not c[0].startswith("describe_")]


@pytest.fixture
def flow(aws, dms, tmp_path):  # type: ignore[no-untyped-def]
    make_sqlite(
        tmp_path / "s.sqlite", "CREATE TABLE orders (id INTEGER, v TEXT)", [(1, "a"), (2, "b")]
    )
    return Workflow(aws, dms)


def _run_resources(flow: Workflow, tmp_path: Any, run: names.DmsNames) -> str:
    source = flow.source_endpoint_sqlite(tmp_path / "s.sqlite")
    target = flow.dms.create_endpoint(
        EndpointIdentifier=run.target_endpoint,
        EndpointType="target",
        EngineName="s3",
        S3Settings={
            "BucketName": BUCKET,
            "BucketFolder": "stage/teardown",
            "DataFormat": "parquet",
            "ServiceAccessRoleArn": f"arn:aws:iam::{ACCOUNT}:role/dms-s3",
        },
    )["Endpoint"]["EndpointArn"]
    return flow.dms.create_replication_config(
        ReplicationConfigIdentifier=run.config,
        SourceEndpointArn=source,
        TargetEndpointArn=target,
        ComputeConfig={"MaxCapacityUnits": 2},
        ReplicationType="full-load",
        TableMappings=mappings(selection("orders")),
    )["ReplicationConfig"]["ReplicationConfigArn"]


def _status(flow: Workflow, arn: str) -> str:
    return flow.dms.describe_replications(
        Filters=[{"Name": "replication-config-arn", "Values": [arn]}]
    )["Replications"][0]["Status"]


def _tear_down(recorder: Recorder, run: names.DmsNames) -> list[dict[str, Any]]:
    """Teardown passes until done (the engine moves on between them); every outcome."""
    clients = Clients(overrides={"dms": recorder})
    outcomes: list[dict[str, Any]] = []

    def one_pass() -> dict[str, Any]:
        outcomes.append(replication.teardown_pass(clients, run, "serverless"))
        return outcomes[-1]

    wait_for(one_pass, lambda outcome: outcome["done"])
    return outcomes


def _assert_nothing_refused_and_all_gone(
    flow: Workflow, recorder: Recorder, run: Any, *, deleted_once: bool = True
) -> None:
    refused = [c for c in recorder.actions() if c[1] != "ok"]
    assert refused == [], f"teardown sent calls DMS refused: {refused}"
    deletes = [c[0] for c in recorder.actions()].count("delete_replication_config")
    # A started replication shows "deleting" until its config is gone, so teardown waits;
    # a config never started has no status to show it, and a repeated delete is accepted.
    assert deletes == 1 if deleted_once else deletes >= 1, recorder.actions()
    assert flow.dms.describe_replication_configs()["ReplicationConfigs"] == []
    ids = [e["EndpointIdentifier"] for e in flow.dms.describe_endpoints()["Endpoints"]]
    assert run.target_endpoint not in ids


def test_a_start_walks_through_every_phase_in_order(engine, flow, tmp_path) -> None:  # type: ignore[no-untyped-def]
    run = names.dms_names("orders", "walk-20240501T120000Z")
    arn = _run_resources(flow, tmp_path, run)
    flow.dms.start_replication(ReplicationConfigArn=arn, StartReplicationType="start-replication")
    seen: list[str] = []

    def observe() -> str:
        status = _status(flow, arn)
        if not seen or seen[-1] != status:
            seen.append(status)
        return status

    wait_for(observe, lambda s: s in ("stopped", "failed"))
    # Polling can miss a short phase, never reorder them.
    expected = [*SERVERLESS_PHASES, "running", "stopped"]
    assert seen == sorted(seen, key=expected.index), seen
    assert seen[-1] == "stopped"


@pytest.mark.parametrize("phase", SERVERLESS_PHASES)
def test_hold_keeps_a_replication_in_its_phase_until_stopped(engine, flow, tmp_path, phase) -> None:  # type: ignore[no-untyped-def]
    run = names.dms_names("orders", "hold-20240501T120000Z")
    arn = _run_resources(flow, tmp_path, run)
    engine.faults.hold(run.config, phase)
    flow.dms.start_replication(ReplicationConfigArn=arn, StartReplicationType="start-replication")
    wait_for(lambda: _status(flow, arn), lambda s: s == phase)
    with pytest.raises(ClientError) as error:
        flow.dms.delete_replication_config(ReplicationConfigArn=arn)
    assert error_code(error.value) == "InvalidResourceStateFault"  # non-STARTING only
    flow.dms.stop_replication(ReplicationConfigArn=arn)
    assert wait_for(lambda: _status(flow, arn), lambda s: s != "stopping") == "stopped"


@pytest.mark.parametrize("phase", SERVERLESS_PHASES)
def test_teardown_stops_a_run_caught_in_each_start_phase(engine, flow, tmp_path, phase) -> None:  # type: ignore[no-untyped-def]
    run = names.dms_names("orders", "phase-20240501T120000Z")
    arn = _run_resources(flow, tmp_path, run)
    engine.faults.hold(run.config, phase)
    flow.dms.start_replication(ReplicationConfigArn=arn, StartReplicationType="start-replication")
    wait_for(lambda: _status(flow, arn), lambda s: s == phase)
    recorder = Recorder(flow.dms)
    outcomes = _tear_down(recorder, run)
    assert recorder.actions()[0] == ("stop_replication", "ok")
    assert f"was {phase!r}; stop requested" in outcomes[0]["notes"][0]
    _assert_nothing_refused_and_all_gone(flow, recorder, run)


def test_teardown_stops_a_running_replication(engine, flow, tmp_path) -> None:  # type: ignore[no-untyped-def]
    run = names.dms_names("orders", "running-20240501T120000Z")
    arn = _run_resources(flow, tmp_path, run)
    engine.faults.stall(run.config)
    flow.dms.start_replication(ReplicationConfigArn=arn, StartReplicationType="start-replication")
    wait_for(lambda: _status(flow, arn), lambda s: s == "running")
    recorder = Recorder(flow.dms)
    _tear_down(recorder, run)
    assert recorder.actions()[0] == ("stop_replication", "ok")
    _assert_nothing_refused_and_all_gone(flow, recorder, run)


@pytest.mark.parametrize("ending", ["stopped", "failed", "never started"])
def test_teardown_deletes_a_finished_or_unstarted_replication_without_stopping(
    engine, flow, tmp_path, ending
) -> None:  # type: ignore[no-untyped-def]
    run = names.dms_names("orders", "done-20240501T120000Z")
    arn = _run_resources(flow, tmp_path, run)
    if ending != "never started":
        if ending == "failed":
            engine.faults.fail_after_rows(run.config, 1)
        flow.dms.start_replication(
            ReplicationConfigArn=arn, StartReplicationType="start-replication"
        )
        final = wait_for(
            lambda: flow.dms.describe_replications(
                Filters=[{"Name": "replication-config-arn", "Values": [arn]}]
            )["Replications"][0],
            lambda r: r["Status"] in ("stopped", "failed"),
        )
        assert final["Status"] == ending, final
    recorder = Recorder(flow.dms)
    _tear_down(recorder, run)
    assert recorder.actions()[0] == ("delete_replication_config", "ok"), recorder.actions()
    assert "stop_replication" not in [c[0] for c in recorder.actions()]
    _assert_nothing_refused_and_all_gone(
        flow, recorder, run, deleted_once=ending != "never started"
    )


def test_hold_names_only_start_phases(engine) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="not a start phase"):
        engine.faults.hold("*", "running")


def test_an_unreachable_source_fails_the_replication_in_testing_connection(
    engine, flow, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    run = names.dms_names("orders", "noconn-20240501T120000Z")
    source = flow.source_endpoint_sqlite(tmp_path / "missing.sqlite")
    target = flow.target_endpoint("stage/noconn")
    arn = flow.dms.create_replication_config(
        ReplicationConfigIdentifier=run.config,
        SourceEndpointArn=source,
        TargetEndpointArn=target,
        ComputeConfig={"MaxCapacityUnits": 2},
        ReplicationType="full-load",
        TableMappings=mappings(selection("orders")),
    )["ReplicationConfig"]["ReplicationConfigArn"]
    flow.dms.start_replication(ReplicationConfigArn=arn, StartReplicationType="start-replication")
    seen: list[str] = []

    def observe() -> dict[str, Any]:
        replication_ = flow.dms.describe_replications(
            Filters=[{"Name": "replication-config-arn", "Values": [arn]}]
        )["Replications"][0]
        seen.append(replication_["Status"])
        return replication_

    final = wait_for(observe, lambda r: r["Status"] in ("stopped", "failed", "running"))
    assert final["Status"] == "failed"
    assert "Test connection to" in final["FailureMessages"][0]
    assert "missing.sqlite" in final["FailureMessages"][0]
    later = SERVERLESS_PHASES[SERVERLESS_PHASES.index("testing_connection") + 1 :]
    assert not set(later) & set(seen)  # it never got past testing_connection
