"""LOB values that reach LobMaxSize are found in the staged Parquet files (moto S3).

DMS cuts a LOB above LobMaxSize to that size and only logs it, so a value at the limit,
counted as DMS counts LOB sizes (bytes; UTF-8 for CLOB; two bytes a character, four beyond
the BMP, for NCLOB), may have been cut. Everything smaller is not reported.
"""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq

from deltaload import publish
from deltaload.aws import Clients

BUCKET = "lake"
PREFIX = "staging/docs/run1/"
LIMIT_KB = 4
LIMIT = LIMIT_KB * 1024


def _stage(clients: Clients, columns: dict[str, pa.Array], row_group_size: int = 1000) -> None:
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer, row_group_size=row_group_size)
    key = f"{PREFIX}dwh/docs/LOAD00000001.parquet"
    clients.s3.put_object(Bucket=BUCKET, Key=key, Body=buffer.getvalue())


def _warnings(clients: Clients) -> dict[str, int]:
    verification = publish.verify(clients, BUCKET, PREFIX, _rows(clients), table="docs")
    found = publish.lob_warnings(clients, BUCKET, verification.files, LIMIT_KB)
    return {w.column: w.values for w in found}


def _rows(clients: Clients) -> int:
    body = clients.s3.get_object(Bucket=BUCKET, Key=f"{PREFIX}dwh/docs/LOAD00000001.parquet")
    return pq.ParquetFile(io.BytesIO(body["Body"].read())).metadata.num_rows


def test_values_at_the_limit_in_each_measure_are_reported(clients: Clients) -> None:
    _stage(
        clients,
        {
            "id": pa.array([1, 2, 3]),
            "blob": pa.array([b"x" * LIMIT, b"x" * (LIMIT - 1), None]),
            "nclob": pa.array(["a" * (LIMIT // 2), "a" * (LIMIT // 2 - 2), "b"]),  # UTF-16
            "clob": pa.array(["é" * (LIMIT // 2), "short", None]),  # UTF-8: 2 bytes each
            "astral": pa.array(["😀" * (LIMIT // 4), "😀" * (LIMIT // 4 - 1), ""]),
        },
    )
    assert _warnings(clients) == {"blob": 1, "nclob": 1, "clob": 1, "astral": 1}


def test_nothing_is_reported_below_the_limit(clients: Clients) -> None:
    _stage(
        clients,
        {
            "id": pa.array(range(500)),
            "text": pa.array(["z" * 100] * 500),  # 50 KB in the row group, no value near 4 KB
            "data": pa.array([b"\x00" * 2000] * 500),
        },
    )
    assert _warnings(clients) == {}


def test_the_warning_says_what_to_do(clients: Clients) -> None:
    text = str(publish.LobWarning("body", 3, 64))
    assert "3 value(s) of column 'body' reach LobMaxSize (64 KB)" in text
    assert "raise replication_task_settings TargetMetadata.LobMaxSize" in text
