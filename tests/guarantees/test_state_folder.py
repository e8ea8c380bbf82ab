"""Guarantee 7, with real processes: the state folder never loses what a command reported.

Every test runs the real ``deltaload`` command line as a child process on one state folder
and a small SQLite source. The test-only fault points of ``deltaload.local.faults`` kill the
process (SIGKILL, by its own pid) or hold it at an exact phase, so nothing here depends on
timing: a test waits for a condition (a file appearing, a message printed), never for time.
Afterwards the lake is read from disk as any user would read it (its Parquet files).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from deltaload.items import from_dynamodb

ROOT = Path(__file__).resolve().parents[2]
SEED = json.loads((ROOT / "controller_seed" / "orders.json").read_text())
WAIT = 180  # seconds: a safety net for a hung child, never a synchronisation


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` until it holds (fail after WAIT seconds)."""
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Folder:
    """One state folder, a SQLite source and the `deltaload` command line on them."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.state = base / "state"
        self.source = base / "source.sqlite"
        with sqlite3.connect(self.source) as db:
            db.execute("CREATE TABLE orders_rds (row_id INTEGER PRIMARY KEY, status TEXT)")
        self.add_rows(1, 30)

    def add_rows(self, first: int, last: int) -> None:
        with sqlite3.connect(self.source) as db:
            db.executemany(
                "INSERT INTO orders_rds VALUES (?, 'NEW')", [(i,) for i in range(first, last + 1)]
            )

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT / "src"),
            "DELTALOAD_STATE_DIR": str(self.state),
            "DELTALOAD_SOURCE_URL": f"sqlite:///{self.source}",
            "COLUMNS": "250",
            "PYTHONUNBUFFERED": "1",
            "DELTALOAD_TEST_QUICK": "1",  # zero-second polls, at most one second apart
        }
        for name in ("DELTALOAD_TEST_KILL_AT", "DELTALOAD_TEST_PAUSE_AT", "DELTALOAD_LOCK_TIMEOUT"):
            env.pop(name, None)
        return env | extra

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "deltaload.cli", *args]

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        """Run one command to its end."""
        return subprocess.run(
            self.command(*args),
            cwd=ROOT,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=WAIT,
        )

    def start(self, name: str, *args: str, **env: str) -> subprocess.Popen[str]:
        """Start a command in the background; its output goes to <name>.out / <name>.err."""
        return subprocess.Popen(
            self.command(*args),
            cwd=ROOT,
            env=self.env(**env),
            stdout=(self.base / f"{name}.out").open("w"),
            stderr=(self.base / f"{name}.err").open("w"),
            text=True,
        )

    def output(self, name: str) -> str:
        return (self.base / f"{name}.out").read_text() + (self.base / f"{name}.err").read_text()

    def start_paused(self, name: str, point: str, *args: str) -> tuple[subprocess.Popen, Path]:
        """Start a command that holds at fault point ``point``; return once it is there."""
        marker = self.base / f"{name}.paused"
        process = self.start(
            name,
            *args,
            DELTALOAD_TEST_PAUSE_AT=point,
            DELTALOAD_TEST_PAUSE_FILE=str(marker),
        )
        wait_until(lambda: marker.exists() or process.poll() is not None, f"{name} at {point}")
        assert process.poll() is None, self.output(name)
        return process, marker

    def onboard(self, item: dict[str, Any]) -> None:
        path = self.base / f"{item['targetTableName']}.json"
        path.write_text(json.dumps(item))
        result = self.run("onboard", str(path))
        assert result.returncode == 0, result.stdout + result.stderr

    def table(self, logical_id: str) -> list[dict[str, Any]]:
        """A table's committed items, read from its file as any reader may."""
        path = self.state / "tables" / f"{logical_id}.json"
        return [from_dynamodb(i) for i in json.loads(path.read_text())] if path.exists() else []

    def items(self) -> dict[str, dict[str, Any]]:
        return {i["targetTableName"]: i for i in self.table("ControllerTable")}

    def history(self, table: str) -> list[dict[str, Any]]:
        records = [r for r in self.table("RunHistoryTable") if r["targetTableName"] == table]
        return sorted(records, key=lambda r: (str(r.get("startedAt", "")), r["runId"]))

    def lake_rows(self, table: str) -> list[int]:
        """Every row_id published for ``table``, read from the Parquet files on disk.

        Also checks that the published runs are whole: each manifest's files exist with
        the rows it states, and no data file lies outside a run with a manifest.
        """
        [bucket] = [p for p in (self.state / "s3").iterdir() if p.is_dir()]
        base = bucket / SEED["ouputs3Prefix"] / SEED["sourceSchema"] / table
        manifests = [json.loads(p.read_text()) for p in sorted(base.glob("_manifests/*.json"))]
        listed = set()
        for manifest in manifests:
            for entry in manifest["files"]:
                path = bucket / entry["key"]
                assert path.is_file(), f"manifest of {manifest['runId']} lists missing {path}"
                assert pq.ParquetFile(path).metadata.num_rows == entry["rows"]
                listed.add(path)
        data = set(base.glob("run=*/*.parquet"))
        assert data == listed, f"files without a manifest: {sorted(data - listed)}"
        rows: list[int] = []
        for path in sorted(data):
            rows += pq.read_table(path, columns=["row_id"]).column("row_id").to_pylist()
        return sorted(rows)

    def assert_tables_readable(self) -> None:
        """Every table file is whole JSON (a kill leaves the old or the new file, never a mix)."""
        for path in (self.state / "tables").glob("*.json"):
            assert isinstance(json.loads(path.read_text()), list), path

    def assert_sound(self) -> None:
        """No damaged or half-written state file, no staging data left."""
        self.assert_tables_readable()
        tables = self.state / "tables"
        assert not list(tables.glob(".*")), f"temporary files left: {list(tables.glob('.*'))}"
        staging = [p for p in (self.state / "s3").glob("*/_staging/**/*") if p.is_file()]
        assert staging == [], f"staging data left: {staging}"

    def snapshot(self) -> dict[str, bytes]:
        """Every file of the state folder (the writer lock's holder record aside)."""
        return {
            str(p.relative_to(self.state)): p.read_bytes()
            for p in sorted(self.state.rglob("*"))
            if p.is_file() and p.name != "writer.lock"
        }


@pytest.fixture
def folder(tmp_path: Path) -> Folder:
    return Folder(tmp_path)


# -- (1) a kill at each phase ------------------------------------------------------------------

PHASES = [
    # the folder's writer lock taken, the state restored, nothing of the run done yet
    "writer-locked",
    # the table's run lock is on the item: the run is orphaned by the kill
    "after:AcquireLockFunction",
    # the engine has written a staging file
    "mid-load",
    # files and manifest published, watermark not recorded: the files must go
    "after:VerifyPublishFunction",
    # inside the state save: the item's new file (watermark) written but not renamed
    "before-rename:ControllerTable@RecordSuccessFunction",
    # between two tables' files: the item committed, its history record not yet written
    "after-save:ControllerTable@RecordSuccessFunction",
    # the history record's new file written but not renamed
    "before-rename:RunHistoryTable@RecordSuccessFunction",
]


# A windowed run (windows of 10 rows, two at a time): its own phases.
WINDOWED = {**SEED, "windowsize": "10", "windowconcurrency": "2"}
WINDOWED_PHASES = [
    "mid-load",  # a window's task has written a staging file
    "after:VerifyPublishFunction#1",  # one window verified in staging, nothing published
    "after:VerifyPublishFunction#3",  # both windows published, the watermark not recorded
    "before-rename:ControllerTable@RecordSuccessFunction",
]
# The same windows on DMS Serverless: a replication config per window.
SERVERLESS_WINDOWED = {**WINDOWED, "replicationmode": "serverless"}
KILLS = (
    [pytest.param(SEED, phase, id=phase) for phase in PHASES]
    + [pytest.param(WINDOWED, phase, id=f"windowed-{phase}") for phase in WINDOWED_PHASES]
    + [
        pytest.param(SERVERLESS_WINDOWED, phase, id=f"serverless-windowed-{phase}")
        for phase in WINDOWED_PHASES
    ]
)


@pytest.mark.parametrize(("item", "phase"), KILLS)
def test_a_kill_at_any_phase_loses_and_doubles_nothing(
    folder: Folder, item: dict[str, Any], phase: str
) -> None:
    mode = item.get("replicationmode", "instance")
    folder.onboard(item)
    first = folder.run("run")
    assert first.returncode == 0, first.stdout + first.stderr
    assert folder.items()["orders_s3"]["watermark"] == "30"
    folder.add_rows(31, 50)  # windowed: the next run loads 31-40 and 41-50 side by side

    killed = folder.run("run", DELTALOAD_TEST_KILL_AT=phase)
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr)
    folder.assert_tables_readable()

    rerun = folder.run("run")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "Traceback" not in rerun.stderr and "No application metrics" not in rerun.stderr
    assert "loaded" in rerun.stdout or "nothing to load" in rerun.stdout
    folder.assert_sound()
    item = folder.items()["orders_s3"]
    assert "lockOwner" not in item, item
    assert item["watermark"] == "50"
    assert folder.lake_rows("orders_s3") == list(range(1, 51))
    history = folder.history("orders_s3")
    assert [r for r in history if r["status"] == "RUNNING"] == [], history
    assert history[-1]["status"] == "SUCCEEDED"
    assert {r.get("replicationMode") for r in history} == {mode}, history


def test_an_orphaned_run_is_recorded_as_interrupted(folder: Folder) -> None:
    folder.onboard(SEED)
    killed = folder.start("killed", "run", DELTALOAD_TEST_KILL_AT="after:VerifyPublishFunction")
    assert killed.wait(WAIT) == -signal.SIGKILL
    orphan = folder.items()["orders_s3"]["lockOwner"]

    rerun = folder.run("run")
    assert rerun.returncode == 0, rerun.stderr
    assert f"recovered orders_s3: run {orphan}" in rerun.stderr
    [failed] = [r for r in folder.history("orders_s3") if r["runId"] == orphan]
    assert failed["status"] == "FAILED"
    assert "interrupted" in failed["error"] and f"pid {killed.pid}" in failed["error"]
    assert folder.lake_rows("orders_s3") == list(range(1, 31))


# -- (2) two processes on one state folder -----------------------------------------------------


def test_a_second_run_of_the_same_table_waits_and_loads_nothing_twice(folder: Folder) -> None:
    folder.onboard(SEED)
    first, marker = folder.start_paused("first", "after:AcquireLockFunction", "run")
    second = folder.start("second", "run")
    wait_until(lambda: "waiting" in folder.output("second"), "the second run to wait")
    assert f"pid {first.pid}" in folder.output("second")
    Path(f"{marker}.continue").touch()
    assert first.wait(WAIT) == 0, folder.output("first")
    assert second.wait(WAIT) == 0, folder.output("second")

    assert "loaded" in folder.output("first")
    assert "nothing to load" in folder.output("second")
    assert folder.lake_rows("orders_s3") == list(range(1, 31))
    assert folder.items()["orders_s3"]["watermark"] == "30"


@pytest.mark.parametrize("item", [SEED, WINDOWED], ids=["one-window", "windowed"])
def test_two_ticks_started_in_the_same_instant_load_every_row_once(
    folder: Folder, item: dict[str, Any]
) -> None:
    """Nothing holds either process: both start in the same instant and race for the
    folder; the loser waits for the winner, then finds nothing new. Two rounds, with new
    rows between them."""
    folder.onboard(item)
    for last in (30, 55):
        if last > 30:
            folder.add_rows(31, last)
        first, second = folder.start("first", "run"), folder.start("second", "run")
        assert first.wait(WAIT) == 0, folder.output("first")
        assert second.wait(WAIT) == 0, folder.output("second")
        outputs = [folder.output("first"), folder.output("second")]
        assert any("loaded" in out for out in outputs), outputs
        assert any("nothing to load" in out or "skipped" in out for out in outputs), outputs
        assert folder.lake_rows("orders_s3") == list(range(1, last + 1))
        assert folder.items()["orders_s3"]["watermark"] == str(last)
        folder.assert_sound()
    history = folder.history("orders_s3")
    assert [r["status"] for r in history] == ["SUCCEEDED"] * 4
    assert len({r["runId"] for r in history}) == 4  # four executions, none renamed onto another
    assert sorted(r["rows"] for r in history) == [0, 0, 25, 30]


def test_runs_of_different_tables_both_keep_their_results(folder: Folder) -> None:
    other = {**SEED, "targetTableName": "orders_copy_s3"}
    folder.onboard(SEED)
    folder.onboard(other)
    first, marker = folder.start_paused("first", "after:VerifyPublishFunction", "run", "orders_s3")
    second = folder.start("second", "run", "orders_copy_s3")
    wait_until(lambda: "waiting" in folder.output("second"), "the second run to wait")
    Path(f"{marker}.continue").touch()
    assert first.wait(WAIT) == 0, folder.output("first")
    assert second.wait(WAIT) == 0, folder.output("second")

    items = folder.items()
    assert items["orders_s3"]["watermark"] == items["orders_copy_s3"]["watermark"] == "30"
    for table in ("orders_s3", "orders_copy_s3"):
        assert folder.lake_rows(table) == list(range(1, 31))
        assert [r["status"] for r in folder.history(table)] == ["SUCCEEDED"]


def test_onboard_during_a_run_waits_and_undoes_nothing(folder: Folder) -> None:
    folder.onboard(SEED)
    run, marker = folder.start_paused("run", "after:VerifyPublishFunction", "run")

    refused = folder.run("--lock-timeout", "0", "run")
    assert refused.returncode == 1
    assert f"in use by pid {run.pid}" in refused.stderr and "Traceback" not in refused.stderr

    # A reader takes no lock: it shows the committed state, the run's lock included.
    status = folder.run("--lock-timeout", "0", "status", "--json")
    assert status.returncode == 0, status.stderr
    [seen] = json.loads(status.stdout)
    assert seen["lockOwner"] == folder.items()["orders_s3"]["lockOwner"]

    other = {**SEED, "targetTableName": "orders_copy_s3"}
    (folder.base / "other.json").write_text(json.dumps(other))
    onboard = folder.start("onboard", "onboard", str(folder.base / "other.json"))
    wait_until(lambda: "waiting" in folder.output("onboard"), "onboard to wait")
    Path(f"{marker}.continue").touch()
    assert run.wait(WAIT) == 0, folder.output("run")
    assert onboard.wait(WAIT) == 0, folder.output("onboard")

    items = folder.items()
    assert items["orders_s3"]["watermark"] == "30" and "lockOwner" not in items["orders_s3"]
    assert "orders_copy_s3" in items
    assert folder.lake_rows("orders_s3") == list(range(1, 31))


# -- (3) a damaged state is refused and left untouched -----------------------------------------

DAMAGES = {
    "truncated JSON": ("RunHistoryTable", b'[{"x":', "not valid JSON"),
    "not a list": ("ControllerTable", b'{"targetTableName": {"S": "t"}}', "expected a list"),
    "item without its key": ("RunHistoryTable", b'[{"targetTableName": {"S": "t"}}]', "runId"),
    "wrong attribute type": (
        "ControllerTable",
        b'[{"targetTableName": {"S": 5}}]',
        "attribute 'targetTableName' has type S but holds int",
    ),
    "unknown type": (
        "ControllerTable",
        b'[{"targetTableName": {"S": "t"}, "x": {"Q": "1"}}]',
        "unknown DynamoDB type",
    ),
}


@pytest.fixture(scope="module")
def loaded_state(tmp_path_factory: pytest.TempPathFactory) -> Folder:
    """A state folder with one table loaded once (copied by each damaged-state test)."""
    folder = Folder(tmp_path_factory.mktemp("loaded"))
    folder.onboard(SEED)
    assert folder.run("run").returncode == 0
    return folder


@pytest.mark.parametrize(
    ("damage", "command"),
    [(damage, "run") for damage in DAMAGES]
    + [("truncated JSON", "status"), ("wrong attribute type", "onboard")],
)
def test_a_damaged_state_is_refused_and_nothing_changes(
    loaded_state: Folder, tmp_path: Path, damage: str, command: str
) -> None:
    folder = Folder(tmp_path)
    shutil.rmtree(folder.state, ignore_errors=True)
    shutil.copytree(loaded_state.state, folder.state)
    logical_id, content, problem = DAMAGES[damage]
    damaged = folder.state / "tables" / f"{logical_id}.json"
    damaged.write_bytes(content)
    before = folder.snapshot()

    args = [command] if command != "onboard" else []
    if command == "onboard":
        (tmp_path / "item.json").write_text(json.dumps(SEED))
        args = ["onboard", str(tmp_path / "item.json")]
    result = folder.run(*args)

    assert result.returncode == 1, result.stdout + result.stderr
    assert str(damaged) in result.stderr and "damaged" in result.stderr
    assert problem in result.stderr and "Traceback" not in result.stderr
    assert folder.snapshot() == before


# -- (4) Ctrl-C and SIGTERM end the runs through the failure path ------------------------------


@pytest.mark.parametrize(
    ("signum", "args"),
    [(signal.SIGINT, ("run",)), (signal.SIGTERM, ("invoke", "StarterFunction"))],
    ids=["ctrl-c-run", "sigterm-invoke-starter"],
)
def test_an_interrupted_load_leaves_no_lock_and_the_next_run_loads_the_window(
    folder: Folder, signum: int, args: tuple[str, ...]
) -> None:
    folder.onboard(SEED)
    process, _ = folder.start_paused("interrupted", "mid-load", *args)
    process.send_signal(signum)
    assert process.wait(WAIT) == 130, folder.output("interrupted")
    output = folder.output("interrupted")
    assert "interrupted" in output and "Traceback" not in output

    item = folder.items()["orders_s3"]
    assert "lockOwner" not in item, item
    assert item["lastRunStatus"] == "FAILED" and "Interrupted" in item["lastRunError"]
    folder.assert_sound()
    assert folder.lake_rows("orders_s3") == []

    rerun = folder.run("run")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "recovered" not in rerun.stderr  # nothing was left for the next writer
    assert folder.lake_rows("orders_s3") == list(range(1, 31))
    assert folder.items()["orders_s3"]["watermark"] == "30"


def test_invoke_starter_follows_its_executions_to_their_end(folder: Folder) -> None:
    folder.onboard(SEED)
    result = folder.run("invoke", "StarterFunction")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "loaded" in result.stdout and "No application metrics" not in result.stderr
    item = folder.items()["orders_s3"]
    assert "lockOwner" not in item and item["watermark"] == "30"
    # The readers show the same committed state.
    status = folder.run("status", "--json")
    assert json.loads(status.stdout)[0]["watermark"] == "30"
    runs = folder.run("runs", "orders_s3", "--json")
    assert [r["status"] for r in json.loads(runs.stdout)] == ["SUCCEEDED"]
