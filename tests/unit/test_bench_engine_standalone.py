"""benchmarks/bench_engine.py runs its dlt cases under another interpreter (make bench's
.venv-bench, which has dlt but not deltaload), so the file must load with the standard
library alone."""

from __future__ import annotations

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
