"""The stack's two DynamoDB tables and its bucket, created under moto for tests."""

from __future__ import annotations

import boto3

from deltaload.settings import Settings


def create_stack_storage(settings: Settings, region: str | None = None) -> None:
    """Create the controller table, the run history table and the data bucket."""
    ddb = boto3.client("dynamodb", region_name=region)
    ddb.create_table(
        TableName=settings.controller_table,
        KeySchema=[{"AttributeName": "targetTableName", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "targetTableName", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    ddb.create_table(
        TableName=settings.history_table,
        KeySchema=[
            {"AttributeName": "targetTableName", "KeyType": "HASH"},
            {"AttributeName": "runId", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "targetTableName", "AttributeType": "S"},
            {"AttributeName": "runId", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    boto3.client("s3", region_name=region).create_bucket(Bucket=settings.data_bucket)
