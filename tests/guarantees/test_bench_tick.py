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
    assert figures["runs"] == 5
    assert figures["rowsLoaded"] == 50
    assert figures["ticksToDrain"] == 3  # 2 + 2 + 1: the starter deferred the rest
    assert figures["deferredPerTick"] == [3, 1, 0]
    assert 1 <= figures["peakConcurrentRuns"] <= 2
    assert figures["transitionsPerRun"]["min"] >= 10
    assert figures["lambdaInvocationsPerRun"] >= 8
