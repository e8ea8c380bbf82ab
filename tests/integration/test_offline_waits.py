"""Offline waits end when the awaited thing is done; progress is told, never re-read.

The runtime keeps the template's own poll intervals here (1 s doubling to 2 s, the
local default), so a Wait state that did not end at the engine's status change would
show as a wait that ran out rather than one a change ended.
"""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from deltaload import backoff, names
from deltaload.local import interpreter
from deltaload.local.runtime import LocalRuntime, Source
from tests.integration.conftest import FAST, ROOT, OrdersTable, Ticks

pytestmark = pytest.mark.parametrize("orders", ["sqlite"], indirect=True)


@pytest.fixture
def runtime(orders: OrdersTable, tmp_path: Path):
    with LocalRuntime(
        ROOT, tmp_path / "state", Source.from_url(orders.url, schema="dwh"), timing=FAST
    ) as rt:
        yield rt


def _spy_waits(rt: LocalRuntime) -> list[bool]:
    """Record how each engine wait ended (True: a status change ended it)."""
    ended: list[bool] = []
    original = rt.dms.changes.wait

    def wait(*args: Any, **kwargs: Any) -> bool:
        result = original(*args, **kwargs)
        ended.append(result)
        return result

    rt.dms.changes.wait = wait  # type: ignore[method-assign]
    return ended


def test_a_run_moves_on_at_the_engine_s_changes_and_reads_no_history(
    orders: OrdersTable, tmp_path: Path, ticks: Ticks
):
    # An instance that takes longer than the first 1 s wait: at least one wait is sure
    # to find it still creating, and the next one to be ended by its change.
    slow_instance = replace(FAST, instance_create=1.5)
    with LocalRuntime(
        ROOT, tmp_path / "state", Source.from_url(orders.url, schema="dwh"), timing=slow_instance
    ) as runtime:
        _run_and_check(orders, runtime, ticks)


def _run_and_check(orders: OrdersTable, runtime: LocalRuntime, ticks: Ticks) -> None:
    orders.insert(range(1, 51), datetime.now(UTC) - timedelta(hours=2))
    runtime.put_item(orders.item("orders_s3"))
    ended = _spy_waits(runtime)
    history_reads: list[str] = []
    runtime.session.events.register(
        "before-call.states.GetExecutionHistory",
        lambda **_: history_reads.append("GetExecutionHistory"),
    )
    steps: list[str] = []

    def progress(results: list[Any]) -> None:
        for result in results:
            step = runtime.current_step(runtime.execution_arn(result.name))
            if step and (not steps or steps[-1] != step):
                steps.append(step)

    result = runtime.tick(now=ticks(), progress=progress)

    assert [e.status for e in result.executions] == ["SUCCEEDED"], result
    assert result.executions[0].outcome.rows == 50
    # The waits ran, and the instance's change ended the one that outlasted it.
    assert True in ended, ended
    # Progress shows the state each run is in when it is told (states may pass between
    # two looks); the last look sees the final state.
    definition = json.loads((ROOT / "statemachine" / "load_table.asl.json").read_text())
    assert set(steps) <= set(definition["States"]), steps
    assert steps[-1] == "Succeeded", steps
    assert history_reads == []


def test_a_wait_state_lasts_until_its_run_s_resources_change(runtime: LocalRuntime):
    arn = runtime.execution_arn("orders_s3-20260101T000000Z")
    runtime._note_run({"table": "orders_s3", "runId": "orders_s3-20260101T000000Z"})
    runtime._seen_changes[arn] = runtime.dms.changes.observe()
    done = threading.Event()
    waiter = threading.Thread(
        target=lambda: (runtime.wait(arn, 600, lambda: True), done.set()), daemon=True
    )
    waiter.start()
    runtime.dms.changes.changed("some-other-run-s-task")
    assert not done.wait(0.2)  # another run's change leaves this one waiting
    runtime.dms.changes.changed(names.dms_names("orders_s3", "orders_s3-20260101T000000Z").task)
    waiter.join(600)
    assert done.is_set()


def test_a_stopped_execution_stops_waiting(runtime: LocalRuntime):
    arn = runtime.execution_arn("orders_s3-20260101T000000Z")
    running = threading.Event()
    running.set()
    waiter = threading.Thread(target=runtime.wait, args=(arn, 600, running.is_set), daemon=True)
    waiter.start()
    running.clear()
    waiter.join(600)
    assert not waiter.is_alive()


def test_closing_the_runtime_gives_back_every_hook(orders: OrdersTable, tmp_path: Path):
    before = backoff.sleep
    with LocalRuntime(
        ROOT, tmp_path / "s", Source.from_url(orders.url, schema="dwh"), timing=FAST
    ) as rt:
        assert backoff.sleep == rt._sleep_until_change
        assert interpreter._listener(rt.execution_arn("x")) is rt
    assert backoff.sleep is before
    assert interpreter._listener(rt.execution_arn("x")) is None
