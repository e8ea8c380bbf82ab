"""benchmarks/bench_engine.py runs its dlt cases under another interpreter (make bench's
.venv-bench, which has dlt but not deltaload), so the file must load with the standard
library alone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_engine_loads_without_deltaload_installed() -> None:
    # -S: no site-packages (so neither deltaload nor its dependencies), -I: no PYTHONPATH.
    done = subprocess.run(
        [sys.executable, "-S", "-I", str(ROOT / "benchmarks/bench_engine.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout


def test_the_engine_cases_run_against_the_engine_of_this_tree(tmp_path: Path) -> None:
    """make bench is not part of the tests: a change to the engine's API must not leave its
    cases broken until the next benchmark run."""
    cases = ("engine-full", "engine-full-fs", "engine-delta", "engine-delta-fs")
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks/bench_engine.py"),
            *("--rows", "5000", "--sources", "sqlite", "--cases", ",".join(cases)),
            *("--workdir", str(tmp_path)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert done.returncode == 0, done.stderr
    rows = {words[0]: words[1] for words in map(str.split, done.stdout.splitlines()) if words}
    for case in cases:
        expected = "500" if "delta" in case else "5,000"  # the delta is 10 % by default
        assert rows.get(case) == expected, done.stdout
