"""Benchmark the local replication engine against a bare Arrow copy and dlt.

Builds an ``orders`` table (row_id, customer_id, amount numeric(12,2), status, note,
created_at, updated_at) in SQLite and/or PostgreSQL, then measures, each case in its own
subprocess (so peak RSS is that case's alone):

- ``engine-full``: a DMS full-load task of the whole table through the local engine
  (boto3 -> LocalDms under moto; Parquet uploaded to moto S3);
- ``engine-full-fs``: the same, but the engine's S3 client writes to a local folder
  instead of moto (isolates the engine from moto's in-memory S3, which is slow and
  holds every uploaded object in memory);
- ``engine-delta`` / ``engine-delta-fs``: the full-load task with a ``row_id gte``
  filter selecting the last ``--delta-percent`` of the rows, 10 % by default (moto S3 / a
  local folder);
- ``bare``: ADBC ``fetch_record_batch`` -> ``pyarrow.parquet.ParquetWriter`` to a local
  file, with the engine's writer settings (the floor the engine is measured against);
- ``dlt-connectorx`` / ``dlt-pyarrow``: dlt's ``sql_table`` source with that backend into
  a local filesystem destination as Parquet, run with ``--dlt-python`` (a separate venv);
  the faster of the two is the one the targets compare with;
- ``dlt-connectorx-delta`` / ``dlt-pyarrow-delta``: the same with
  ``dlt.sources.incremental("row_id")`` starting at the delta's first row (dlt's own
  delta load, ``row_id >= start``).

Usage::

    .venv/bin/python benchmarks/bench_engine.py --rows 1000000 --sources sqlite,postgres
    .venv/bin/python benchmarks/bench_engine.py --rows 5000000 --sources sqlite

Only the standard library is imported at module level: the ``dlt`` case runs this same
file under another interpreter.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
CASES = (
    "engine-full",
    "engine-full-fs",
    "engine-delta",
    "engine-delta-fs",
    "bare",
    "dlt-connectorx",
    "dlt-pyarrow",
    "dlt-connectorx-delta",
    "dlt-pyarrow-delta",
)
TABLE = "orders"
SCHEMA = "dwh"


# ----------------------------------------------------------------------------- data


def sqlite_path(workdir: Path, rows: int) -> Path:
    """The SQLite database of a given size (built once, then reused)."""
    return workdir / f"orders_{rows}.sqlite"


def build_sqlite(path: Path, rows: int) -> None:
    """Create the orders table in SQLite with ``rows`` rows (skipped if already there)."""
    if path.exists():
        with sqlite3.connect(path) as conn:
            if conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0] == rows:
                return
        path.unlink()
    started = time.perf_counter()
    with sqlite3.connect(path) as conn:
        conn.execute(
            f"CREATE TABLE {TABLE} (row_id INTEGER PRIMARY KEY, customer_id INTEGER, "
            "amount NUMERIC(12,2), status TEXT, note TEXT, created_at TIMESTAMP, "
            "updated_at TIMESTAMP)"
        )
        conn.execute(
            f"""
            WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < ?)
            INSERT INTO {TABLE}
            SELECT x, x % 50021, round((x % 1000003) / 100.0, 2),
                   CASE x % 4 WHEN 0 THEN 'open' WHEN 1 THEN 'paid'
                              WHEN 2 THEN 'shipped' ELSE 'cancelled' END,
                   'order ' || x || ' note ' || substr('abcdefghijklmnopqrstuvwxyz', 1, x % 27),
                   strftime('%Y-%m-%d %H:%M:%f', '2024-01-01', '+' || (x % 31536000) || ' seconds'),
                   strftime('%Y-%m-%d %H:%M:%f', '2024-01-01',
                            '+' || ((x * 7) % 31536000) || '.' || (x % 1000) || ' seconds')
            FROM n
            """,
            (rows,),
        )
    print(f"  built SQLite {path.name}: {rows:,} rows in {time.perf_counter() - started:.1f}s")


def pg_table(rows: int) -> str:
    """The PostgreSQL table name for a given size."""
    return f"orders_{rows}"


def build_postgres(url: str, rows: int) -> None:
    """Create dwh.orders_<rows> in PostgreSQL (skipped if already there)."""
    import adbc_driver_postgresql.dbapi as adbc_pg

    table = f"{SCHEMA}.{pg_table(rows)}"
    with adbc_pg.connect(url) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        cur.execute(f"SELECT to_regclass('{table}') IS NOT NULL")
        if cur.fetchone()[0]:
            cur.execute(f"SELECT count(*) FROM {table}")
            if cur.fetchone()[0] == rows:
                return
            cur.execute(f"DROP TABLE {table}")
        started = time.perf_counter()
        cur.execute(
            f"CREATE TABLE {table} (row_id bigint PRIMARY KEY, customer_id integer, "
            "amount numeric(12,2), status text, note text, created_at timestamp, "
            "updated_at timestamp)"
        )
        cur.execute(
            f"""
            INSERT INTO {table}
            SELECT x, x % 50021, round((x % 1000003) / 100.0, 2),
                   (ARRAY['open', 'paid', 'shipped', 'cancelled'])[x % 4 + 1],
                   'order ' || x || ' note ' || substr('abcdefghijklmnopqrstuvwxyz', 1, x % 27),
                   timestamp '2024-01-01' + (x % 31536000) * interval '1 second',
                   timestamp '2024-01-01' + ((x * 7) % 31536000) * interval '1 second'
                       + (x % 1000) * interval '1 millisecond'
            FROM generate_series(1, {rows}) AS x
            """
        )
        cur.execute(f"ANALYZE {table}")
        conn.commit()
    print(f"  built PostgreSQL {table}: {rows:,} rows in {time.perf_counter() - started:.1f}s")


# ---------------------------------------------------------------------------- cases


def delta_start(rows: int, percent: float = 10.0) -> int:
    """The first row_id of the delta window: the last ``percent`` % of the rows."""
    return rows - int(rows * percent / 100) + 1


class FolderS3:
    """The S3 calls the engine makes, against a local folder (for ``engine-full-fs``).

    boto3 spells the parameters Bucket, Key, ...: so do these methods.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, bucket: str, key: str) -> Path:
        target = self.root / bucket / key
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def put_object(self, Bucket: str, Key: str, Body: bytes, **_: Any) -> dict[str, Any]:
        """Write the object's file."""
        self._path(Bucket, Key).write_bytes(Body)
        return {}

    def create_multipart_upload(self, Bucket: str, Key: str, **_: Any) -> dict[str, Any]:
        """Start the object's file empty, as a hidden part file."""
        part = self._path(Bucket, Key).with_suffix(".part")
        part.write_bytes(b"")
        return {"UploadId": str(part)}

    def upload_part(self, UploadId: str, Body: bytes, **_: Any) -> dict[str, Any]:
        """Append the part (the engine sends them in order)."""
        with open(UploadId, "ab") as out:
            out.write(Body)
        return {"ETag": '"bench"'}

    def complete_multipart_upload(
        self, Bucket: str, Key: str, UploadId: str, **_: Any
    ) -> dict[str, Any]:
        """Move the part file onto the key."""
        os.replace(UploadId, self._path(Bucket, Key))
        return {}

    def abort_multipart_upload(self, UploadId: str, **_: Any) -> dict[str, Any]:
        """Drop the part file."""
        Path(UploadId).unlink(missing_ok=True)
        return {}

    def head_bucket(self, Bucket: str) -> dict[str, Any]:  # boto3 spells it Bucket
        """Succeed: the folder is the bucket."""
        return {}

    def objects(self) -> int:
        """How many files were written."""
        return sum(1 for p in self.root.rglob("*.parquet") if p.is_file())


def case_engine(args: argparse.Namespace, delta: bool, folder_s3: bool = False) -> dict[str, Any]:
    """A full-load task through boto3 -> LocalDms (moto S3 and Secrets Manager)."""
    import boto3
    from moto import mock_aws

    from deltaload.local.account import REGION
    from deltaload.local.dms import LocalDms, Quotas, Timing

    os.environ.update(
        AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION=REGION
    )
    zero = Timing(**{name: 0.0 for name in Timing.__dataclass_fields__})
    with mock_aws():
        session = boto3.Session(region_name=REGION)
        session.client("s3").create_bucket(Bucket="bench")
        out = Path(args.workdir) / "engine-fs"
        shutil.rmtree(out, ignore_errors=True)
        fs = FolderS3(out)

        def clients(service: str) -> Any:
            return fs if folder_s3 and service == "s3" else session.client(service)

        # It measures copying, not the API: its tight status polls would meet DMS's throttle.
        with LocalDms(clients, timing=zero, quotas=Quotas.off()) as local:
            local.install(session.events)
            dms = session.client("dms")
            source = _source_endpoint(session, dms, args)
            target = dms.create_endpoint(
                EndpointIdentifier="target",
                EndpointType="target",
                EngineName="s3",
                S3Settings={"BucketName": "bench", "BucketFolder": "run", "DataFormat": "parquet"},
            )["Endpoint"]["EndpointArn"]
            instance = dms.create_replication_instance(
                ReplicationInstanceIdentifier="bench", ReplicationInstanceClass="dms.c5.large"
            )["ReplicationInstance"]["ReplicationInstanceArn"]
            _poll(
                lambda: dms.describe_replication_instances()["ReplicationInstances"][0][
                    "ReplicationInstanceStatus"
                ],
                {"available"},
            )
            table = TABLE if args.source == "sqlite" else pg_table(args.rows)
            rule: dict[str, Any] = {
                "rule-type": "selection",
                "rule-id": "1",
                "rule-name": "1",
                "object-locator": {"schema-name": SCHEMA, "table-name": table},
                "rule-action": "include",
            }
            if delta:
                start = delta_start(args.rows, args.delta_percent)
                condition = {"filter-operator": "gte", "value": str(start)}
                rule["filters"] = [
                    {
                        "filter-type": "source",
                        "column-name": "row_id",
                        "filter-conditions": [condition],
                    }
                ]
            task = dms.create_replication_task(
                ReplicationTaskIdentifier="bench",
                SourceEndpointArn=source,
                TargetEndpointArn=target,
                ReplicationInstanceArn=instance,
                MigrationType="full-load",
                TableMappings=json.dumps({"rules": [rule]}),
            )["ReplicationTask"]["ReplicationTaskArn"]

            def status() -> str:
                return dms.describe_replication_tasks()["ReplicationTasks"][0]["Status"]

            _poll(status, {"ready"})
            dms.start_replication_task(
                ReplicationTaskArn=task, StartReplicationTaskType="start-replication"
            )
            # Poll gently (a fast poll loop competes for the GIL with the load) and take
            # the duration from the task's own StartDate/StopDate.
            final = _poll(status, {"stopped", "failed"}, interval=0.05)
            described = dms.describe_replication_tasks()["ReplicationTasks"][0]
            task_stats = described["ReplicationTaskStats"]
            seconds = (task_stats["StopDate"] - task_stats["StartDate"]).total_seconds()
            if final != "stopped":
                raise SystemExit(f"engine task failed: {described.get('LastFailureMessage')}")
            stats = dms.describe_table_statistics(ReplicationTaskArn=task)["TableStatistics"]
            files = (
                fs.objects()
                if folder_s3
                else session.client("s3").list_objects_v2(Bucket="bench").get("KeyCount", 0)
            )
            local.uninstall(session.events)
        shutil.rmtree(out, ignore_errors=True)
    return {"rows": stats[0]["FullLoadRows"], "seconds": seconds, "files": files}


def _source_endpoint(session: Any, dms: Any, args: argparse.Namespace) -> str:
    if args.source == "sqlite":
        params: dict[str, Any] = {
            "EngineName": "sqlite",
            "DatabaseName": str(sqlite_path(Path(args.workdir), args.rows)),
        }
    else:
        from sqlalchemy import make_url

        url = make_url(args.pg_url)
        secret = {
            "host": url.host,
            "port": url.port or 5432,
            "username": url.username or "",
            "password": url.password or "",
        }
        arn = session.client("secretsmanager").create_secret(
            Name="bench-source", SecretString=json.dumps(secret)
        )["ARN"]
        params = {
            "EngineName": "postgres",
            "DatabaseName": url.database,
            "PostgreSQLSettings": {"SecretsManagerSecretId": arn},
        }
    return dms.create_endpoint(EndpointIdentifier="source", EndpointType="source", **params)[
        "Endpoint"
    ]["EndpointArn"]


def _poll(probe: Any, until: set[str], interval: float = 0.002) -> str:
    while (value := probe()) not in until:
        time.sleep(interval)
    return value


def case_bare(args: argparse.Namespace) -> dict[str, Any]:
    """ADBC fetch_record_batch -> ParquetWriter, the engine's file layout, no type fixing.

    Same Parquet settings as the engine's defaults (format 1.0, uncompressed, dictionary,
    statistics, RowGroupLength 10,000) and, for SQLite, the same ADBC batch size, so the
    difference to ``engine-full-fs`` is the engine's own work (typing, filters, threads).
    """
    import pyarrow.parquet as pq

    out = Path(args.workdir) / "bare.parquet"
    started = time.perf_counter()
    if args.source == "sqlite":
        import adbc_driver_sqlite.dbapi as driver

        conn = driver.connect(str(sqlite_path(Path(args.workdir), args.rows)))
        # SQLite's ADBC types come from the first rows; this table has no NULLs.
        query = f"SELECT * FROM {TABLE}"
        options = {"adbc.sqlite.query.batch_rows": "65536"}
    else:
        import adbc_driver_postgresql.dbapi as driver

        conn = driver.connect(args.pg_url)
        query = f"SELECT * FROM {SCHEMA}.{pg_table(args.rows)}"
        options = {}
    rows = 0
    with conn, conn.cursor() as cur:
        if options:
            cur.adbc_statement.set_options(**options)
        cur.execute(query)
        reader = cur.fetch_record_batch()
        writer = pq.ParquetWriter(out, reader.schema, version="1.0", compression="none")
        for batch in reader:
            writer.write_batch(batch, row_group_size=10_000)
            rows += batch.num_rows
        writer.close()
    seconds = time.perf_counter() - started
    out.unlink()
    return {"rows": rows, "seconds": seconds, "files": 1}


def case_dlt(args: argparse.Namespace) -> dict[str, Any]:
    """dlt sql_table (pyarrow/connectorx backend) -> filesystem destination, Parquet."""
    import dlt
    from dlt.sources.sql_database import sql_table

    if args.source == "sqlite":
        url = f"sqlite:///{sqlite_path(Path(args.workdir), args.rows)}"
        table, schema = TABLE, None
    else:
        url = args.pg_url.replace("postgresql://", "postgresql+psycopg2://", 1)
        table, schema = pg_table(args.rows), SCHEMA
    backend = args.run_case.removeprefix("dlt-").removesuffix("-delta")
    if backend == "connectorx":
        url = url.replace("+psycopg2", "")
    out = Path(args.workdir) / "dlt"
    shutil.rmtree(out, ignore_errors=True)
    pipeline = dlt.pipeline(
        pipeline_name="bench",
        pipelines_dir=str(out / "state"),
        destination=dlt.destinations.filesystem(bucket_url=(out / "lake").as_uri()),
        dataset_name="bench",
        progress="log" if args.verbose else None,
    )
    delta = args.run_case.endswith("-delta")
    source = sql_table(
        credentials=url,
        table=table,
        schema=schema,
        backend=backend,
        chunk_size=100_000,
        reflection_level="full_with_precision",
        incremental=dlt.sources.incremental(
            "row_id", initial_value=delta_start(args.rows, args.delta_percent)
        )
        if delta
        else None,
    )
    started = time.perf_counter()
    info = pipeline.run(source, loader_file_format="parquet")
    seconds = time.perf_counter() - started
    rows = pipeline.last_trace.last_normalize_info.row_counts.get(table, 0)
    files = sum(1 for _ in (out / "lake").rglob("*.parquet"))
    info.raise_on_failed_jobs()
    shutil.rmtree(out, ignore_errors=True)
    return {"rows": rows, "seconds": seconds, "files": files}


def run_case(args: argparse.Namespace) -> None:
    """Run one case in this process and print its result as one JSON line."""
    if args.run_case == "engine-full":
        result = case_engine(args, delta=False)
    elif args.run_case == "engine-full-fs":
        result = case_engine(args, delta=False, folder_s3=True)
    elif args.run_case == "engine-delta":
        result = case_engine(args, delta=True)
    elif args.run_case == "engine-delta-fs":
        result = case_engine(args, delta=True, folder_s3=True)
    elif args.run_case == "bare":
        result = case_bare(args)
    else:
        result = case_dlt(args)
    # ru_maxrss is in KiB on Linux: the peak resident set of this process.
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result))


# --------------------------------------------------------------------------- driver


def spawn(args: argparse.Namespace, case: str, source: str) -> dict[str, Any]:
    """Run one case in a fresh interpreter; its RESULT line, or an 'error' entry."""
    is_dlt = case.startswith("dlt")
    python = args.dlt_python if is_dlt else sys.executable
    if is_dlt and not Path(python).exists():
        return {"error": f"dlt interpreter {python} not found (see --dlt-python)"}
    command = [
        python,
        str(Path(__file__).resolve()),
        "--run-case",
        case,
        "--source",
        source,
        "--rows",
        str(args.rows),
        "--workdir",
        args.workdir,
        "--pg-url",
        args.pg_url,
        "--delta-percent",
        str(args.delta_percent),
    ]
    env = dict(os.environ)
    if not is_dlt:
        env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1] / "src")
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line.removeprefix("RESULT "))
    tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
    return {"error": " | ".join(tail) or f"exit {done.returncode}"}


def main() -> None:
    """Build the data, run every case per source, print a table of rows/s and peak RSS."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--sources", default="sqlite,postgres")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--pg-url", default=os.environ.get("BENCH_PG_URL", DEFAULT_PG_URL))
    parser.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "deltaload-bench"))
    parser.add_argument(
        "--dlt-python",
        default=str(Path(__file__).resolve().parents[1] / ".venv-bench" / "bin" / "python"),
        help="interpreter with dlt installed (make bench builds .venv-bench)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per case; the best is kept")
    parser.add_argument(
        "--delta-percent", type=float, default=10.0, help="the delta cases load this %% of the rows"
    )
    parser.add_argument("--run-case", choices=CASES, help=argparse.SUPPRESS)
    parser.add_argument("--source", help=argparse.SUPPRESS)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    if args.run_case:
        run_case(args)
        return
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    print(f"deltaload engine benchmark: {args.rows:,} rows, {os.cpu_count()} cores")
    for source in args.sources.split(","):
        if source == "sqlite":
            build_sqlite(sqlite_path(Path(args.workdir), args.rows), args.rows)
        else:
            build_postgres(args.pg_url, args.rows)
        _report(args, source)


def _report(args: argparse.Namespace, source: str) -> None:
    results: dict[str, dict[str, Any]] = {}
    for case in args.cases.split(","):
        runs = [spawn(args, case, source) for _ in range(args.repeat)]
        good = [r for r in runs if "error" not in r]
        results[case] = min(good, key=lambda r: r["seconds"]) if good else runs[0]
    print(f"\n{source}: {'case':<22}{'rows':>11}{'seconds':>9}{'rows/s':>12}{'peak RSS MB':>13}")
    for case, result in results.items():
        if "error" in result:
            print(f"{'':8}{case:<22}  failed: {result['error']}")
            continue
        print(
            f"{'':8}{case:<22}{result['rows']:>11,}{result['seconds']:>9.2f}"
            f"{_rate(result):>12,.0f}{result['peak_rss_mb']:>13.0f}"
        )
    bare = results.get("bare", {})
    for name in ("engine-full", "engine-full-fs"):
        full = results.get(name, {})
        if all("seconds" in r for r in (full, bare)):
            ratio = full["seconds"] / bare["seconds"]
            print(f"{'':8}{name} / bare time: {ratio:.2f}x (target <= 1.3x)")
    for load, names in (
        ("full", ("engine-full", "engine-full-fs")),
        ("delta", ("engine-delta", "engine-delta-fs")),
    ):
        dlt_runs = [
            r
            for c, r in results.items()
            if c.startswith("dlt") and c.endswith("-delta") == (load == "delta") and "seconds" in r
        ]
        if not dlt_runs:
            continue
        fastest = max(_rate(r) for r in dlt_runs)
        for name in names:
            if "seconds" in results.get(name, {}):
                speedup = _rate(results[name]) / fastest
                print(f"{'':8}{name} vs fastest dlt {load} rows/s: {speedup:.2f}x (target >= 2x)")


def _rate(result: dict[str, Any]) -> float:
    return float(result["rows"] / result["seconds"])


if __name__ == "__main__":
    main()
