"""Walking a JSON Schema with ``$defs`` (as pydantic generates it): what a node stands for.

Shared by scripts/state_document.py (the generated section of docs/architecture.md) and the
ASL contract test (tests/statemachine/contract.py), which read statemachine/state.schema.json.
"""

from __future__ import annotations

from typing import Any


def resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """``node`` with its ``$ref`` (to ``#/$defs/<name>``) followed, as often as it takes."""
    while "$ref" in node:
        node = schema["$defs"][node["$ref"].rsplit("/", 1)[1]]
    return node


def members(schema: dict[str, Any], node: dict[str, Any]) -> list[dict[str, Any]]:
    """The object schemas a property may hold (a union's members; null left out)."""
    node = resolve(schema, node)
    options = node.get("anyOf") or node.get("oneOf")
    if options is None:
        return [node]
    return [
        m for option in options if option.get("type") != "null" for m in members(schema, option)
    ]
