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
from .mapping import Condition, Segment, SourceFilter


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
    filters: Sequence[SourceFilter | Segment],
    columns: Mapping[str, Column],
    dialect: FilterDialect,
    where: str,
) -> sa.ColumnElement[bool] | None:
    """AND the filters, OR the conditions inside each filter (DMS semantics).

    A ``Segment`` (one range of a ``ranges`` parallel load) is ANDed like a filter.
    """
    clauses = []
    for source_filter in filters:
        if isinstance(source_filter, Segment):
            clauses.append(_segment(source_filter, columns, dialect, where))
            continue
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


def _segment(
    segment: Segment, columns: Mapping[str, Column], dialect: FilterDialect, where: str
) -> sa.ColumnElement[bool]:
    """The WHERE clause DMS builds for one range segment (user guide, "Table and collection
    settings rules and operations": segment 1 ``((COL1 < 10) OR ((COL1 = 10) AND (COL2 < 30))
    ...)``, segment 2 ``NOT (<segment 1's>) AND (<its own>)``, the top one ``NOT (...)``).

    SQL's three-valued logic then leaves out rows with NULLs where a comparison needs them,
    as DMS does ("Records with null values aren't replicated").
    """
    missing = [name for name in segment.columns if name not in columns]
    if missing:
        raise LoadError(
            f"{where}: parallel-load ranges column(s) {', '.join(map(repr, missing))} do not "
            f"exist (columns: {', '.join(columns)})"
        )
    picked = [columns[name] for name in segment.columns]
    parts = []
    if segment.lower is not None:
        parts.append(sa.not_(_below(picked, segment.lower, dialect, where)))
    if segment.upper is not None:
        parts.append(_below(picked, segment.upper, dialect, where))
    return sa.and_(*parts) if len(parts) > 1 else parts[0]


def _below(
    picked: Sequence[Column], bound: Sequence[str], dialect: FilterDialect, where: str
) -> sa.ColumnElement[bool]:
    """Rows whose column values come before ``bound`` (the first column most significant)."""
    targets = [dialect.column_expr(column) for column in picked]
    values = [
        dialect.value_expr(column, convert_value(column, raw, f"{where} (parallel-load ranges)"))
        for column, raw in zip(picked, bound, strict=True)
    ]
    options = []
    for k in range(len(picked)):
        equal = [targets[j] == values[j] for j in range(k)]
        options.append(sa.and_(*equal, targets[k] < values[k]) if equal else targets[k] < values[k])
    return sa.or_(*options) if len(options) > 1 else options[0]
