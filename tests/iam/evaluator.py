"""A small evaluator of identity-based IAM policies for one request.

It implements the parts of AWS's policy evaluation logic that deltaload's roles use,
and refuses (raises) anything else rather than guess:

- an explicit Deny wins, then any Allow, else the request is implicitly denied
  (IAM User Guide, "Policy evaluation logic",
  https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html);
- Action / NotAction (case-insensitive, with * and ? wildcards) and Resource /
  NotResource (case-sensitive wildcards) ("IAM JSON policy elements: Action",
  ".../reference_policies_elements_action.html", "...: NotResource");
- Condition: values of one key are ORed, keys and operators are ANDed; the string,
  ARN, Bool and Null operators, the ...IfExists suffix and the ForAnyValue: /
  ForAllValues: set qualifiers; a key the request lacks makes a positive operator
  false and a negated one true ("IAM JSON policy elements: Condition operators",
  https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html;
  "Single-valued vs. multivalued context keys",
  .../reference_policies_condition-single-vs-multi-valued-context-keys.html).

Resource-based policies, permissions boundaries and SCPs are out of scope: the
roles here are all in one account and the template sets none of them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

ALLOW, EXPLICIT_DENY, IMPLICIT_DENY = "Allow", "ExplicitDeny", "ImplicitDeny"
Context = Mapping[str, str | Sequence[str]]


class UnsupportedPolicy(ValueError):
    """The policy uses an element or operator this evaluator does not implement."""


@dataclass(frozen=True)
class Decision:
    """The outcome for one request, with the statements that decided it."""

    result: str
    statements: tuple[str, ...] = ()

    @property
    def allowed(self) -> bool:
        """True only for an explicit Allow and no explicit Deny."""
        return self.result == ALLOW


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _glob(pattern: str, value: str, *, case: bool) -> bool:
    """IAM wildcards: * is any run of characters, ? any one character; nothing else is special."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in str(pattern))
    return re.fullmatch(regex, value, 0 if case else re.IGNORECASE | re.DOTALL) is not None


def _action_matches(patterns: Iterable[str], action: str) -> bool:
    return any(_glob(p, action, case=False) for p in patterns)


def _resource_matches(patterns: Iterable[str], resource: str) -> bool:
    # A request on "*" (an action that supports no resource type) matches only "*".
    return any(p == "*" or (resource != "*" and _glob(p, resource, case=True)) for p in patterns)


_STRING_OPS = {
    "StringEquals": (lambda p, v: p == v, False),
    "StringNotEquals": (lambda p, v: p == v, True),
    "StringEqualsIgnoreCase": (lambda p, v: p.lower() == v.lower(), False),
    "StringNotEqualsIgnoreCase": (lambda p, v: p.lower() == v.lower(), True),
    "StringLike": (lambda p, v: _glob(p, v, case=True), False),
    "StringNotLike": (lambda p, v: _glob(p, v, case=True), True),
    "ArnEquals": (lambda p, v: _glob(p, v, case=True), False),
    "ArnLike": (lambda p, v: _glob(p, v, case=True), False),
    "ArnNotEquals": (lambda p, v: _glob(p, v, case=True), True),
    "ArnNotLike": (lambda p, v: _glob(p, v, case=True), True),
    "Bool": (lambda p, v: str(p).lower() == str(v).lower(), False),
}


def _lookup(context: Context, key: str) -> list[str] | None:
    for name, value in context.items():
        if name.lower() == key.lower():  # condition key names are case-insensitive
            return [str(v) for v in _list(value)]
    return None


def _condition_holds(operator: str, key: str, expected: Any, context: Context) -> bool:
    qualifier, _, op = operator.rpartition(":")
    if_exists = op.endswith("IfExists")
    op = op.removesuffix("IfExists")
    values = _lookup(context, key)
    wanted = [str(v) for v in _list(expected)]
    if op == "Null":
        return (values is None) == (wanted[0].lower() == "true")
    if op not in _STRING_OPS:
        raise UnsupportedPolicy(f"condition operator {operator!r} is not implemented")
    test, negated = _STRING_OPS[op]
    if values is None:
        return if_exists or negated
    if qualifier == "":
        if len(values) != 1:
            raise UnsupportedPolicy(f"{key} is multivalued: use ForAnyValue/ForAllValues")
        hit = any(test(w, values[0]) for w in wanted)
        return not hit if negated else hit
    if qualifier not in ("ForAnyValue", "ForAllValues"):
        raise UnsupportedPolicy(f"set qualifier {qualifier!r} is not implemented")
    matches = [
        (not any(test(w, v) for w in wanted)) if negated else any(test(w, v) for w in wanted)
        for v in values
    ]
    return any(matches) if qualifier == "ForAnyValue" else all(matches)


def _conditions_hold(block: Mapping[str, Mapping[str, Any]], context: Context) -> bool:
    return all(
        _condition_holds(operator, key, expected, context)
        for operator, keys in block.items()
        for key, expected in keys.items()
    )


_KNOWN = {"Sid", "Effect", "Action", "NotAction", "Resource", "NotResource", "Condition"}


def statement_applies(
    statement: Mapping[str, Any], action: str, resource: str, context: Context
) -> bool:
    """Whether one identity-policy statement matches the request (its Effect aside)."""
    unknown = set(statement) - _KNOWN
    if unknown:
        raise UnsupportedPolicy(f"statement {statement.get('Sid')!r} has {sorted(unknown)}")
    if "Action" in statement:
        if not _action_matches(_list(statement["Action"]), action):
            return False
    elif "NotAction" in statement:
        if _action_matches(_list(statement["NotAction"]), action):
            return False
    else:
        raise UnsupportedPolicy(f"statement {statement.get('Sid')!r} has no Action/NotAction")
    if "Resource" in statement:
        if not _resource_matches(_list(statement["Resource"]), resource):
            return False
    elif "NotResource" in statement:
        if _resource_matches(_list(statement["NotResource"]), resource):
            return False
    else:
        raise UnsupportedPolicy(f"statement {statement.get('Sid')!r} has no Resource/NotResource")
    return _conditions_hold(statement.get("Condition") or {}, context)


def evaluate(
    statements: Iterable[Mapping[str, Any]], action: str, resource: str, context: Context
) -> Decision:
    """Decide one request (action, resource ARN or "*", context keys) against the statements."""
    allows: list[str] = []
    for statement in statements:
        if not statement_applies(statement, action, resource, context):
            continue
        sid = str(statement.get("Sid", "?"))
        if statement["Effect"] == "Deny":
            return Decision(EXPLICIT_DENY, (sid,))
        if statement["Effect"] != "Allow":
            raise UnsupportedPolicy(f"statement {sid!r} has Effect {statement['Effect']!r}")
        allows.append(sid)
    return Decision(ALLOW, tuple(allows)) if allows else Decision(IMPLICIT_DENY)


__all__ = ["ALLOW", "EXPLICIT_DENY", "IMPLICIT_DENY", "Decision", "evaluate"]
