"""LOBs: which source types DMS treats as LOBs, and what each LOB mode does to them.

Limited LOB mode cuts a LOB above LobMaxSize to that size, counted as DMS counts it: bytes
for BLOB, UTF-8 bytes for CLOB, two bytes a character for NCLOB (CHAP_Tasks.LOBSupport.html,
CHAP_Source.PostgreSQL.html "Working with LOB source data types"). Full and inline LOB mode
keep every LOB whole; SupportLobs false leaves LOB columns out. The end-to-end tests run the
real workflow offline: a 100 KB text, a 1 MB bytea/LONGBLOB and a 200 KB JSON arrive whole
with deltaload's defaults, and a run in limited LOB mode with a small LobMaxSize publishes
them cut, as DMS would, and says so in its history, its output and the notification topic.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deltaload.local.dms.coltypes import BLOB, CLOB, NCLOB, cut_lob, lob_size
from tests.guarantees.conftest import Ticks, assert_clean, open_runtime, published_rows
from tests.servers import MYSQL_URL, POSTGRES_URL

from .conftest import unique
from .helpers import SourceDb, Workflow, mappings, selection

TEXT_100K = ("0123456789abcdef" * 6400)[:102_400]
BYTES_1M = bytes(range(256)) * 4096  # 1 MB
JSON_200K = json.dumps({"k": "x" * (200 * 1024 - 10)})  # jsonb prints it the same way
KB = 1024

# The same three LOBs on each server: (DDL, the DMS LOB type each column maps to).
LOB_TABLE = {
    "postgres": "id bigint PRIMARY KEY, body text, data bytea, doc jsonb",  # NCLOB, BLOB, NCLOB
    # LONGTEXT -> NCLOB, LONGBLOB -> BLOB; MariaDB's JSON is a LONGTEXT -> NCLOB.
    "mysql": "id BIGINT PRIMARY KEY, body LONGTEXT, data LONGBLOB, doc JSON",
}
ROW = {"id": 1, "body": TEXT_100K, "data": BYTES_1M, "doc": JSON_200K}


def _create(engine: Any, kind: str, name: str, ddl: str, rows: list[dict[str, Any]]) -> None:
    import sqlalchemy as sa

    quoted = f"dwh.`{name}`" if kind == "mysql" else f'dwh."{name}"'
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE {quoted} ({ddl})")
        if rows:
            keys = list(rows[0])
            marks = ", ".join(f":{k}" for k in keys)
            conn.execute(sa.text(f"INSERT INTO {quoted} VALUES ({marks})"), rows)


def _server(request: pytest.FixtureRequest) -> tuple[str, Any]:
    kind = request.param
    fixture = "postgres_engine" if kind == "postgres" else "mysql_engine"
    return kind, request.getfixturevalue(fixture)


SERVERS = [
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mysql", marks=pytest.mark.mysql),
]


@pytest.fixture(params=SERVERS)
def lob_source(request: pytest.FixtureRequest) -> Iterator[tuple[SourceDb, str]]:
    """A server table holding the three large values, dropped afterwards."""
    kind, engine = _server(request)
    name = unique("lobs")
    _create(engine, kind, name, LOB_TABLE[kind], [ROW])
    db = SourceDb(kind, engine=engine, tables=[name])
    try:
        yield db, name
    finally:
        db.drop_all()


# --------------------------------------------------------------------------- size rules


def test_nclob_counts_two_bytes_a_character_and_never_cuts_one_in_half() -> None:
    assert lob_size("abc", NCLOB) == 6 and lob_size("abc", CLOB) == 3
    assert lob_size("😀", NCLOB) == 4 and lob_size("😀", CLOB) == 4
    assert cut_lob("ab😀cd", NCLOB, 5) == "ab"  # the emoji needs bytes 4..7
    assert cut_lob("ab😀cd", NCLOB, 8) == "ab😀"
    assert cut_lob("aé", CLOB, 2) == "a"  # é is two UTF-8 bytes
    assert cut_lob(b"\x00\x01\x02", BLOB, 2) == b"\x00\x01"


# ------------------------------------------------------------------- the engine, per mode


def _load(db: SourceDb, table: str, aws: Any, dms: Any, settings: dict | None) -> dict[str, Any]:
    flow = Workflow(aws, dms)
    folder = f"stage/{uuid.uuid4().hex[:6]}"
    extra = {"ReplicationTaskSettings": json.dumps(settings)} if settings is not None else {}
    task = flow.task(
        flow.source_endpoint(db),
        flow.target_endpoint(folder),
        flow.instance(),
        mappings(selection(table)),
        **extra,
    )
    final = flow.start_and_wait(task)
    assert final["Status"] == "stopped", final.get("LastFailureMessage")
    loaded = flow.read_all(f"{folder}/dwh/{table}/")
    assert loaded is not None
    [row] = loaded.to_pylist()
    return row


def test_limited_lob_mode_cuts_each_lob_type_as_dms_counts_it(lob_source, aws, dms) -> None:  # type: ignore[no-untyped-def]
    db, table = lob_source
    limited = {
        "TargetMetadata": {"SupportLobs": True, "LimitedSizeLobMode": True, "LobMaxSize": 64}
    }
    row = _load(db, table, aws, dms, limited)
    assert row["data"] == BYTES_1M[: 64 * KB]  # BLOB: 64 KB of bytes
    assert row["body"] == TEXT_100K[: 32 * KB]  # NCLOB: 64 KB at 2 bytes a character
    assert row["doc"] == JSON_200K[: 32 * KB]  # cut JSON is no longer JSON, as with DMS


def test_dms_default_task_settings_cut_at_32_kb(lob_source, aws, dms) -> None:  # type: ignore[no-untyped-def]
    """Without TargetMetadata DMS runs limited LOB mode with LobMaxSize 32."""
    db, table = lob_source
    row = _load(db, table, aws, dms, None)
    assert len(row["data"]) == 32 * KB and row["body"] == TEXT_100K[: 16 * KB]


@pytest.mark.parametrize(
    "meta",
    [
        {"FullLobMode": True, "LimitedSizeLobMode": False, "LobChunkSize": 64},
        {"InlineLobMaxSize": 8, "LimitedSizeLobMode": False, "FullLobMode": False},
    ],
    ids=["full", "inline"],
)
def test_full_and_inline_lob_modes_keep_lobs_whole(lob_source, aws, dms, meta) -> None:  # type: ignore[no-untyped-def]
    db, table = lob_source
    row = _load(db, table, aws, dms, {"TargetMetadata": {"SupportLobs": True, **meta}})
    assert row == ROW


def test_support_lobs_false_leaves_lob_columns_out(lob_source, aws, dms) -> None:  # type: ignore[no-untyped-def]
    db, table = lob_source
    row = _load(db, table, aws, dms, {"TargetMetadata": {"SupportLobs": False}})
    assert row == {"id": 1}


@pytest.mark.mysql
def test_mysql_text_and_blob_are_not_lobs(mysql_engine, aws, dms) -> None:  # type: ignore[no-untyped-def]
    """TEXT -> WSTRING and BLOB -> BYTES(65535): limited LOB mode leaves them alone."""
    name = unique("notlob")
    value = "é" * 30_000  # 60,000 bytes: a full TEXT, far above LobMaxSize 8
    _create(
        mysql_engine,
        "mysql",
        name,
        "id BIGINT, t TEXT, b BLOB",
        [{"id": 1, "t": value, "b": b"\x01" * 60_000}],
    )
    db = SourceDb("mysql", engine=mysql_engine, tables=[name])
    try:
        row = _load(db, name, aws, dms, {"TargetMetadata": {"LobMaxSize": 8}})
    finally:
        db.drop_all()
    assert row == {"id": 1, "t": value, "b": b"\x01" * 60_000}


# --------------------------------------------------------------------- the whole workflow

SERVER_URLS = {"postgres": POSTGRES_URL, "mysql": MYSQL_URL}


def _item(table: str, settings: dict | None = None) -> dict[str, Any]:
    item = {
        "targetTableName": "lobs_s3",
        "activeflag": "true",
        "sourceSchema": "dwh",
        "sourceTable": table,
        "filtercolumn": "id",
        "filteroperator": "gte",
        "filtercolumntype": "integer",
        "startvalue": "1",
        "ouputs3Prefix": "lake",
    }
    if settings is not None:
        item["replication_task_settings"] = json.dumps(settings)
    return item


def test_large_values_arrive_whole_by_default(lob_source, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    db, table = lob_source
    with open_runtime(tmp_path / "state", SERVER_URLS[db.kind]) as rt:
        rt.put_item(_item(table))
        result = rt.tick(now=Ticks()())
        assert [e.status for e in result.executions] == ["SUCCEEDED"], result
        [rows] = published_rows(rt, "lobs_s3").values()
        [record] = rt.history("lobs_s3")
        output = result.executions[0].output
        notes = rt.notifications()
        assert_clean(rt)
    assert rows == [ROW]
    assert "warnings" not in record and "warning" not in output["recorded"]
    assert not any("warning" in n["message"] for n in notes)


def test_limited_lob_mode_truncates_and_says_so_on_the_run(lob_source, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    db, table = lob_source
    settings = {"TargetMetadata": {"LobMaxSize": 64}}
    with open_runtime(tmp_path / "state", SERVER_URLS[db.kind]) as rt:
        rt.put_item(_item(table, settings))
        result = rt.tick(now=Ticks()())
        assert [e.status for e in result.executions] == ["SUCCEEDED"], result
        [rows] = published_rows(rt, "lobs_s3").values()
        [record] = rt.history("lobs_s3")
        output = result.executions[0].output
        notes = rt.notifications()
        manifest = json.loads(
            rt.session.client("s3")
            .get_object(Bucket=rt.bucket, Key=output["publish"]["manifestKey"])["Body"]
            .read()
        )
    assert rows == [
        {
            "id": 1,
            "body": TEXT_100K[: 32 * KB],
            "data": BYTES_1M[: 64 * KB],
            "doc": JSON_200K[: 32 * KB],
        }
    ]
    # Row counts agree with DMS, so the run succeeds; the cut values are reported on it.
    assert record["status"] == "SUCCEEDED"
    for column in ("body", "data", "doc"):
        assert any(f"column {column!r} reach LobMaxSize (64 KB)" in w for w in record["warnings"])
    assert output["recorded"]["warning"] == " | ".join(record["warnings"])
    assert manifest["warnings"] == record["warnings"]
    [note] = [n["message"] for n in notes if "succeeded with a warning" in n["message"]]
    assert "column 'body' reach LobMaxSize" in note and "LobMaxSize" in note


@pytest.mark.postgres
def test_full_lob_mode_is_refused_for_an_s3_target(postgres_engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """DMS supports neither full nor inline LOB mode with an S3 target: nothing starts."""
    name = unique("lobs")
    _create(postgres_engine, "postgres", name, LOB_TABLE["postgres"], [])
    db = SourceDb("postgres", engine=postgres_engine, tables=[name])
    try:
        with open_runtime(tmp_path / "state", POSTGRES_URL) as rt:
            rt.put_item(_item(name, {"TargetMetadata": {"FullLobMode": True}}))
            result = rt.tick(now=Ticks()())
            history = rt.history("lobs_s3")
            assert_clean(rt)
    finally:
        db.drop_all()
    assert result.executions == [] and history == []
    [invalid] = result.starter["invalid"]
    assert invalid["table"] == "lobs_s3"
    assert "an S3 target supports neither full nor inline LOB mode" in str(invalid["errors"])
