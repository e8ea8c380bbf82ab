"""The offline lake's S3: every operation the project uses, its errors, and what it refuses.

Each test drives the store through a real boto3 client (so botocore's own request
encoding, aws-chunked bodies and flexible checksums are what the store decodes) and
checks both what S3 answers and what lands on disk.
"""

from __future__ import annotations

import base64
import io
import os
import signal
import subprocess
import sys
import threading
import zlib
from pathlib import Path
from typing import Any

import boto3
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from deltaload.local.account import REGION
from deltaload.local.s3 import TMP_PREFIX, DiskS3

BUCKET = "lake"  # the bucket the s3 fixture (tests/conftest.py) creates
MB = 1024 * 1024


def code_of(error: pytest.ExceptionInfo[ClientError]) -> str:
    return error.value.response["Error"]["Code"]


def listed(s3: Any, **kwargs: Any) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, **kwargs)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


# -- buckets ---------------------------------------------------------------------------------------


def test_buckets_are_folders_and_recreating_one_in_us_east_1_is_fine(s3: Any, store: DiskS3):
    assert (store.root / BUCKET).is_dir()
    s3.create_bucket(Bucket=BUCKET)  # the runtime does this on every start
    s3.head_bucket(Bucket=BUCKET)
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == [BUCKET]
    with pytest.raises(ClientError) as missing:
        s3.head_bucket(Bucket="other")
    assert code_of(missing) == "404"
    with pytest.raises(ClientError) as invalid:
        s3.create_bucket(Bucket="No_Such")
    assert code_of(invalid) == "InvalidBucketName"


def test_a_missing_bucket_is_no_such_bucket(s3: Any):
    for call in (
        lambda: s3.get_object(Bucket="ghost", Key="k"),
        lambda: s3.put_object(Bucket="ghost", Key="k", Body=b"x"),
        lambda: s3.list_objects_v2(Bucket="ghost"),
    ):
        with pytest.raises(ClientError) as error:
            call()
        assert code_of(error) == "NoSuchBucket"


def test_delete_bucket_only_when_empty(s3: Any, store: DiskS3):
    s3.create_bucket(Bucket="scratch")
    s3.put_object(Bucket="scratch", Key="a/b", Body=b"1")
    with pytest.raises(ClientError) as error:
        s3.delete_bucket(Bucket="scratch")
    assert code_of(error) == "BucketNotEmpty"
    s3.delete_object(Bucket="scratch", Key="a/b")
    s3.delete_bucket(Bucket="scratch")
    assert not (store.root / "scratch").exists()


# -- objects ---------------------------------------------------------------------------------------


def test_put_get_head_delete_round_trip_as_plain_files(s3: Any, store: DiskS3):
    put = s3.put_object(Bucket=BUCKET, Key="dwh/orders/LOAD00000001.parquet", Body=b"hello")
    path = store.root / BUCKET / "dwh" / "orders" / "LOAD00000001.parquet"
    assert path.read_bytes() == b"hello"
    got = s3.get_object(Bucket=BUCKET, Key="dwh/orders/LOAD00000001.parquet")
    assert got["Body"].read() == b"hello"
    assert got["ETag"] == put["ETag"] and got["ContentLength"] == 5
    head = s3.head_object(Bucket=BUCKET, Key="dwh/orders/LOAD00000001.parquet")
    assert head["ContentLength"] == 5 and head["ETag"] == put["ETag"]
    s3.delete_object(Bucket=BUCKET, Key="dwh/orders/LOAD00000001.parquet")
    assert not path.exists()
    assert not (store.root / BUCKET / "dwh").exists(), "empty folders are left behind"
    s3.delete_object(Bucket=BUCKET, Key="never/was")  # S3 answers 204 either way


def test_missing_keys(s3: Any):
    with pytest.raises(ClientError) as get:
        s3.get_object(Bucket=BUCKET, Key="nope")
    assert code_of(get) == "NoSuchKey"
    with pytest.raises(ClientError) as head:
        s3.head_object(Bucket=BUCKET, Key="nope")
    assert code_of(head) == "404"  # HEAD errors have no body, botocore reports the status
    s3.put_object(Bucket=BUCKET, Key="a/b", Body=b"1")
    with pytest.raises(ClientError) as folder:
        s3.get_object(Bucket=BUCKET, Key="a")  # a folder is not an object
    assert code_of(folder) == "NoSuchKey"


def test_replacing_an_object_changes_its_etag(s3: Any):
    first = s3.put_object(Bucket=BUCKET, Key="k", Body=b"one")["ETag"]
    second = s3.put_object(Bucket=BUCKET, Key="k", Body=b"two")["ETag"]
    assert first != second
    assert s3.get_object(Bucket=BUCKET, Key="k")["Body"].read() == b"two"


@pytest.mark.parametrize(
    "key",
    [
        "with space/and+plus=1%20x?.parquet",
        "ünïcode/日本語/ключ",
        "quotes/'single' \"double\" & <xml>",
        "newline/line\nbreak",
        "control/\x01\x7f",
        "a.b",
        "a/b",
        "a-b",
    ],
)
def test_keys_with_odd_characters_round_trip_and_list(s3: Any, store: DiskS3, key: str):
    s3.put_object(Bucket=BUCKET, Key=key, Body=key.encode())
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == key.encode()
    assert (store.root / BUCKET).joinpath(*key.split("/")).read_bytes() == key.encode()
    assert listed(s3) == [key]
    s3.delete_object(Bucket=BUCKET, Key=key)
    assert listed(s3) == []


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("a//b", "empty"),
        ("/lead", "empty"),
        ("trail/", "empty"),
        ("a/../b", "'..'"),
        ("./a", "'.'"),
        ("x" * 256, "255 bytes"),
        (f"a/{TMP_PREFIX}x", "temporary"),
    ],
)
def test_keys_that_cannot_be_file_paths_are_refused_clearly(s3: Any, key: str, why: str):
    with pytest.raises(ClientError) as error:
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"x")
    assert code_of(error) == "NotImplemented"
    assert why in error.value.response["Error"]["Message"]
    assert listed(s3) == []


def test_a_key_longer_than_1024_bytes_is_key_too_long(s3: Any):
    with pytest.raises(ClientError) as error:
        s3.put_object(Bucket=BUCKET, Key="/".join(["a" * 200] * 6), Body=b"x")
    assert code_of(error) == "KeyTooLong"


def test_a_key_that_is_also_a_folder_is_refused_both_ways(s3: Any):
    s3.put_object(Bucket=BUCKET, Key="a/b", Body=b"object")
    with pytest.raises(ClientError) as below:
        s3.put_object(Bucket=BUCKET, Key="a/b/c", Body=b"x")
    assert code_of(below) == "NotImplemented"
    assert "'a/b' is an object" in below.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as above:
        s3.put_object(Bucket=BUCKET, Key="a", Body=b"x")
    assert code_of(above) == "NotImplemented"
    assert "a/ holds other keys" in above.value.response["Error"]["Message"]
    assert s3.get_object(Bucket=BUCKET, Key="a/b")["Body"].read() == b"object"


def test_user_metadata_is_refused_not_dropped(s3: Any):
    with pytest.raises(ClientError) as error:
        s3.put_object(Bucket=BUCKET, Key="k", Body=b"x", Metadata={"owner": "me"})
    assert code_of(error) == "NotImplemented" and "x-amz-meta-owner" in str(error.value)


def test_an_unserved_operation_names_itself(s3: Any):
    with pytest.raises(ClientError) as error:
        s3.get_object_tagging(Bucket=BUCKET, Key="k")
    assert code_of(error) == "NotImplemented"
    assert "GetObjectTagging" in error.value.response["Error"]["Message"]


# -- ranges and conditions -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "body", "content_range"),
    [
        ("bytes=0-3", b"0123", "bytes 0-3/10"),
        ("bytes=7-", b"789", "bytes 7-9/10"),
        ("bytes=-2", b"89", "bytes 8-9/10"),
        ("bytes=5-100", b"56789", "bytes 5-9/10"),
        ("bytes=9-9", b"9", "bytes 9-9/10"),
    ],
)
def test_ranges(s3: Any, header: str, body: bytes, content_range: str):
    s3.put_object(Bucket=BUCKET, Key="digits", Body=b"0123456789")
    got = s3.get_object(Bucket=BUCKET, Key="digits", Range=header)
    assert got["Body"].read() == body
    assert got["ContentRange"] == content_range
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 206


@pytest.mark.parametrize("header", ["bytes=10-", "bytes=10-20", "bytes=-0"])
def test_unsatisfiable_ranges_are_invalid_range(s3: Any, header: str):
    s3.put_object(Bucket=BUCKET, Key="digits", Body=b"0123456789")
    with pytest.raises(ClientError) as error:
        s3.get_object(Bucket=BUCKET, Key="digits", Range=header)
    assert code_of(error) == "InvalidRange"
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 416


def test_if_match_and_if_none_match(s3: Any):
    etag = s3.put_object(Bucket=BUCKET, Key="k", Body=b"v")["ETag"]
    assert s3.get_object(Bucket=BUCKET, Key="k", IfMatch=etag)["Body"].read() == b"v"
    with pytest.raises(ClientError) as failed:
        s3.get_object(Bucket=BUCKET, Key="k", IfMatch='"00"')
    assert code_of(failed) == "PreconditionFailed"
    with pytest.raises(ClientError) as unchanged:
        s3.get_object(Bucket=BUCKET, Key="k", IfNoneMatch=etag)
    assert code_of(unchanged) == "304"


def test_a_reader_keeps_the_version_it_opened(s3: Any):
    s3.put_object(Bucket=BUCKET, Key="k", Body=b"old" * 1000)
    body = s3.get_object(Bucket=BUCKET, Key="k")["Body"]
    s3.put_object(Bucket=BUCKET, Key="k", Body=b"new" * 1000)
    assert body.read() == b"old" * 1000
    assert s3.get_object(Bucket=BUCKET, Key="k")["Body"].read() == b"new" * 1000


# -- listing ---------------------------------------------------------------------------------------


def test_listing_is_in_utf8_binary_order_across_folders(s3: Any):
    keys = ["a/x", "a.b", "a-c", "a/y/z", "b", "A", "é", "a0"]
    for key in keys:
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"1")
    assert listed(s3) == sorted(keys, key=lambda k: k.encode())


def test_listing_prefix_delimiter_and_pages(s3: Any):
    keys = [f"lake/dwh/t/run={r}/LOAD{n:08X}.parquet" for r in range(3) for n in range(1, 4)]
    keys += ["lake/dwh/t/_manifests/0.json", "lake/dwh/u/x", "lake/other", "staging/s"]
    for key in keys:
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"1")
    assert listed(s3, Prefix="lake/dwh/t/run=1/") == sorted(k for k in keys if "run=1/" in k)
    assert listed(s3, Prefix="lake/dwh/t/run=") == sorted(k for k in keys if "run=" in k)
    assert listed(s3, Prefix="lake/dwh/t/ru", PaginationConfig={"PageSize": 2}) == sorted(
        k for k in keys if "/t/ru" in k
    )
    pages = list(
        s3.get_paginator("list_objects_v2").paginate(
            Bucket=BUCKET, Prefix="lake/dwh/t/", Delimiter="/", PaginationConfig={"PageSize": 2}
        )
    )
    prefixes = [p["Prefix"] for page in pages for p in page.get("CommonPrefixes", [])]
    assert prefixes == ["lake/dwh/t/_manifests/"] + [f"lake/dwh/t/run={r}/" for r in range(3)]
    assert len(pages) == 2 and pages[0]["KeyCount"] == 2 and pages[0]["IsTruncated"]
    top = s3.list_objects_v2(Bucket=BUCKET, Delimiter="/")
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["lake/", "staging/"]
    assert "Contents" not in top


def test_listing_with_other_delimiters_start_after_and_max_keys(s3: Any):
    for key in ["x-1/a", "x-1/b", "x-2", "y"]:
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"1")
    dashed = s3.list_objects_v2(Bucket=BUCKET, Delimiter="-")
    assert [p["Prefix"] for p in dashed["CommonPrefixes"]] == ["x-"]
    assert [o["Key"] for o in dashed["Contents"]] == ["y"]
    assert listed(s3, StartAfter="x-1/a") == ["x-1/b", "x-2", "y"]
    first = s3.list_objects_v2(Bucket=BUCKET, MaxKeys=1)
    assert [o["Key"] for o in first["Contents"]] == ["x-1/a"] and first["IsTruncated"]
    rest = s3.list_objects_v2(Bucket=BUCKET, ContinuationToken=first["NextContinuationToken"])
    assert [o["Key"] for o in rest["Contents"]] == ["x-1/b", "x-2", "y"]
    assert not rest["IsTruncated"]


def test_listing_more_than_a_page_of_keys(s3: Any):
    keys = [f"p/{n:05d}" for n in range(1005)]
    for key in keys:
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"")
    first = s3.list_objects_v2(Bucket=BUCKET)
    assert first["KeyCount"] == 1000 and first["IsTruncated"]
    assert listed(s3) == keys


def test_listing_skips_temporary_files_and_the_uploads_folder(s3: Any, store: DiskS3):
    s3.put_object(Bucket=BUCKET, Key="d/k", Body=b"1")
    (store.root / BUCKET / "d" / f"{TMP_PREFIX}abandoned.tmp").write_bytes(b"half")
    s3.create_multipart_upload(Bucket=BUCKET, Key="d/m")
    assert listed(s3) == ["d/k"]
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == [BUCKET]


def test_delete_objects_reports_deleted_and_quiet(s3: Any):
    for key in ("a", "b/c", "d"):
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"1")
    loud = s3.delete_objects(
        Bucket=BUCKET, Delete={"Objects": [{"Key": "a"}, {"Key": "ghost"}, {"Key": "x//y"}]}
    )
    assert sorted(d["Key"] for d in loud["Deleted"]) == ["a", "ghost"]
    assert [(e["Key"], e["Code"]) for e in loud["Errors"]] == [("x//y", "NotImplemented")]
    quiet = s3.delete_objects(
        Bucket=BUCKET, Delete={"Objects": [{"Key": "b/c"}, {"Key": "d"}], "Quiet": True}
    )
    assert "Deleted" not in quiet and "Errors" not in quiet
    assert listed(s3) == []


# -- copies ----------------------------------------------------------------------------------------


def test_copy_object_and_its_errors(s3: Any, store: DiskS3):
    s3.put_object(Bucket=BUCKET, Key="staging/LOAD1.parquet", Body=b"data")
    copied = s3.copy_object(
        Bucket=BUCKET,
        Key="lake/run=1/LOAD1.parquet",
        CopySource={"Bucket": BUCKET, "Key": "staging/LOAD1.parquet"},
    )
    assert copied["CopyObjectResult"]["ETag"]
    s3.delete_object(Bucket=BUCKET, Key="staging/LOAD1.parquet")
    assert s3.get_object(Bucket=BUCKET, Key="lake/run=1/LOAD1.parquet")["Body"].read() == b"data"
    with pytest.raises(ClientError) as missing:
        s3.copy_object(Bucket=BUCKET, Key="x", CopySource={"Bucket": BUCKET, "Key": "gone"})
    assert code_of(missing) == "NoSuchKey"
    with pytest.raises(ClientError) as itself:
        s3.copy_object(
            Bucket=BUCKET,
            Key="lake/run=1/LOAD1.parquet",
            CopySource={"Bucket": BUCKET, "Key": "lake/run=1/LOAD1.parquet"},
        )
    assert code_of(itself) == "InvalidRequest"


def test_a_copy_is_independent_of_later_writes_to_its_source(s3: Any):
    s3.put_object(Bucket=BUCKET, Key="src", Body=b"first")
    s3.copy_object(Bucket=BUCKET, Key="dst", CopySource={"Bucket": BUCKET, "Key": "src"})
    s3.put_object(Bucket=BUCKET, Key="src", Body=b"second")
    assert s3.get_object(Bucket=BUCKET, Key="dst")["Body"].read() == b"first"


def test_a_multipart_object_over_8_mb_copies_and_reads_back(s3: Any, tmp_path: Path):
    """moto's CopyObject kept the multipart source's composite CRC32 and botocore then
    refused the read-back with FlexibleChecksumError: files over 8 MB were lost."""
    data = os.urandom(9 * MB) + b"tail"
    source = tmp_path / "LOAD00000001.parquet"
    source.write_bytes(data)
    s3.upload_file(str(source), BUCKET, "staging/LOAD00000001.parquet")  # multipart at 8 MB
    s3.copy_object(
        Bucket=BUCKET,
        Key="lake/run=1/LOAD00000001.parquet",
        CopySource={"Bucket": BUCKET, "Key": "staging/LOAD00000001.parquet"},
    )
    got = s3.get_object(Bucket=BUCKET, Key="lake/run=1/LOAD00000001.parquet")
    assert got["ContentLength"] == len(data)
    assert got["Body"].read() == data
    tail = s3.get_object(Bucket=BUCKET, Key="lake/run=1/LOAD00000001.parquet", Range="bytes=-4")
    assert tail["Body"].read() == b"tail"


# -- multipart -------------------------------------------------------------------------------------


def test_multipart_upload_assembles_parts_in_order(s3: Any, store: DiskS3):
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key="big/file")["UploadId"]
    first = b"a" * (5 * MB)
    second = b"b" * 10
    tags = [
        s3.upload_part(Bucket=BUCKET, Key="big/file", UploadId=upload, PartNumber=n, Body=body)[
            "ETag"
        ]
        for n, body in ((1, first), (2, second))
    ]
    s3.complete_multipart_upload(
        Bucket=BUCKET,
        Key="big/file",
        UploadId=upload,
        MultipartUpload={
            "Parts": [{"PartNumber": n, "ETag": t} for n, t in zip((1, 2), tags, strict=True)]
        },
    )
    assert (store.root / BUCKET / "big" / "file").read_bytes() == first + second
    assert not any((store.root / ".uploads").iterdir()), "parts left behind"


def _part(s3: Any, upload: str, number: int, body: bytes, key: str = "big/file") -> dict:
    tag = s3.upload_part(Bucket=BUCKET, Key=key, UploadId=upload, PartNumber=number, Body=body)
    return {"PartNumber": number, "ETag": tag["ETag"]}


def _complete(s3: Any, upload: str, parts: list[dict], key: str = "big/file") -> None:
    s3.complete_multipart_upload(
        Bucket=BUCKET, Key=key, UploadId=upload, MultipartUpload={"Parts": parts}
    )


@pytest.mark.parametrize(
    ("sent", "listed"),
    [
        ([1, 2, 3], [1, 2, 3]),  # in order: the parts are written once, into one file
        ([1, 2, 3], [1, 2]),  # the last part left out
        ([1, 2, 3], [1, 3]),  # one in the middle left out
        ([3, 1, 2], [1, 2, 3]),  # out of order, as threads send them
        ([1, 2, 2, 3], [1, 2, 3]),  # part 2 sent again: the second one counts
        ([2, 3], [2, 3]),  # numbering need not start at 1
    ],
)
def test_multipart_objects_are_the_listed_parts_whatever_order_they_came_in(
    s3: Any, store: DiskS3, sent: list[int], listed: list[int]
):
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key="big/file")["UploadId"]
    tags = {}
    bodies = {}
    for round_, number in enumerate(sent):
        body = bytes([number]) * (5 * MB) + f"part {number} round {round_}".encode()
        tags[number] = _part(s3, upload, number, body)
        bodies[number] = body
    _complete(s3, upload, [tags[n] for n in listed])
    expected = b"".join(bodies[n] for n in listed)
    assert (store.root / BUCKET / "big" / "file").read_bytes() == expected
    assert not any((store.root / ".uploads").iterdir()), "parts left behind"


def test_a_stale_etag_of_a_part_sent_again_is_refused(s3: Any):
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key="big/file")["UploadId"]
    first = _part(s3, upload, 1, b"a" * (5 * MB))
    again = _part(s3, upload, 1, b"b" * (5 * MB))
    assert first["ETag"] != again["ETag"]
    with pytest.raises(ClientError) as error:
        _complete(s3, upload, [first])
    assert code_of(error) == "InvalidPart"
    _complete(s3, upload, [again])
    assert s3.get_object(Bucket=BUCKET, Key="big/file")["Body"].read() == b"b" * (5 * MB)


def test_a_part_with_a_bad_checksum_leaves_the_parts_before_it_intact(s3: Any, store: DiskS3):
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key="big/file")["UploadId"]
    first = _part(s3, upload, 1, b"a" * (5 * MB))

    def corrupt(request: Any, **_: Any) -> None:
        request.headers["x-amz-checksum-crc32"] = _crc32(b"something else")

    s3.meta.events.register_first("before-sign.s3.UploadPart", corrupt)
    try:
        with pytest.raises(ClientError) as error:
            s3.upload_part(
                Bucket=BUCKET,
                Key="big/file",
                UploadId=upload,
                PartNumber=2,
                Body=b"b" * MB,
                ChecksumAlgorithm="CRC32",
                ChecksumCRC32=_crc32(b"b" * MB),
            )
    finally:
        s3.meta.events.unregister("before-sign.s3.UploadPart", corrupt)
    assert code_of(error) == "BadDigest"
    second = _part(s3, upload, 2, b"c" * 10)
    _complete(s3, upload, [first, second])
    assert (store.root / BUCKET / "big" / "file").read_bytes() == b"a" * (5 * MB) + b"c" * 10


def test_multipart_errors(s3: Any):
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key="k")["UploadId"]
    small = s3.upload_part(Bucket=BUCKET, Key="k", UploadId=upload, PartNumber=1, Body=b"x")
    last = s3.upload_part(Bucket=BUCKET, Key="k", UploadId=upload, PartNumber=2, Body=b"y")
    parts = [{"PartNumber": 1, "ETag": small["ETag"]}, {"PartNumber": 2, "ETag": last["ETag"]}]

    def complete(listed_parts: list[dict[str, Any]], upload_id: str = upload) -> str:
        with pytest.raises(ClientError) as error:
            s3.complete_multipart_upload(
                Bucket=BUCKET, Key="k", UploadId=upload_id, MultipartUpload={"Parts": listed_parts}
            )
        return code_of(error)

    assert complete(parts) == "EntityTooSmall"
    assert complete(parts[::-1]) == "InvalidPartOrder"
    assert complete([{"PartNumber": 1, "ETag": '"bad"'}]) == "InvalidPart"
    assert complete([{"PartNumber": 3, "ETag": small["ETag"]}]) == "InvalidPart"
    with pytest.raises(ClientError) as number:
        s3.upload_part(Bucket=BUCKET, Key="k", UploadId=upload, PartNumber=10001, Body=b"x")
    assert code_of(number) == "InvalidArgument"
    s3.abort_multipart_upload(Bucket=BUCKET, Key="k", UploadId=upload)
    assert complete(parts) == "NoSuchUpload"
    with pytest.raises(ClientError) as gone:
        s3.abort_multipart_upload(Bucket=BUCKET, Key="k", UploadId=upload)
    assert code_of(gone) == "NoSuchUpload"
    with pytest.raises(ClientError) as other:
        s3.upload_part(Bucket=BUCKET, Key="k", UploadId="1-" + "0" * 32, PartNumber=1, Body=b"")
    assert code_of(other) == "NoSuchUpload"
    assert listed(s3) == []


def test_uploads_of_a_dead_process_are_removed_on_install(store: DiskS3, tmp_path: Path):
    dead = store.root / ".uploads" / f"{2**22 + 12345}-{'0' * 32}"  # above pid_max's default
    live = store.root / ".uploads" / f"{os.getpid()}-{'1' * 32}"
    for folder in (dead, live):
        folder.mkdir(parents=True)
        (folder / "upload.json").write_text("{}")
    DiskS3(store.root).install(boto3.Session(region_name=REGION).events)
    assert not dead.exists() and live.exists()


def test_upload_file_streams_a_large_file_in_parts(s3: Any, store: DiskS3, tmp_path: Path):
    source = tmp_path / "big.bin"
    with source.open("wb") as out:
        for n in range(24):
            out.write(bytes([n]) * MB)
    config = TransferConfig(multipart_threshold=8 * MB, multipart_chunksize=8 * MB)
    s3.upload_file(str(source), BUCKET, "x/big.bin", Config=config)
    stored = store.root / BUCKET / "x" / "big.bin"
    assert stored.stat().st_size == 24 * MB
    assert stored.read_bytes() == source.read_bytes()


# -- request bodies --------------------------------------------------------------------------------


def _send_raw(s3: Any, body: bytes, headers: dict[str, str], key: str = "raw") -> None:
    """PutObject with a hand-made body and headers, replacing what botocore built."""

    def replace(request: Any, **_: Any) -> None:
        drop = ("content-md5", "content-encoding", "x-amz-trailer", "x-amz-decoded-content-length")
        for name in list(request.headers):
            if name.lower() in drop or name.lower().startswith("x-amz-checksum"):
                del request.headers[name]
        for name, value in headers.items():
            request.headers[name] = value
        request.data = body

    s3.meta.events.register_first("before-sign.s3.PutObject", replace)
    try:
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"placeholder")
    finally:
        s3.meta.events.unregister("before-sign.s3.PutObject", replace)


def _crc32(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def _chunked(data: bytes, trailer: str, size: int = 4) -> bytes:
    out = b""
    for start in range(0, len(data), size):
        piece = data[start : start + size]
        out += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    return out + b"0\r\n" + trailer.encode() + b"\r\n\r\n"


def test_aws_chunked_with_a_good_trailing_crc32(s3: Any, store: DiskS3):
    data = b"hello aws-chunked world"
    _send_raw(
        s3,
        _chunked(data, f"x-amz-checksum-crc32:{_crc32(data)}"),
        {
            "Content-Encoding": "aws-chunked",
            "X-Amz-Trailer": "x-amz-checksum-crc32",
            "X-Amz-Decoded-Content-Length": str(len(data)),
        },
    )
    assert (store.root / BUCKET / "raw").read_bytes() == data


def test_aws_chunked_with_a_bad_trailing_crc32_stores_nothing(s3: Any, store: DiskS3):
    data = b"hello aws-chunked world"
    with pytest.raises(ClientError) as error:
        _send_raw(
            s3,
            _chunked(data, f"x-amz-checksum-crc32:{_crc32(b'other')}"),
            {
                "Content-Encoding": "aws-chunked",
                "X-Amz-Trailer": "x-amz-checksum-crc32",
                "X-Amz-Decoded-Content-Length": str(len(data)),
            },
        )
    assert code_of(error) == "BadDigest"
    assert list((store.root / BUCKET).iterdir()) == [], "a file or temp file was left"


def test_aws_chunked_body_shorter_than_declared_is_refused(s3: Any):
    data = b"12345678"
    with pytest.raises(ClientError) as error:
        _send_raw(
            s3,
            _chunked(data, f"x-amz-checksum-crc32:{_crc32(data)}"),
            {
                "Content-Encoding": "aws-chunked",
                "X-Amz-Trailer": "x-amz-checksum-crc32",
                "X-Amz-Decoded-Content-Length": "9",
            },
        )
    assert code_of(error) == "IncompleteBody"


def test_a_checksum_header_and_content_md5_are_verified(s3: Any):
    _send_raw(s3, b"abc", {"x-amz-checksum-crc32": _crc32(b"abc")}, key="good")
    with pytest.raises(ClientError) as crc:
        _send_raw(s3, b"abc", {"x-amz-checksum-crc32": _crc32(b"abd")}, key="bad")
    assert code_of(crc) == "BadDigest"
    with pytest.raises(ClientError) as md5:
        _send_raw(s3, b"abc", {"Content-MD5": base64.b64encode(b"0" * 16).decode()}, key="bad")
    assert code_of(md5) == "BadDigest"
    assert listed(s3) == ["good"]


def test_an_unknown_checksum_algorithm_is_not_implemented(s3: Any):
    with pytest.raises(ClientError) as error:
        _send_raw(s3, b"abc", {"x-amz-checksum-crc64nvme": "AAAAAAAAAAA="})
    assert code_of(error) == "NotImplemented" and "crc64nvme" in str(error.value)


def test_botocore_default_checksums_round_trip_and_no_response_checksum_is_offered(s3: Any):
    data = os.urandom(3 * MB)
    put = s3.put_object(Bucket=BUCKET, Key="k", Body=io.BytesIO(data))
    assert put["ChecksumCRC32"] == _crc32(data)  # the verified checksum is echoed
    got = s3.get_object(Bucket=BUCKET, Key="k", ChecksumMode="ENABLED")
    assert not [h for h in got["ResponseMetadata"]["HTTPHeaders"] if "checksum" in h]
    assert got["Body"].read() == data


# -- atomicity -------------------------------------------------------------------------------------


def test_a_failed_write_leaves_the_old_object_and_no_temp_file(s3: Any, store: DiskS3):
    s3.put_object(Bucket=BUCKET, Key="d/k", Body=b"old")

    class Broken(io.RawIOBase):
        def __init__(self) -> None:
            self.sent = 0

        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            if self.sent > 2 * MB:
                raise OSError("the source went away")
            self.sent += MB
            return b"n" * MB

    with pytest.raises(OSError, match="went away"):
        s3.put_object(Bucket=BUCKET, Key="d/k", Body=Broken())
    assert s3.get_object(Bucket=BUCKET, Key="d/k")["Body"].read() == b"old"
    assert [p.name for p in (store.root / BUCKET / "d").iterdir()] == ["k"]


def test_concurrent_readers_see_the_old_or_the_new_object_never_a_mix(s3: Any):
    old, new = b"o" * (2 * MB), b"n" * (3 * MB)
    s3.put_object(Bucket=BUCKET, Key="k", Body=old)
    seen: set[bytes] = set()
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            seen.add(s3.get_object(Bucket=BUCKET, Key="k")["Body"].read())

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for _ in range(5):
            s3.put_object(Bucket=BUCKET, Key="k", Body=new)
            s3.put_object(Bucket=BUCKET, Key="k", Body=old)
    finally:
        stop.set()
        reader.join()
    assert seen <= {old, new} and seen


_KILLED_WRITER = """
import os, sys, time
from pathlib import Path
import boto3
from deltaload.local.account import REGION
from deltaload.local.s3 import DiskS3

session = boto3.Session(region_name=REGION)
DiskS3(Path(sys.argv[1])).install(session.events)
s3 = session.client("s3")
s3.create_bucket(Bucket="lake")
s3.put_object(Bucket="lake", Key="d/k", Body=b"old")


class Slow:
    def __init__(self):
        self.sent = 0

    def read(self, size=-1):
        if self.sent == 1:
            print("writing", flush=True)
            time.sleep(60)
        self.sent += 1
        return b"n" * 1024 * 1024


s3.put_object(Bucket="lake", Key="d/k", Body=Slow())
"""


def test_a_writer_killed_mid_write_leaves_the_old_object(tmp_path: Path, s3: Any):
    root = tmp_path / "killed"
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")])),
    }
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(root)],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "writing"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait()
    folder = root / "lake" / "d"
    assert (folder / "k").read_bytes() == b"old"
    leftovers = [p.name for p in folder.iterdir() if p.name != "k"]
    assert leftovers and all(n.startswith(TMP_PREFIX) for n in leftovers), leftovers
    store = DiskS3(root)
    session = boto3.Session(region_name=REGION)
    store.install(session.events)
    listing = session.client("s3").list_objects_v2(Bucket="lake")
    assert [o["Key"] for o in listing["Contents"]] == ["d/k"]
    assert [p.name for p in folder.iterdir()] == ["k"], "the dead writer's temp file stayed"


def test_a_live_writers_temp_file_is_left_alone(s3: Any, store: DiskS3):
    s3.put_object(Bucket=BUCKET, Key="d/k", Body=b"1")
    mine = store.root / BUCKET / "d" / f"{TMP_PREFIX}{os.getpid()}-{'0' * 32}.tmp"
    mine.write_bytes(b"being written")
    assert listed(s3) == ["d/k"]
    assert mine.exists()


def test_an_earlier_versions_etag_file_is_ignored(store: DiskS3, s3: Any):
    (store.root / f".etags-{BUCKET}.json").write_text('{"gone": "\\"x\\""}')
    s3.put_object(Bucket=BUCKET, Key="k", Body=b"1")
    assert listed(s3) == ["k"]
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == [BUCKET]
