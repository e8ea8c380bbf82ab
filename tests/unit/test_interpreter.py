"""The offline interpreter parses a state machine definition once, and every execution
gets a program of its own."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from deltaload.local import interpreter

ROOT = Path(__file__).resolve().parents[2]
DEFINITION = (ROOT / "statemachine" / "load_table.asl.json").read_text()


class CountingParse:
    """moto's parser, counting its calls."""

    def __init__(self) -> None:
        interpreter.install()
        self.calls = 0

    def __call__(self, definition: str) -> tuple[Any, Any]:
        from antlr4 import CommonTokenStream, InputStream
        from moto.stepfunctions.parser.asl.antlr.runtime.ASLLexer import ASLLexer
        from moto.stepfunctions.parser.asl.antlr.runtime.ASLParser import ASLParser
        from moto.stepfunctions.parser.asl.parse.preprocessor import Preprocessor

        self.calls += 1
        tree = ASLParser(CommonTokenStream(ASLLexer(InputStream(definition)))).state_machine()
        return Preprocessor().visit(tree), tree


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(interpreter, "_parsed", {})
    monkeypatch.setattr(interpreter, "_cache_dir", None)


def _definition(number: int) -> str:
    # A definition of its own per test, so no earlier parse of it exists.
    document = json.loads(DEFINITION)
    document["Comment"] = f"test {number}"
    return json.dumps(document)


def test_a_definition_is_parsed_once_and_each_call_gets_its_own_program() -> None:
    parse = CountingParse()
    definition = _definition(1)
    first, tree = interpreter.parsed_program(parse, definition)
    second, _ = interpreter.parsed_program(parse, definition)
    third, _ = interpreter.parsed_program(parse, definition)
    assert parse.calls == 1
    assert tree is not None
    assert len({id(first), id(second), id(third)}) == 3
    assert type(first) is type(second) is type(third)


def test_the_parse_is_kept_in_the_cache_folder_for_the_next_command(tmp_path: Path) -> None:
    parse = CountingParse()
    definition = _definition(2)
    interpreter.use_cache(tmp_path / "cache")
    interpreter.parsed_program(parse, definition)
    assert [p.name.startswith("asl-") for p in (tmp_path / "cache").iterdir()] == [True]
    interpreter._parsed.clear()  # as a new process starts
    program, _ = interpreter.parsed_program(parse, definition)
    assert parse.calls == 1
    assert program is not None


def test_an_unreadable_cache_file_is_parsed_again(tmp_path: Path) -> None:
    parse = CountingParse()
    definition = _definition(3)
    interpreter.use_cache(tmp_path / "cache")
    interpreter.parsed_program(parse, definition)
    (cached,) = (tmp_path / "cache").iterdir()
    cached.write_bytes(b"not a pickle")
    interpreter._parsed.clear()
    program, tree = interpreter.parsed_program(parse, definition)
    assert parse.calls == 2
    assert tree is not None and program is not None


def test_another_definition_is_another_cache_entry(tmp_path: Path) -> None:
    parse = CountingParse()
    interpreter.use_cache(tmp_path / "cache")
    interpreter.parsed_program(parse, _definition(4))
    interpreter.parsed_program(parse, _definition(5))
    assert parse.calls == 2
    assert len(list((tmp_path / "cache").iterdir())) == 2
