"""Verify a run's staging files against DMS, publish them with a manifest, clean up.

Verification reads only Parquet footers (S3 range reads): the sum of their row counts
must equal DMS's FullLoadRows. Publishing copies each file to ``run=<runId>/`` under
the final prefix and writes the manifest LAST, so a run's files count only once its
manifest exists; the failure path deletes a half-published run.
"""

from __future__ import annotations

import io
import json
import posixpath
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import Field

from deltaload.aws import Clients, transient_errors
from deltaload.errors import DeltaloadError, VerificationError
from deltaload.observability import logger
from deltaload.parquet_footer import FooterError, max_exact_flags
from deltaload.runstate import Document, RunPlan
from deltaload.schema import run_schema

DELETE_BATCH = 1000


class S3RangeFile(io.RawIOBase):
    """A read-only, seekable file over one S3 object that fetches only the bytes read."""

    def __init__(self, clients: Clients, bucket: str, key: str, size: int) -> None:
        super().__init__()
        self._clients, self._bucket, self._key = clients, bucket, key
        self._size, self._position = size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def read(self, size: int = -1) -> bytes:
        if self._position >= self._size:
            return b""
        end = self._size if size is None or size < 0 else min(self._size, self._position + size)
        with transient_errors():
            body = self._clients.s3.get_object(
                Bucket=self._bucket, Key=self._key, Range=f"bytes={self._position}-{end - 1}"
            )["Body"].read()
        self._position += len(body)
        return body


@dataclass(frozen=True)
class StagedFile:
    """One Parquet file DMS wrote, with its footer row count."""

    key: str
    rows: int
    bytes: int


@dataclass(frozen=True)
class Verification:
    """The reconciled content of a staging folder."""

    files: list[StagedFile]
    rows: int
    bytes: int
    loaded_max: str | None
    schema: list[dict[str, str]] = field(default_factory=list)  # the files' Arrow columns


def list_objects(clients: Clients, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
    """Every object under ``prefix`` (a folder prefix ending in '/'), across all pages."""
    if prefix and not prefix.endswith("/"):
        raise ValueError(f"listing prefix {prefix!r} must end with '/'")
    paginator = clients.s3.get_paginator("list_objects_v2")
    with transient_errors():
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            yield from page.get("Contents", [])


def _column(schema_names: Iterable[str], wanted: str) -> str | None:
    for name in schema_names:
        if name.lower() == wanted.lower():
            return name
    return None


def _as_text(value: Any) -> str:
    """A Parquet value as the watermark text the window planner canonicalises."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, Decimal):
        return str(int(value)) if value == value.to_integral_value() else str(value)
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


# Parquet footers are read with one ranged GET of the file's tail, as Arrow's own reader
# does (its default footer_read_size); a larger footer costs a second GET.
_TAIL_BYTES = 64 * 1024
_MAGIC = b"PAR1"

# String maxima may be truncated and rounded up by their writer (parquet-java's
# parquet.statistics.truncate.length, arrow-rs's statistics_truncate_length), which says so
# in Statistics.is_max_value_exact (pyarrow does not expose it: parquet_footer reads it).
# Without the flag (writers before Parquet 2.10) only Arrow C++ (parquet-cpp, what pyarrow
# and this engine write with) is trusted: it never cuts min/max, it drops statistics longer
# than its size limit instead (has_min_max is then False).
_EXACT_STRING_WRITERS = ("parquet-cpp",)
_TRUNCATABLE = ("BYTE_ARRAY", "FIXED_LEN_BYTE_ARRAY")  # the physical types writers may cut


@dataclass(frozen=True)
class Footer:
    """A Parquet file's parsed footer and its raw Thrift bytes."""

    metadata: pq.FileMetaData
    raw: bytes


def read_footer(clients: Clients, bucket: str, key: str, size: int) -> Footer:
    """The Parquet footer of one S3 object, fetched with a ranged read of its tail only."""
    source = S3RangeFile(clients, bucket, key, size)
    tail_size = min(size, _TAIL_BYTES)
    source.seek(size - tail_size)
    tail = source.read(tail_size)
    if len(tail) < 12 or tail[-4:] != _MAGIC:
        raise VerificationError(f"{key} is not a Parquet file (no PAR1 footer)")
    length = int.from_bytes(tail[-8:-4], "little")
    if length + 8 > size - 4:
        raise VerificationError(f"{key}: its Parquet footer length {length} exceeds the file")
    if length + 8 > len(tail):
        source.seek(size - 8 - length)
        tail = source.read(length + 8 - len(tail)) + tail
    # The footer alone, framed as a file: pyarrow parses it without touching data pages.
    metadata = pq.read_metadata(pa.BufferReader(_MAGIC + tail[-8 - length :]))
    return Footer(metadata, tail[-8 - length : -8])


def max_from_statistics(footer: Footer, index: int) -> tuple[bool, Any]:
    """(True, the largest value of column ``index``) from footer statistics alone, or
    (False, None) when some row group has no usable statistics or they may be truncated."""
    metadata = footer.metadata
    exact: list[list[bool | None]] | None = None
    best = None
    for group in range(metadata.num_row_groups):
        chunk = metadata.row_group(group).column(index)
        if chunk.num_values == 0:
            continue
        stats = chunk.statistics if chunk.is_stats_set else None
        if stats is None:
            return False, None
        if stats.has_null_count and stats.null_count == chunk.num_values:
            continue  # only NULLs: no maximum, and writers leave min/max out
        if not stats.has_min_max:
            return False, None
        if stats.physical_type in _TRUNCATABLE:
            if exact is None:
                try:
                    exact = max_exact_flags(footer.raw)
                except FooterError:
                    return False, None  # unreadable flags: the column itself says
            flag = exact[group][index] if group < len(exact) and index < len(exact[group]) else None
            if flag is False or (
                flag is None and not (metadata.created_by or "").startswith(_EXACT_STRING_WRITERS)
            ):
                return False, None
        best = stats.max if best is None else max(best, stats.max)
    return True, best


def _max_of(clients: Clients, bucket: str, staged: StagedFile, footer: Footer, column: str) -> Any:
    """The largest value of ``column`` in one file: from the footer statistics when every
    row group has usable ones, else by reading that column (and saying so)."""
    metadata = footer.metadata
    index = metadata.schema.to_arrow_schema().get_field_index(column)
    found, value = max_from_statistics(footer, index)
    if found:
        return value
    logger.info(
        "no usable footer statistics: reading the column for the watermark",
        extra={"key": staged.key, "column": column, "writer": metadata.created_by},
    )
    source = S3RangeFile(clients, bucket, staged.key, staged.bytes)
    values = pq.ParquetFile(source, metadata=metadata).read(columns=[column]).column(0)
    return pc.max(values).as_py() if len(values) else None


def verify(
    clients: Clients,
    bucket: str,
    staging_prefix: str,
    full_load_rows: int,
    *,
    table: str,
    filter_column: str | None = None,
) -> Verification:
    """Sum Parquet footer row counts under the staging prefix and compare with DMS.

    No files and FullLoadRows == 0 is a valid empty load. ``filter_column`` asks for the
    largest loaded value (open windows resolve their watermark from it), taken from the
    footer statistics of every kind; a file without usable ones has that column read.
    """
    files: list[StagedFile] = []
    schemas: list[tuple[str, pa.Schema]] = []
    maxima: list[Any] = []
    for entry in list_objects(clients, bucket, staging_prefix):
        key, size = entry["Key"], int(entry["Size"])
        if not key.endswith(".parquet"):
            continue
        footer = read_footer(clients, bucket, key, size)
        metadata = footer.metadata
        staged = StagedFile(key, metadata.num_rows, size)
        files.append(staged)
        schemas.append((key, metadata.schema.to_arrow_schema()))
        if filter_column and metadata.num_rows:
            names = schemas[-1][1].names
            column = _column(names, filter_column)
            if column is None:
                raise VerificationError(
                    f"table {table!r}: {key} has no column {filter_column!r} "
                    f"(columns: {', '.join(names)})"
                )
            value = _max_of(clients, bucket, staged, footer, column)
            if value is not None:
                maxima.append(value)
    rows = sum(f.rows for f in files)
    if rows != full_load_rows:
        raise VerificationError(
            f"table {table!r}: DMS reports FullLoadRows={full_load_rows} but the "
            f"{len(files)} Parquet file(s) under s3://{bucket}/{staging_prefix} hold "
            f"{rows} rows; nothing was published"
        )
    loaded_max = _as_text(max(maxima)) if maxima else None
    columns = run_schema(table, schemas)
    return Verification(files, rows, sum(f.bytes for f in files), loaded_max, columns)


@dataclass(frozen=True)
class LobWarning:
    """Values of one column that reach the limited-LOB-mode size limit: maybe truncated."""

    column: str
    values: int
    limit_kb: int

    def __str__(self) -> str:
        return (
            f"{self.values} value(s) of column {self.column!r} reach LobMaxSize "
            f"({self.limit_kb} KB): DMS truncates larger LOBs to that size in limited LOB "
            "mode and only logs a warning, so they may be cut; raise "
            "replication_task_settings TargetMetadata.LobMaxSize and reload the window"
        )


# UTF-8 characters are at most 4 bytes: a text cut at a character boundary ends within 3
# bytes of the limit.
_CUT_SLACK = 3
_SCAN_BATCH_ROWS = 256


def lob_warnings(
    clients: Clients, bucket: str, files: Iterable[StagedFile], limit_kb: int
) -> list[LobWarning]:
    """String and binary values in the staged files as large as LobMaxSize (limited mode).

    DMS cuts a LOB above LobMaxSize to exactly that size and reports it only in the task
    log (https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Tasks.LOBSupport.html);
    the table statistics and row counts do not change. So a value whose size reaches the
    limit, counted as DMS counts it (bytes for BLOB and CLOB, 2 bytes per character,
    4 beyond the BMP, for NCLOB: CHAP_Source.PostgreSQL.html, "Working with LOB source
    data types"), may have been cut. Row groups whose column is smaller in total than
    that are skipped from their footer alone.
    """
    limit = limit_kb * 1024
    counts: dict[str, int] = {}
    for staged in files:
        parquet = pq.ParquetFile(S3RangeFile(clients, bucket, staged.key, staged.bytes))
        schema = parquet.schema_arrow
        wanted = [
            i
            for i, f in enumerate(schema)
            if pa.types.is_string(f.type)
            or pa.types.is_large_string(f.type)
            or pa.types.is_binary(f.type)
            or pa.types.is_large_binary(f.type)
        ]
        for group in range(parquet.metadata.num_row_groups):
            meta = parquet.metadata.row_group(group)
            for index in wanted:
                # A column chunk is at least as large as its largest value (UTF-16 at most
                # doubles UTF-8), so small chunks cannot hold a value at the limit.
                if 2 * meta.column(index).total_uncompressed_size < limit - _CUT_SLACK:
                    continue
                name = schema.field(index).name
                # Small batches: a row group of large LOBs can be most of a 1 GB file.
                batches = parquet.iter_batches(
                    batch_size=_SCAN_BATCH_ROWS, row_groups=[group], columns=[name]
                )
                found = sum(_at_limit(batch.column(0), limit) for batch in batches)
                if found:
                    counts[name] = counts.get(name, 0) + found
    return [LobWarning(name, n, limit_kb) for name, n in sorted(counts.items())]


def _at_limit(column: Any, limit: int) -> int:
    """How many values of a column reach ``limit`` in any of the ways DMS measures LOBs."""
    floor = limit - _CUT_SLACK
    lengths = pc.binary_length(column)
    if not pa.types.is_string(column.type) and not pa.types.is_large_string(column.type):
        return int(pc.sum(pc.greater_equal(lengths, limit)).as_py() or 0)
    # UTF-16 size <= 2 x UTF-8 size: only values of at least floor/2 bytes need a look.
    maybe = pc.filter(column, pc.greater_equal(pc.multiply(lengths, 2), floor))
    return sum(
        1
        for value in maybe.to_pylist()
        if value is not None
        and max(len(value.encode("utf-8")), len(value.encode("utf-16-le"))) >= floor
    )


class ManifestWindow(Document):
    """The window a manifest's files hold."""

    mode: str
    kind: str
    lower: str | None
    lower_exclusive: bool
    upper: str | None
    description: str


class PublishedFile(Document):
    """One published Parquet file."""

    key: str
    rows: int
    bytes: int


class Manifest(Document):
    """``_manifests/<runId>.json``: what one run published; written last, after its files.

    Readers rely on these keys; new ones may be added, none renamed or removed.
    """

    run_id: str
    table: str
    source: str
    window: ManifestWindow
    rows: int
    bytes: int
    full_load_rows: int
    watermark: str | None
    previous_watermark: str | None
    loaded_max: str | None
    warnings: list[str]
    # The run's columns, the table's across runs (absent until a run wrote files) and how
    # this run changed them (deltaload.schema).
    run_schema: list[dict[str, Any]] = Field(default_factory=list, alias="schema")
    table_schema: list[dict[str, Any]] | None = Field(
        default=None, exclude_if=lambda value: value is None
    )
    schema_changes: list[dict[str, Any]] = Field(default_factory=list)
    created_at: str
    files: list[PublishedFile] = Field(default_factory=list)

    @classmethod
    def of_run(
        cls,
        plan: RunPlan,
        verification: Verification,
        *,
        full_load_rows: int,
        watermark: str | None,
        warnings: list[str],
        schema_fields: Mapping[str, Any],
        created_at: datetime,
    ) -> Manifest:
        """The manifest of a verified run (its files are added by ``publish``)."""
        window = plan.window
        return cls(
            run_id=plan.run_id,
            table=plan.table,
            source=plan.source,
            window=ManifestWindow(
                mode=window.mode,
                kind=window.kind.value,
                lower=window.lower,
                lower_exclusive=window.lower_exclusive,
                upper=window.upper,
                description=window.describe(),
            ),
            rows=verification.rows,
            bytes=verification.bytes,
            full_load_rows=full_load_rows,
            watermark=watermark,
            previous_watermark=window.previous_watermark,
            loaded_max=verification.loaded_max,
            warnings=warnings,
            created_at=created_at.isoformat(),
            **schema_fields,  # schema, schemaChanges, tableSchema (lake.SchemaOutcome)
        )


def publish(
    clients: Clients,
    bucket: str,
    verification: Verification,
    *,
    run_prefix: str,
    manifest_key: str,
    manifest: Manifest,
) -> Manifest:
    """Copy each staged file to ``run_prefix``, then write the manifest last."""
    published: list[PublishedFile] = []
    seen: set[str] = set()
    for staged in verification.files:
        name = posixpath.basename(staged.key)
        if name in seen:
            raise VerificationError(f"two staged files are both named {name}: {staged.key}")
        seen.add(name)
        target = f"{run_prefix}{name}"
        with transient_errors():
            clients.s3.copy_object(
                Bucket=bucket, Key=target, CopySource={"Bucket": bucket, "Key": staged.key}
            )
        published.append(PublishedFile(key=target, rows=staged.rows, bytes=staged.bytes))
    document = manifest.model_copy(update={"files": published})
    with transient_errors():
        clients.s3.put_object(
            Bucket=bucket,
            Key=manifest_key,
            Body=json.dumps(document.document(), indent=2, sort_keys=True).encode("utf-8"),
            ContentType="application/json",
        )
    return document


def delete_prefix(clients: Clients, bucket: str, prefix: str) -> int:
    """Delete every object under a folder prefix (ending in '/'); how many were deleted."""
    keys = [entry["Key"] for entry in list_objects(clients, bucket, prefix)]
    return delete_keys(clients, bucket, keys)


def delete_keys(clients: Clients, bucket: str, keys: list[str]) -> int:
    """Delete keys in batches of 1,000; raises if S3 reports any key it could not delete."""
    for start in range(0, len(keys), DELETE_BATCH):
        batch = keys[start : start + DELETE_BATCH]
        with transient_errors():
            response = clients.s3.delete_objects(
                Bucket=bucket,
                Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
            )
        errors = response.get("Errors") or []
        if errors:
            first = errors[0]
            raise DeltaloadError(
                f"S3 refused to delete {len(errors)} object(s), e.g. {first.get('Key')}: "
                f"{first.get('Code')} {first.get('Message')}"
            )
    return len(keys)


def cleanup_run(
    clients: Clients,
    bucket: str,
    *,
    staging_prefix: str,
    run_prefix: str | None = None,
    manifest_key: str | None = None,
) -> int:
    """Remove everything a failed run left: staging files, published files, its manifest.

    The manifest goes first so readers never see a manifest without its files.
    """
    deleted = 0
    if manifest_key:
        deleted += delete_keys(clients, bucket, [manifest_key])
    if run_prefix:
        deleted += delete_prefix(clients, bucket, run_prefix)
    deleted += delete_prefix(clients, bucket, staging_prefix)
    return deleted
