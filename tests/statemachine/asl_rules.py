"""Checks over the state machine graph; each returns a list of problems (empty = fine).

Kept apart from the tests so the tests can also prove each check catches a broken
definition (a check that cannot fail proves nothing).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
SNS_PUBLISH = "arn:aws:states:::sns:publish"
TRANSIENT = {
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
    "TransientError",
}
SUCCESS_ENDS = {"Skipped", "Succeeded"}


def edges(state: dict[str, Any]) -> list[str]:
    """Every state this one can hand over to (Next, Default, Choices, Catch)."""
    targets = []
    if "Next" in state:
        targets.append(state["Next"])
    if "Default" in state:
        targets.append(state["Default"])
    targets += [c["Next"] for c in state.get("Choices", [])]
    targets += [c["Next"] for c in state.get("Catch", [])]
    return targets


def function_of(state: dict[str, Any]) -> str | None:
    """The ${...FunctionArn} placeholder a Lambda task invokes."""
    if state.get("Resource") != LAMBDA_INVOKE:
        return None
    return state.get("Parameters", {}).get("FunctionName")


def reachable(states: dict[str, Any], start: str, avoid: set[str] = frozenset()) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name in seen or name in avoid:
            continue
        seen.add(name)
        todo += edges(states[name])
    return seen


def paths_to_ends(states: dict[str, Any], start: str) -> Iterator[list[str]]:
    """Every simple path from ``start`` to a terminal state (loops taken at most once)."""
    stack = [(start, [start])]
    while stack:
        name, path = stack.pop()
        state = states[name]
        if state["Type"] in ("Succeed", "Fail") or state.get("End"):
            yield path
            continue
        for target in edges(state):
            if target not in path:
                stack.append((target, [*path, target]))


def check_references(d: dict[str, Any]) -> list[str]:
    states = d["States"]
    problems = [
        f"{n} -> {t}: no such state" for n, s in states.items() for t in edges(s) if t not in states
    ]
    if problems:
        return problems
    unreachable = set(states) - reachable(states, d["StartAt"])
    return [f"{n}: unreachable" for n in sorted(unreachable)]


def check_tasks(d: dict[str, Any]) -> list[str]:
    """Every Task: Catch States.ALL into the failure chain; Lambda tasks retried and shaped."""
    states, problems = d["States"], []
    for name, state in states.items():
        if state["Type"] != "Task":
            continue
        catches = [c for c in state.get("Catch", []) if "States.ALL" in c["ErrorEquals"]]
        if not catches:
            problems.append(f"{name}: no Catch for States.ALL")
            continue
        for catch in catches:
            if not catch.get("ResultPath", "").startswith("$."):
                problems.append(f"{name}: Catch must keep the state (ResultPath $.<key>)")
            problems += _failure_chain(states, name, catch["Next"])
        if state["Resource"] == LAMBDA_INVOKE:
            problems += _lambda_shape(name, state)
    return problems


def _failure_chain(states: dict[str, Any], name: str, target: str) -> list[str]:
    after = reachable(states, target)
    problems = []
    if after & SUCCESS_ENDS:
        problems.append(f"{name}: a caught error can end in success ({after & SUCCESS_ENDS})")
    teardown = [s for s in after if function_of(states[s]) == "${TeardownFunctionArn}"] or [
        s for s in [name] if function_of(states[s]) == "${TeardownFunctionArn}"
    ]
    notify = [
        s
        for s in after
        if states[s].get("Resource") == SNS_PUBLISH
        and states[s]["Parameters"].get("TopicArn") == "${NotificationTopicArn}"
        and states[states[s]["Next"]]["Type"] == "Fail"
    ]
    if not teardown and name != "NotifyFailure":
        problems.append(f"{name}: its Catch does not reach teardown")
    if not notify and name != "NotifyFailure":
        problems.append(f"{name}: its Catch does not reach NotifyFailure -> Fail")
    if not any(states[s]["Type"] == "Fail" for s in after):
        problems.append(f"{name}: its Catch does not end in a Fail state")
    return problems


def _lambda_shape(name: str, state: dict[str, Any]) -> list[str]:
    problems = []
    params = state.get("Parameters", {})
    if params.get("Payload.$") != "$":
        problems.append(f"{name}: must pass the whole state as Payload")
    if state.get("OutputPath") != "$.Payload":
        problems.append(f"{name}: OutputPath must be $.Payload (the handler returns the state)")
    retried = set()
    for retry in state.get("Retry", []):
        if retry.get("BackoffRate", 1) <= 1 or retry.get("MaxAttempts", 3) < 2:
            problems.append(f"{name}: Retry without backoff")
        retried |= set(retry["ErrorEquals"])
    if missing := TRANSIENT - retried:
        problems.append(f"{name}: transient errors not retried: {sorted(missing)}")
    return problems


def check_success_paths(d: dict[str, Any]) -> list[str]:
    """No path to success skips verification once DMS resources were created."""
    states, problems = d["States"], []
    by_function: dict[str, str] = {}
    for n, s in states.items():
        if function_of(s):
            by_function.setdefault(function_of(s), n)
    create = by_function.get("${CreateResourcesFunctionArn}")
    verify = by_function.get("${VerifyPublishFunctionArn}")
    record = by_function.get("${RecordSuccessFunctionArn}")
    for path in paths_to_ends(states, d["StartAt"]):
        end = path[-1]
        if states[end]["Type"] != "Succeed":
            continue
        if end not in SUCCESS_ENDS:
            problems.append(f"unexpected Succeed state {end}")
        if end == "Skipped" and by_function.get("${PlanRunFunctionArn}") in path:
            problems.append(f"lock-skipped end reached after planning: {path}")
        teardowns = [
            i for i, n in enumerate(path) if function_of(states[n]) == "${TeardownFunctionArn}"
        ]
        if create in path:
            order = [path.index(create)]
            order += [path.index(n) if n in path else -1 for n in (verify, record)]
            order += [teardowns[0] if teardowns else -1]
            if -1 in order or order != sorted(order):
                problems.append(f"success path skips verify/record/teardown: {' > '.join(path)}")
        elif end == "Succeeded" and record not in path:
            problems.append(f"success without RecordSuccess: {' > '.join(path)}")
    return problems


def check_waits_and_loops(d: dict[str, Any]) -> list[str]:
    """Waits read $.poll.waitSeconds; every loop has a Choice exit on $.poll.failed."""
    states, problems = d["States"], []
    for name, state in states.items():
        if state["Type"] == "Wait" and (
            state.get("SecondsPath") != "$.poll.waitSeconds"
            or {"Seconds", "Timestamp", "TimestampPath"} & set(state)
        ):
            problems.append(f"{name}: Wait must use SecondsPath $.poll.waitSeconds only")
    for loop in _cycles(states):
        exits = [
            n
            for n in loop
            if states[n]["Type"] == "Choice"
            and any(
                c.get("Variable") == "$.poll.failed"
                and c.get("BooleanEquals") is True
                and c["Next"] not in loop
                for c in states[n]["Choices"]
            )
        ]
        if not exits:
            problems.append(f"loop {sorted(loop)} has no exit on $.poll.failed (timeout)")
        if not any(states[n]["Type"] == "Wait" for n in loop):
            problems.append(f"loop {sorted(loop)} has no Wait")
    return problems


def _cycles(states: dict[str, Any]) -> list[set[str]]:
    """Strongly connected components with more than one state (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges(states[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(component)

    for v in states:
        if v not in index:
            visit(v)
    return out


def check_language(d: dict[str, Any]) -> list[str]:
    """JSONPath only (moto's interpreter and every region run it); no JSONata fields."""
    problems = []
    if d.get("QueryLanguage", "JSONPath") != "JSONPath":
        problems.append("definition uses JSONata")
    for name, state in d["States"].items():
        if {"QueryLanguage", "Arguments", "Output", "Assign"} & set(state):
            problems.append(f"{name}: uses JSONata/variables fields")
    return problems


def check_map_iterations(d: dict[str, Any]) -> list[str]:
    """Each Map: caught into the failure chain; each iteration's Lambda tasks shaped and
    retried, each caught into a state that ends the iteration with its outcome (a window
    that fails must not fail the Map), its waits and loops as at the top level."""
    states, problems = d["States"], []
    for name, state in states.items():
        if state["Type"] != "Map":
            continue
        catches = [c for c in state.get("Catch", []) if "States.ALL" in c["ErrorEquals"]]
        if not catches:
            problems.append(f"{name}: no Catch for States.ALL")
        for catch in catches:
            problems += _failure_chain(states, name, catch["Next"])
        inner = state.get("ItemProcessor") or {}
        sub = inner.get("States", {})
        for task_name, task in sub.items():
            if task["Type"] != "Task":
                continue
            if task.get("Resource") == LAMBDA_INVOKE:
                problems += [f"{name}.{p}" for p in _lambda_shape(task_name, task)]
            caught = [c for c in task.get("Catch", []) if "States.ALL" in c["ErrorEquals"]]
            ends = [c["Next"] for c in caught if sub[c["Next"]].get("End") is True]
            if not ends or any(sub[t]["Type"] in ("Fail", "Succeed") for t in ends):
                problems.append(
                    f"{name}.{task_name}: its Catch must end the iteration with its outcome"
                )
        problems += [f"{name}.{p}" for p in check_waits_and_loops({"States": sub})]
        if "MaxConcurrencyPath" not in state and "MaxConcurrency" not in state:
            problems.append(f"{name}: no MaxConcurrency(Path): every window would start at once")
    return problems


ALL_CHECKS = (
    check_references,
    check_tasks,
    check_success_paths,
    check_waits_and_loops,
    check_language,
    check_map_iterations,
)


def problems_of(d: dict[str, Any]) -> list[str]:
    d = copy.deepcopy(d)
    found = check_references(d)
    if any("no such state" in p for p in found):
        return found  # the graph walks below need every reference to resolve
    return found + [p for check in ALL_CHECKS[1:] for p in check(d)]
