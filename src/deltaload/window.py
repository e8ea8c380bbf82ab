"""The window planner: which slice of the source the next run loads.

Boundary rules (the exactly-once argument; tests/unit/test_window_properties.py checks them):

* A gte item loads contiguous windows. The first starts at ``startvalue``; each next
  one starts at the successor of the watermark, the last loaded upper bound
  (integer +1, date +1 day, timestamp +1 microsecond). Strings have no successor,
  so a string window starts just after the watermark: ``gte w`` AND ``noteq w``.
* DMS has no strict less-than (``ste`` is an alias of ``lte``), ``between`` is
  inclusive and ``notbetween`` excludes both ends; filters on one selection rule
  are ANDed (CHAP_Tasks.CustomizingTasks.Filters.html). A bounded window
  ``[lower, upper]`` of integers, dates and timestamps is therefore written as
  ``gte lower`` AND ``notbetween(successor(upper), MAX)``: everything from the
  exclusive upper bound up to the far end of the kind is left out. For
  timestamps the exclusive bound is a whole second, so the filter never depends
  on how DMS or the source handles fractional seconds, and a row at
  ``upper + 0.5 microsecond`` on a finer-grained source still falls in exactly one
  window.
* The far end MAX is ``9999-12-31`` for dates and ``9999-12-31 23:59:59`` for
  timestamps (DMS documents filter times as ``YYYY-MM-DD HH:MM:SS``, whole seconds).
  Sources hold later values (MySQL DATETIME ``...23:59:59.999999``, PostgreSQL years
  past 9999) that ``notbetween`` would let through into every window, so a bounded
  date or timestamp window writes its lower bound as ``between(lower, MAX)``: values
  after MAX are in no window at all, exactly as they are after every clock-bounded
  upper bound.
* Timestamps are compared in UTC; values written with an offset are converted,
  values without one are taken as UTC.
* Time-based windows end a safety lag behind ``now`` (rounded down to the second
  for timestamps, to the previous whole day for dates) so rows committed late
  with an earlier value are not skipped.
* Integer and string windows end at the source maximum when the caller knows it;
  otherwise the upper bound is open at planning time and the watermark becomes
  the largest value actually loaded (``resolve_watermark``).
* An ``endvalue`` on a gte item caps every window: loading stops there.
* A window the source probe found without rows (probe.py) loads nothing and records
  the watermark an empty load of it would have recorded (``without_rows``): the
  upper bound of a bounded window, the previous watermark of an open one.
* An item with a ``windowsize`` cuts a bounded slice ``[lower, upper]`` into at most
  ``maxwindows`` windows of that size (``plan_windows``), each written with the rules
  above: window k+1 starts at the successor of window k's upper bound, so the windows
  are contiguous, never overlap and leave no gap. Timestamp windows end just before a
  whole second (their exclusive bound), dates before a whole day. A slice with no known
  upper bound (an integer item without ``endvalue`` and no source maximum) stays one
  open window. The watermark after the windows 1..k published is window k's upper
  bound; the next run starts at its successor.
* Every other operator is a one-shot filter: its slice is loaded once, the
  watermark becomes ``"loaded"`` and later runs skip the item until the
  watermark attribute is removed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from deltaload.errors import PlanningError
from deltaload.items import ONE_SHOT_LOADED, ControllerItem, FilterOperator
from deltaload.runstate import IncrementalWindow, OneShotWindow, WindowPlan
from deltaload.values import (
    KIND_MAX,
    ColumnKind,
    canonical,
    format_timestamp,
    parse_date,
    parse_integer,
    parse_timestamp,
    predecessor,
    sort_key,
    successor,
)

DEFAULT_SAFETY_LAG_SECONDS = 300

Filter = dict[str, Any]


def plan_window(
    item: ControllerItem,
    now: datetime,
    source_max: str | None = None,
    default_safety_lag: int = DEFAULT_SAFETY_LAG_SECONDS,
) -> WindowPlan:
    """Plan the next window of ``item`` at ``now`` (aware), optionally knowing the source max."""
    if now.tzinfo is None:
        raise PlanningError("now must be timezone-aware")
    if item.is_incremental:
        lag = item.safety_lag_seconds if item.safety_lag_seconds is not None else default_safety_lag
        return _incremental(item, now.astimezone(UTC), source_max, lag)
    return _one_shot(item)


def plan_windows(
    item: ControllerItem,
    now: datetime,
    source_max: str | None = None,
    default_safety_lag: int = DEFAULT_SAFETY_LAG_SECONDS,
) -> list[IncrementalWindow | OneShotWindow]:
    """The windows the next run of ``item`` loads, in order (one unless it has a windowsize).

    ``source_max`` is the filter column's maximum at the source when the caller knows it
    (integer items are then split up to it); without it, integer items split only up to
    their ``endvalue`` and time-based items up to the clock less the safety lag.
    """
    whole = plan_window(item, now, source_max, default_safety_lag)
    if (
        item.window_span is None
        or not isinstance(whole, IncrementalWindow)
        or whole.loads_nothing
        or whole.lower is None
        or whole.upper is None
        or whole.kind is ColumnKind.STRING
    ):
        return [whole]
    bounds = _split(whole.kind, whole.lower, whole.upper, item.window_span, item.windows_per_run)
    windows, previous = [], whole.previous_watermark
    for lower, upper in bounds:
        windows.append(
            IncrementalWindow(
                table=whole.table,
                kind=whole.kind,
                lower=lower,
                upper=upper,
                filters=_window_filters(item.filter_column, whole.kind, lower, False, upper),
                next_watermark=upper,
                previous_watermark=previous,
            )
        )
        previous = upper
    return windows


def span_of(windows: list[IncrementalWindow | OneShotWindow], column: str) -> WindowPlan:
    """The one window covering ``windows`` (what the run as a whole loads and records)."""
    if len(windows) == 1:
        return windows[0]
    first, last = windows[0], windows[-1]
    return first.model_copy(
        update={
            "upper": last.upper,
            "filters": _window_filters(
                column, first.kind, first.lower, first.lower_exclusive, last.upper
            ),
            "next_watermark": last.next_watermark,
        }
    )


def _split(kind: ColumnKind, lower: str, upper: str, span: int, most: int) -> list[tuple[str, str]]:
    """[lower, upper] cut into at most ``most`` contiguous windows of ``span`` (integers)
    or ``span`` seconds (timestamps, dates), in order; the last may be shorter."""
    end = sort_key(kind, upper)
    bounds: list[tuple[str, str]] = []
    if kind is ColumnKind.INTEGER:
        low = parse_integer(lower)
        while low <= end and len(bounds) < most:
            high = min(low + span - 1, end)
            bounds.append((str(low), str(high)))
            low = high + 1
        return bounds
    step = timedelta(seconds=span)
    if kind is ColumnKind.DATE:
        day = parse_date(lower)
        while day <= end and len(bounds) < most:
            try:
                high = min(day + step - timedelta(days=1), end)
            except OverflowError:
                high = end
            bounds.append((day.isoformat(), high.isoformat()))
            if high == end:
                break
            day = high + timedelta(days=1)
        return bounds
    # Timestamps: each window ends just before a whole second (its exclusive bound).
    moment, text = parse_timestamp(lower), canonical(kind, lower)
    cut = moment.replace(microsecond=0)
    while moment <= end and len(bounds) < most:
        try:
            cut = cut + step
            high_text = predecessor(kind, format_timestamp(cut))
        except OverflowError:
            high_text = upper
        if sort_key(kind, high_text) >= end:
            high_text = canonical(kind, upper)
        bounds.append((text, high_text))
        if sort_key(kind, high_text) >= end:
            break
        text = successor(kind, high_text)
        moment = parse_timestamp(text)
    return bounds


def resolve_watermark(plan: WindowPlan, loaded_max: str | None) -> str | None:
    """The watermark to record after a successful load of ``plan``."""
    if plan.skip_reason is not None or plan.empty:
        return plan.next_watermark
    if not plan.is_open:
        return plan.next_watermark
    if loaded_max is None:
        return plan.previous_watermark  # nothing arrived: the next window starts where this one did
    loaded = canonical(plan.kind, loaded_max)
    if plan.lower is not None and sort_key(plan.kind, loaded) < sort_key(plan.kind, plan.lower):
        raise PlanningError(
            f"table {plan.table!r}: loaded maximum {loaded!r} lies below the window's lower "
            f"bound {plan.lower!r}; the load did not respect the window filter"
        )
    return loaded


def without_rows(plan: WindowPlan) -> WindowPlan:
    """``plan`` known to select no row: nothing to load, the watermark of an empty load."""
    if plan.loads_nothing:
        return plan
    watermark = resolve_watermark(plan, None)
    return plan.model_copy(update={"empty": True, "filters": [], "next_watermark": watermark})


def _incremental(
    item: ControllerItem, now: datetime, source_max: str | None, lag_seconds: int
) -> WindowPlan:
    kind = item.filter_column_type
    previous = item.watermark
    if previous is None:
        lower, exclusive = item.start_value, False
    elif kind is ColumnKind.STRING:
        lower, exclusive = previous, True
    else:
        lower, exclusive = successor(kind, previous), False

    upper = _upper_bound(kind, now, lag_seconds, source_max)
    if item.end_value is not None and (
        upper is None or sort_key(kind, item.end_value) < sort_key(kind, upper)
    ):
        upper = item.end_value

    empty = upper is not None and _after(kind, lower, exclusive, upper)
    return IncrementalWindow(
        table=item.target_table_name,
        kind=kind,
        lower=lower,
        upper=upper,
        lower_exclusive=exclusive,
        filters=[] if empty else _window_filters(item.filter_column, kind, lower, exclusive, upper),
        empty=empty,
        next_watermark=previous if empty else upper,
        previous_watermark=previous,
    )


def _upper_bound(
    kind: ColumnKind, now: datetime, lag_seconds: int, source_max: str | None
) -> str | None:
    """The inclusive upper bound the clock (or the source maximum) allows."""
    behind = now - timedelta(seconds=lag_seconds)
    if kind is ColumnKind.TIMESTAMP:
        cutoff = behind.replace(microsecond=0)  # exclusive, a whole second
        return predecessor(kind, format_timestamp(cutoff))
    if kind is ColumnKind.DATE:
        return predecessor(kind, behind.date().isoformat())  # today is still filling up
    return canonical(kind, source_max) if source_max is not None else None


def _after(kind: ColumnKind, lower: str | None, exclusive: bool, upper: str) -> bool:
    """True when no value can satisfy lower (<) <= value <= upper."""
    if lower is None:
        return False
    low, high = sort_key(kind, lower), sort_key(kind, upper)
    return low >= high if exclusive else low > high


def _window_filters(
    column: str, kind: ColumnKind, lower: str | None, exclusive: bool, upper: str | None
) -> list[Filter]:
    filters: list[Filter] = []
    capped = upper is not None and kind in (ColumnKind.DATE, ColumnKind.TIMESTAMP)
    if lower is not None and capped:
        far = {"filter-operator": "between", "start-value": lower, "end-value": KIND_MAX[kind]}
        filters.append(_filter(column, far))
    elif lower is not None:
        filters.append(_filter(column, {"filter-operator": "gte", "value": lower}))
    elif capped:
        filters.append(_filter(column, {"filter-operator": "lte", "value": KIND_MAX[kind]}))
    if lower is not None and exclusive:
        filters.append(_filter(column, {"filter-operator": "noteq", "value": lower}))
    if upper is not None and upper != KIND_MAX.get(kind):
        if kind is ColumnKind.STRING:
            filters.append(_filter(column, {"filter-operator": "lte", "value": upper}))
        else:
            filters.append(
                _filter(
                    column,
                    {
                        "filter-operator": "notbetween",
                        "start-value": successor(kind, upper),
                        "end-value": KIND_MAX[kind],
                    },
                )
            )
    return filters


def _one_shot(item: ControllerItem) -> WindowPlan:
    operator = item.filter_operator
    if item.watermark == ONE_SHOT_LOADED:
        return OneShotWindow(
            table=item.target_table_name,
            kind=item.filter_column_type,
            lower=None,
            upper=None,
            skip_reason=(
                f"the one-shot {operator.value} filter was already loaded; remove the "
                "watermark attribute from the item to load it again"
            ),
            next_watermark=ONE_SHOT_LOADED,
            previous_watermark=ONE_SHOT_LOADED,
        )
    condition: Filter = {"filter-operator": operator.value}
    if operator in (FilterOperator.BETWEEN, FilterOperator.NOTBETWEEN):
        condition |= {"start-value": item.start_value, "end-value": item.end_value}
    elif item.start_value is not None:
        condition["value"] = item.start_value
    lower, upper = _one_shot_bounds(item)
    return OneShotWindow(
        table=item.target_table_name,
        kind=item.filter_column_type,
        lower=lower,
        upper=upper,
        filters=[_filter(item.filter_column, condition)],
        next_watermark=ONE_SHOT_LOADED,
        previous_watermark=item.watermark,
    )


def _one_shot_bounds(item: ControllerItem) -> tuple[str | None, str | None]:
    operator = item.filter_operator
    if operator is FilterOperator.BETWEEN:
        return item.start_value, item.end_value
    if operator in (FilterOperator.LTE, FilterOperator.STE):
        return None, item.start_value
    if operator is FilterOperator.EQ:
        return item.start_value, item.start_value
    return None, None


def _filter(column: str, condition: Filter) -> Filter:
    return {"filter-type": "source", "column-name": column, "filter-conditions": [condition]}
