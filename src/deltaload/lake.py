"""What the lake keeps about a table beside its files: the schema across runs.

The table's schema lives in the manifest of the last run that wrote files
(``tableSchema``); the controller item points at that manifest (``schemaManifestKey``),
moved in the same conditional write as the watermark, so a run that fails after
publishing never changes what the next run compares with.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from deltaload import schema
from deltaload.aws import Clients, error_code, transient_errors
from deltaload.items import SchemaPolicy


class SchemaManifestError(schema.SchemaChangeError):
    """The manifest holding the table's schema cannot be read; nothing was published."""


@dataclass(frozen=True)
class SchemaOutcome:
    """A run's schema against its table's: what the manifest, item and history record."""

    drift: schema.Drift
    schema_manifest_key: str | None  # the manifest holding the table schema after the run

    def manifest_fields(self, run_columns: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """The manifest's ``schema``, ``tableSchema`` and ``schemaChanges``."""
        fields: dict[str, Any] = {
            "schema": [dict(c) for c in run_columns],
            "schemaChanges": [c.to_dict() for c in self.drift.changes],
        }
        if self.drift.table_schema is not None:
            fields["tableSchema"] = self.drift.table_schema
        return fields


def previous_table_schema(
    clients: Clients, bucket: str, key: str | None, final_prefix: str, *, table: str
) -> list[dict[str, Any]] | None:
    """The table schema recorded in manifest ``key``; None when the table has none yet (no
    key, or a key outside the table's current prefix: the item moved to a new location)."""
    if not key or not key.startswith(final_prefix):
        return None
    try:
        with transient_errors():
            body = clients.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as error:
        if error_code(error) not in ("NoSuchKey", "404"):
            raise
        raise SchemaManifestError(
            f"table {table!r}: the manifest s3://{bucket}/{key} that holds the table's schema "
            "(item attribute schemaManifestKey) is gone; nothing was published. Restore it, "
            "or remove schemaManifestKey from the item to take the next run's schema as "
            "the table's"
        ) from None
    document = json.loads(body)
    columns = document.get("tableSchema")
    if not isinstance(columns, list):
        raise SchemaManifestError(
            f"table {table!r}: the manifest s3://{bucket}/{key} has no tableSchema; "
            "nothing was published. Remove schemaManifestKey from the item to take the "
            "next run's schema as the table's"
        )
    return columns


def check_run_schema(
    clients: Clients,
    bucket: str,
    run_columns: Sequence[Mapping[str, Any]],
    *,
    table: str,
    run_id: str,
    manifest_key: str,
    previous_key: str | None,
    final_prefix: str,
    policy: SchemaPolicy,
) -> SchemaOutcome:
    """Compare a run's columns with the table's schema and apply the item's policy:
    SchemaChangeError (before anything is published) when the policy refuses a change."""
    previous = previous_table_schema(clients, bucket, previous_key, final_prefix, table=table)
    drift = schema.compare(previous, run_columns)
    schema.check(table, run_id, drift, policy)
    if run_columns:
        pointer: str | None = manifest_key
    else:  # no files, so nothing new about the schema: keep pointing at the old manifest
        pointer = previous_key if previous is not None else None
    return SchemaOutcome(drift, pointer)
