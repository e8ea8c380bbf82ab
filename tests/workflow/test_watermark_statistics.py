"""The loaded maximum (an open window's watermark) comes from Parquet footer statistics
for every column kind, and from the column itself only when a file has no usable ones."""

from __future__ import annotations

import io
import logging
import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from deltaload import publish
from deltaload.aws import Clients
from deltaload.local.dms.coltypes import Kind, arrow_for
from deltaload.local.dms.writer import ParquetSink, TargetSettings
from deltaload.parquet_footer import FooterError, max_exact_flags
from deltaload.values import ColumnKind, canonical

BUCKET = "lake"
PREFIX = "staging/orders/run1/"
_RANDOM = random.Random(12)


def _values(kind: str, n: int) -> tuple[pa.DataType, list[Any]]:
    """n random values of one Arrow kind, about a tenth of them NULL."""
    base = datetime(2024, 3, 1, 12)
    make = {
        "integer": (pa.int64(), lambda: _RANDOM.randint(-(10**12), 10**12)),
        "date": (pa.date32(), lambda: date(2020, 1, 1) + timedelta(days=_RANDOM.randint(0, 4000))),
        "timestamp": (
            pa.timestamp("us"),
            lambda: base + timedelta(microseconds=_RANDOM.randint(0, 10**13)),
        ),
        "timestamptz": (
            pa.timestamp("us", tz="UTC"),
            lambda: (base + timedelta(microseconds=_RANDOM.randint(0, 10**13))).replace(tzinfo=UTC),
        ),
        "decimal": (
            pa.decimal128(18, 0),
            lambda: Decimal(_RANDOM.randint(-(10**15), 10**15)),
        ),
        "string": (
            pa.string(),
            lambda: "".join(_RANDOM.choices("abcXYZ09é€", k=_RANDOM.randint(0, 30))),
        ),
    }
    arrow_type, value = make[kind]
    return arrow_type, [None if _RANDOM.random() < 0.1 else value() for _ in range(n)]


def _stage(
    clients: Clients, files: list[pa.Table], row_group_size: int = 100, **options: Any
) -> list[str]:
    keys = []
    for n, table in enumerate(files, start=1):
        buffer = io.BytesIO()
        pq.write_table(table, buffer, row_group_size=row_group_size, **options)
        key = f"{PREFIX}sales/orders/LOAD{n:08X}.parquet"
        clients.s3.put_object(Bucket=BUCKET, Key=key, Body=buffer.getvalue())
        keys.append(key)
    return keys


KINDS = {
    "integer": ColumnKind.INTEGER,
    "date": ColumnKind.DATE,
    "timestamp": ColumnKind.TIMESTAMP,
    "timestamptz": ColumnKind.TIMESTAMP,
    "decimal": ColumnKind.INTEGER,
    "string": ColumnKind.STRING,
}


def _truth(values: list[Any]) -> Any:
    return max(v for v in values if v is not None)


@pytest.mark.parametrize("statistics", [True, False], ids=["statistics", "no-statistics"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_watermark_of_each_kind_is_the_true_maximum(
    clients: Clients, kind: str, statistics: bool
) -> None:
    arrow_type, values = _values(kind, 750)
    # Three files of several row groups, one whose filter column is all NULL.
    chunks = [values[:400], values[400:], [None] * 50]
    tables = [
        pa.table({"id": pa.array(range(len(c))), "f": pa.array(c, arrow_type)}) for c in chunks
    ]
    _stage(clients, tables, write_statistics=statistics)
    result = publish.verify(clients, BUCKET, PREFIX, 800, table="orders", filter_column="F")
    expected = publish._as_text(_truth(values))
    assert result.loaded_max == expected
    # And the text is one the window planner accepts as that kind's value.
    assert canonical(KINDS[kind], result.loaded_max) == canonical(KINDS[kind], expected)


def test_a_column_of_only_nulls_has_no_maximum(clients: Clients) -> None:
    for statistics in (True, False):
        _stage(
            clients,
            [pa.table({"f": pa.array([None] * 5, pa.string())})],
            write_statistics=statistics,
        )
        result = publish.verify(clients, BUCKET, PREFIX, 5, table="orders", filter_column="f")
        assert result.loaded_max is None


class _RangeCounter:
    """Records the byte range of every get_object call on the wrapped S3 client."""

    def __init__(self, s3: Any) -> None:
        self._s3, self.ranges = s3, []

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._s3, name)
        if name != "get_object":
            return attribute

        def get_object(**kwargs: Any) -> Any:
            self.ranges.append(kwargs.get("Range"))
            return attribute(**kwargs)

        return get_object


def _large_string_file(clients: Clients, statistics: bool) -> int:
    values = [f"order-{i:09d}-{'x' * (i % 40)}" for i in range(120_000)]
    _RANDOM.shuffle(values)
    (key,) = _stage(
        clients,
        [pa.table({"code": values})],
        row_group_size=10_000,  # DMS's default RowGroupLength
        write_statistics=statistics,
        use_dictionary=False,
    )
    return int(clients.s3.head_object(Bucket=BUCKET, Key=key)["ContentLength"])


def _bytes_read(ranges: list[str | None], size: int) -> int:
    total = 0
    for text in ranges:
        assert text is not None, "a whole-object GET"
        start, end = (int(x) for x in text.removeprefix("bytes=").split("-"))
        total += end - start + 1
    return total


def test_no_column_data_is_read_when_statistics_exist(clients: Clients) -> None:
    size = _large_string_file(clients, statistics=True)
    assert size > 1024 * 1024  # many times the footer read
    counter = _RangeCounter(clients.s3)
    result = publish.verify(
        Clients(overrides={"s3": counter}),
        BUCKET,
        PREFIX,
        120_000,
        table="orders",
        filter_column="code",
    )
    assert result.loaded_max == "order-000119999-" + "x" * (119_999 % 40)
    # One ranged read of the file's tail (the footer), nothing of the column's pages.
    assert len(counter.ranges) == 1
    assert _bytes_read(counter.ranges, size) <= 64 * 1024


def test_without_statistics_the_column_is_read_and_logged(
    clients: Clients, caplog: pytest.LogCaptureFixture
) -> None:
    size = _large_string_file(clients, statistics=False)
    counter = _RangeCounter(clients.s3)
    with caplog.at_level(logging.INFO):
        result = publish.verify(
            Clients(overrides={"s3": counter}),
            BUCKET,
            PREFIX,
            120_000,
            table="orders",
            filter_column="code",
        )
    assert result.loaded_max == "order-000119999-" + "x" * (119_999 % 40)
    assert _bytes_read(counter.ranges, size) > size // 2  # the counter sees a column scan
    assert "no usable footer statistics" in caplog.text


def _rewrite_footer(body: bytes, old: bytes, new: bytes) -> bytes:
    """Replace equal-length bytes inside the Parquet footer only (not the data pages)."""
    assert len(old) == len(new)
    length = int.from_bytes(body[-8:-4], "little")
    start = len(body) - 8 - length
    footer = body[start:]
    assert footer.count(old) == 1
    return body[:start] + footer.replace(old, new)


def _footer_tampered_file(clients: Clients, writer: bytes | None, maximum: bytes) -> None:
    """One file of codes whose largest is "zz00", its footer's maximum replaced (and its
    writer's name, when given), as a writer that cuts string statistics leaves them."""
    buffer = io.BytesIO()
    pq.write_table(pa.table({"code": ["aa11", "zz00", "mm55"]}), buffer)
    body = buffer.getvalue()
    if writer is not None:
        own = pq.read_metadata(io.BytesIO(body)).created_by.encode()
        body = _rewrite_footer(body, own, writer.ljust(len(own), b" "))
    body = _rewrite_footer(body, b"zz00", maximum)
    clients.s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}s/t/LOAD00000001.parquet", Body=body)


@pytest.mark.parametrize(
    ("writer", "flag"),
    [(None, False), (b"parquet-mr version 1.12.3", None)],
    ids=["flagged-inexact", "no-flag-from-a-writer-that-may-cut"],
)
def test_a_maximum_that_may_be_truncated_is_not_trusted(
    clients: Clients, monkeypatch: pytest.MonkeyPatch, writer: bytes | None, flag: bool | None
) -> None:
    # The footer says "zz~~" (a cut, rounded-up bound) while the largest value is "zz00".
    _footer_tampered_file(clients, writer, b"zz~~")
    monkeypatch.setattr(publish, "max_exact_flags", lambda raw: [[flag]])
    result = publish.verify(clients, BUCKET, PREFIX, 3, table="orders", filter_column="code")
    assert result.loaded_max == "zz00"


def test_a_maximum_flagged_exact_is_trusted_from_any_writer(clients: Clients) -> None:
    # pyarrow writes is_max_value_exact = true; the footer's writer is renamed.
    _footer_tampered_file(clients, b"parquet-mr version 1.15.0", b"zz00")
    counter = _RangeCounter(clients.s3)
    result = publish.verify(
        Clients(overrides={"s3": counter}), BUCKET, PREFIX, 3, table="orders", filter_column="code"
    )
    assert result.loaded_max == "zz00"
    assert len(counter.ranges) == 1  # the footer only


def _compact_footer(exact: bool | None) -> bytes:
    """FileMetaData{row_groups: [RowGroup{columns: [ColumnChunk{meta_data:
    ColumnMetaData{statistics: Statistics{max_value: "zz", is_max_value_exact}}}]}]}."""
    flag = b"" if exact is None else (b"\x21" if exact else b"\x22")  # field 7, bool
    statistics = b"\x58\x02zz" + flag + b"\x00"  # field 5 binary "zz"
    chunk = b"\x3c" + b"\xcc" + statistics + b"\x00" + b"\x00"  # fields 3, then 12
    group = b"\x19\x1c" + chunk + b"\x00"  # field 1: a list of one struct
    return b"\x15\x04" + b"\x39\x1c" + group + b"\x00"  # version 2, then field 4


@pytest.mark.parametrize("exact", [True, False, None])
def test_footer_flags_are_read_from_the_thrift_encoding(exact: bool | None) -> None:
    assert max_exact_flags(_compact_footer(exact)) == [[exact]]
    with pytest.raises(FooterError):
        max_exact_flags(_compact_footer(exact)[:-3])


def test_footer_flags_of_a_pyarrow_file_say_exact_for_every_chunk() -> None:
    buffer = io.BytesIO()
    table = pa.table({"s": ["a", "b", None] * 10, "i": [1, 2, 3] * 10})
    pq.write_table(table, buffer, row_group_size=10)
    body = buffer.getvalue()
    length = int.from_bytes(body[-8:-4], "little")
    assert max_exact_flags(body[-8 - length : -8]) == [[True, True]] * 3


def test_string_statistics_too_long_to_keep_fall_back_to_the_column(clients: Clients) -> None:
    # Arrow C++ drops min/max longer than its statistics size limit rather than cut them.
    longest = "z" * 5000
    _stage(clients, [pa.table({"code": ["a", longest, "b"]})])
    result = publish.verify(clients, BUCKET, PREFIX, 3, table="orders", filter_column="code")
    assert result.loaded_max == longest


def test_a_file_that_is_not_parquet_is_a_verification_error(clients: Clients) -> None:
    clients.s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}s/t/LOAD00000001.parquet", Body=b"x" * 40)
    with pytest.raises(publish.VerificationError, match="not a Parquet file"):
        publish.verify(clients, BUCKET, PREFIX, 1, table="orders")


@pytest.mark.parametrize(
    ("version", "statistics"),
    [("parquet-1-0", True), ("parquet-2-0", True), ("parquet-1-0", False)],
    ids=["parquet-1-0", "parquet-2-0", "no-statistics"],
)
def test_files_the_engine_writes_give_every_kinds_maximum(
    clients: Clients, version: str, statistics: bool
) -> None:
    # Every column kind the local engine writes, in its own LOAD files (small MaxFileSize
    # and RowGroupLength: several files of several row groups).
    kinds = [
        Kind.INT,
        Kind.DATE,
        Kind.TIMESTAMP,
        Kind.TIMESTAMPTZ,
        Kind.DECIMAL,
        Kind.TEXT,
    ]
    sample = {
        Kind.INT: "integer",
        Kind.DATE: "date",
        Kind.TIMESTAMP: "timestamp",
        Kind.TIMESTAMPTZ: "timestamp",
        Kind.DECIMAL: "decimal",
        Kind.TEXT: "string",
    }
    columns = {}
    for kind in kinds:
        arrow_type = arrow_for(kind, 18, 0) if kind is Kind.DECIMAL else arrow_for(kind)
        _, values = _values(sample[kind], 3000)
        if kind is Kind.TIMESTAMPTZ:  # the engine writes zone-aware values as UTC, no zone
            values = [v.replace(tzinfo=None) if v else v for v in values]
        columns[kind.name.lower()] = pa.array(values, arrow_type)
    table = pa.table(columns)
    target = TargetSettings(
        endpoint_id="target",
        bucket=BUCKET,
        folder=PREFIX.rstrip("/"),
        max_file_kb=32,
        parquet_version=version,
        enable_statistics=statistics,
        row_group_rows=500,
    )
    sink = ParquetSink(clients.s3, target, "sales", "orders", table.schema)
    for batch in table.to_batches(max_chunksize=700):
        sink.write(batch)
    keys = sink.close()
    assert len(keys) > 1
    for name in columns:
        counter = _RangeCounter(clients.s3)
        result = publish.verify(
            Clients(overrides={"s3": counter}),
            BUCKET,
            PREFIX,
            3000,
            table="orders",
            filter_column=name,
        )
        assert result.loaded_max == publish._as_text(_truth(table.column(name).to_pylist()))
        if statistics:
            assert len(counter.ranges) == len(keys), name  # one footer read per file
        else:
            assert len(counter.ranges) > len(keys), name
