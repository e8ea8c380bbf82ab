"""Smoke test of benchmarks/bench_tick.py: 5 tables, at most 2 at a time."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_tick_drains_under_the_concurrency_cap(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("bench_tick", ROOT / "benchmarks/bench_tick.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    figures = bench.run(5, 2, 10, tmp_path, poll=(0, 1))
    # Each tick covers all 5 tables: 2 start, 3 wait; the never-loaded go first, so the
    # third tick starts t0004 and, with the slot left, a table of the first tick (whichever
    # of the two took its lock first: both runs go at once).
    assert figures["runs"] == 6
    assert figures["rowsLoaded"] == 50  # the sixth run finds nothing new
    assert figures["ticksToDrain"] == 3
    assert figures["deferredPerTick"] == [3, 3, 3], figures
    first, third = figures["startedPerTick"][0], figures["startedPerTick"][2]
    assert "t0004_s3" in third and len(set(third) & set(first)) == 1
    assert 1 <= figures["peakConcurrentRuns"] <= 2
    assert figures["transitionsPerRun"]["min"] >= 10
    assert figures["lambdaInvocationsPerRun"] >= 8
