"""Parquet files in DMS's full-load layout, rotated at MaxFileSize and uploaded to S3."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .errors import LoadError

CHUNK_ROWS = 65_536  # rows handed to ParquetWriter per call (split into row groups)
DEFAULT_MAX_FILE_KB = 1_048_576  # DMS default: 1 GB
DEFAULT_ROW_GROUP_ROWS = 10_000  # DMS default RowGroupLength
_FIRST_GUESS_BYTES_PER_ROW = 64
# Parts of a streamed LOAD file: boto3's default multipart chunk size. S3 wants every part
# but the last to be at least 5 MiB (AmazonS3/latest/userguide/qfacts.html).
PART_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class TargetSettings:
    """The S3 target endpoint settings the engine honours."""

    endpoint_id: str
    bucket: str
    folder: str = ""
    max_file_kb: int = DEFAULT_MAX_FILE_KB
    parquet_version: str = "parquet-1-0"
    enable_statistics: bool = True
    compression: str = "none"
    dictionary: bool = True
    timestamp_column: str | None = None
    row_group_rows: int = DEFAULT_ROW_GROUP_ROWS
    data_page_bytes: int | None = None
    dictionary_page_bytes: int | None = None

    def table_prefix(self, schema: str, table: str) -> str:
        """``<BucketFolder>/<schema>/<table>/`` (no leading slash)."""
        parts = [p for p in (self.folder.strip("/"), schema, table) if p]
        return "/".join(parts) + "/"

    def writer_options(self) -> dict[str, Any]:
        """ParquetWriter keyword arguments for these settings."""
        options: dict[str, Any] = {
            "version": "2.6" if self.parquet_version == "parquet-2-0" else "1.0",
            "write_statistics": self.enable_statistics,
            "compression": "gzip" if self.compression == "gzip" else "none",
            "use_dictionary": self.dictionary,
        }
        if self.data_page_bytes:
            options["data_page_size"] = self.data_page_bytes
        if self.dictionary_page_bytes:
            options["dictionary_pagesize_limit"] = self.dictionary_page_bytes
        return options


def load_file_name(counter: int) -> str:
    """DMS full-load file name: LOAD + 8 upper-case hex digits (LOAD00000009, LOAD0000000A)."""
    return f"LOAD{counter:08X}.parquet"


class ParquetSink:
    """Writes one table's batches to LOAD files, starting a new file once MaxFileSize is passed.

    Batches are queued and written in chunks of whole row groups (RowGroupLength rows,
    DMS default 10,000); with a small MaxFileSize the chunks are sized from the bytes per
    row measured so far, so files end close to the limit. Nothing is written (no object
    at all) if no row arrives.
    """

    def __init__(
        self,
        s3: Any,
        target: TargetSettings,
        schema_name: str,
        table_name: str,
        arrow_schema: pa.Schema,
    ) -> None:
        self._s3 = s3
        self._target = target
        self._prefix = target.table_prefix(schema_name, table_name)
        self._schema = _with_timestamp_column(arrow_schema, target.timestamp_column)
        self._max_bytes = max(1, target.max_file_kb) * 1024
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._bytes_per_row = float(_FIRST_GUESS_BYTES_PER_ROW)
        self._file: _OpenFile | None = None
        self.keys: list[str] = []
        self.rows = 0  # rows in finished or open files
        self.accepted = 0  # rows handed to write(), some maybe still queued

    def write(self, batch: pa.RecordBatch) -> None:
        """Queue a batch (of the table schema); full row groups are written at once."""
        if batch.num_rows == 0:
            return
        self._pending.append(_add_timestamp(batch, self._target.timestamp_column))
        self._pending_rows += batch.num_rows
        self.accepted += batch.num_rows
        while self._pending_rows >= self._chunk_rows():
            self._write_chunk(self._chunk_rows())

    def close(self) -> list[str]:
        """Write what is queued, finish and upload the last file; return all keys written."""
        while self._pending_rows:
            self._write_chunk(min(self._pending_rows, self._chunk_rows()))
        self._finish_file()
        return self.keys

    def abort(self) -> None:
        """Upload what was received so far (as DMS leaves a partial load) and stop."""
        self.close()

    def _chunk_rows(self) -> int:
        room = self._max_bytes - (self._file.size() if self._file else 0)
        fitting = int(max(room, 1) / max(self._bytes_per_row, 1.0))
        group = self._target.row_group_rows
        whole_groups = max(group, CHUNK_ROWS // group * group)
        return max(1, min(whole_groups, fitting))

    def _write_chunk(self, rows: int) -> None:
        table = pa.Table.from_batches(self._pending, schema=self._schema)
        chunk, rest = table.slice(0, rows), table.slice(rows)
        self._pending = rest.to_batches()
        self._pending_rows = rest.num_rows
        if self._file is None:
            key = self._prefix + load_file_name(len(self.keys) + 1)
            self._file = _OpenFile(self._s3, self._target, key, self._schema)
        self._file.write(chunk)
        self.rows += chunk.num_rows
        self._bytes_per_row = self._file.size() / max(self._file.rows, 1)
        if self._file.size() >= self._max_bytes:
            self._finish_file()

    def _finish_file(self) -> None:
        if self._file is None:
            return
        file, self._file = self._file, None
        file.close()
        self.keys.append(file.key)

    def discard(self) -> None:
        """Drop the file being written (a cancelled load): its upload is aborted."""
        file, self._file = self._file, None
        if file is not None:
            file.discard()


class _OpenFile:
    """One LOAD file being written, streamed to S3 as it grows."""

    def __init__(self, s3: Any, target: TargetSettings, key: str, schema: pa.Schema) -> None:
        self.key = key
        self._upload = _Upload(s3, target, key)
        self._writer = pq.ParquetWriter(self._upload, schema, **target.writer_options())
        self._row_group_rows = target.row_group_rows
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        try:
            self._writer.write_table(table, row_group_size=self._row_group_rows)
        except Exception:
            self._upload.raise_failure()
            raise
        self.rows += table.num_rows

    def size(self) -> int:
        return self._upload.tell()

    def close(self) -> None:
        try:
            self._writer.close()
        except Exception:
            self._upload.raise_failure()
            raise
        self._upload.finish()

    def discard(self) -> None:
        with contextlib.suppress(Exception):
            self._writer.close()
        self._upload.abort()


class _Upload:
    """A write-only file that sends what it is given to ``s3://bucket/key``.

    The object appears whole when the file is finished, as S3 makes every upload appear:
    one PutObject if it stayed under a part, else a multipart upload of PART_BYTES parts
    sent as they fill (so a LOAD file is never held on disk or in memory whole).
    """

    def __init__(self, s3: Any, target: TargetSettings, key: str) -> None:
        self._s3 = s3
        self._target = target
        self._key = key
        self._buffer = bytearray()
        self._written = 0
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._failure: LoadError | None = None
        self.closed = False

    # the file protocol pyarrow writes through
    def write(self, data: Any) -> int:
        self._buffer += data
        self._written += len(data)
        if len(self._buffer) >= PART_BYTES:
            self._send_part()
        return len(data)

    def tell(self) -> int:
        return self._written

    def flush(self) -> None:
        pass

    def writable(self) -> bool:
        return True

    def close(self) -> None:
        self.closed = True

    # the upload
    def finish(self) -> None:
        """Send what is left and complete the upload: the object exists from here."""
        if self._upload_id is None:
            self._call("put_object", Body=self._buffer)
            return
        if self._buffer or not self._parts:
            self._send_part()
        self._call(
            "complete_multipart_upload",
            UploadId=self._upload_id,
            MultipartUpload={"Parts": self._parts},
        )

    def abort(self) -> None:
        """Forget the upload; no object appears."""
        self._buffer = bytearray()
        if self._upload_id is not None:
            with contextlib.suppress(Exception):
                self._s3.abort_multipart_upload(
                    Bucket=self._target.bucket, Key=self._key, UploadId=self._upload_id
                )

    def raise_failure(self) -> None:
        """Re-raise the S3 error behind a failed write, if there was one."""
        if self._failure is not None:
            raise self._failure

    def _send_part(self) -> None:
        if self._upload_id is None:
            self._upload_id = self._call("create_multipart_upload")["UploadId"]
        number = len(self._parts) + 1
        answer = self._call(
            "upload_part", UploadId=self._upload_id, PartNumber=number, Body=self._buffer
        )
        self._parts.append({"PartNumber": number, "ETag": answer["ETag"]})
        self._buffer = bytearray()

    def _call(self, method: str, **params: Any) -> dict[str, Any]:
        """``method`` of the S3 client on this file's object; an error aborts the upload."""
        try:
            return getattr(self._s3, method)(Bucket=self._target.bucket, Key=self._key, **params)
        except Exception as exc:
            self._failure = LoadError(
                f"target endpoint {self._target.endpoint_id}: cannot write "
                f"s3://{self._target.bucket}/{self._key}: {exc}"
            )
            self.abort()
            raise self._failure from exc


def _with_timestamp_column(schema: pa.Schema, name: str | None) -> pa.Schema:
    if not name:
        return schema
    if name in schema.names:
        raise LoadError(f"TimestampColumnName {name!r} clashes with a source column")
    return schema.append(pa.field(name, pa.string()))


def _add_timestamp(batch: pa.RecordBatch, name: str | None) -> pa.RecordBatch:
    # DMS: a STRING column 'yyyy-MM-dd HH:mm:ss.SSSSSS' with the time the row was
    # transferred (full load); here the time the batch reached the writer, in UTC.
    if not name:
        return batch
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    column = pa.repeat(pa.scalar(now, pa.string()), batch.num_rows)
    return batch.append_column(pa.field(name, pa.string()), column)
