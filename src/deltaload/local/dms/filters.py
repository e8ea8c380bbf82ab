"""DMS source filters -> a SQLAlchemy Core WHERE clause with typed, bound values.

The dialect object decides how a column is compared (SQLite normalises its text
timestamps) and how a converted value is bound (PostgreSQL reads it from a session
setting, see sources.PostgresReader); operators and their NULL semantics are shared.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import sqlalchemy as sa

from .coltypes import Column, convert_value
from .errors import LoadError
from .mapping import Condition, SourceFilter


class FilterDialect(Protocol):
    """How one source engine compares a column and binds a filter value."""

    def column_expr(self, column: Column) -> sa.ColumnElement:
        """The expression compared against values (the column, or a normalised form)."""
        ...

    def raw_column(self, column: Column) -> sa.ColumnElement:
        """The column itself (used for NULL checks)."""
        ...

    def value_expr(self, column: Column, value: object) -> sa.ColumnElement:
        """A bound-value expression for a converted filter value."""
        ...


def build_where(
    filters: Sequence[SourceFilter],
    columns: Mapping[str, Column],
    dialect: FilterDialect,
    where: str,
) -> sa.ColumnElement[bool] | None:
    """AND the filters, OR the conditions inside each filter (DMS semantics)."""
    clauses = []
    for source_filter in filters:
        column = columns.get(source_filter.column)
        if column is None:
            raise LoadError(
                f"{where}: filter column {source_filter.column!r} does not exist "
                f"(columns: {', '.join(columns)})"
            )
        conditions = [_condition(c, column, dialect, where) for c in source_filter.conditions]
        clauses.append(sa.or_(*conditions) if len(conditions) > 1 else conditions[0])
    if not clauses:
        return None
    return sa.and_(*clauses) if len(clauses) > 1 else clauses[0]


def _condition(
    condition: Condition, column: Column, dialect: FilterDialect, where: str
) -> sa.ColumnElement[bool]:
    operator = condition.operator
    if operator == "null":
        return dialect.raw_column(column).is_(None)
    if operator == "notnull":
        return dialect.raw_column(column).is_not(None)
    values = [
        dialect.value_expr(column, convert_value(column, raw, f"{where} ({operator})"))
        for raw in condition.values
    ]
    target = dialect.column_expr(column)
    # noteq/notbetween are plain SQL comparisons, so NULLs never match them (as in SQL).
    if operator in ("lte", "ste"):
        return target <= values[0]
    if operator == "gte":
        return target >= values[0]
    if operator == "eq":
        return target == values[0]
    if operator == "noteq":
        return target != values[0]
    between = sa.and_(target >= values[0], target <= values[1])
    return between if operator == "between" else sa.not_(between)
