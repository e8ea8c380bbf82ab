"""The source probe in the whole workflow offline, on SQLite, PostgreSQL and MariaDB.

ProbeSource runs between the lock and the plan: a tick whose probe finds nothing new makes
no DMS call at all and records "nothing to load"; the windows PlanRun plans are the ones the
probe counted; a count that differs from the load's is a warning naming both; and with the
stack's ProbeSource=false nothing is asked and an empty tick goes through DMS as before.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from deltaload import handlers, probe, workflow
from deltaload.local.runtime import LocalRuntime, Source
from deltaload.outcome import run_outcome
from tests.integration.conftest import FAST, ROOT, OrdersTable, Ticks
from tests.integration.test_offline_workflow import assert_clean, ids_of, published


def _dms_calls(rt: LocalRuntime) -> list[str]:
    """Every DMS operation any client of the runtime's session makes from now on, named
    ``<function>:<operation>`` (the runtime's own, outside every function, as ``-``)."""
    calls: list[str] = []

    def note(model: Any, **_: Any) -> None:
        calls.append(f"{getattr(rt.running, 'function', None) or '-'}:{model.name}")

    rt.session.events.register("before-call.dms", note)
    return calls


def _run_calls(calls: list[str]) -> list[str]:
    """The calls the load executions' steps made (not the starter's look-ups)."""
    return [c for c in calls if not c.startswith(("StarterFunction:", "-:"))]


def test_a_tick_with_nothing_new_makes_no_dms_call(
    orders: OrdersTable, offline: LocalRuntime, ticks: Ticks
) -> None:
    calls = _dms_calls(offline)
    orders.insert(range(1, 6), datetime.now(UTC) - timedelta(hours=1))
    offline.put_item(orders.item("orders_probe"))
    first = offline.tick(now=ticks())
    assert [e.status for e in first.executions] == ["SUCCEEDED"]
    # The counter sees the loading tick's calls.
    assert "CreateResourcesFunction:CreateReplicationInstance" in calls
    [run] = first.executions
    assert run.output["probe"]["windows"] == [{"lower": "1", "upper": "5", "rows": 5}]
    assert run.output["run"]["windowText"] == "[1, 5]"  # planned up to the probed maximum

    calls.clear()
    again = offline.tick(now=ticks())
    [empty] = again.executions
    assert empty.status == "SUCCEEDED"
    # No DMS resource is created, started or deleted: the only DMS calls are teardown's
    # look-ups by name (teardown runs on every path and finds nothing).
    assert _run_calls(calls), "the tick's calls were not seen"
    assert all(c.startswith("TeardownFunction:Describe") for c in _run_calls(calls)), calls
    assert empty.output["probe"]["maximum"] is None
    assert empty.output["run"]["loadsNothing"] is True
    record = offline.history("orders_probe")[-1]
    assert (record["status"], record["rows"]) == ("SUCCEEDED", 0)
    assert run_outcome(empty, record).result == "nothing to load"
    assert offline.item("orders_probe")["watermark"] == "5"
    assert_clean(offline)

    orders.insert(range(6, 9), datetime.now(UTC) - timedelta(hours=1))
    third = offline.tick(now=ticks())
    assert ids_of(published(offline, "orders_probe")[third.executions[0].name]) == [6, 7, 8]
    assert offline.item("orders_probe")["watermark"] == "8"


def test_a_timestamp_window_without_rows_advances_like_an_empty_load(
    orders: OrdersTable, offline: LocalRuntime, ticks: Ticks
) -> None:
    calls = _dms_calls(offline)
    old = datetime.now(UTC) - timedelta(days=2)
    orders.insert(range(1, 4), old)
    item = orders.item(
        "orders_ts",
        filtercolumn="updated_at",
        filtercolumntype="timestamp",
        startvalue=(old - timedelta(days=1)).strftime("%Y-%m-%d %H:%M:%S"),
        safetylagseconds="0",
    )
    offline.put_item(item)
    offline.tick(now=ticks())
    loaded = offline.item("orders_ts")["watermark"]
    calls.clear()
    # The window's upper bound is the clock to the second (lag 0): a run in the same second
    # as the first would plan [watermark, watermark] and rightly move nothing.
    time.sleep(1.0 - datetime.now(UTC).microsecond / 1e6)
    again = offline.tick(now=ticks())
    assert [e.status for e in again.executions] == ["SUCCEEDED"]
    assert all(c.startswith("TeardownFunction:Describe") for c in _run_calls(calls)), calls
    # The bounded window was empty at the source: its upper bound is the new watermark,
    # as a load of no rows would have recorded.
    assert offline.item("orders_ts")["watermark"] > loaded
    assert offline.history("orders_ts")[-1]["rows"] == 0


@pytest.fixture
def rows_deleted_before_plan(
    orders: OrdersTable, monkeypatch: pytest.MonkeyPatch
) -> Iterator[list[int]]:
    """Delete the listed rows at the source after ProbeSource, before PlanRun."""
    doomed: list[int] = []
    original = workflow.plan_run

    @functools.wraps(original)
    def plan_run(*args: Any, **kwargs: Any) -> Any:
        if doomed:
            with orders.engine.begin() as conn:
                conn.execute(orders.table.delete().where(orders.table.c.row_id.in_(doomed)))
        return original(*args, **kwargs)

    monkeypatch.setitem(handlers.STEPS, "plan_run", handlers.Step("plan_run", plan_run))
    yield doomed


def test_a_probe_count_that_differs_from_the_load_is_a_warning(
    orders: OrdersTable, offline: LocalRuntime, ticks: Ticks, rows_deleted_before_plan: list[int]
) -> None:
    orders.insert(range(1, 11), datetime.now(UTC) - timedelta(hours=1))
    rows_deleted_before_plan.extend([3, 4])
    offline.put_item(orders.item("orders_witness"))
    result = offline.tick(now=ticks())
    [run] = result.executions
    assert run.status == "SUCCEEDED"  # DMS and the Parquet footers agree: published
    assert run.output["probe"]["windows"][0]["rows"] == 10
    assert run.output["publish"]["fullLoadRows"] == 8
    [warning] = run.output["publish"]["warnings"]
    assert "counted 10 rows" in warning and "DMS loaded 8" in warning
    assert "between the probe and the load" in warning
    assert warning in run.output["recorded"]["warning"]
    assert ids_of(published(offline, "orders_witness")[run.name]) == [1, 2, 5, 6, 7, 8, 9, 10]
    assert any("counted 10 rows" in n["message"] for n in offline.notifications())


def test_a_probe_that_agrees_adds_no_warning(
    orders: OrdersTable, offline: LocalRuntime, ticks: Ticks
) -> None:
    orders.insert(range(1, 11), datetime.now(UTC) - timedelta(hours=1))
    offline.put_item(orders.item("orders_agree"))
    [run] = offline.tick(now=ticks()).executions
    assert run.output["publish"]["warnings"] == []
    assert "warning" not in run.output["recorded"]


@pytest.fixture
def probe_off(orders: OrdersTable, tmp_path: Path) -> Iterator[LocalRuntime]:
    with LocalRuntime(
        ROOT,
        tmp_path / "state-off",
        Source.from_url(orders.url, schema="dwh"),
        parameters={"ProbeSource": "false"},
        timing=FAST,
        environment={"POLL_INITIAL_SECONDS": "0", "POLL_MAX_SECONDS": "1"},
    ) as runtime:
        yield runtime


def test_with_the_probe_switched_off_nothing_is_asked(
    orders: OrdersTable, probe_off: LocalRuntime, ticks: Ticks
) -> None:
    calls = _dms_calls(probe_off)  # before any client exists: clients copy the hooks
    orders.insert(range(1, 6), datetime.now(UTC) - timedelta(hours=1))
    probe_off.put_item(orders.item("orders_off"))
    [first] = probe_off.tick(now=ticks()).executions
    assert first.output["probe"] == {
        "enabled": False,
        "plannedAt": None,
        "maximum": None,
        "windows": [],
    }
    assert first.output["run"]["windowText"] == "[1, max loaded value]"  # open, as before
    assert probe_off.item("orders_off")["watermark"] == "5"
    calls.clear()
    again = probe_off.tick(now=ticks())
    assert [e.status for e in again.executions] == ["SUCCEEDED"]
    # Empty runs are not detected without it.
    assert "CreateResourcesFunction:CreateReplicationInstance" in calls
    assert probe_off.item("orders_off")["watermark"] == "5"
    assert_clean(probe_off)


@dataclass
class ProbeConnections:
    """Each probe connection takes the next ``planned`` outcome: an error it raises instead
    of connecting, or None to connect (also once the list is used up); ``attempts`` holds
    one entry per connection attempted."""

    planned: list[Exception | None] = field(default_factory=list)
    attempts: list[Exception | None] = field(default_factory=list)


@pytest.fixture
def probe_connections(monkeypatch: pytest.MonkeyPatch) -> ProbeConnections:
    connections = ProbeConnections()
    real = probe.connect

    @contextmanager
    def connect(access: probe.SourceAccess, timeout_seconds: int) -> Iterator[Any]:
        outcome = connections.planned.pop(0) if connections.planned else None
        connections.attempts.append(outcome)
        if outcome is not None:
            raise outcome
        with real(access, timeout_seconds) as connection:
            yield connection

    monkeypatch.setattr(probe, "connect", connect)
    return connections


class _Denied(Exception):
    """A driver's answer that the login may not read the table (PostgreSQL 42501, MySQL
    1142), which the same probe would get again."""

    sqlstate = "42501"

    def __init__(self) -> None:
        super().__init__(1142, "permission denied for table orders")


def test_a_source_unreachable_for_a_moment_delays_the_run(
    orders: OrdersTable,
    offline: LocalRuntime,
    ticks: Ticks,
    probe_connections: ProbeConnections,
) -> None:
    orders.insert(range(1, 6), datetime.now(UTC) - timedelta(hours=1))
    offline.put_item(orders.item("orders_flaky"))
    probe_connections.planned.append(ConnectionRefusedError(111, "Connection refused"))
    [run] = offline.tick(now=ticks()).executions
    assert run.status == "SUCCEEDED"
    # ProbeSource's Retry ran the probe again (SourceUnreachableError) and it got through.
    assert len(probe_connections.attempts) == 2 and probe_connections.attempts[1] is None
    assert run.output["probe"]["windows"] == [{"lower": "1", "upper": "5", "rows": 5}]
    assert ids_of(published(offline, "orders_flaky")[run.name]) == [1, 2, 3, 4, 5]
    assert offline.item("orders_flaky")["watermark"] == "5"


def test_an_answer_from_the_source_fails_the_run_at_once(
    orders: OrdersTable,
    offline: LocalRuntime,
    ticks: Ticks,
    probe_connections: ProbeConnections,
) -> None:
    orders.insert(range(1, 6), datetime.now(UTC) - timedelta(hours=1))
    offline.put_item(orders.item("orders_denied"))
    probe_connections.planned.append(sa.exc.ProgrammingError("SELECT", {}, _Denied()))
    calls = _dms_calls(offline)
    [run] = offline.tick(now=ticks()).executions
    assert run.status == "FAILED"
    assert len(probe_connections.attempts) == 1  # not retried
    item = offline.item("orders_denied")
    assert "watermark" not in item and "lockOwner" not in item
    assert "orders_denied" in item["lastRunError"]
    assert "permission denied for table orders" in item["lastRunError"]
    assert not any("Create" in c for c in _run_calls(calls))  # no DMS resource was made
    assert_clean(offline)
