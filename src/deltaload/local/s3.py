"""The offline data lake: an S3 API served straight from files in the state folder.

``DiskS3(root).install(session.events)`` answers every S3 call of that boto3/botocore
session from botocore's ``before-send`` event, the way the runtime answers Lambda Invoke
and the local replication engine answers DMS: the handlers, the engine's writer and the
CLI keep talking boto3, and no request reaches moto's S3. Object ``<key>`` of bucket
``<bucket>`` is the plain file ``<root>/<bucket>/<key>``, so the Parquet files of the lake
open directly in pyarrow, DuckDB or pandas, and a state folder from before keeps its lake.

Why files and not moto's in-memory S3: moto holds every object in memory, so the lake had
to be uploaded at the start of every command and compared at its end (time and memory in
proportion to everything ever loaded), and its CopyObject of a multipart object keeps a
composite CRC32 that botocore then rejects on read-back (FlexibleChecksumError for files
over 8 MB). Here a command touches only the objects it reads or writes:

- a write streams the request body into a temporary file in the target folder, verifies
  the checksum botocore sent (aws-chunked trailer, ``x-amz-checksum-*`` or
  ``Content-MD5``), fsyncs it and renames it over the key, so a reader or a kill sees the
  old object or the new one, never half of one; a reader holding the old file keeps it;
  a killed writer's temporary file is never listed and is removed when its folder is
  next listed;
- a read streams from the file (ranges seek), never holding a whole object in memory;
- multipart parts live under ``<root>/.uploads/<uploadId>/`` until completed: parts sent
  in ascending order are appended to one file that completing renames into place (the
  object is written once), any other part is a file of its own (``_Parts``); parts are
  not synced, the completed object is;
- CopyObject hard-links the source (objects are never changed in place, only replaced
  by rename), falling back to a streamed copy across file systems.

What this does not imitate, and how it says so: versioning, ACLs, encryption, tagging,
user metadata and Content-Type are not kept; any operation not served here answers S3's
``NotImplemented`` (501) naming it. A key that cannot be a file path (an empty, ``.`` or
``..`` segment, a trailing ``/``, a segment over 255 bytes) and a key that would be both
an object and a folder of other keys (``a/b`` and ``a/b/c``; S3 allows both) are refused
with ``NotImplemented`` saying why, instead of being stored somewhere else.

ETag: S3 says the entity tag is opaque and "may or may not be an MD5 digest of the object
data" (it is not one for multipart or KMS-encrypted objects). Here it is 32 hex digits
derived from the file's device, inode, size and modification time: it changes whenever
the object is replaced, costs no read of the data, and is the same in every process.
No response carries an ``x-amz-checksum-*`` header botocore would validate except the
PutObject/UploadPart echo of a checksum that was just verified, so a read-back is never
refused for a checksum the file does not have.

The Amazon S3 API Reference pages imitated are cited at each operation
(https://docs.aws.amazon.com/AmazonS3/latest/API/...); docs/aws-fidelity.md lists them
with the tests that check each behaviour.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import io
import json
import os
import re
import shutil
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import formatdate
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import parse_qs, quote, unquote, urlsplit
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from botocore.awsrequest import AWSResponse

from deltaload.local.answered import claim
from deltaload.local.errors import S3Error

__all__ = ["DiskS3", "S3Error"]

EVENT = "before-send.s3"
_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
_BLOCK = 1024 * 1024
# Temporary files live next to their target (same file system, so the rename is atomic)
# as <TMP_PREFIX><pid>-<uuid>.tmp; keys with a segment starting with it are refused,
# listings skip them and remove those whose process is gone (a killed writer).
TMP_PREFIX = ".deltaload-s3-"
UPLOADS = ".uploads"
MAX_KEYS = 1000  # ListObjectsV2's page size and DeleteObjects' batch limit
MAX_KEY_BYTES = 1024  # https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-keys.html
MAX_COPY_BYTES = 5 * 1024**3  # CopyObject copies up to 5 GB in one operation
MIN_PART_BYTES = 5 * 1024**2  # every part but the last, CompleteMultipartUpload
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def _no_such_bucket(bucket: str) -> S3Error:
    return S3Error("NoSuchBucket", "The specified bucket does not exist", 404, BucketName=bucket)


def _no_such_key(key: str) -> S3Error:
    return S3Error("NoSuchKey", "The specified key does not exist.", 404, Key=key)


def _not_implemented(message: str) -> S3Error:
    return S3Error("NotImplemented", message, 501)


# -- request and response plumbing -------------------------------------------------------------


@dataclass
class _Request:
    method: str
    url: str
    bucket: str
    key: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    region: str

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)


def _parse(request: Any, url: str) -> _Request:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    path = parts.path
    path = path.removeprefix("/")  # only the first: key "/a" is sent as "//a"
    if host.startswith(("s3.", "s3-")) or ".s3." not in host:  # path style
        bucket, _, key = path.partition("/")
        region_host = host
    else:  # virtual-hosted style: https://<bucket>.s3.<region>.amazonaws.com/<key>
        bucket, _, region_host = host.partition(".")
        key = path
    labels = region_host.split(".")
    region = labels[1] if len(labels) > 3 and labels[0] == "s3" else "us-east-1"
    query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    headers = {}
    for name, value in request.headers.items():
        headers[name.lower()] = value.decode() if isinstance(value, bytes) else str(value)
    return _Request(
        request.method, url, unquote(bucket), unquote(key), query, headers, request.body, region
    )


class _Body:
    """A response body botocore reads: ``stream()`` for whole bodies, ``read(n)`` for
    streaming ones (GetObject), from bytes or from part of an open file."""

    def __init__(self, data: bytes = b"", file: BinaryIO | None = None, length: int = 0) -> None:
        self._data, self._file = data, file
        self._left = length if file is not None else len(data)

    def read(self, amt: int | None = None) -> bytes:
        if self._left <= 0:
            self.close()
            return b""
        size = self._left if amt is None or amt < 0 else min(amt, self._left)
        if self._file is None:
            chunk, self._data = self._data[:size], self._data[size:]
        else:
            chunk = self._file.read(size)
            if not chunk:  # the file is shorter than announced: end, botocore will notice
                self._left = 0
        self._left -= len(chunk)
        return chunk

    def stream(self, **_: Any) -> Iterator[bytes]:
        while chunk := self.read(_BLOCK):
            yield chunk

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    def readable(self) -> bool:
        return True


def _xml(root: str, children: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<{root} xmlns="{_NS}">{children}</{root}>'
    ).encode()


def _el(name: str, value: Any) -> str:
    return f"<{name}>{escape(str(value))}</{name}>"


def _response(
    url: str, status: int, headers: dict[str, str] | None = None, body: _Body | None = None
) -> AWSResponse:
    body = body or _Body()
    all_headers = {"x-amz-request-id": uuid.uuid4().hex[:16].upper(), **(headers or {})}
    return AWSResponse(url, status, all_headers, body)


def _xml_response(url: str, data: bytes, status: int = 200) -> AWSResponse:
    headers = {"Content-Type": "application/xml", "Content-Length": str(len(data))}
    return _response(url, status, headers, _Body(data))


def _error_response(url: str, error: S3Error, head: bool) -> AWSResponse:
    """S3's REST error: status code and an XML <Error> body (none for HEAD requests).

    https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html
    """
    if head:
        return _response(url, error.status)
    fields = "".join(_el(k, v) for k, v in error.fields.items())
    data = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Error>'
        f"{_el('Code', error.code)}{_el('Message', error.message)}{fields}"
        f"{_el('RequestId', uuid.uuid4().hex[:16].upper())}</Error>"
    ).encode()
    return _xml_response(url, data, error.status)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{int(ts * 1000) % 1000:03d}Z"
    )


def etag_of(stat: os.stat_result) -> str:
    """The quoted entity tag of a file: changes whenever the object is replaced."""
    identity = f"{stat.st_dev}:{stat.st_ino}:{stat.st_size}:{stat.st_mtime_ns}".encode()
    return f'"{hashlib.blake2b(identity, digest_size=16).hexdigest()}"'


# -- request bodies: aws-chunked decoding and checksums -----------------------------------------


class _Crc32:
    def __init__(self) -> None:
        self._value = 0

    def update(self, data: bytes) -> None:
        self._value = zlib.crc32(data, self._value)

    def digest(self) -> bytes:
        return self._value.to_bytes(4, "big")


_CHECKSUMS: dict[str, Callable[[], Any]] = {
    "crc32": _Crc32,
    "sha1": hashlib.sha1,
    "sha256": hashlib.sha256,
}


class _Reader:
    """Buffered reads over a botocore request body (bytes, str, file-like or None).

    Reads may return fewer bytes than asked (callers loop); the buffer only ever holds
    what one line or one short read needs, so a large body is never held whole.
    """

    def __init__(self, body: Any) -> None:
        if body is None:
            body = b""
        if isinstance(body, str):
            body = body.encode()
        if isinstance(body, bytes | bytearray | memoryview):
            body = io.BytesIO(bytes(body))
        self._file = body
        self._buffer = bytearray()
        self._eof = False

    def _more(self, size: int) -> bytes:
        data = self._file.read(size)
        if isinstance(data, str):
            data = data.encode()
        if not data:
            self._eof = True
        return data or b""

    def read(self, size: int) -> bytes:
        if self._buffer:
            chunk = bytes(self._buffer[:size])
            del self._buffer[:size]
            return chunk
        return b"" if self._eof else self._more(size)

    def read_exactly(self, size: int) -> bytes:
        data = b""
        while len(data) < size and (chunk := self.read(size - len(data))):
            data += chunk
        return data

    def readline(self, limit: int = 64 * 1024) -> bytes:
        while (end := self._buffer.find(b"\n")) < 0 and len(self._buffer) < limit:
            if self._eof:
                break
            self._buffer += self._more(64 * 1024)
        end = end + 1 if end >= 0 else len(self._buffer)
        line = bytes(self._buffer[:end])
        del self._buffer[:end]
        return line


class _Decoder:
    """The request body's bytes, decoding aws-chunked bodies and verifying checksums.

    aws-chunked: ``<hex size>[;chunk-signature=..]\\r\\n<data>\\r\\n`` ... ``0\\r\\n`` then
    trailing headers such as ``x-amz-checksum-crc32:<base64>`` and an empty line
    (https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming-trailers.html).
    The checksum of the decoded data is compared with the trailer, the
    ``x-amz-checksum-<algorithm>`` header or ``Content-MD5``; a mismatch is BadDigest
    (https://docs.aws.amazon.com/AmazonS3/latest/userguide/checking-object-integrity.html).
    ``verified`` holds the checksums that matched once the body has been read.
    """

    def __init__(self, request: _Request) -> None:
        self._request = request
        self._reader = _Reader(request.body)
        self._chunked = "aws-chunked" in request.header("content-encoding")
        self._expected: dict[str, str] = {}
        for name, value in request.headers.items():
            if name.startswith("x-amz-checksum-") and name != "x-amz-checksum-mode":
                self._expected[name.removeprefix("x-amz-checksum-")] = value
        if md5 := request.header("content-md5"):
            self._expected["md5"] = md5
        digests = {"md5": hashlib.md5} | _CHECKSUMS
        self._trailer = request.header("x-amz-trailer").strip().lower()
        trailed = self._trailer.removeprefix("x-amz-checksum-") if self._trailer else ""
        for algorithm in [*self._expected, trailed]:
            if algorithm and algorithm not in digests:
                raise _not_implemented(f"the offline S3 cannot verify a {algorithm} checksum")
        wanted = {*self._expected, trailed} - {""}
        self._running = {a: digests[a]() for a in wanted}
        self.length = 0
        self.verified: dict[str, str] = {}

    def chunks(self) -> Iterator[bytes]:
        """Yield the decoded body; raises S3Error at the end if it does not check out."""
        if self._chunked:
            yield from self._aws_chunks()
        else:
            while chunk := self._reader.read(_BLOCK):
                self._count(chunk)
                yield chunk
        self._verify()

    def _count(self, chunk: bytes) -> None:
        self.length += len(chunk)
        for digest in self._running.values():
            digest.update(chunk)

    def _aws_chunks(self) -> Iterator[bytes]:
        reader = self._reader
        while True:
            size_text = reader.readline().split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise S3Error(
                    "IncompleteBody", "malformed aws-chunked body: bad chunk size", 400
                ) from None
            if size == 0:
                break
            left = size
            while left:
                chunk = reader.read(min(left, _BLOCK))
                if not chunk:
                    raise S3Error("IncompleteBody", "the aws-chunked body ended early", 400)
                left -= len(chunk)
                self._count(chunk)
                yield chunk
            if reader.read_exactly(2) != b"\r\n":
                raise S3Error("IncompleteBody", "malformed aws-chunked body: no CRLF", 400)
        while line := reader.readline().strip():
            name, _, value = line.decode().partition(":")
            name = name.strip().lower()
            if name.startswith("x-amz-checksum-"):
                self._expected[name.removeprefix("x-amz-checksum-")] = value.strip()
        if self._trailer.startswith("x-amz-checksum-") and (
            self._trailer.removeprefix("x-amz-checksum-") not in self._expected
        ):
            raise S3Error("MalformedTrailerError", f"the trailer {self._trailer} is missing", 400)
        decoded = self._request.header("x-amz-decoded-content-length")
        if decoded and int(decoded) != self.length:
            raise S3Error(
                "IncompleteBody",
                f"x-amz-decoded-content-length says {decoded} bytes, the body had {self.length}",
                400,
            )

    def _verify(self) -> None:
        for algorithm, value in self._expected.items():
            actual = base64.b64encode(self._running[algorithm].digest()).decode()
            if actual != value:
                name = "Content-MD5" if algorithm == "md5" else f"x-amz-checksum-{algorithm}"
                raise S3Error(
                    "BadDigest",
                    f"The {name} you specified ({value}) did not match the calculated "
                    f"checksum ({actual}).",
                    400,
                )
        self.verified = {a: v for a, v in self._expected.items() if a != "md5"}

    def echo(self) -> dict[str, str]:
        """The checksums just verified, as S3 returns them on PutObject and UploadPart."""
        return {f"x-amz-checksum-{a}": v for a, v in self.verified.items()}


def _small_body(request: _Request, limit: int = 16 * 1024 * 1024) -> bytes:
    data = b""
    for chunk in _Decoder(request).chunks():
        data += chunk
        if len(data) > limit:
            raise S3Error("MaxMessageLengthExceeded", "the request body is too large", 400)
    return data


def _xml_root(data: bytes) -> ElementTree.Element:
    try:
        root = ElementTree.fromstring(data)
    except ElementTree.ParseError as error:
        raise S3Error(
            "MalformedXML", f"The XML you provided was not well-formed: {error}", 400
        ) from None
    for element in root.iter():
        element.tag = element.tag.rsplit("}", 1)[-1]
    return root


# -- the store ------------------------------------------------------------------------------------


class DiskS3:
    """S3 buckets kept as folders of plain files, served through botocore's event system."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self._handler_id = f"deltaload-disk-s3-{id(self)}"
        self._locks_lock = threading.Lock()
        self._upload_locks: dict[str, threading.Lock] = {}
        self._operations: dict[str, Callable[[_Request], AWSResponse]] = {
            "CreateBucket": self.create_bucket,
            "HeadBucket": self.head_bucket,
            "DeleteBucket": self.delete_bucket,
            "ListBuckets": self.list_buckets,
            "PutObject": self.put_object,
            "GetObject": self.get_object,
            "HeadObject": self.get_object,
            "CopyObject": self.copy_object,
            "DeleteObject": self.delete_object,
            "DeleteObjects": self.delete_objects,
            "ListObjectsV2": self.list_objects_v2,
            "CreateMultipartUpload": self.create_multipart_upload,
            "UploadPart": self.upload_part,
            "CompleteMultipartUpload": self.complete_multipart_upload,
            "AbortMultipartUpload": self.abort_multipart_upload,
        }

    # -- wiring ----------------------------------------------------------------------------------

    def install(self, events: Any) -> None:
        """Answer the S3 calls of the sessions sharing ``events`` (a botocore emitter)."""
        self._drop_dead_uploads()
        events.register_first(EVENT, self._on_before_send, unique_id=self._handler_id)

    def uninstall(self, events: Any) -> None:
        """Stop answering S3 calls on ``events``."""
        events.unregister(EVENT, self._on_before_send, unique_id=self._handler_id)

    def _on_before_send(self, request: Any, event_name: str = "", **_: Any) -> AWSResponse:
        url = claim(request)
        operation = event_name.rsplit(".", 1)[-1]
        parsed = _parse(request, url)
        handler = self._operations.get(operation)
        try:
            if handler is None:
                raise _not_implemented(
                    f"the offline S3 does not implement {operation}; it serves "
                    + ", ".join(sorted(self._operations))
                )
            return handler(parsed)
        except S3Error as error:
            return _error_response(url, error, parsed.method == "HEAD")

    # -- paths -----------------------------------------------------------------------------------

    def bucket_path(self, bucket: str) -> Path:
        """The folder of an existing bucket (NoSuchBucket otherwise)."""
        if not _BUCKET_NAME.match(bucket or "") or ".." in bucket:
            raise _no_such_bucket(bucket)
        path = self.root / bucket
        if not path.is_dir():
            raise _no_such_bucket(bucket)
        return path

    def object_path(self, bucket: str, key: str) -> Path:
        """The file that holds ``key`` (checked to be a usable relative path)."""
        return self.bucket_path(bucket).joinpath(*_key_parts(key))

    # -- buckets ---------------------------------------------------------------------------------

    def create_bucket(self, request: _Request) -> AWSResponse:
        """CreateBucket: a folder. Re-creating one's own bucket is 200 in us-east-1 and
        BucketAlreadyOwnedByYou elsewhere (API_CreateBucket.html)."""
        name = request.bucket
        if not _BUCKET_NAME.match(name) or ".." in name:
            raise S3Error("InvalidBucketName", f"The specified bucket is not valid: {name}", 400)
        path = self.root / name
        if path.is_dir() and request.region != "us-east-1":
            raise S3Error(
                "BucketAlreadyOwnedByYou",
                "Your previous request to create the named bucket succeeded and you "
                "already own it.",
                409,
                BucketName=name,
            )
        path.mkdir(exist_ok=True)
        return _response(request.url, 200, {"Location": f"/{name}"})

    def head_bucket(self, request: _Request) -> AWSResponse:
        """HeadBucket: 200 or 404 without a body (API_HeadBucket.html)."""
        self.bucket_path(request.bucket)
        return _response(request.url, 200, {"x-amz-bucket-region": request.region})

    def delete_bucket(self, request: _Request) -> AWSResponse:
        """DeleteBucket: only an empty bucket (BucketNotEmpty, API_DeleteBucket.html)."""
        path = self.bucket_path(request.bucket)
        if next(self._walk(path, "", b"", b"", _Cursor()), None) is not None:
            raise S3Error("BucketNotEmpty", "The bucket you tried to delete is not empty", 409)
        shutil.rmtree(path)
        return _response(request.url, 204)

    def list_buckets(self, request: _Request) -> AWSResponse:
        """ListBuckets: every bucket folder (API_ListBuckets.html)."""
        entries = "".join(
            f"<Bucket>{_el('Name', p.name)}{_el('CreationDate', _iso(p.stat().st_mtime))}</Bucket>"
            for p in sorted(self.root.iterdir())
            if p.is_dir() and _BUCKET_NAME.match(p.name)
        )
        owner = "<Owner><ID>local</ID><DisplayName>local</DisplayName></Owner>"
        return _xml_response(
            request.url, _xml("ListAllMyBucketsResult", f"{owner}<Buckets>{entries}</Buckets>")
        )

    # -- objects ---------------------------------------------------------------------------------

    def put_object(self, request: _Request) -> AWSResponse:
        """PutObject: stream the body to a temp file, verify, fsync, rename
        (API_PutObject.html)."""
        if request.header("x-amz-copy-source"):
            raise _not_implemented("UploadPartCopy is not served by the offline S3")
        _refuse_metadata(request)
        target = self.object_path(request.bucket, request.key)
        body = _Decoder(request)
        stat = self._write(target, request.key, body.chunks())
        return _response(request.url, 200, {"ETag": etag_of(stat), **body.echo()})

    def get_object(self, request: _Request) -> AWSResponse:
        """GetObject / HeadObject: stream the file, one byte range at most, with If-Match
        and If-None-Match (API_GetObject.html, API_HeadObject.html)."""
        path = self.object_path(request.bucket, request.key)
        try:
            handle = path.open("rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise _no_such_key(request.key) from None
        try:
            stat = os.fstat(handle.fileno())
            etag = etag_of(stat)
            headers = {
                "ETag": etag,
                "Last-Modified": formatdate(stat.st_mtime, usegmt=True),
                "Accept-Ranges": "bytes",
                "Content-Type": "binary/octet-stream",
            }
            if_match = request.header("if-match")
            if if_match and if_match not in (etag, etag.strip('"'), "*"):
                raise S3Error(
                    "PreconditionFailed",
                    "At least one of the preconditions you specified did not hold",
                    412,
                    Condition="If-Match",
                )
            if_none = request.header("if-none-match")
            if if_none and if_none in (etag, etag.strip('"'), "*"):
                handle.close()
                return _response(request.url, 304, headers)
            start, end, status = 0, stat.st_size - 1, 200
            if rng := request.header("range"):
                start, end = _byte_range(rng, stat.st_size)
                status = 206
                headers["Content-Range"] = f"bytes {start}-{end}/{stat.st_size}"
            length = max(0, end - start + 1)
            headers["Content-Length"] = str(length)
            if request.method == "HEAD":
                handle.close()
                return _response(request.url, status, headers)
            handle.seek(start)
            return _response(request.url, status, headers, _Body(file=handle, length=length))
        except BaseException:
            handle.close()
            raise

    def copy_object(self, request: _Request) -> AWSResponse:
        """CopyObject: a hard link (objects are only ever replaced, never changed in place),
        a streamed copy where links are impossible; at most 5 GB (API_CopyObject.html)."""
        source = unquote(request.header("x-amz-copy-source").split("?", 1)[0]).lstrip("/")
        source_bucket, _, source_key = source.partition("/")
        src = self.object_path(source_bucket, source_key)
        target = self.object_path(request.bucket, request.key)
        if src == target:
            raise S3Error(
                "InvalidRequest",
                "This copy request is illegal because it is trying to copy an object to "
                "itself without changing the object's metadata, storage class, website "
                "redirect location or encryption attributes.",
                400,
            )
        try:
            size = src.stat().st_size if src.is_file() else -1
        except NotADirectoryError:
            size = -1
        if size < 0:
            raise _no_such_key(source_key)
        if size > MAX_COPY_BYTES:
            raise S3Error(
                "InvalidRequest",
                "The specified copy source is larger than the maximum allowable size for "
                f"a copy source: {MAX_COPY_BYTES}",
                400,
            )
        stat = self._place(target, request.key, lambda tmp: _link_or_copy(src, tmp, source_key))
        result = _el("ETag", etag_of(stat)) + _el("LastModified", _iso(stat.st_mtime))
        return _xml_response(request.url, _xml("CopyObjectResult", result))

    def delete_object(self, request: _Request) -> AWSResponse:
        """DeleteObject: 204 whether or not the key existed (API_DeleteObject.html)."""
        self._delete(request.bucket, request.key)
        return _response(request.url, 204)

    def delete_objects(self, request: _Request) -> AWSResponse:
        """DeleteObjects: up to 1,000 keys; Quiet reports only errors
        (API_DeleteObjects.html)."""
        self.bucket_path(request.bucket)
        root = _xml_root(_small_body(request))
        objects = root.findall("Object")
        if len(objects) > MAX_KEYS:
            raise S3Error("MalformedXML", f"at most {MAX_KEYS} keys per DeleteObjects", 400)
        quiet = (root.findtext("Quiet") or "").strip().lower() == "true"
        out = []
        for entry in objects:
            key = entry.findtext("Key") or ""
            try:
                self._delete(request.bucket, key)
                if not quiet:
                    out.append(f"<Deleted>{_el('Key', key)}</Deleted>")
            except S3Error as error:
                out.append(
                    f"<Error>{_el('Key', key)}{_el('Code', error.code)}"
                    f"{_el('Message', error.message)}</Error>"
                )
        return _xml_response(request.url, _xml("DeleteResult", "".join(out)))

    def list_objects_v2(self, request: _Request) -> AWSResponse:
        """ListObjectsV2: keys in UTF-8 binary order, Prefix, Delimiter, MaxKeys (default
        1,000), StartAfter, ContinuationToken and EncodingType=url
        (API_ListObjectsV2.html). Only the folders under the prefix are read."""
        bucket = self.bucket_path(request.bucket)
        q = request.query
        prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
        try:
            max_keys = min(int(q.get("max-keys", MAX_KEYS)), MAX_KEYS)
        except ValueError:
            raise S3Error("InvalidArgument", "max-keys must be an integer", 400) from None
        if max_keys < 0:
            raise S3Error("InvalidArgument", "max-keys must be >= 0", 400)
        after, skip_prefix = q.get("start-after", ""), ""
        if token := q.get("continuation-token"):
            try:
                state = json.loads(base64.urlsafe_b64decode(token.encode()))
                after, skip_prefix = state["after"], state.get("prefix", "")
            except (ValueError, KeyError, TypeError):
                raise S3Error(
                    "InvalidArgument", "The continuation token provided is incorrect", 400
                ) from None
        url_encoded = q.get("encoding-type") == "url"

        def show(value: str) -> str:
            return quote(value, safe="/") if url_encoded else value

        items: list[str] = []
        last: tuple[str, bool] | None = None
        truncated = False
        cursor = _Cursor(_utf8(skip_prefix))
        for key, entry in self._listing(bucket, prefix, after, cursor):
            if len(items) >= max_keys:
                truncated = True
                break
            common = _common_prefix(key, prefix, delimiter)
            if common is not None:
                items.append(f"<CommonPrefixes>{_el('Prefix', show(common))}</CommonPrefixes>")
                last = (common, True)
                cursor.skip = _utf8(common)
            else:
                stat = entry.stat()
                items.append(
                    f"<Contents>{_el('Key', show(key))}"
                    f"{_el('LastModified', _iso(stat.st_mtime))}{_el('ETag', etag_of(stat))}"
                    f"{_el('Size', stat.st_size)}<StorageClass>STANDARD</StorageClass>"
                    "</Contents>"
                )
                last = (key, False)
        parts = [
            _el("Name", request.bucket),
            _el("Prefix", show(prefix)),
            _el("KeyCount", len(items)),
            _el("MaxKeys", max_keys),
            _el("IsTruncated", "true" if truncated else "false"),
        ]
        if delimiter:
            parts.append(_el("Delimiter", show(delimiter)))
        if url_encoded:
            parts.append(_el("EncodingType", "url"))
        if "start-after" in q:
            parts.append(_el("StartAfter", show(q["start-after"])))
        if token:
            parts.append(_el("ContinuationToken", token))
        if truncated and last is not None:
            state = {"after": last[0], "prefix": last[0] if last[1] else ""}
            next_token = base64.urlsafe_b64encode(json.dumps(state).encode()).decode()
            parts.append(_el("NextContinuationToken", next_token))
        return _xml_response(request.url, _xml("ListBucketResult", "".join(parts + items)))

    # -- multipart ---------------------------------------------------------------------------------

    def create_multipart_upload(self, request: _Request) -> AWSResponse:
        """CreateMultipartUpload: a folder for the parts (API_CreateMultipartUpload.html)."""
        self.object_path(request.bucket, request.key)  # a bad key fails now, not at the end
        _refuse_metadata(request)
        upload_id = f"{os.getpid()}-{uuid.uuid4().hex}"
        folder = self.root / UPLOADS / upload_id
        folder.mkdir(parents=True)
        meta = {"bucket": request.bucket, "key": request.key}
        (folder / "upload.json").write_text(json.dumps(meta))
        result = (
            _el("Bucket", request.bucket) + _el("Key", request.key) + _el("UploadId", upload_id)
        )
        return _xml_response(request.url, _xml("InitiateMultipartUploadResult", result))

    def upload_part(self, request: _Request) -> AWSResponse:
        """UploadPart: parts 1 to 10,000, each a file in the upload's folder
        (API_UploadPart.html)."""
        if request.header("x-amz-copy-source"):
            raise _not_implemented("the offline S3 does not implement UploadPartCopy")
        folder = self._upload(request)
        try:
            number = int(request.query.get("partNumber", ""))
        except ValueError:
            number = 0
        if not 1 <= number <= 10_000:
            raise S3Error(
                "InvalidArgument", "Part number must be an integer between 1 and 10000", 400
            )
        body = _Decoder(request)
        with self._upload_lock(folder.name):
            parts = _Parts.read(folder)
            if parts.can_append(number):
                etag = parts.append(number, body.chunks())
            else:
                stat = self._write(
                    folder / f"part-{number:05d}", request.key, body.chunks(), durable=False
                )
                etag = etag_of(stat)
        return _response(request.url, 200, {"ETag": etag, **body.echo()})

    def complete_multipart_upload(self, request: _Request) -> AWSResponse:
        """CompleteMultipartUpload: the listed parts, ascending, ETags matching, all but the
        last at least 5 MB, concatenated into the object (API_CompleteMultipartUpload.html)."""
        folder = self._upload(request)
        root = _xml_root(_small_body(request))
        listed: list[tuple[int, str]] = []
        for part in root.findall("Part"):
            try:
                listed.append((int(part.findtext("PartNumber") or ""), part.findtext("ETag") or ""))
            except ValueError:
                raise S3Error("MalformedXML", "a Part has no valid PartNumber", 400) from None
        if not listed:
            raise S3Error("MalformedXML", "You must specify at least one part", 400)
        numbers = [n for n, _ in listed]
        if numbers != sorted(set(numbers)):
            raise S3Error(
                "InvalidPartOrder",
                "The list of parts was not in ascending order. Parts must be ordered by "
                "part number.",
                400,
                UploadId=request.query["uploadId"],
            )
        with self._upload_lock(folder.name):
            parts = _Parts.read(folder)
            pieces: list[_Piece] = []
            for index, (number, tag) in enumerate(listed):
                piece = parts.piece(number)
                if piece is None or tag.strip('"') != piece.etag.strip('"'):
                    raise S3Error(
                        "InvalidPart",
                        "One or more of the specified parts could not be found. The part "
                        "might not have been uploaded, or the specified entity tag might not "
                        "have matched the part's entity tag.",
                        400,
                        UploadId=request.query["uploadId"],
                        PartNumber=str(number),
                    )
                if index < len(listed) - 1 and piece.size < MIN_PART_BYTES:
                    raise S3Error(
                        "EntityTooSmall",
                        "Your proposed upload is smaller than the minimum allowed object size.",
                        400,
                        PartNumber=str(number),
                    )
                pieces.append(piece)
            target = self.object_path(request.bucket, request.key)
            stat = self._place(target, request.key, lambda tmp: parts.assemble(pieces, tmp))
        shutil.rmtree(folder, ignore_errors=True)
        self._upload_locks.pop(folder.name, None)
        result = (
            _el("Location", f"/{request.bucket}/{quote(request.key)}")
            + _el("Bucket", request.bucket)
            + _el("Key", request.key)
            + _el("ETag", etag_of(stat))
        )
        return _xml_response(request.url, _xml("CompleteMultipartUploadResult", result))

    def abort_multipart_upload(self, request: _Request) -> AWSResponse:
        """AbortMultipartUpload: the parts are deleted (API_AbortMultipartUpload.html)."""
        folder = self._upload(request)
        with self._upload_lock(folder.name):
            shutil.rmtree(folder, ignore_errors=True)
        self._upload_locks.pop(folder.name, None)
        return _response(request.url, 204)

    def _upload_lock(self, upload_id: str) -> threading.Lock:
        """One upload's parts are written one at a time (they may come from threads)."""
        with self._locks_lock:
            return self._upload_locks.setdefault(upload_id, threading.Lock())

    def _upload(self, request: _Request) -> Path:
        self.bucket_path(request.bucket)
        upload_id = request.query.get("uploadId", "")
        folder = self.root / UPLOADS / upload_id
        meta_file = folder / "upload.json"
        if not re.fullmatch(r"\d+-[0-9a-f]{32}", upload_id) or not meta_file.is_file():
            raise S3Error(
                "NoSuchUpload",
                "The specified multipart upload does not exist. The upload ID might be "
                "invalid, or the multipart upload might have been aborted or completed.",
                404,
                UploadId=upload_id,
            )
        meta = json.loads(meta_file.read_text())
        if (meta["bucket"], meta["key"]) != (request.bucket, request.key):
            raise S3Error(
                "NoSuchUpload", f"upload {upload_id} is for another key", 404, UploadId=upload_id
            )
        return folder

    def _drop_dead_uploads(self) -> None:
        """Remove the parts of uploads whose process is gone (a killed command)."""
        uploads = self.root / UPLOADS
        if not uploads.is_dir():
            return
        for folder in uploads.iterdir():
            pid = folder.name.split("-", 1)[0]
            if pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(folder, ignore_errors=True)

    # -- writing -----------------------------------------------------------------------------------

    def _write(
        self, target: Path, key: str, chunks: Iterator[bytes], *, durable: bool = True
    ) -> os.stat_result:
        def fill(tmp: Path) -> None:
            with tmp.open("wb") as handle:
                for chunk in chunks:
                    handle.write(chunk)
                handle.flush()
                if durable:
                    os.fsync(handle.fileno())

        return self._place(target, key, fill, durable=durable)

    def _place(
        self, target: Path, key: str, fill: Callable[[Path], None], *, durable: bool = True
    ) -> os.stat_result:
        """Create a temp file next to ``target``, let ``fill`` write it, rename it over the
        key; the key's folders are created (and a key-vs-folder clash refused). ``durable``
        syncs the file and its folder before answering (an object); a part of a multipart
        upload is not synced: it is no object, the upload it belongs to dies with its
        process, and CompleteMultipartUpload syncs the object it is copied into."""
        if target.is_dir():
            raise _clash(key, f"{key}/ holds other keys")
        for attempt in range(5):
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.parent / f"{TMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex}.tmp"
                tmp.touch(exist_ok=False)
                break
            except (FileExistsError, NotADirectoryError):
                blocker = _file_ancestor(target, key)
                raise _clash(key, f"{blocker!r} is an object") from None
            except FileNotFoundError:  # a concurrent delete pruned the empty folder
                if attempt == 4:
                    raise
        try:
            fill(tmp)
            os.replace(tmp, target)
        except IsADirectoryError:
            raise _clash(key, f"{key}/ holds other keys") from None
        finally:
            tmp.unlink(missing_ok=True)
        if durable:
            _fsync_dir(target.parent)
        return target.stat()

    def _delete(self, bucket: str, key: str) -> None:
        path = self.object_path(bucket, key)
        try:
            if path.is_file():
                path.unlink()
        except (FileNotFoundError, NotADirectoryError):
            return
        root = self.root / bucket
        folder = path.parent
        while folder != root:  # S3 has no folders: do not leave empty ones behind
            try:
                folder.rmdir()
            except OSError:
                break
            folder = folder.parent

    # -- listing -----------------------------------------------------------------------------------

    def _listing(
        self, bucket: Path, prefix: str, after: str, cursor: _Cursor
    ) -> Iterator[tuple[str, os.DirEntry[str]]]:
        """Keys starting with ``prefix``, greater than ``after``, in UTF-8 binary order,
        reading only the folders that can hold such keys; keys starting with
        ``cursor.skip`` (a common prefix already returned) are passed over unread."""
        folder_part = prefix.rpartition("/")[0]
        start, base = bucket, ""
        if folder_part:
            try:
                start = bucket.joinpath(*_key_parts(folder_part))
            except S3Error:
                return
            base = folder_part + "/"
        yield from self._walk(start, base, _utf8(prefix), _utf8(after), cursor)

    def _walk(
        self, folder: Path, base: str, prefix: bytes, after: bytes, cursor: _Cursor
    ) -> Iterator[tuple[str, os.DirEntry[str]]]:
        try:
            with os.scandir(folder) as scan:
                entries = list(scan)
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in [e for e in entries if e.name.startswith(TMP_PREFIX)]:
            entries.remove(entry)
            # A killed writer's temp file: removed when its folder is next listed.
            pid = entry.name.removeprefix(TMP_PREFIX).split("-", 1)[0]
            if pid.isdigit() and not _alive(int(pid)):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
        keyed = []
        for entry in entries:
            is_dir = entry.is_dir(follow_symlinks=False)
            if not is_dir and not entry.is_file(follow_symlinks=False):
                continue
            # A folder "d" sorts as "d/": every key in it starts with that.
            keyed.append((_utf8(base + entry.name + ("/" if is_dir else "")), entry, is_dir))
        keyed.sort(key=lambda k: k[0])
        for sort_key, entry, is_dir in keyed:
            skip = cursor.skip
            if is_dir:
                if not (sort_key.startswith(prefix) or prefix.startswith(sort_key)):
                    continue  # no key in it has the prefix
                if sort_key <= after and not after.startswith(sort_key):
                    continue  # every key in it is before ``after``
                if skip and sort_key.startswith(skip):
                    continue
                yield from self._walk(
                    Path(entry.path), base + entry.name + "/", prefix, after, cursor
                )
            elif sort_key.startswith(prefix) and sort_key > after:
                if skip and sort_key.startswith(skip):
                    continue
                yield base + entry.name, entry


@dataclass
class _Cursor:
    """What a listing has already rolled up: keys starting with ``skip`` are not read."""

    skip: bytes = b""


# -- helpers --------------------------------------------------------------------------------------


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _key_parts(key: str) -> list[str]:
    """The path segments of a key, refusing keys that cannot be a relative file path."""
    if not key:
        raise S3Error("InvalidArgument", "An object key must not be empty", 400)
    if len(_utf8(key)) > MAX_KEY_BYTES:
        raise S3Error("KeyTooLong", "Your key is too long (over 1024 bytes)", 400)
    parts = key.split("/")
    for part in parts:
        reason = None
        if part in ("", ".", ".."):
            reason = f"it has an empty, '.' or '..' segment ({part!r})"
        elif "\x00" in part:
            reason = "it contains a NUL character"
        elif len(_utf8(part)) > 255:
            reason = f"its segment {part[:20]!r}... is longer than 255 bytes"
        elif part.startswith(TMP_PREFIX):
            reason = f"segments starting with {TMP_PREFIX!r} are the store's temporary files"
        if reason:
            raise _not_implemented(
                f"the offline S3 keeps each object as a file named by its key; key {key!r} "
                f"cannot be one: {reason}"
            )
    return parts


def _clash(key: str, why: str) -> S3Error:
    return _not_implemented(
        f"the offline S3 keeps each object as a file named by its key, so a key cannot "
        f"also be a folder of other keys: cannot store {key!r} because {why}"
    )


def _file_ancestor(target: Path, key: str) -> str:
    """The leading part of ``key`` that is already an object (a file, not a folder)."""
    parts = key.split("/")
    for count in range(1, len(parts)):
        if target.parents[len(parts) - 1 - count].is_file():
            return "/".join(parts[:count])
    return "/".join(parts[:-1])


def _common_prefix(key: str, prefix: str, delimiter: str) -> str | None:
    if not delimiter:
        return None
    index = key.find(delimiter, len(prefix))
    return key[: index + len(delimiter)] if index >= 0 else None


def _byte_range(header: str, size: int) -> tuple[int, int]:
    """One ``bytes=a-b`` / ``bytes=a-`` / ``bytes=-n`` range, clamped to the object;
    a start past the end is InvalidRange (416, API_GetObject.html)."""
    match = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header)
    if not match or match.groups() == ("", ""):
        raise _not_implemented(f"the offline S3 serves one byte range only, not {header!r}")
    first, last = match.groups()
    if first == "":
        length = int(last)
        if length == 0 or size == 0:
            raise _invalid_range(size)
        return max(0, size - length), size - 1
    start = int(first)
    end = size - 1 if last == "" else min(int(last), size - 1)
    if start >= size or (last != "" and int(last) < start):
        raise _invalid_range(size)
    return start, end


def _invalid_range(size: int) -> S3Error:
    return S3Error(
        "InvalidRange",
        "The requested range is not satisfiable",
        416,
        ActualObjectSize=str(size),
    )


def _refuse_metadata(request: _Request) -> None:
    names = sorted(n for n in request.headers if n.startswith("x-amz-meta-"))
    if names:
        raise _not_implemented(f"the offline S3 does not keep user metadata ({', '.join(names)})")


def _link_or_copy(src: Path, tmp: Path, key: str) -> None:
    tmp.unlink()
    try:
        os.link(src, tmp)
        return
    except FileNotFoundError:
        raise _no_such_key(key) from None
    except OSError as error:
        if error.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
            raise
    _copy_pieces([_Piece(src, 0, src.stat().st_size, "")], tmp)


def _copy_pieces(pieces: list[_Piece], tmp: Path) -> None:
    """Write the byte ranges ``pieces`` one after another into ``tmp`` (in the kernel where
    possible, never all in memory) and sync it."""
    with tmp.open("wb") as out:
        for piece in pieces:
            with piece.path.open("rb") as source:
                copied = 0
                with contextlib.suppress(OSError, AttributeError):
                    while copied < piece.size:
                        sent = os.copy_file_range(
                            source.fileno(),
                            out.fileno(),
                            piece.size - copied,
                            piece.offset + copied,
                        )
                        if sent == 0:
                            break
                        copied += sent
                if copied < piece.size:
                    source.seek(piece.offset + copied)
                    out.seek(0, os.SEEK_END)
                    left = piece.size - copied
                    while left and (block := source.read(min(left, _BLOCK))):
                        out.write(block)
                        left -= len(block)
        out.flush()
        os.fsync(out.fileno())


@dataclass(frozen=True)
class _Piece:
    """Bytes ``offset`` to ``offset + size`` of ``path``: one part of a multipart upload."""

    path: Path
    offset: int
    size: int
    etag: str


class _Parts:
    """The parts of one multipart upload, in its folder.

    Parts that arrive in ascending order (as boto3 sends them from one thread) are
    appended to one file, ``assembly``, indexed in ``assembly.json``; a part that comes
    out of order, or again, is a file of its own, ``part-NNNNN``, which takes precedence.
    CompleteMultipartUpload of the assembly's first parts renames the assembly into place,
    so such an object is written once; any other list of parts is copied into a new file.
    The caller holds the upload's lock.
    """

    def __init__(self, folder: Path, assembled: list[list[Any]]) -> None:
        self.folder = folder
        self.assembly = folder / "assembly"
        self.assembled = assembled  # [number, offset, size, etag], numbers ascending

    @classmethod
    def read(cls, folder: Path) -> _Parts:
        index = folder / "assembly.json"
        return cls(folder, json.loads(index.read_text()) if index.is_file() else [])

    def _separate(self, number: int) -> Path:
        return self.folder / f"part-{number:05d}"

    def can_append(self, number: int) -> bool:
        """Whether part ``number`` comes after every assembled part, and not again."""
        after = not self.assembled or number > self.assembled[-1][0]
        return after and not self._separate(number).exists()

    def append(self, number: int, chunks: Iterator[bytes]) -> str:
        """Append one part's body to the assembly; a body that fails leaves it as it was."""
        offset = self.assembly.stat().st_size if self.assembly.exists() else 0
        with self.assembly.open("ab") as out:
            try:
                for chunk in chunks:
                    out.write(chunk)
                out.flush()
            except BaseException:
                out.truncate(offset)
                raise
            size = out.tell() - offset
        identity = f"{self.folder.name}:{number}:{offset}:{size}:{time.time_ns()}".encode()
        etag = f'"{hashlib.blake2b(identity, digest_size=16).hexdigest()}"'
        self.assembled.append([number, offset, size, etag])
        (self.folder / "assembly.json").write_text(json.dumps(self.assembled))
        return etag

    def piece(self, number: int) -> _Piece | None:
        """Where part ``number``'s bytes are, or None if it was never uploaded."""
        separate = self._separate(number)
        with contextlib.suppress(FileNotFoundError):
            stat = separate.stat()
            return _Piece(separate, 0, stat.st_size, etag_of(stat))
        for entry, offset, size, etag in self.assembled:
            if entry == number:
                return _Piece(self.assembly, offset, size, etag)
        return None

    def assemble(self, pieces: list[_Piece], tmp: Path) -> None:
        """Fill ``tmp`` with ``pieces`` in order and sync it."""
        whole = [_Piece(self.assembly, off, size, tag) for _, off, size, tag in self.assembled]
        if pieces == whole[: len(pieces)]:  # the assembly's first parts, nothing between
            with self.assembly.open("r+b") as handle:
                handle.truncate(pieces[-1].offset + pieces[-1].size)
                os.fsync(handle.fileno())
            os.replace(self.assembly, tmp)
            return
        _copy_pieces(pieces, tmp)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
