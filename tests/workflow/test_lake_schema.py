"""The table schema a run is compared with: read from the manifest the item points at."""

from __future__ import annotations

import json

import pytest

from deltaload.aws import Clients
from deltaload.items import SchemaPolicy
from deltaload.lake import SchemaManifestError, check_run_schema
from deltaload.schema import SchemaChangeError
from deltaload.settings import Settings

FINAL = "lake/dwh/orders/"
OLD_KEY = f"{FINAL}_manifests/run-1.json"
NEW_KEY = f"{FINAL}_manifests/run-2.json"
TABLE = [{"name": "id", "type": "int64"}, {"name": "amount", "type": "decimal128(10, 2)"}]


def _put(clients: Clients, settings: Settings, key: str, document: dict) -> None:
    clients.s3.put_object(Bucket=settings.data_bucket, Key=key, Body=json.dumps(document))


def _check(clients: Clients, settings: Settings, run: list, **kwargs):
    options = {
        "table": "orders",
        "run_id": "run-2",
        "manifest_key": NEW_KEY,
        "previous_key": OLD_KEY,
        "final_prefix": FINAL,
        "policy": SchemaPolicy.COMPATIBLE,
        **kwargs,
    }
    return check_run_schema(clients, settings.data_bucket, run, **options)


def test_compares_with_the_manifest_the_item_points_at(clients: Clients, settings: Settings):
    _put(clients, settings, OLD_KEY, {"tableSchema": TABLE})
    outcome = _check(clients, settings, [*TABLE, {"name": "note", "type": "string"}])
    assert outcome.drift.summary() == "added note (string)"
    assert outcome.schema_manifest_key == NEW_KEY
    fields = outcome.manifest_fields([*TABLE, {"name": "note", "type": "string"}])
    assert fields["tableSchema"][-1] == {"name": "note", "type": "string"}
    assert fields["schemaChanges"] == [{"change": "added", "column": "note", "newType": "string"}]


def test_incompatible_change_is_refused(clients: Clients, settings: Settings):
    _put(clients, settings, OLD_KEY, {"tableSchema": TABLE})
    changed = [TABLE[0], {"name": "amount", "type": "string"}]
    with pytest.raises(SchemaChangeError, match=r"amount \(decimal128\(10, 2\) -> string\)"):
        _check(clients, settings, changed)
    assert _check(clients, settings, changed, policy=SchemaPolicy.ANY).drift.incompatible


def test_a_run_without_files_keeps_the_pointer(clients: Clients, settings: Settings):
    _put(clients, settings, OLD_KEY, {"tableSchema": TABLE})
    outcome = _check(clients, settings, [])
    assert outcome.schema_manifest_key == OLD_KEY
    assert outcome.manifest_fields([])["tableSchema"] == TABLE
    first = _check(clients, settings, [], previous_key=None)
    assert first.schema_manifest_key is None
    assert "tableSchema" not in first.manifest_fields([])


def test_a_pointer_outside_the_current_prefix_starts_afresh(clients: Clients, settings: Settings):
    outcome = _check(clients, settings, TABLE, previous_key="old/dwh/orders/_manifests/r.json")
    assert outcome.drift.changes == ()
    assert outcome.schema_manifest_key == NEW_KEY


def test_a_missing_schema_manifest_fails_naming_it(clients: Clients, settings: Settings):
    with pytest.raises(SchemaManifestError, match="schemaManifestKey") as caught:
        _check(clients, settings, TABLE)
    assert OLD_KEY in str(caught.value) and "nothing was published" in str(caught.value)
    _put(clients, settings, OLD_KEY, {"rows": 1})
    with pytest.raises(SchemaManifestError, match="has no tableSchema"):
        _check(clients, settings, TABLE)
