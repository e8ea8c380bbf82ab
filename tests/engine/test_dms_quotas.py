"""The local DMS engine enforces DMS's quotas and API token bucket, as AWS does.

"Quotas for AWS Database Migration Service" (CHAP_Limits): creates past a resource quota fail
with ResourceQuotaExceededFault; every API call spends a token of a 200-token bucket that
refills at 8 per second, and an empty bucket answers ThrottlingException ("Rate exceeded").
The bucket's clock is stepped by hand here, so nothing waits.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from deltaload.aws import error_code, is_throttling
from deltaload.local.account import ACCOUNT
from deltaload.local.dms import LocalDms, Quotas, Timing
from deltaload.local.dms.quotas import TokenBucket

NO_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"})


class ManualClock:
    """Monotonic seconds that move only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _engine(
    aws: boto3.Session, tmp_path: Path, quotas: Quotas | None = None, clock: Any = None
) -> LocalDms:
    local = LocalDms(aws.client, timing=Timing.quick(), quotas=quotas, clock=clock)
    local.install(aws.events)
    return local


def _code(call: Any, **params: Any) -> str:
    with pytest.raises(ClientError) as raised:
        call(**params)
    return error_code(raised.value)


def test_the_bucket_refills_at_its_rate_up_to_its_size() -> None:
    clock = ManualClock()
    bucket = TokenBucket(200, 8.0, clock)
    assert all(bucket.take() for _ in range(200))
    assert not bucket.take()  # empty: refused, and a refusal spends nothing
    clock.now += 0.124
    assert not bucket.take()  # 0.99 of a token
    clock.now += 0.001
    assert bucket.take() and not bucket.take()
    clock.now += 1.0
    assert sum(bucket.take() for _ in range(20)) == 8
    clock.now += 3600
    assert sum(bucket.take() for _ in range(300)) == 200  # never above its size
    assert bucket.refused == 3 + 12 + 100


def test_an_empty_bucket_answers_throttling_exception(aws: boto3.Session, tmp_path: Path) -> None:
    clock = ManualClock()
    local = _engine(aws, tmp_path, clock=clock)
    dms = aws.client("dms", config=NO_RETRIES)
    try:
        for _ in range(200):
            dms.describe_replication_instances()
        with pytest.raises(ClientError) as raised:
            dms.describe_endpoints()
        # What botocore sees, as the DMS user guide shows it from the CLI.
        assert error_code(raised.value) == "ThrottlingException"
        assert raised.value.response["Error"]["Message"] == "Rate exceeded"
        assert is_throttling(raised.value)  # the steps turn it into TransientError
        assert local.throttled == ["DescribeEndpoints"]
        clock.now += 0.125  # one token back
        dms.describe_endpoints()
        assert _code(dms.describe_endpoints) == "ThrottlingException"
    finally:
        local.shutdown()


def test_botocore_retries_a_throttled_call(aws: boto3.Session, tmp_path: Path) -> None:
    """botocore's standard retries treat DMS's ThrottlingException as retryable."""
    local = _engine(aws, tmp_path, quotas=Quotas(api_bucket_size=3, api_refill_per_second=40))
    retrying = aws.client(
        "dms", config=Config(retries={"total_max_attempts": 8, "mode": "standard"})
    )
    try:
        for _ in range(8):
            retrying.describe_endpoints()
        assert local.throttled  # some calls were refused and retried until they passed
    finally:
        local.shutdown()


def test_instances_per_account_quota(aws: boto3.Session, tmp_path: Path) -> None:
    local = _engine(aws, tmp_path, quotas=Quotas(instances_per_account=3, api_bucket_size=None))
    dms = aws.client("dms", config=NO_RETRIES)
    try:
        for n in range(3):
            dms.create_replication_instance(
                ReplicationInstanceIdentifier=f"ri-{n}", ReplicationInstanceClass="dms.t3.micro"
            )
        with pytest.raises(ClientError) as raised:
            dms.create_replication_instance(
                ReplicationInstanceIdentifier="ri-3", ReplicationInstanceClass="dms.t3.micro"
            )
        assert error_code(raised.value) == "ResourceQuotaExceededFault"
        assert "replication instances per account" in raised.value.response["Error"]["Message"]
        assert [op for op, _ in local.quota_faults] == ["CreateReplicationInstance"]
    finally:
        local.shutdown()


def test_default_quotas_are_dms_defaults() -> None:
    quotas = Quotas()
    assert (quotas.instances_per_account, quotas.endpoints_per_instance) == (60, 100)
    assert (quotas.tasks_per_instance, quotas.tasks_per_account) == (200, 600)
    assert (quotas.endpoints_per_account, quotas.subnet_groups_per_account) == (1000, 60)
    assert (quotas.api_bucket_size, quotas.api_refill_per_second) == (200, 8.0)


def _endpoint(dms: Any, ident: str, kind: str) -> str:
    if kind == "source":
        params = {"EngineName": "sqlite", "DatabaseName": "/nowhere.sqlite"}
    else:
        params = {
            "EngineName": "s3",
            "S3Settings": {
                "BucketName": "lake",
                "ServiceAccessRoleArn": f"arn:aws:iam::{ACCOUNT}:role/dms",
                "DataFormat": "parquet",
            },
        }
    created = dms.create_endpoint(EndpointIdentifier=ident, EndpointType=kind, **params)
    return created["Endpoint"]["EndpointArn"]


def _available_instance(dms: Any, ident: str) -> str:
    arn = dms.create_replication_instance(
        ReplicationInstanceIdentifier=ident, ReplicationInstanceClass="dms.t3.micro"
    )["ReplicationInstance"]["ReplicationInstanceArn"]
    waiter_filters = [{"Name": "replication-instance-arn", "Values": [arn]}]
    for _ in range(500):
        found = dms.describe_replication_instances(Filters=waiter_filters)
        if found["ReplicationInstances"][0]["ReplicationInstanceStatus"] == "available":
            return arn
        time.sleep(0.01)
    raise AssertionError("instance never became available")


MAPPING = json.dumps(
    {
        "rules": [
            {
                "rule-type": "selection",
                "rule-id": "1",
                "rule-name": "1",
                "object-locator": {"schema-name": "dwh", "table-name": "orders"},
                "rule-action": "include",
            }
        ]
    }
)


def _task(dms: Any, ident: str, instance: str, source: str, target: str) -> Any:
    return dms.create_replication_task(
        ReplicationTaskIdentifier=ident,
        SourceEndpointArn=source,
        TargetEndpointArn=target,
        ReplicationInstanceArn=instance,
        MigrationType="full-load",
        TableMappings=MAPPING,
    )


def test_tasks_and_endpoints_per_instance_quotas(aws: boto3.Session, tmp_path: Path) -> None:
    quotas = Quotas(tasks_per_instance=3, endpoints_per_instance=3, api_bucket_size=None)
    local = _engine(aws, tmp_path, quotas=quotas)
    dms = aws.client("dms", config=NO_RETRIES)
    try:
        instance = _available_instance(dms, "shared")
        source = _endpoint(dms, "src", "source")
        targets = [_endpoint(dms, f"tgt-{n}", "target") for n in range(4)]
        _task(dms, "task-0", instance, source, targets[0])
        _task(dms, "task-1", instance, source, targets[1])  # 3 endpoints on the instance
        _task(dms, "task-1b", instance, source, targets[1])  # no new endpoint: 3 tasks
        with pytest.raises(ClientError) as raised:
            _task(dms, "task-2", instance, source, targets[0])
        assert error_code(raised.value) == "ResourceQuotaExceededFault"
        assert "tasks per replication instance" in raised.value.response["Error"]["Message"]
    finally:
        local.shutdown()


def test_endpoints_per_instance_quota(aws: boto3.Session, tmp_path: Path) -> None:
    quotas = Quotas(tasks_per_instance=3, endpoints_per_instance=3, api_bucket_size=None)
    local = _engine(aws, tmp_path, quotas=quotas)
    dms = aws.client("dms", config=NO_RETRIES)
    try:
        instance = _available_instance(dms, "other")
        source = _endpoint(dms, "src2", "source")
        first, second = _endpoint(dms, "t-a", "target"), _endpoint(dms, "t-b", "target")
        third = _endpoint(dms, "t-c", "target")
        _task(dms, "o-0", instance, source, first)
        _task(dms, "o-1", instance, source, second)
        with pytest.raises(ClientError) as raised:
            _task(dms, "o-2", instance, source, third)  # a 4th endpoint on the instance
        assert "endpoints per replication instance" in raised.value.response["Error"]["Message"]
    finally:
        local.shutdown()


def test_quotas_off_enforces_nothing(aws: boto3.Session, tmp_path: Path) -> None:
    local = _engine(aws, tmp_path, quotas=Quotas.off(), clock=ManualClock())
    dms = aws.client("dms", config=NO_RETRIES)
    try:
        for _ in range(250):
            dms.describe_endpoints()
        assert local.throttled == [] and local.api_calls == 0
    finally:
        local.shutdown()
