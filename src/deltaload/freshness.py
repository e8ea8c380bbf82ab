"""How fresh each table is: time since its last successful run, watermark lag (pure).

The starter reports it for every controller item on every tick, active or not, so a
table switched off by mistake, failing run after run, or whose source stopped moving
shows as ageing instead of looking like a healthy one:

- ``seconds_since_success``: now minus ``lastSucceededAt`` (when the last SUCCEEDED run
  ended; None before the first);
- ``watermark_lag_seconds``: for incremental timestamp and date items, now minus the
  watermark (a date counts from the end of that day), i.e. how far the loaded data is
  behind the clock; it includes the item's safety lag;
- ``stale``: the item has ``freshnesslimitseconds`` and its last success is older than
  that. A table that never succeeded is not stale by this rule (the run failures alarm
  covers it), nor is one without a limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from deltaload.items import ControllerItem
from deltaload.values import ColumnKind, parse_date, parse_timestamp


@dataclass(frozen=True)
class Freshness:
    """One table's freshness at one moment."""

    table: str
    seconds_since_success: float | None
    watermark_lag_seconds: float | None
    limit_seconds: int | None

    @property
    def stale(self) -> bool:
        """True when the table has a limit and its last success is older than it."""
        return (
            self.limit_seconds is not None
            and self.seconds_since_success is not None
            and self.seconds_since_success > self.limit_seconds
        )


def _moment(text: object) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def watermark_time(item: ControllerItem) -> datetime | None:
    """The instant up to which an incremental time-based item has loaded, or None."""
    if not item.is_incremental or item.watermark is None:
        return None
    try:
        if item.filter_column_type is ColumnKind.TIMESTAMP:
            return parse_timestamp(item.watermark)
        if item.filter_column_type is ColumnKind.DATE:
            day = parse_date(item.watermark)
            return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
    except (ValueError, OverflowError):
        return None
    return None


def table_freshness(item: ControllerItem, now: datetime) -> Freshness:
    """The freshness of one validated controller item at ``now`` (aware UTC)."""
    succeeded = _moment(item.run_state.get("lastSucceededAt"))
    loaded_to = watermark_time(item)
    return Freshness(
        table=item.target_table_name,
        seconds_since_success=max(0.0, (now - succeeded).total_seconds()) if succeeded else None,
        watermark_lag_seconds=max(0.0, (now - loaded_to).total_seconds()) if loaded_to else None,
        limit_seconds=item.freshness_limit_seconds,
    )


def describe(freshness: Freshness) -> str:
    """A short text for `deltaload status`: ``2h 5m ago (limit 6h), data 2h 10m behind``."""
    if freshness.seconds_since_success is None:
        text = "never succeeded"
    else:
        text = f"{_duration(freshness.seconds_since_success)} ago"
    if freshness.limit_seconds is not None:
        text += f" (limit {_duration(freshness.limit_seconds)})"
    if freshness.stale:
        text = "STALE: " + text
    if freshness.watermark_lag_seconds is not None:
        text += f", data {_duration(freshness.watermark_lag_seconds)} behind"
    return text


def _duration(seconds: float) -> str:
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"
