"""Start-up: commands that do not need the emulated AWS or the engine do not import them.

Each command runs in a fresh interpreter (an import made by an earlier test would hide
one made by the command), on a state folder written as the runtime writes it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SEED = json.loads((ROOT / "controller_seed" / "orders.dynamodb.json").read_text())
# What only a writing command (or a run) needs.
HEAVY = ("moto", "pyarrow", "sqlalchemy", "boto3", "botocore", "deltaload.local.runtime")

PROBE = """
import runpy, sys
sys.argv = ["deltaload", *sys.argv[1:]]
try:
    runpy.run_module("deltaload.cli", run_name="__main__")
except SystemExit as end:
    code = end.code or 0
else:
    code = 0
print("IMPORTED", [m for m in {heavy!r} if m in sys.modules], file=sys.stderr)
sys.exit(code)
"""


# Appended to a probe's code: ``deltaload run`` in that interpreter, to its end.
RUN = """
import sys
from deltaload import cli
sys.argv = ["deltaload", "run"]
try:
    cli.main()
except SystemExit:
    pass
"""


def _python(code: str, folder: Path | None = None, *args: str) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter (in ``folder``, state folder ``state``)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "DELTALOAD_STATE_DIR": "state"}
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _probe(folder: Path, heavy: tuple[str, ...], args: list[str]) -> subprocess.CompletedProcess:
    """``deltaload ARGS`` in a fresh interpreter in ``folder``; stderr names the ``heavy``
    modules it imported."""
    return _python(PROBE.format(heavy=heavy), folder, *args)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    """A state folder holding one controller item and one run record, as files."""
    tables = tmp_path / "state" / "tables"
    tables.mkdir(parents=True)
    (tables / "ControllerTable.json").write_text(json.dumps([SEED]))
    record = {
        "targetTableName": {"S": "orders_s3"},
        "runId": {"S": "run-1"},
        "status": {"S": "SUCCEEDED"},
        "rows": {"N": "3"},
    }
    (tables / "RunHistoryTable.json").write_text(json.dumps([record]))
    (tmp_path / "item.json").write_text(json.dumps(SEED))
    return tmp_path


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["validate", "item.json"],
        ["status"],
        ["status", "--json"],
        ["runs", "orders_s3"],
        ["plan", "orders_s3"],
    ],
    ids=lambda args: " ".join(args),
)
def test_a_command_that_only_reads_imports_no_emulator_and_no_engine(
    state: Path, args: list[str]
) -> None:
    before = sorted(p.relative_to(state) for p in state.rglob("*"))
    # plan asks the source for the next window's rows (the source probe), through
    # SQLAlchemy; it still needs no emulator and no engine.
    heavy = tuple(m for m in HEAVY if not (args[0] == "plan" and m == "sqlalchemy"))
    result = _probe(state, heavy, args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "IMPORTED []" in result.stderr, result.stderr
    assert sorted(p.relative_to(state) for p in state.rglob("*")) == before
    shows = {"status": "orders_s3", "runs": "run-1", "plan": "table mapping"}
    assert shows.get(args[0], "") in result.stdout


def test_a_run_does_not_import_the_emulations_its_state_machine_never_calls(tmp_path: Path) -> None:
    # moto's Step Functions interpreter imports moto.batch for Batch tasks, and that
    # package imports the whole EC2 emulation; the definition calls neither.
    result = _probe(
        tmp_path, ("moto.stepfunctions.parser.asl.parse.asl_parser", "moto.ec2"), ["run"]
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "IMPORTED ['moto.stepfunctions.parser.asl.parse.asl_parser']" in result.stderr


def test_a_deferred_package_is_whole_for_whoever_uses_it() -> None:
    code = """
from deltaload.local import interpreter
interpreter.install()
import sys
assert "moto.ec2" not in sys.modules
from moto.batch import batch_backends
import moto.batch, moto.batch.models
assert moto.batch.batch_backends is moto.batch.models.batch_backends
from moto import mock_aws
import boto3
with mock_aws():
    batch = boto3.client("batch", region_name="eu-west-1")
    assert batch.describe_compute_environments()["computeEnvironments"] == []
print("WHOLE")
"""
    result = _python(code)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WHOLE" in result.stdout


def test_a_run_that_publishes_nothing_never_starts_the_glue_emulation(tmp_path: Path) -> None:
    # moto's Glue imports pyparsing, a quarter of a second; the template's databases are
    # created at the first Glue call instead (test_glue_catalog.py publishes through them).
    result = _probe(tmp_path, ("moto.glue", "pyparsing"), ["run"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "IMPORTED []" in result.stderr, result.stderr


def test_the_collector_is_off_for_start_up_only(tmp_path: Path) -> None:
    # main() turns the garbage collector off while modules and emulated services load,
    # and the runtime, once built, turns it back on: a long run's garbage is collected.
    code = (
        """
import gc, sys
from deltaload import cli
seen = []
real = cli.started_up
def spy():
    seen.append(("before", gc.isenabled()))
    real()
    seen.append(("after", gc.isenabled(), gc.get_freeze_count() > 0))
cli.started_up = spy
"""
        + RUN
        + """
print("SEEN", seen)
"""
    )
    result = _python(code, tmp_path)
    assert "SEEN [('before', False), ('after', True, True)]" in result.stdout, (
        result.stdout + result.stderr
    )


def test_a_run_lists_botocore_s_service_folders_once_per_kind_of_model(tmp_path: Path) -> None:
    # A new botocore loader lists ~400 service folders before it finds a model (15-30 ms);
    # botocore's sessions and moto's models each come from one loader per process.
    code = (
        """
import sys
from botocore.loaders import Loader
from deltaload import cli
scans = set()
real = Loader.list_available_services  # cached per loader and kind of model
def counted(self, type_name):
    scans.add((id(self), type_name))  # a loader's first call for a kind is a scan
    return real(self, type_name)
Loader.list_available_services = counted
"""
        + RUN
        + """
print("SCANS", ",".join(sorted(kind for _, kind in scans)))
"""
    )
    result = _python(code, tmp_path)
    assert "SCANS" in result.stdout, result.stdout + result.stderr
    kinds = result.stdout.split("SCANS ", 1)[1].split()[0].split(",")
    # botocore's shared loader and moto's own: at most one scan each per kind of model
    assert max(kinds.count(kind) for kind in kinds) <= 2, kinds
