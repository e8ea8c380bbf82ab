"""Fixtures: moto for DynamoDB/S3/SNS/Step Functions, the local DMS engine, settings."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from moto import mock_aws

from deltaload import items
from deltaload.aws import Clients
from deltaload.local.account import ACCOUNT, REGION
from deltaload.settings import Settings
from tests.dms_standin import DmsStandIn
from tests.moto_tables import create_stack_storage
from tests.orders import NOW as NOW
from tests.orders import ORDERS as ORDERS

SOURCE_ENDPOINT = f"arn:aws:dms:{REGION}:{ACCOUNT}:endpoint:SOURCE"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield


@pytest.fixture
def settings() -> Settings:
    return Settings(
        controller_table="deltaload-controller",
        history_table="deltaload-history",
        data_bucket="lake",
        staging_prefix="staging",
        state_machine_arn="",
        topic_arn="",
        source_endpoint_arn=SOURCE_ENDPOINT,
        dms_s3_role_arn=f"arn:aws:iam::{ACCOUNT}:role/dms-s3",
        replication_mode="instance",
        replication_subnet_group="deltaload-subnets",
        security_group_ids=("sg-123",),
        poll_initial_seconds=30,
        poll_max_seconds=300,
    )


@pytest.fixture
def infra(aws: None, settings: Settings) -> None:
    create_stack_storage(settings, REGION)


@pytest.fixture
def dms(infra: None, settings: Settings, tmp_path: Path) -> Iterator[DmsStandIn]:
    standin = DmsStandIn(tmp_path, source_alias=settings.source_endpoint_arn)
    yield standin
    standin.shutdown()


@pytest.fixture
def clients(dms: DmsStandIn) -> Clients:
    return Clients(region=REGION, overrides={"dms": dms})


# A schedule event as EventBridge delivers it to the starter.
TICK_EVENT = {"id": "evt-1", "time": "2024-05-01T12:00:41Z", "detail-type": "Scheduled Event"}


@pytest.fixture
def tick_settings(clients: Clients, settings: Settings) -> Settings:
    """Settings naming a real (one Pass state) state machine for the starter to start."""
    arn = clients.sfn.create_state_machine(
        name="load",
        definition=json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}),
        roleArn=f"arn:aws:iam::{ACCOUNT}:role/sfn",
    )["stateMachineArn"]
    return replace(settings, state_machine_arn=arn)


def put_item(clients: Clients, settings: Settings, **attributes: Any) -> dict[str, Any]:
    plain = {**ORDERS, **attributes}
    plain = {k: v for k, v in plain.items() if v is not None}
    clients.dynamodb.put_item(TableName=settings.controller_table, Item=items.to_dynamodb(plain))
    return plain


def get_item(clients: Clients, settings: Settings, table: str = "orders") -> dict[str, Any]:
    raw = clients.dynamodb.get_item(
        TableName=settings.controller_table, Key={"targetTableName": {"S": table}}
    )["Item"]
    return items.from_dynamodb(raw)


def keys_under(clients: Clients, bucket: str, prefix: str = "") -> list[str]:
    paginator = clients.s3.get_paginator("list_objects_v2")
    return [
        o["Key"]
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix)
        for o in page.get("Contents", [])
    ]
