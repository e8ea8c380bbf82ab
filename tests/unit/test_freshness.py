"""Freshness of a table: since its last success, its watermark's lag, past its limit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from deltaload.freshness import describe, table_freshness, watermark_time
from deltaload.items import parse_item
from tests.orders import NOW, ORDERS


def item(**changes):
    return parse_item({**ORDERS, **changes})


def test_seconds_since_the_last_success_and_the_limit():
    ok = item(lastSucceededAt=(NOW - timedelta(minutes=10)).isoformat(), freshnesslimitseconds=3600)
    fresh = table_freshness(ok, NOW)
    assert (fresh.seconds_since_success, fresh.limit_seconds, fresh.stale) == (600, 3600, False)
    late = item(lastSucceededAt=(NOW - timedelta(hours=2)).isoformat(), freshnesslimitseconds=3600)
    assert table_freshness(late, NOW).stale
    assert describe(table_freshness(late, NOW)) == "STALE: 2h 0m ago (limit 1h 0m)"


def test_a_switched_off_table_ages_like_any_other():
    off = item(
        activeflag="false",
        lastSucceededAt=(NOW - timedelta(days=3)).isoformat(),
        freshnesslimitseconds=86400,
    )
    assert table_freshness(off, NOW).stale


def test_no_limit_is_never_stale_and_never_succeeded_is_not_stale():
    assert not table_freshness(item(lastSucceededAt="2000-01-01T00:00:00+00:00"), NOW).stale
    never = table_freshness(item(freshnesslimitseconds=60), NOW)
    assert never.seconds_since_success is None and not never.stale
    assert describe(never) == "never succeeded (limit 1m 0s)"


def test_watermark_lag_for_time_based_items_only():
    stamped = item(
        filtercolumn="updated_at",
        filtercolumntype="timestamp",
        startvalue="2024-01-01 00:00:00",
        watermark="2024-05-01 11:30:00",
    )
    assert table_freshness(stamped, NOW).watermark_lag_seconds == 1800
    dated = item(filtercolumntype="date", startvalue="2024-01-01", watermark="2024-04-29")
    assert watermark_time(dated) == datetime(2024, 4, 30, tzinfo=UTC)  # the day is loaded
    assert table_freshness(dated, NOW).watermark_lag_seconds == 36 * 3600
    assert table_freshness(item(watermark="100"), NOW).watermark_lag_seconds is None
    one_shot = item(filteroperator="eq", startvalue="2024-01-01", filtercolumntype="date")
    assert watermark_time(one_shot) is None
    summary = describe(table_freshness(stamped, NOW))
    assert summary == "never succeeded, data 30m 0s behind"
