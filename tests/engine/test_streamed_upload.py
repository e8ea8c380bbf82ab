"""LOAD files are streamed to S3 as they are written: one object each, nothing left behind.

The engine's Parquet sink sends a file under one part (8 MiB) as one PutObject and a larger
one as a multipart upload of parts sent while it is being written; the object appears only
when the file is finished. These tests drive the sink against the offline lake's S3
(``deltaload.local.s3``), count the S3 calls botocore makes and look at what is on disk.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from deltaload.local.dms.errors import LoadError
from deltaload.local.dms.writer import PART_BYTES, ParquetSink, TargetSettings
from deltaload.local.s3 import UPLOADS, DiskS3

BUCKET = "lake"  # the bucket the s3 fixture (tests/conftest.py) creates


def _calls(s3: Any) -> Counter[str]:
    seen: Counter[str] = Counter()

    def count(model: Any, **_: Any) -> None:
        seen[model.name] += 1

    s3.meta.events.register("before-call.s3", count)
    return seen


def _table(rows: int) -> pa.Table:
    """Incompressible-ish rows (~100 bytes each) so the file size follows the row count."""
    noise = [os.urandom(40).hex() for _ in range(1000)]
    return pa.table(
        {
            "row_id": pa.array(range(1, rows + 1), pa.int64()),
            "note": pa.array([noise[i % 1000] + str(i) for i in range(rows)], pa.string()),
        }
    )


def _sink(s3: Any, table: pa.Table, **target: Any) -> ParquetSink:
    settings = TargetSettings(endpoint_id="lake-target", bucket=BUCKET, folder="stage", **target)
    return ParquetSink(s3, settings, "sales", "orders", table.schema)


def _open_uploads(store: DiskS3) -> list[str]:
    folder = store.root / UPLOADS
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def _write(sink: ParquetSink, table: pa.Table) -> None:
    for batch in table.to_batches(max_chunksize=20_000):
        sink.write(batch)


def test_a_file_larger_than_a_part_is_one_object_sent_in_parts(s3: Any, store: DiskS3):
    table = _table(300_000)
    calls = _calls(s3)
    sink = _sink(s3, table)
    _write(sink, table)
    keys = sink.close()
    assert keys == ["stage/sales/orders/LOAD00000001.parquet"]
    size = s3.head_object(Bucket=BUCKET, Key=keys[0])["ContentLength"]
    assert size > 2 * PART_BYTES
    assert calls["CreateMultipartUpload"] == 1 and calls["CompleteMultipartUpload"] == 1
    # a part is sent once 8 MiB are buffered, the rest goes last
    assert calls["UploadPart"] in (size // PART_BYTES, size // PART_BYTES + 1)
    assert calls["PutObject"] == 0
    assert pq.read_table(store.root / BUCKET / keys[0]).equals(table)
    assert _open_uploads(store) == []


def test_a_small_file_is_one_put_object(s3: Any, store: DiskS3):
    table = _table(1_000)
    calls = _calls(s3)
    sink = _sink(s3, table)
    _write(sink, table)
    assert sink.close() == ["stage/sales/orders/LOAD00000001.parquet"]
    assert calls == Counter({"PutObject": 1})
    assert pq.read_table(store.root / BUCKET / "stage/sales/orders/LOAD00000001.parquet").equals(
        table
    )


def test_files_rotate_at_max_file_size_and_each_is_whole(s3: Any, store: DiskS3):
    table = _table(300_000)
    sink = _sink(s3, table, max_file_kb=12 * 1024)
    _write(sink, table)
    keys = sink.close()
    assert len(keys) >= 2
    assert keys[1] == "stage/sales/orders/LOAD00000002.parquet"
    parts = [pq.read_table(store.root / BUCKET / key) for key in keys]
    assert pa.concat_tables(parts).equals(table)
    assert _open_uploads(store) == []


def test_a_failed_part_is_a_load_error_naming_the_object_and_leaves_nothing(s3: Any, store: DiskS3):
    table = _table(300_000)
    sent: list[int] = []

    def refuse_the_second_part(params: dict[str, Any], **_: Any) -> None:
        sent.append(params["PartNumber"])
        if params["PartNumber"] == 2:
            raise RuntimeError("the disk is full")

    s3.meta.events.register("provide-client-params.s3.UploadPart", refuse_the_second_part)
    sink = _sink(s3, table)
    with pytest.raises(LoadError) as error:
        _write(sink, table)
        sink.close()
    message = str(error.value)
    assert "target endpoint lake-target" in message
    assert "s3://lake/stage/sales/orders/LOAD00000001.parquet" in message
    assert "the disk is full" in message
    assert sent == [1, 2]
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0
    assert _open_uploads(store) == []  # the multipart upload was aborted


def test_a_discarded_file_leaves_no_object_and_no_upload(s3: Any, store: DiskS3):
    table = _table(200_000)
    sink = _sink(s3, table)
    _write(sink, table)
    assert _open_uploads(store)  # parts were already sent
    sink.discard()
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0
    assert _open_uploads(store) == []
    assert sink.keys == []
