"""The `deltaload` command line, offline: exit codes and what each command shows."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow.dataset as ds
import pytest

from tests.integration.conftest import ROOT, write

SEED = ROOT / "controller_seed"


def test_validate_exit_codes(cli, tmp_path):
    ok = cli("validate", str(SEED / "orders.json"), str(SEED / "orders.dynamodb.json"))
    assert ok.exit_code == 0 and ok.output.count("ok") == 2
    bad = write(
        tmp_path,
        "bad.json",
        {**json.loads((SEED / "orders.json").read_text()), "filteroperator": "gt"},
    )
    result = cli("validate", bad)
    assert result.exit_code == 1
    assert "orders_s3" in result.output and "filteroperator" in result.output


def test_unreadable_file_is_reported(cli, tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    result = cli("validate", str(path))
    assert result.exit_code == 1 and "cannot read JSON" in result.output


def test_onboard_run_status_runs_and_plan(cli, tmp_path):
    assert cli("onboard", str(SEED / "orders.json")).exit_code == 0
    run = cli("run")
    assert run.exit_code == 0, run.output
    assert "orders_s3" in run.output

    assert "orders_s3" in cli("status").output
    [item] = json.loads(cli("status", "--json").output)
    assert (item["targetTableName"], item["watermark"], item["lastRunRows"]) == (
        "orders_s3",
        "30",
        30,
    )

    [record] = json.loads(cli("runs", "orders_s3", "--json").output)
    assert (record["status"], record["rows"]) == ("SUCCEEDED", 30)

    plan = cli("plan", "orders_s3")
    assert plan.exit_code == 0
    assert "[31, max loaded value]" in plan.output
    assert '"filter-operator": "gte"' in plan.output
    assert "window [31, max loaded value]: 0 rows at the source (probed now)" in plan.output
    assert "the next run loads nothing" in plan.output

    lake = tmp_path / "state" / "s3"
    files = [f for f in lake.rglob("*.parquet")]
    assert ds.dataset(files).count_rows() == 30


def test_onboard_keeps_the_watermark_unless_reset(cli):
    assert cli("onboard", str(SEED / "orders.json")).exit_code == 0
    assert cli("run").exit_code == 0
    assert cli("onboard", str(SEED / "orders.json")).exit_code == 0
    assert "[31, max loaded value]" in cli("plan", "orders_s3").output
    assert cli("onboard", "--reset", str(SEED / "orders.json")).exit_code == 0
    # From startvalue again, up to the maximum the source probe finds.
    assert "orders_s3: [1, 30]" in cli("plan", "orders_s3").output


def test_onboard_writes_nothing_when_any_item_is_invalid(cli, tmp_path):
    bad = write(tmp_path, "bad.json", [{"targetTableName": "other", "activeflag": "true"}])
    result = cli("onboard", str(SEED / "orders.json"), bad)
    assert result.exit_code == 1
    assert "nothing was written" in result.output
    assert "no controller items yet" in cli("status").output


def test_run_exits_non_zero_when_a_table_fails(cli, tmp_path):
    item = {**json.loads((SEED / "orders.json").read_text()), "sourceTable": "missing_table"}
    assert cli("onboard", write(tmp_path, "item.json", item)).exit_code == 0
    result = cli("run")
    assert result.exit_code == 1
    # The outcome says why, not only that it failed.
    assert "failed" in result.output and "no source table matches" in result.output


def test_invoke_runs_one_function_of_the_template(cli, tmp_path):
    assert cli("onboard", str(SEED / "orders.json")).exit_code == 0
    event = write(tmp_path, "event.json", {"tables": ["nothing_here"]})
    result = cli("invoke", "StarterFunction", "--event", event)
    assert result.exit_code == 0
    summary = json.loads(result.output)
    assert summary["started"] == []
    assert summary["skipped"] == [{"table": "nothing_here", "reason": "no active controller item"}]
    unknown = cli("invoke", "NoSuchFunction")
    assert unknown.exit_code == 1 and "no function 'NoSuchFunction'" in unknown.output


def test_plan_prints_the_probed_rows_of_the_next_window(cli, tmp_path):
    assert cli("onboard", str(SEED / "orders.json")).exit_code == 0
    plan = cli("plan", "orders_s3")
    assert plan.exit_code == 0, plan.output
    assert "window [1, 30]: 30 rows at the source (probed now)" in plan.output
    probed = json.loads(cli("plan", "orders_s3", "--json").output)["probe"]
    assert probed == {"maximum": "30", "windows": [{"lower": "1", "upper": "30", "rows": 30}]}


def test_plan_of_an_unknown_table(cli):
    result = cli("plan", "nope")
    assert result.exit_code == 1 and "no controller item 'nope'" in result.output


def test_demo(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # the printed commands on one line each
    result = cli("demo", "--rows", "40")
    assert result.exit_code == 0, result.output
    assert "run 1: initial load" in result.output and "run 2: delta" in result.output
    lake = next((tmp_path / "state" / "demo" / "s3").glob("[!.]*")) / "datalake" / "dwh"
    orders = ds.dataset(lake / "orders_s3", ignore_prefixes=["_"])
    assert orders.count_rows() == 40 + 10  # every order once
    ids = orders.to_table(columns=["row_id"]).column(0).to_pylist()
    assert sorted(ids) == list(range(1, 51))
    changes = ds.dataset(lake / "orders_changes_s3", ignore_prefixes=["_"])
    assert changes.count_rows() == 40 + 10 + 4  # plus the 4 updated versions
    # The commands the demo suggests read every run (by column name).
    lines = result.output.splitlines()
    python = next(line.strip() for line in lines if line.strip().startswith("python -c"))
    code = shlex.split(python)[2]
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert ran.stdout.strip() == "50", ran.stderr
    query = shlex.split(next(line.strip() for line in lines if "duckdb -c" in line))[2]
    counts = dict(duckdb.sql(query).fetchall())
    assert sum(counts.values()) == 40 + 10 + 4


def test_problems_are_not_wrapped_however_long(cli, tmp_path):
    folder = tmp_path / ("a-long-folder-name-" * 6)
    folder.mkdir()
    path = folder / "broken.json"
    path.write_text("{not json")
    result = cli("validate", str(path))
    assert result.exit_code == 1
    assert f"{path}: cannot read JSON" in result.output.splitlines()[0]


def _lock(state: Path, table: str) -> None:
    """Leave the table locked by run-1, as a process killed during its run would."""
    from deltaload.local.runtime import LocalRuntime

    with LocalRuntime(ROOT, state) as rt:
        rt.session.client("dynamodb").update_item(
            TableName=rt.controller_table,
            Key={"targetTableName": {"S": table}},
            UpdateExpression="SET lockOwner = :run, lockExpiresAt = :until",
            ExpressionAttributeValues={":run": {"S": "run-1"}, ":until": {"N": "9999999999"}},
        )


def test_onboard_first_recovers_a_lock_left_by_a_dead_process(cli, tmp_path):
    # A live run would hold the state folder's writer lock, so onboard would wait for it;
    # a table lock found in the folder belongs to a dead process and is recovered first.
    # (Refusing every write while a live run holds a lock: tests/workflow/test_onboard.py.)
    seed = json.loads((SEED / "orders.json").read_text())
    assert cli("onboard", str(SEED / "orders.json")).exit_code == 0
    _lock(tmp_path / "state", "orders_s3")
    other = write(tmp_path, "other.json", {**seed, "targetTableName": "orders_other"})
    changed = write(tmp_path, "changed.json", {**seed, "description": "changed"})
    result = cli("onboard", other, changed)
    assert result.exit_code == 0, result.output
    assert "recovered orders_s3: run run-1" in result.output
    items = {i["targetTableName"]: i for i in json.loads(cli("status", "--json").output)}
    assert set(items) == {"orders_s3", "orders_other"}
    assert items["orders_s3"]["description"] == "changed"
    assert "lockOwner" not in items["orders_s3"]
    [record] = json.loads(cli("runs", "orders_s3", "--json").output)
    assert (record["runId"], record["status"]) == ("run-1", "FAILED")


def test_onboard_refuses_the_same_table_twice(cli, tmp_path):
    seed = json.loads((SEED / "orders.json").read_text())
    twice = write(tmp_path, "twice.json", [seed, {**seed, "startvalue": "5"}])
    result = cli("onboard", twice)
    assert result.exit_code == 1
    assert "the item for table 'orders_s3' is given twice" in result.output
    assert "no controller items yet" in cli("status").output


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (
            {"filtercolumn": "status", "filtercolumntype": "string", "startvalue": "A"},
            "was recorded on filter column 'row_id', not 'status'",
        ),
        (
            {"filtercolumntype": "string"},
            "was recorded for integer values of 'row_id', not string ones",
        ),
        (
            {"filteroperator": "between", "endvalue": "40"},
            "a one-shot between item only records 'loaded'",
        ),
    ],
)
def test_reonboarding_onto_another_filter_refuses_the_old_watermark(cli, tmp_path, change, reason):
    assert cli("onboard", str(SEED / "orders.json")).exit_code == 0
    assert cli("run").exit_code == 0
    item = {**json.loads((SEED / "orders.json").read_text()), **change}
    path = write(tmp_path, "moved.json", item)
    refused = cli("onboard", path)
    assert refused.exit_code == 1
    assert "orders_s3: the recorded watermark '30'" in refused.output
    assert reason in refused.output
    assert "pass --reset" in refused.output and "nothing was written" in refused.output
    [kept] = json.loads(cli("status", "--json").output)
    assert (kept["filtercolumn"], kept["watermark"]) == ("row_id", "30")
    assert cli("onboard", "--reset", path).exit_code == 0
    [moved] = json.loads(cli("status", "--json").output)
    assert "watermark" not in moved and moved["filtercolumn"] == item["filtercolumn"]


def test_an_item_written_as_the_published_sample_writes_it_loads(cli, tmp_path):
    # aws-samples/delta-data-loads-data-lakes: its starter (src/etlLambdaStartCDCWorkflow/app.py)
    # reads activeflag as a string and starts items whose flag is "Y"; the task function
    # (src/etlCreateReplicationTaskForTable/app.py) reads every other attribute as a string,
    # endvalue included, and replication_task_settings as a JSON string.
    sample_settings = (
        '{"Logging": {"EnableLogging": true,"LogComponents": [{"Id": "SOURCE_UNLOAD",'
        '"Severity": "LOGGER_SEVERITY_DEFAULT"},{"Id": "SOURCE_CAPTURE","Severity": '
        '"LOGGER_SEVERITY_DEFAULT"},{"Id": "TARGET_LOAD","Severity": "LOGGER_SEVERITY_DEFAULT"},'
        '{"Id": "TARGET_APPLY","Severity": "LOGGER_SEVERITY_INFO"},{"Id": "TASK_MANAGER",'
        '"Severity": "LOGGER_SEVERITY_DEBUG"}]}}'
    )

    def sample_item(target: str, flag: str) -> dict[str, dict[str, str]]:
        return {
            "targetTableName": {"S": target},
            "activeflag": {"S": flag},
            "sourceSchema": {"S": "dwh"},
            "sourceTable": {"S": "orders_rds"},
            "filtercolumn": {"S": "row_id"},
            "filteroperator": {"S": "gte"},
            "startvalue": {"S": "1"},
            "endvalue": {"S": ""},
            "ouputs3Prefix": {"S": "datalake"},
            "replication_task_settings": {"S": sample_settings},
        }

    on, off = sample_item("orders_sample", "Y"), sample_item("orders_switched_off", "N")
    # Its between filter: both bounds in startvalue, "start,end", and no endvalue.
    between = {
        **sample_item("orders_sample_slice", "Y"),
        "filteroperator": {"S": "between"},
        "startvalue": {"S": "11,20"},
    }
    del between["endvalue"]
    path = write(tmp_path, "sample.json", [on, off, between])
    assert cli("validate", path).exit_code == 0
    assert cli("onboard", path).exit_code == 0
    run = cli("run")
    assert run.exit_code == 0, run.output
    status = {i["targetTableName"]: i for i in json.loads(cli("status", "--json").output)}
    assert (status["orders_sample"]["watermark"], status["orders_sample"]["lastRunRows"]) == (
        "30",
        30,
    )
    assert "lastRunStatus" not in status["orders_switched_off"]
    assert status["orders_sample_slice"]["lastRunRows"] == 10
    lake = tmp_path / "state" / "s3"
    files = [f for f in lake.rglob("*.parquet") if "/orders_sample/" in str(f)]
    assert ds.dataset(files).count_rows() == 30
    sliced = [f for f in lake.rglob("*.parquet") if "/orders_sample_slice/" in str(f)]
    assert sorted(ds.dataset(sliced).to_table()["row_id"].to_pylist()) == list(range(11, 21))


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("postgresql://reader:secret@db:abc/test", "cannot read the source URL"),
        ("mysql+pymysql://root@db:70000/test", "has port 70000"),
    ],
)
def test_a_source_url_with_a_bad_port_is_an_error_not_a_traceback(cli, url, says):
    result = cli("--source", url, "status")
    assert result.exit_code == 1
    assert says in result.output and "a number from 1 to 65535" in result.output
    assert "secret" not in result.output


def test_plan_lists_each_window_and_run_shows_each_windows_progress(cli, tmp_path):
    item = {
        **json.loads((SEED / "orders.json").read_text()),
        "endvalue": "30",
        "windowsize": "10",
        "windowconcurrency": "2",
    }
    assert cli("onboard", write(tmp_path, "windows.json", item)).exit_code == 0

    plan = cli("plan", "orders_s3")
    assert plan.exit_code == 0, plan.output
    assert "orders_s3: [1, 30]" in plan.output
    assert "3 windows, 2 at once:" in plan.output
    for index, window in enumerate(["[1, 10]", "[11, 20]", "[21, 30]"], start=1):
        assert f"{index}. {window}" in plan.output
    document = json.loads(cli("plan", "orders_s3", "--json").output)
    assert [(w["index"], w["lower"], w["upper"]) for w in document["windows"]] == [
        (1, "1", "10"),
        (2, "11", "20"),
        (3, "21", "30"),
    ]
    assert document["concurrency"] == 2

    run = cli("run")
    assert run.exit_code == 0, run.output
    lines = [line for line in run.output.splitlines() if "LoadWindows:" in line]
    assert lines, run.output
    for index in (1, 2, 3):  # every window's progress was shown, to its verification
        assert any(f"{index} verified" in line for line in lines), lines
    [record] = json.loads(cli("runs", "orders_s3", "--json").output)
    assert (record["status"], record["rows"], record["watermark"]) == ("SUCCEEDED", 30, "30")


def test_status_backlog_counts_rows_and_windows_behind_the_source(cli, tmp_path):
    item = {
        **json.loads((SEED / "orders.json").read_text()),
        "windowsize": "10",
        "maxwindows": "2",
    }
    assert cli("onboard", write(tmp_path, "windows.json", item)).exit_code == 0
    before = cli("status", "--backlog")
    assert before.exit_code == 0, before.output
    # 30 source rows, none loaded: three windows of 10, two per run.
    assert "orders_s3: backlog 30 rows above the watermark, 3 window(s): 2 run(s)" in (
        before.output
    )
    [document] = json.loads(cli("status", "--backlog", "--json").output)
    assert document["backlog"] == {"rows": 30, "maximum": "30", "windows": 3, "windowsPerRun": 2}

    assert cli("run").exit_code == 0
    after = json.loads(cli("status", "--backlog", "--json").output)[0]["backlog"]
    assert (after["rows"], after["windows"]) == (10, 1)  # the third window waits
    assert "backlog" not in json.loads(cli("status", "--json").output)[0]
