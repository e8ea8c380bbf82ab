"""catalog.register against moto's Glue: create, update on drift, partitions per run, and
what the catalog does with a change the item allowed as incompatible."""

from __future__ import annotations

import json
from dataclasses import replace

import boto3
import pytest

from deltaload import catalog
from deltaload.aws import Clients
from deltaload.local.account import REGION
from deltaload.settings import Settings

PREFIX = "lake/dwh/orders/"
DATABASE = "stack_lake"
V1 = [{"name": "id", "type": "int32"}, {"name": "amount", "type": "decimal128(10, 2)"}]


@pytest.fixture
def glue_settings(settings: Settings) -> Settings:
    return replace(settings, glue_database=DATABASE)


@pytest.fixture
def glue(clients: Clients) -> object:
    clients.glue.create_database(DatabaseInput={"Name": DATABASE})
    return clients.glue


def publish(
    clients: Clients, settings: Settings, run: str, schema: list[dict]
) -> catalog.PublishedUnit:
    key = f"{PREFIX}_manifests/{run}.json"
    body = json.dumps({"runId": run, "tableSchema": schema}).encode()
    clients.s3.put_object(Bucket=settings.data_bucket, Key=key, Body=body)
    return catalog.PublishedUnit(run, f"{PREFIX}run={run}/", schema)


def columns(glue: object, name: str = "orders") -> list[tuple[str, str]]:
    table = glue.get_table(DatabaseName=DATABASE, Name=name)["Table"]  # type: ignore[attr-defined]
    return [(c["Name"], c["Type"]) for c in table["StorageDescriptor"]["Columns"]]


def partition_columns(glue: object) -> dict[str, list[tuple[str, str]]]:
    found = glue.get_partitions(DatabaseName=DATABASE, TableName="orders")  # type: ignore[attr-defined]
    return {
        p["Values"][0]: [(c["Name"], c["Type"]) for c in p["StorageDescriptor"]["Columns"]]
        for p in found["Partitions"]
    }


def test_created_widened_added_then_changed_incompatibly(
    clients: Clients, glue_settings: Settings, glue: object
) -> None:
    first = catalog.register(
        clients, glue_settings, "orders", [publish(clients, glue_settings, "r1", V1)]
    )
    assert first is not None and first.created and first.partitions_added == ["r1"]
    assert columns(glue) == [("id", "int"), ("amount", "decimal(10,2)")]

    # Nothing changed: nothing to update, no partition twice.
    again = catalog.register(
        clients, glue_settings, "orders", [publish(clients, glue_settings, "r2", V1)]
    )
    assert again is not None and not again.updated and again.partitions_added == ["r2"]

    widened = [{"name": "id", "type": "int64"}, *V1[1:], {"name": "note", "type": "string"}]
    third = catalog.register(
        clients, glue_settings, "orders", [publish(clients, glue_settings, "r3", widened)]
    )
    assert third is not None and third.updated
    assert columns(glue) == [("id", "bigint"), ("amount", "decimal(10,2)"), ("note", "string")]

    # schemachanges=any let amount become text: the table takes the new type; partitions
    # of earlier runs keep the types their files were registered with.
    changed = [widened[0], {"name": "amount", "type": "string"}, widened[2]]
    catalog.register(
        clients, glue_settings, "orders", [publish(clients, glue_settings, "r4", changed)]
    )
    assert columns(glue)[1] == ("amount", "string")
    parts = partition_columns(glue)
    assert sorted(parts) == ["r1", "r2", "r3", "r4"]
    assert parts["r1"] == [("id", "int"), ("amount", "decimal(10,2)")]
    assert parts["r4"][1] == ("amount", "string")


def test_missing_partitions_of_earlier_runs_are_added(
    clients: Clients, glue_settings: Settings, glue: object
) -> None:
    publish(clients, glue_settings, "r1", V1)  # its registration failed: only the manifest
    publish(clients, glue_settings, "r2", V1)
    done = catalog.register(
        clients, glue_settings, "orders", [publish(clients, glue_settings, "r3", V1)]
    )
    assert done is not None and done.partitions_added == ["r1", "r2", "r3"]
    assert sorted(partition_columns(glue)) == ["r1", "r2", "r3"]


def test_a_glue_table_of_another_owner_is_refused(
    clients: Clients, glue_settings: Settings, glue: object
) -> None:
    glue.create_table(  # type: ignore[attr-defined]
        DatabaseName=DATABASE, TableInput={"Name": "orders", "Parameters": {}}
    )
    with pytest.raises(catalog.CatalogError, match="belongs to something other than deltaload"):
        catalog.register(
            clients, glue_settings, "orders", [publish(clients, glue_settings, "r1", V1)]
        )


def test_no_catalog_without_a_database_or_a_schema(clients: Clients, settings: Settings) -> None:
    unit = catalog.PublishedUnit("r1", f"{PREFIX}run=r1/", V1)
    assert catalog.register(clients, settings, "orders", [unit]) is None  # no GLUE_DATABASE
    empty = catalog.PublishedUnit("r1", f"{PREFIX}run=r1/", None)
    assert (
        catalog.register(clients, replace(settings, glue_database=DATABASE), "orders", [empty])
        is None
    )
    assert boto3.client("glue", region_name=REGION).get_databases()["DatabaseList"] == []
