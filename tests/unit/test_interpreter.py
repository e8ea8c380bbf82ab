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
    monkeypatch.setattr(interpreter, "_cache_dirs", ())


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


def test_a_new_state_folder_finds_the_parse_in_the_shared_cache(tmp_path: Path) -> None:
    parse = CountingParse()
    definition = _definition(6)
    shared = tmp_path / "user-cache"
    interpreter.use_cache(tmp_path / "first" / "cache", shared)
    interpreter.parsed_program(parse, definition)
    interpreter._parsed.clear()  # another process, another state folder
    interpreter.use_cache(tmp_path / "second" / "cache", shared)
    program, tree = interpreter.parsed_program(parse, definition)
    assert parse.calls == 1
    assert program is not None and tree is None
    assert oct((shared).stat().st_mode & 0o777) == oct(0o700)


def test_a_cache_file_others_can_write_is_not_loaded(tmp_path: Path) -> None:
    parse = CountingParse()
    definition = _definition(7)
    interpreter.use_cache(tmp_path / "cache")
    interpreter.parsed_program(parse, definition)
    (cached,) = (tmp_path / "cache").iterdir()
    cached.chmod(0o666)  # a pickle runs code when loaded: only this user's own
    interpreter._parsed.clear()
    interpreter.parsed_program(parse, definition)
    assert parse.calls == 2


def test_a_cache_folder_that_cannot_be_written_costs_a_parse_not_the_command(
    tmp_path: Path,
) -> None:
    parse = CountingParse()
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder would be")
    interpreter.use_cache(tmp_path / "cache", blocked / "cache")
    program, tree = interpreter.parsed_program(parse, _definition(8))
    assert program is not None and tree is not None
    assert len(list((tmp_path / "cache").iterdir())) == 1  # the other folder still has it


def test_the_shared_cache_folder_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DELTALOAD_CACHE_DIR", "/somewhere/cache")
    assert interpreter.shared_cache_dir() == Path("/somewhere/cache")
    monkeypatch.setenv("DELTALOAD_CACHE_DIR", "")
    assert interpreter.shared_cache_dir() is None
    monkeypatch.delenv("DELTALOAD_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", "/home/someone/.cache")
    assert interpreter.shared_cache_dir() == Path("/home/someone/.cache/deltaload")
