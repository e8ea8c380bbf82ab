"""The local state folder: controller items, run history and the data lake, kept on disk.

Layout (default ``.deltaload/``)::

    tables/<LogicalId>.json      every item of a DynamoDB table, DynamoDB JSON
    s3/<bucket>/<key>            every object of the data-lake bucket, as a plain file
    s3/.etags.json               which object version each file holds

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
        """Write the persisted tables and the bucket's objects."""
        dynamodb = runtime.session.client("dynamodb")
        for logical_id in PERSISTED_TABLES:
            name = runtime.template.physical_ids[logical_id]
            items: list[dict[str, Any]] = []
            for page in dynamodb.get_paginator("scan").paginate(TableName=name):
                items += page["Items"]
            items.sort(key=lambda i: json.dumps(i, sort_keys=True))
            write_atomically(self._table_file(logical_id), json.dumps(items, indent=1).encode())
        self._save_bucket(runtime)

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
        root = self.bucket_path(runtime.bucket)
        if root.is_dir():
            s3 = runtime.session.client("s3")
            for file in sorted(root.rglob("*")):
                if file.is_file() and not file.name.startswith("."):
                    s3.upload_file(str(file), runtime.bucket, file.relative_to(root).as_posix())
            # Uploading changes ETags of multipart objects: record what is there now.
            self._write_etags(runtime.bucket, self._bucket_etags(runtime))

    def _save_bucket(self, runtime: LocalRuntime) -> None:
        root = self.bucket_path(runtime.bucket)
        s3 = runtime.session.client("s3")
        known = self._read_etags(runtime.bucket)
        current = self._bucket_etags(runtime)
        for key, etag in current.items():
            target = root / key
            if known.get(key) != etag or not target.exists():
                body = s3.get_object(Bucket=runtime.bucket, Key=key)["Body"].read()
                write_atomically(target, body)
        for key in set(known) - set(current):
            (root / key).unlink(missing_ok=True)
            self._prune(root, (root / key).parent)
        self._write_etags(runtime.bucket, current)

    def _bucket_etags(self, runtime: LocalRuntime) -> dict[str, str]:
        etags: dict[str, str] = {}
        paginator = runtime.session.client("s3").get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=runtime.bucket):
            etags |= {o["Key"]: o["ETag"] for o in page.get("Contents", [])}
        return etags

    def _etag_file(self, bucket: str) -> Path:
        return self.lake / f".etags-{bucket}.json"

    def _read_etags(self, bucket: str) -> dict[str, str]:
        path = self._etag_file(bucket)
        return json.loads(path.read_text()) if path.exists() else {}

    def _write_etags(self, bucket: str, etags: dict[str, str]) -> None:
        write_atomically(self._etag_file(bucket), json.dumps(etags, sort_keys=True).encode())

    def _table_file(self, logical_id: str) -> Path:
        return self.path / "tables" / f"{logical_id}.json"

    @staticmethod
    def _prune(root: Path, folder: Path) -> None:
        while folder != root and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent
