"""The command line's habits (options anywhere, --json, 80 columns, NO_COLOR, completion)
and the commands that operate a table by hand (retry, reset), offline."""

from __future__ import annotations

import json
import re
import sqlite3

import pytest

from deltaload.cli import app
from deltaload.terminal import hoist_options
from tests.integration.conftest import ROOT, write

SEED = ROOT / "controller_seed"
NARROW = {"COLUMNS": "80"}
COLOUR = re.compile(r"\x1b\[(?:\d+;)*3\d")  # an ANSI foreground colour


@pytest.fixture
def loaded(cli):
    """The seed orders item onboarded and loaded once (watermark 30)."""
    assert cli("onboard", str(SEED / "orders.json")).exit_code == 0
    assert cli("run").exit_code == 0
    return cli


def _group():
    import typer

    return typer.main.get_command(app)


def test_options_of_the_command_line_move_before_the_command():
    group = _group()
    assert hoist_options(group, ["status", "--state-dir", "x", "--json"]) == [
        "--state-dir",
        "x",
        "status",
        "--json",
    ]
    assert hoist_options(group, ["runs", "t", "--stack=prod", "--region", "eu-west-1"]) == [
        "--stack=prod",
        "--region",
        "eu-west-1",
        "runs",
        "t",
    ]
    # After --, everything is the command's: a file may be called --source.
    assert hoist_options(group, ["validate", "--", "--source"]) == ["validate", "--", "--source"]
    # Options given before the command stay where they are.
    assert hoist_options(group, ["--state-dir", "x", "status"]) == ["--state-dir", "x", "status"]


def test_status_with_the_state_dir_after_the_command(loaded, tmp_path, monkeypatch):
    state = str(tmp_path / "state")
    monkeypatch.delenv("DELTALOAD_STATE_DIR")
    before = loaded("--state-dir", state, "status", "--json")
    after = loaded("status", "--state-dir", state, "--json")
    assert before.exit_code == after.exit_code == 0
    assert json.loads(after.stdout) == json.loads(before.stdout)
    assert json.loads(after.stdout)[0]["watermark"] == "30"
    # And without it, the default folder (which has nothing) is read: the option was used.
    empty = loaded("--project-root", str(ROOT), "status", "--state-dir", str(tmp_path / "none"))
    assert "no controller items yet" in empty.output


def test_every_command_that_prints_a_table_has_json(loaded):
    run = loaded("run", "--json")
    assert run.exit_code == 0, run.output
    summary = json.loads(run.stdout)
    [execution] = summary["executions"]
    assert (execution["table"], execution["result"], execution["status"]) == (
        "orders_s3",
        "nothing to load",
        "SUCCEEDED",
    )
    assert json.loads(loaded("status", "--json").stdout)[0]["targetTableName"] == "orders_s3"
    records = json.loads(loaded("runs", "orders_s3", "--json").stdout)
    assert [r["status"] for r in records] == ["SUCCEEDED", "SUCCEEDED"]
    plan = json.loads(loaded("plan", "orders_s3", "--json").stdout)
    assert (plan["window"], plan["watermark"]) == ("[31, max loaded value]", "30")
    assert plan["tableMapping"]["rules"][0]["filters"][0]["column-name"] == "row_id"
    invoked = json.loads(loaded("invoke", "StarterFunction", "--json").stdout)
    assert [e["table"] for e in invoked["executions"]] == ["orders_s3"]


def _words_intact(output: str, *values: str) -> None:
    for value in values:
        assert value in output, f"{value!r} split or missing in:\n{output}"


def test_tables_fit_80_columns_without_splitting_a_value(loaded, tmp_path):
    # A second table with a long name and a string filter, so the columns compete.
    seed = json.loads((SEED / "orders.json").read_text())
    other = {**seed, "targetTableName": "orders_eu_archive_v2"}
    assert loaded("onboard", write(tmp_path, "other.json", other)).exit_code == 0
    run = loaded("run", env=NARROW)
    status = loaded("status", env=NARROW)
    runs = loaded("runs", "orders_s3", env=NARROW)
    for result in (run, status, runs):
        assert result.exit_code == 0, result.output
        widths = [len(line) for line in result.output.splitlines()]
        assert max(widths) <= 80, result.output
    # Values wrap at their spaces when they must, never inside a word.
    _words_intact(status.output, "SUCCEEDED", "orders_eu_archive_v2", "row_id", "gte")
    _words_intact(runs.output, "SUCCEEDED", "1 .. 30")
    _words_intact(run.output, "orders_eu_archive_v2", "nothing to load", "[31,", "value]")
    # Timestamps to the minute: 2024-05-01 12:00, not 2024-05-01T12:00:00.123456+00:00.
    wide = loaded("status", env={"COLUMNS": "120"}).output
    assert re.search(r"\b\d{4}-\d\d-\d\d \d\d:\d\d\b", wide), wide
    assert not re.search(r"\d\d:\d\d:\d\d", status.output + wide), wide


def test_no_color_is_honoured(loaded):
    coloured = loaded("status", env={"FORCE_COLOR": "1", "NO_COLOR": ""})
    assert COLOUR.search(coloured.output), "FORCE_COLOR alone should colour the status"
    plain = loaded("status", env={"FORCE_COLOR": "1", "NO_COLOR": "1"})
    assert plain.exit_code == 0 and "SUCCEEDED" in plain.output
    assert not COLOUR.search(plain.output), repr(plain.output)


def test_shell_completion_script():
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, ["--show-completion", "bash"], prog_name="deltaload")
    assert result.exit_code == 0
    assert "_DELTALOAD_COMPLETE=complete_bash" in result.stdout
    assert "complete -o default -F _deltaload_completion deltaload" in result.stdout


# -- retry ---------------------------------------------------------------------------------------


def test_retry_reruns_a_failed_table_and_refuses_one_that_did_not_fail(cli, tmp_path):
    item = {**json.loads((SEED / "orders.json").read_text()), "sourceTable": "late_table"}
    assert cli("onboard", write(tmp_path, "item.json", item)).exit_code == 0
    refused = cli("retry", "orders_s3")
    assert refused.exit_code == 1 and "it has not run yet" in refused.output
    assert cli("run").exit_code == 1  # the source table does not exist yet
    with sqlite3.connect(cli.source) as db:
        db.execute("CREATE TABLE late_table AS SELECT * FROM orders_rds")
    retried = cli("retry", "orders_s3", "--json")
    assert retried.exit_code == 0, retried.output
    [execution] = json.loads(retried.stdout)["executions"]
    assert (execution["result"], execution["rows"], execution["watermark"]) == ("loaded", 30, "30")
    again = cli("retry", "orders_s3")
    assert again.exit_code == 1
    assert "its last run is SUCCEEDED, so there is nothing to retry" in again.output


def test_retry_of_an_unknown_table(cli):
    result = cli("retry", "nope")
    assert result.exit_code == 1 and "no controller item 'nope'" in result.output


# -- reset ---------------------------------------------------------------------------------------


def test_reset_moves_the_watermark_and_records_who_when_old_new(loaded):
    moved = loaded("reset", "orders_s3", "--to", "10", "--json")
    assert moved.exit_code == 0, moved.output
    record = json.loads(moved.stdout)
    assert (record["status"], record["previousWatermark"], record["watermark"]) == (
        "RESET",
        "30",
        "10",
    )
    assert "@" in record["by"] and record["startedAt"]
    [item] = json.loads(loaded("status", "--json").stdout)
    assert item["watermark"] == "10"
    history = json.loads(loaded("runs", "orders_s3", "--json").stdout)
    assert history[-1] == record
    # The next run loads from the new watermark on, up to the source's maximum.
    [execution] = json.loads(loaded("run", "--json").stdout)["executions"]
    assert (execution["window"], execution["rows"]) == ("[11, 30]", 20)


def test_reset_without_to_drops_the_watermark(loaded):
    dropped = loaded("reset", "orders_s3")
    assert dropped.exit_code == 0
    assert "watermark '30' dropped: the next run starts at startvalue" in dropped.output
    [item] = json.loads(loaded("status", "--json").stdout)
    assert "watermark" not in item
    record = json.loads(loaded("runs", "orders_s3", "--json").stdout)[-1]
    assert (record["previousWatermark"], "watermark" in record) == ("30", False)


def test_reset_to_a_value_of_the_wrong_kind_writes_nothing(loaded):
    refused = loaded("reset", "orders_s3", "--to", "yesterday")
    assert refused.exit_code == 1
    assert "watermark" in refused.output and "integer" in refused.output
    [item] = json.loads(loaded("status", "--json").stdout)
    assert item["watermark"] == "30"
    assert len(json.loads(loaded("runs", "orders_s3", "--json").stdout)) == 1


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["invoke", "StarterFunction", "--stack", "prod"], "`deltaload invoke` works offline only"),
        (["demo", "--stack", "prod"], "`deltaload demo` works offline only"),
        (["run", "--no-wait"], "--no-wait needs --stack"),
        (["validate"], "give item files to check, or --stack NAME"),
    ],
)
def test_what_only_one_side_can_do_is_refused_plainly(cli, args, says):
    result = cli(*args)
    assert result.exit_code == 1 and says in result.output
