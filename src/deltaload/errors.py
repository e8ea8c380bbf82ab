"""One error hierarchy for deltaload; every message says which table and which field."""

from __future__ import annotations

from dataclasses import dataclass


class DeltaloadError(Exception):
    """Base class of every error deltaload raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a controller item: the attribute, what was found, what is allowed."""

    attribute: str
    found: str
    allowed: str

    def __str__(self) -> str:
        return f"{self.attribute}: found {self.found}; {self.allowed}"


class InvalidItemError(DeltaloadError):
    """A controller item failed validation; lists every problem at once."""

    def __init__(self, table: str, problems: list[Problem]) -> None:
        self.table = table
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        noun = "problem" if len(self.problems) == 1 else "problems"
        super().__init__(
            f"controller item for table {table!r} is invalid "
            f"({len(self.problems)} {noun}):\n{lines}"
        )


class PlanningError(DeltaloadError):
    """The next window cannot be planned from the item as it stands."""
