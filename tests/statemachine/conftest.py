"""The whole state machine on moto's interpreter, handlers in-process, the local DMS engine."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from deltaload.aws import Clients
from deltaload.settings import Settings
from tests.dms_standin import DmsStandIn
from tests.moto_tables import create_stack_storage
from tests.statemachine import harness
from tests.workflow.conftest import settings as settings


@pytest.fixture
def machine(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, tmp_path: Path
) -> Iterator[dict[str, Any]]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": harness.REGION,
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        boto3.setup_default_session(region_name=harness.REGION)
        built = _build(monkeypatch, settings, tmp_path)
        yield built
        built["dms"].shutdown()
        boto3.DEFAULT_SESSION = None


def _build(monkeypatch: pytest.MonkeyPatch, base: Settings, workdir: Path) -> dict[str, Any]:
    sns = boto3.client("sns")
    topic = sns.create_topic(Name="deltaload")["TopicArn"]
    sqs = boto3.client("sqs")
    queue = sqs.create_queue(QueueName="notifications")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    settings = replace(base, poll_initial_seconds=0, poll_max_seconds=0, topic_arn=topic)
    _tables(settings)
    dms = DmsStandIn(workdir, source_alias=settings.source_endpoint_arn)
    clients = Clients(region=harness.REGION, overrides={"dms": dms})
    modules = {}
    for logical_id, folder in harness.FOLDERS.items():
        module = harness.load_handler(folder)
        module.step.container.provide(settings, clients)
        modules[logical_id] = module
    router = harness.install_router(modules)
    sfn = boto3.client("stepfunctions")
    arn = sfn.create_state_machine(
        name="deltaload-load-table",
        definition=harness.definition(topic),
        roleArn=f"arn:aws:iam::{harness.ACCOUNT}:role/sfn",
    )["stateMachineArn"]
    return {
        "sfn": sfn,
        "arn": arn,
        "settings": settings,
        "clients": clients,
        "dms": dms,
        "router": router,
        "queue": queue,
    }


def _tables(settings: Settings) -> None:
    create_stack_storage(settings)
