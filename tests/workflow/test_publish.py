"""Verification against Parquet footers, publishing with a manifest, cleanup (moto S3)."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from deltaload import publish
from deltaload.aws import Clients
from tests.workflow.conftest import keys_under

BUCKET = "lake"


def _parquet(rows: list[dict]) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buffer)
    return buffer.getvalue()


def _stage(clients: Clients, prefix: str, files: list[list[dict]]) -> None:
    for n, rows in enumerate(files, start=1):
        key = f"{prefix}sales/orders/LOAD{n:08d}.parquet"
        clients.s3.put_object(Bucket=BUCKET, Key=key, Body=_parquet(rows))


def test_verify_reads_every_page_of_objects(clients: Clients) -> None:
    prefix = "staging/orders/run1/"
    body = _parquet([{"id": 1}, {"id": 2}])
    for n in range(1100):
        clients.s3.put_object(Bucket=BUCKET, Key=f"{prefix}s/t/LOAD{n:08d}.parquet", Body=body)
    assert len(clients.s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]) == 1000
    result = publish.verify(clients, BUCKET, prefix, 2200, table="orders")
    assert result.rows == 2200 and len(result.files) == 1100
    assert publish.delete_prefix(clients, BUCKET, prefix) == 1100
    assert keys_under(clients, BUCKET, prefix) == []


def test_row_count_mismatch_names_both_counts(clients: Clients) -> None:
    _stage(clients, "staging/orders/run1/", [[{"id": i} for i in range(7)]])
    with pytest.raises(publish.VerificationError, match=r"FullLoadRows=9.*hold 7 rows"):
        publish.verify(clients, BUCKET, "staging/orders/run1/", 9, table="orders")


def test_empty_delta_is_a_success_with_zero_rows(clients: Clients) -> None:
    result = publish.verify(clients, BUCKET, "staging/orders/run1/", 0, table="orders")
    assert (result.rows, result.files, result.loaded_max) == (0, [], None)


def test_prefix_without_trailing_slash_is_refused_and_neighbours_are_ignored(
    clients: Clients,
) -> None:
    _stage(clients, "staging/ORDERS/run1/", [[{"id": 1}]])
    _stage(clients, "staging/ORDERS_ITEMS/run1/", [[{"id": 1}, {"id": 2}]])
    with pytest.raises(ValueError, match="must end with '/'"):
        list(publish.list_objects(clients, BUCKET, "staging/ORDERS"))
    assert publish.verify(clients, BUCKET, "staging/ORDERS/run1/", 1, table="ORDERS").rows == 1
    publish.cleanup_run(clients, BUCKET, staging_prefix="staging/ORDERS/run1/")
    assert keys_under(clients, BUCKET, "staging/ORDERS_ITEMS/")


def test_loaded_max_from_statistics_and_from_strings(clients: Clients) -> None:
    moments = [datetime(2024, 1, d, 10, tzinfo=UTC) for d in (3, 9, 5)]
    _stage(
        clients,
        "a/",
        [[{"ID": 5, "ts": moments[0], "s": "b"}], [{"ID": 12, "ts": moments[1], "s": "zz"}]],
    )
    by_id = publish.verify(clients, BUCKET, "a/", 2, table="t", filter_column="id")
    assert by_id.loaded_max == "12"  # column matched case-insensitively
    by_ts = publish.verify(clients, BUCKET, "a/", 2, table="t", filter_column="ts")
    assert by_ts.loaded_max.startswith("2024-01-09 10:00:00")
    by_s = publish.verify(clients, BUCKET, "a/", 2, table="t", filter_column="s")
    assert by_s.loaded_max == "zz"
    with pytest.raises(publish.VerificationError, match="no column 'missing'"):
        publish.verify(clients, BUCKET, "a/", 2, table="t", filter_column="missing")


class _RecordingS3:
    def __init__(self, s3) -> None:
        self._s3, self.writes = s3, []

    def __getattr__(self, name):
        attribute = getattr(self._s3, name)
        if name in ("copy_object", "put_object"):

            def record(**kwargs):
                self.writes.append(kwargs["Key"])
                return attribute(**kwargs)

            return record
        return attribute


def _manifest(verification: publish.Verification) -> publish.Manifest:
    window = publish.ManifestWindow(
        mode="incremental",
        kind="integer",
        lower="1",
        lower_exclusive=False,
        upper=None,
        description="[1, max loaded value]",
    )
    return publish.Manifest(
        run_id="r1",
        table="orders",
        source="sales.orders",
        window=window,
        rows=verification.rows,
        bytes=verification.bytes,
        full_load_rows=verification.rows,
        watermark="3",
        previous_watermark=None,
        loaded_max="3",
        warnings=[],
        created_at="2024-05-01T12:00:00+00:00",
    )


def test_publish_copies_files_then_writes_the_manifest_last(clients: Clients) -> None:
    _stage(clients, "staging/orders/r1/", [[{"id": 1}], [{"id": 2}, {"id": 3}]])
    verification = publish.verify(clients, BUCKET, "staging/orders/r1/", 3, table="orders")
    recorder = _RecordingS3(clients.s3)
    recording = Clients(overrides={"s3": recorder})
    manifest_key = "out/sales/orders/_manifests/r1.json"
    publish.publish(
        recording,
        BUCKET,
        verification,
        run_prefix="out/sales/orders/run=r1/",
        manifest_key=manifest_key,
        manifest=_manifest(verification),
    )
    assert recorder.writes[-1] == manifest_key
    assert recorder.writes[:-1] == [
        "out/sales/orders/run=r1/LOAD00000001.parquet",
        "out/sales/orders/run=r1/LOAD00000002.parquet",
    ]
    manifest = json.loads(clients.s3.get_object(Bucket=BUCKET, Key=manifest_key)["Body"].read())
    assert [f["rows"] for f in manifest["files"]] == [1, 2]


def test_cleanup_removes_only_this_runs_objects(clients: Clients) -> None:
    for key in (
        "staging/orders/r1/s/t/LOAD00000001.parquet",
        "out/sales/orders/run=r1/LOAD00000001.parquet",
        "out/sales/orders/_manifests/r1.json",
        "out/sales/orders/run=r10/LOAD00000001.parquet",
        "out/sales/orders/_manifests/r10.json",
    ):
        clients.s3.put_object(Bucket=BUCKET, Key=key, Body=b"x")
    publish.cleanup_run(
        clients,
        BUCKET,
        staging_prefix="staging/orders/r1/",
        run_prefix="out/sales/orders/run=r1/",
        manifest_key="out/sales/orders/_manifests/r1.json",
    )
    assert sorted(keys_under(clients, BUCKET)) == [
        "out/sales/orders/_manifests/r10.json",
        "out/sales/orders/run=r10/LOAD00000001.parquet",
    ]
