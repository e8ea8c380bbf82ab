"""The ASL against the run document's JSON Schema: every path it reads or writes is a field
of the model present at that point of the flow (a list of problems; empty = fine).

What each Lambda Task adds comes from its handler (``handler.step.result_key``, the key
its result model declares); what a Catch or Pass adds from its ResultPath. A path read at
a state must name a key that every way into that state has written (``IsPresent`` asks
whether it is there, so it may be read anywhere), and each further step of the path a
field of every model the key may hold there.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from deltaload.schemawalk import members
from tests.statemachine.asl_rules import LAMBDA_INVOKE, function_of

_PATH = re.compile(r"\$((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")
_INPUT = frozenset({"table", "runId"})


def _segments(path: str) -> list[str]:
    match = _PATH.fullmatch(path)
    return match.group(1)[1:].split(".") if match else []


def _rules(rule: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield rule
    for nested in (
        *rule.get("And", []),
        *rule.get("Or", []),
        *([rule["Not"]] if "Not" in rule else []),
    ):
        yield from _rules(nested)


def reads(state: dict[str, Any]) -> list[tuple[str, bool]]:
    """(path, may be absent) of every document path a state reads."""
    found: list[tuple[str, bool]] = []
    for choice in state.get("Choices", []):
        for rule in _rules(choice):
            if "Variable" in rule:
                found.append((rule["Variable"], "IsPresent" in rule))
    for field in ("SecondsPath", "TimestampPath", "InputPath", "ItemsPath"):
        if state.get(field) not in (None, "$"):
            found.append((state[field], False))
    # A Lambda Task's OutputPath ($.Payload) selects from the Invoke response, not the document.
    lambda_task = state.get("Type") == "Task" and state.get("Resource") == LAMBDA_INVOKE
    if not lambda_task and state.get("OutputPath") not in (None, "$"):
        found.append((state["OutputPath"], False))
    for key, value in (state.get("Parameters") or {}).items():
        if key.endswith(".$") and isinstance(value, str) and value != "$":
            found += [(f"${m.group(1)}", False) for m in _PATH.finditer(value)]
    return found


def _written(result_path: str | None) -> set[str]:
    if result_path in (None, "$"):
        return set()
    return {_segments(result_path)[0]}


def _handovers(
    state: dict[str, Any], result_key: Callable[[str], str | None]
) -> list[tuple[str, set[str]]]:
    """(next state, keys this handover adds) for every way out of a state."""
    added: set[str] = set()
    function = function_of(state)
    if function:
        key = result_key(function)
        added = {key} if key else set()
    elif "ResultPath" in state:
        added = _written(state["ResultPath"])
    out = [(target, added) for target in (state.get("Next"), state.get("Default")) if target]
    out += [(choice["Next"], set()) for choice in state.get("Choices", [])]
    out += [
        (catch["Next"], _written(catch.get("ResultPath", "$"))) for catch in state.get("Catch", [])
    ]
    return out


def present_on_entry(
    definition: dict[str, Any],
    result_key: Callable[[str], str | None],
    initial: frozenset[str] = _INPUT,
) -> dict[str, set[str]]:
    """The document keys every way into each state has written (a must-analysis)."""
    states = definition["States"]
    entry: dict[str, set[str] | None] = dict.fromkeys(states)
    entry[definition["StartAt"]] = set(initial)
    todo = [definition["StartAt"]]
    while todo:
        name = todo.pop()
        for target, added in _handovers(states[name], result_key):
            arriving = entry[name] | added  # type: ignore[operator]
            merged = arriving if entry[target] is None else entry[target] & arriving
            if merged != entry[target]:
                entry[target] = merged
                todo.append(target)
    return {name: keys or set() for name, keys in entry.items()}


def field_problem(schema: dict[str, Any], path: str) -> str | None:
    """Why ``path`` names no field of the document's models (None: it does)."""
    segments = _segments(path)
    if not segments:
        return f"{path} is not a plain $.a.b path"
    if segments[0] not in schema["properties"]:
        return f"{path}: the run document has no key {segments[0]!r}"
    nodes = [schema["properties"][segments[0]]]
    for depth, segment in enumerate(segments[1:], start=1):
        following = []
        for node in nodes:
            for model in members(schema, node):
                properties = model.get("properties")
                if properties is None:
                    return None  # a free-form object (table mapping, task settings)
                if segment not in properties:
                    where = ".".join(segments[:depth])
                    return f"{path}: {model.get('title')} (at $.{where}) has no field {segment!r}"
                following.append(properties[segment])
        nodes = following
    return None


def _selected(selector: dict[str, Any]) -> frozenset[str]:
    """The keys a Map's ItemSelector gives each iteration's document."""
    return frozenset(key.removesuffix(".$") for key in selector)


def problems_of(
    definition: dict[str, Any],
    schema: dict[str, Any],
    result_key: Callable[[str], str | None],
    initial: frozenset[str] = _INPUT,
) -> list[str]:
    """Every path of the definition that the run document does not have where it is read;
    a Map's iteration is checked with the keys its ItemSelector gives it."""
    states = definition["States"]
    present = present_on_entry(definition, result_key, initial)
    problems = []
    for name, state in states.items():
        if state.get("Type") == "Map":
            processor = state.get("ItemProcessor") or state.get("Iterator") or {}
            keys = _selected(state.get("ItemSelector") or {})
            inner = problems_of(processor, schema, result_key, keys)
            problems += [f"{name} (iteration): {problem}" for problem in inner]
    for name, state in states.items():
        written = [state.get("ResultPath")] + [c.get("ResultPath") for c in state.get("Catch", [])]
        for path in [p for p in written if p not in (None, "$")]:
            if problem := field_problem(schema, path):
                problems.append(f"{name}: writes {problem}")
        function = function_of(state)
        if function and (key := result_key(function)) and key not in schema["properties"]:
            problems.append(f"{name}: its handler writes {key!r}, not a key of the document")
        for path, may_be_absent in reads(state):
            if problem := field_problem(schema, path):
                problems.append(f"{name}: reads {problem}")
                continue
            key = _segments(path)[0]
            if not may_be_absent and key not in present[name]:
                problems.append(
                    f"{name}: reads {path}, but {key!r} is not written on every way there"
                )
    return problems
