"""Bad input is refused early and clearly; odd but legal data passes through untouched.

``invalid_items.json`` is a corpus of hand-written controller items that are each wrong in
one way (the entry names the attribute the error must name). Each is refused, naming the
table and that attribute, by ``deltaload validate``, by ``deltaload onboard`` (which then
writes nothing) and by the starter (which reports it under ``invalid`` and starts nothing,
and still starts the valid tables next to it). Entries marked ``dynamodb`` are DynamoDB JSON;
those marked ``dynamodb_refuses`` hold values DynamoDB itself refuses to store, so the
starter can never meet them: for those the test checks that the put is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from typer.testing import CliRunner

from deltaload.cli import app
from deltaload.items import ITEM_DEFINITION_MAX_BYTES, to_dynamodb
from deltaload.local.runtime import LocalRuntime
from tests.guarantees.conftest import Ticks, open_runtime

CORPUS: list[dict[str, Any]] = json.loads(
    (Path(__file__).with_name("invalid_items.json")).read_text(encoding="utf-8")
)
VALID = {
    "targetTableName": "good_one",
    "activeflag": "true",
    "sourceSchema": "dwh",
    "sourceTable": "orders",
    "filtercolumn": "row_id",
    "filteroperator": "gte",
    "filtercolumntype": "integer",
    "startvalue": "1",
    "ouputs3Prefix": "lake",
}
# Entries a JSON file cannot hold readably (NaN, Infinity) or that are too large to keep in it.
CORPUS += [
    {
        "name": "startvalue NaN",
        "attribute": "startvalue",
        "dynamodb_refuses": True,
        "item": {**VALID, "targetTableName": "gen_01", "startvalue": math.nan},
    },
    {
        "name": "endvalue Infinity",
        "attribute": "endvalue",
        "dynamodb_refuses": True,
        "item": {**VALID, "targetTableName": "gen_02", "endvalue": math.inf},
    },
    {
        # Fits DynamoDB's 400 KB but leaves no room for the run state a run records.
        "name": "item too large for its run state",
        "attribute": "description",
        "item": {**VALID, "targetTableName": "gen_03", "description": "d" * 395_000},
    },
    {
        "name": "item over DynamoDB's 400 KB",
        "attribute": "description",
        "dynamodb_refuses": True,
        "item": {**VALID, "targetTableName": "gen_04", "description": "d" * 450_000},
    },
]
IDS = [c["name"] for c in CORPUS]


def _table(entry: dict[str, Any]) -> str:
    name = entry["item"]["targetTableName"]
    return name["S"] if entry.get("dynamodb") else name


def test_corpus_is_big_and_varied() -> None:
    assert len(CORPUS) >= 90
    assert len({c["attribute"] for c in CORPUS}) >= 30
    assert len({_table(c) for c in CORPUS}) == len(CORPUS)
    assert ITEM_DEFINITION_MAX_BYTES < 395_000  # gen_03 really is over the limit


def _output(result: Any) -> str:
    text = result.output
    with contextlib.suppress(ValueError, AttributeError):  # click < 8.2 mixes stderr in
        text += result.stderr
    return text


def _names_table_and_attribute(text: str, entry: dict[str, Any]) -> None:
    table = _table(entry)
    assert f"table {table!r}" in text, text[:2000]
    assert f"{entry['attribute']}: found" in text, text[:2000]
    value = entry["item"].get(entry["attribute"])
    if isinstance(value, str) and ("[" in value or "]" in value):  # console markup
        assert value in text, f"the offending value {value!r} is not shown: {text}"


def _write(tmp_path: Path, entry: dict[str, Any]) -> Path:
    path = tmp_path / "item.json"
    path.write_text(json.dumps(entry["item"], ensure_ascii=False), encoding="utf-8")
    return path


@pytest.mark.parametrize("entry", CORPUS, ids=IDS)
def test_validate_refuses(entry: dict[str, Any], tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["--state-dir", str(tmp_path / "state"), "validate", str(_write(tmp_path, entry))]
    )
    assert result.exit_code == 1, (result.exit_code, _output(result), result.exception)
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # no crash
    _names_table_and_attribute(_output(result), entry)


@pytest.fixture(scope="module")
def onboarded_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local state folder holding one valid item, onboarded through the CLI."""
    base = tmp_path_factory.mktemp("onboard")
    good = base / "good.json"
    good.write_text(json.dumps(VALID))
    state = base / "state"
    result = CliRunner().invoke(app, ["--state-dir", str(state), "onboard", str(good)])
    assert result.exit_code == 0, _output(result)
    return state


def _fingerprint(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "logs" not in p.parts
    }


@pytest.mark.parametrize("entry", CORPUS, ids=IDS)
def test_onboard_refuses_and_writes_nothing(
    entry: dict[str, Any], onboarded_state: Path, tmp_path: Path
) -> None:
    before = _fingerprint(onboarded_state)
    # The invalid item next to a valid one: nothing at all may be written.
    good = tmp_path / "good2.json"
    good.write_text(json.dumps({**VALID, "targetTableName": "good_two"}))
    result = CliRunner().invoke(
        app,
        [
            "--state-dir",
            str(onboarded_state),
            "onboard",
            str(good),
            str(_write(tmp_path, entry)),
        ],
    )
    assert result.exit_code == 1, (result.exit_code, _output(result), result.exception)
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # no crash
    _names_table_and_attribute(_output(result), entry)
    assert "nothing was written" in _output(result)
    assert _fingerprint(onboarded_state) == before


def test_onboard_refusals_left_only_the_valid_item(onboarded_state: Path) -> None:
    from tests.integration.conftest import ROOT

    with LocalRuntime(ROOT, onboarded_state) as rt:
        assert [i["targetTableName"] for i in rt.items()] == ["good_one"]


@pytest.fixture(scope="module")
def starter_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntime]:
    base = tmp_path_factory.mktemp("starter")
    with open_runtime(base / "state", f"sqlite:///{base / 'source.sqlite'}") as rt:
        yield rt


@pytest.mark.parametrize("entry", CORPUS, ids=IDS)
def test_starter_reports_and_starts_nothing(
    entry: dict[str, Any], starter_runtime: LocalRuntime
) -> None:
    rt = starter_runtime
    table = _table(entry)
    dynamodb = rt.session.client("dynamodb")
    if entry.get("dynamodb_refuses"):
        # DynamoDB refuses the value, so no starter can ever read it from the table.
        with pytest.raises((ClientError, TypeError)) as refused:
            item = entry["item"] if entry.get("dynamodb") else to_dynamodb(entry["item"])
            dynamodb.put_item(TableName=rt.controller_table, Item=item)
        if isinstance(refused.value, ClientError):
            assert refused.value.response["Error"]["Code"] == "ValidationException"
        return
    # Written by hand, past every check (as `aws dynamodb put-item` would).
    item = entry["item"] if entry.get("dynamodb") else to_dynamodb(entry["item"])
    dynamodb.put_item(TableName=rt.controller_table, Item=item)
    try:
        before = rt.item(table)
        result = rt.tick(now=Ticks()())
        assert result.executions == []
        assert result.starter["started"] == []
        reported = {i["table"]: i["errors"] for i in result.starter["invalid"]}
        assert list(reported) == [table], result.starter
        assert any(e.startswith(f"{entry['attribute']}: found") for e in reported[table])
        assert rt.item(table) == before
        assert rt.history() == []
        assert rt.keys() == []
        sfn = rt.session.client("stepfunctions")
        assert sfn.list_executions(stateMachineArn=rt.state_machine_arn)["executions"] == []
    finally:
        dynamodb.delete_item(TableName=rt.controller_table, Key={"targetTableName": {"S": table}})
