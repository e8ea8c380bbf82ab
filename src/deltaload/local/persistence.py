"""The local state folder: controller items, run history and the data lake, kept on disk.

Layout (default ``.deltaload/``)::

    tables/<LogicalId>.json      every item of a DynamoDB table, DynamoDB JSON
    s3/<bucket>/<key>            every object of the data-lake bucket, as a plain file

The lake is not restored or saved here: ``deltaload.local.s3`` serves S3 from
``s3/`` directly, so every object is written (atomically) when S3 is called.
A ``s3/.etags-<bucket>.json`` left by an earlier version is ignored.
Every file is written to a temporary name and renamed into place, so an
interrupted command leaves each file either as it was or as it became.
The Parquet files under ``s3/`` open directly in pyarrow, DuckDB or pandas.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deltaload.local.runtime import LocalRuntime

PERSISTED_TABLES = ("ControllerTable", "RunHistoryTable")


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old or the new content, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class StateFolder:
    """Saves and restores the local runtime's state."""

    def __init__(self, path: Path) -> None:
        self.path = path.resolve()
        self.path.mkdir(parents=True, exist_ok=True)

    @property
    def lake(self) -> Path:
        """Where the data-lake bucket's objects live on disk."""
        return self.path / "s3"

    def bucket_path(self, bucket: str) -> Path:
        """The folder holding one bucket's objects."""
        return self.lake / bucket

    def save(self, runtime: LocalRuntime) -> None:
        """Write the persisted tables (the lake is already on disk)."""
        dynamodb = runtime.session.client("dynamodb")
        for logical_id in PERSISTED_TABLES:
            name = runtime.template.physical_ids[logical_id]
            items: list[dict[str, Any]] = []
            for page in dynamodb.get_paginator("scan").paginate(TableName=name):
                items += page["Items"]
            items.sort(key=lambda i: json.dumps(i, sort_keys=True))
            write_atomically(self._table_file(logical_id), json.dumps(items, indent=1).encode())

    def restore(self, runtime: LocalRuntime) -> None:
        """Load what an earlier command saved into the freshly emulated services."""
        dynamodb = runtime.session.client("dynamodb")
        for logical_id in PERSISTED_TABLES:
            path = self._table_file(logical_id)
            if not path.exists():
                continue
            name = runtime.template.physical_ids[logical_id]
            for item in json.loads(path.read_text()):
                dynamodb.put_item(TableName=name, Item=item)

    def _table_file(self, logical_id: str) -> Path:
        return self.path / "tables" / f"{logical_id}.json"
