"""Many tables, few slots, DMS's quotas and API throttling on: every table loads, fairly.

The offline runtime (real template, state machine and handlers; moto; the local DMS engine,
which enforces DMS's resource quotas and its 200-call, 8-per-second API token bucket by
default) ticks over every active table until each has loaded once, in each replication mode.
Runs finish between ticks, so each tick frees every slot: fair starting loads every table
within ceil(tables / MaxConcurrentRuns) ticks, and no run fails on a quota or on throttling.

``make test`` runs 30 tables at 5 at a time; ``make test-scale`` (DELTALOAD_SCALE=full) runs
300 tables at 50 at a time, the figures recorded in docs/aws-fidelity.md.
"""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
FULL = os.environ.get("DELTALOAD_SCALE", "").lower() == "full"
TABLES, CAP, POLL = (300, 50, (1, 2)) if FULL else (30, 5, (0, 1))


def _bench() -> Any:
    spec = importlib.util.spec_from_file_location("bench_tick", ROOT / "benchmarks/bench_tick.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


@pytest.mark.parametrize("mode", ["instance", "existing", "serverless"])
def test_every_table_loads_fairly_within_the_quotas(mode: str, tmp_path: Path) -> None:
    figures = _bench().run(TABLES, CAP, 5, tmp_path, poll=POLL, mode=mode, stop_on_failure=False)
    if FULL:
        print(f"\n{mode}: {figures}")
    assert figures["failedRuns"] == []  # none failed, on a quota, on throttling or otherwise
    assert figures["dmsQuotaFaults"] == []
    ticks = math.ceil(TABLES / CAP)
    assert figures["ticksToDrain"] == ticks
    first_loads = [t for tick in figures["startedPerTick"] for t in tick]
    # Each tick starts a full slate of tables that had not loaded yet: no table twice.
    assert sorted(first_loads) == sorted(f"t{n:04d}_s3" for n in range(TABLES))
    assert [len(tick) for tick in figures["startedPerTick"]] == [CAP] * ticks
    assert 1 <= figures["peakConcurrentRuns"] <= CAP
    assert figures["rowsLoaded"] == TABLES * 5
