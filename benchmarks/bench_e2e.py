"""Benchmark `deltaload run` end to end against its engine alone and dlt's fastest backend.

One interleaved run: each repetition runs, per source (SQLite, PostgreSQL), every case
once, in this order, each in its own process (so its wall time and peak RSS are its own):

- ``help``: a bare ``deltaload --help`` (the floor of any command);
- ``run-full``: ``deltaload run`` of a freshly onboarded table: the whole ``orders``
  table (a new state folder each repetition);
- ``run-noop``: ``deltaload run`` of the same table again, with nothing new;
- ``run-delta``: ``deltaload run`` of a second table onboarded in the same state folder,
  whose ``startvalue`` is the first row of the last ``--delta-percent`` (1 %) of rows;
- ``engine-full`` / ``engine-delta``: the same DMS full-load task through the local engine
  alone (benchmarks/bench_engine.py: boto3 -> LocalDms under moto), the whole process;
- ``dlt-connectorx`` / ``dlt-pyarrow`` (and ``-delta``): dlt's ``sql_table`` into a local
  Parquet filesystem destination, run by the ``--dlt-python`` interpreter (make bench
  builds .venv-bench); the faster backend is the one compared with.

Every time is the wall time of the whole process, as a user waits for it; the medians of
``--repeat`` repetitions are printed, then the ratios the targets are stated in.

Usage::

    .venv/bin/python benchmarks/bench_e2e.py                       # 1,000,000 rows, 3 repeats
    .venv/bin/python benchmarks/bench_e2e.py --rows 200000 --repeat 1 --sources sqlite
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_engine  # this folder is not a package: found through sys.path

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-c", "from deltaload.cli import main; main()"]
RUN_CASES = ("help", "run-full", "run-noop", "run-delta")
ENGINE_CASES = ("engine-full", "engine-delta")
DLT_CASES = ("dlt-connectorx", "dlt-pyarrow", "dlt-connectorx-delta", "dlt-pyarrow-delta")


def _measure(command: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run one process to its end: wall time, peak RSS (MB, os.wait4) and its output."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        tail = " | ".join(output.strip().splitlines()[-3:])
        return {"error": f"exit {code}: {tail}"}
    return {"seconds": seconds, "peak_rss_mb": usage.ru_maxrss / 1024, "output": output}


def _item(name: str, args: argparse.Namespace, source: str, start: int) -> dict[str, str]:
    table = bench_engine.TABLE if source == "sqlite" else bench_engine.pg_table(args.rows)
    return {
        "targetTableName": name,
        "activeflag": "true",
        "sourceSchema": bench_engine.SCHEMA,
        "sourceTable": table,
        "filtercolumn": "row_id",
        "filteroperator": "gte",
        "filtercolumntype": "integer",
        "startvalue": str(start),
        "ouputs3Prefix": "lake",
    }


def deltaload_cases(args: argparse.Namespace, source: str, work: Path) -> dict[str, Any]:
    """``--help``, then a full run, a no-op run and a 1 % delta run in one new state folder."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    results: dict[str, Any] = {"help": _measure([*CLI, "--help"], env)}
    folder = work / f"state-{source}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    if source == "sqlite":
        url = f"sqlite:///{bench_engine.sqlite_path(Path(args.workdir), args.rows)}"
    else:
        url = args.pg_url
    common = [*CLI, "--state-dir", str(folder / "state"), "--source", url]
    items = {
        "orders_full": _item("orders_full", args, source, 1),
        "orders_delta": _item(
            "orders_delta", args, source, bench_engine.delta_start(args.rows, args.delta_percent)
        ),
    }
    for name, item in items.items():
        (folder / f"{name}.json").write_text(json.dumps(item))
    onboard = _measure([*common, "onboard", *(str(folder / f"{n}.json") for n in items)], env)
    if "error" in onboard:
        return {case: onboard for case in RUN_CASES[1:]} | results
    for case, table in (
        ("run-full", "orders_full"),
        ("run-noop", "orders_full"),
        ("run-delta", "orders_delta"),
    ):
        results[case] = _measure([*common, "run", table], env)
    shutil.rmtree(folder, ignore_errors=True)
    return results


def spawned_case(args: argparse.Namespace, case: str, source: str) -> dict[str, Any]:
    """A bench_engine case in its own process, timed here as a whole process."""
    started = time.perf_counter()
    result = bench_engine.spawn(args, case, source)
    if "error" not in result:
        result["seconds"] = time.perf_counter() - started
    return result


def one_repetition(args: argparse.Namespace, source: str, work: Path) -> dict[str, Any]:
    """Every case once for one source, deltaload's first."""
    results = deltaload_cases(args, source, work)
    for case in ENGINE_CASES + (DLT_CASES if args.dlt else ()):
        results[case] = spawned_case(args, case, source)
    return results


def medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per case, the median time and peak RSS over the repetitions that succeeded."""
    out: dict[str, Any] = {}
    for case in runs[0]:
        good = [r[case] for r in runs if "error" not in r[case]]
        if not good:
            out[case] = {"error": runs[0][case]["error"]}
            continue
        out[case] = {
            key: statistics.median(r[key] for r in good) for key in ("seconds", "peak_rss_mb")
        }
    return out


def _fastest(results: dict[str, Any], delta: bool) -> tuple[str, dict[str, Any]] | None:
    runs = [
        (case, r)
        for case, r in results.items()
        if case.startswith("dlt") and case.endswith("-delta") == delta and "seconds" in r
    ]
    return min(runs, key=lambda pair: pair[1]["seconds"]) if runs else None


def report(source: str, results: dict[str, Any]) -> list[str]:
    """The table of medians and the target ratios for one source, as printable lines."""
    lines = [f"{source}: {'case':<22}{'seconds':>9}{'peak RSS MB':>13}"]
    for case, r in results.items():
        if "error" in r:
            lines.append(f"{'':8}{case:<22}  failed: {r['error']}")
        else:
            lines.append(f"{'':8}{case:<22}{r['seconds']:>9.2f}{r['peak_rss_mb']:>13.0f}")

    def ok(condition: bool) -> str:
        return "met" if condition else "NOT met"

    def have(*cases: str) -> bool:
        return all("seconds" in results.get(c, {}) for c in cases)

    if have("run-full", "engine-full"):
        ratio = results["run-full"]["seconds"] / results["engine-full"]["seconds"]
        lines.append(
            f"  full: run / engine alone {ratio:.2f}x (target <= 1.5x: {ok(ratio <= 1.5)})"
        )
        memory = results["run-full"]["peak_rss_mb"] / results["engine-full"]["peak_rss_mb"]
        lines.append(
            f"  full: run peak RSS / engine's {memory:.2f}x (target <= 1.3x: {ok(memory <= 1.3)})"
        )
    for delta in (False, True):
        load, run = ("delta", "run-delta") if delta else ("full", "run-full")
        fastest = _fastest(results, delta)
        if fastest and have(run):
            name, r = fastest
            ratio = results[run]["seconds"] / r["seconds"]
            target = f" (target < 1x: {ok(ratio < 1)})" if not delta else ""
            lines.append(f"  {load}: run / fastest dlt ({name}) {ratio:.2f}x{target}")
    if have("run-delta", "engine-delta"):
        ratio = results["run-delta"]["seconds"] / results["engine-delta"]["seconds"]
        lines.append(f"  delta: run / engine alone {ratio:.2f}x")
    for case in ("run-delta", "run-noop"):
        if have(case, "help"):
            above = results[case]["seconds"] - results["help"]["seconds"]
            lines.append(
                f"  {case.removeprefix('run-')}: {above:+.2f} s above deltaload --help "
                f"(target <= 2.5 s: {ok(above <= 2.5)})"
            )
    return lines


def main() -> None:
    """Build the data, run the interleaved repetitions, print medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--sources", default="sqlite,postgres")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved repetitions")
    parser.add_argument(
        "--delta-percent", type=float, default=1.0, help="the delta loads this %% of the rows"
    )
    parser.add_argument(
        "--pg-url", default=os.environ.get("BENCH_PG_URL", bench_engine.DEFAULT_PG_URL)
    )
    parser.add_argument(
        "--workdir", default=str(Path(tempfile.gettempdir()) / "deltaload-bench-e2e")
    )
    parser.add_argument(
        "--dlt-python",
        default=str(ROOT / ".venv-bench" / "bin" / "python"),
        help="interpreter with dlt installed (make bench builds .venv-bench)",
    )
    parser.add_argument("--no-dlt", dest="dlt", action="store_false", help="skip the dlt cases")
    parser.add_argument("--json", action="store_true", help="also print the medians as JSON")
    args = parser.parse_args()
    args.verbose = False  # bench_engine.spawn's cases read it
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    # Measure deltaload as installed: pip byte-compiles an installed package (dlt's is), an
    # editable checkout is compiled here (make bytecode), whatever PYTHONDONTWRITEBYTECODE says.
    for folder in ("src", "functions"):
        compileall.compile_dir(ROOT / folder, quiet=1)
    sources = args.sources.split(",")
    print(
        f"bench_e2e {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: {args.rows:,} rows, "
        f"{args.delta_percent:g} % delta, {args.repeat} repetition(s), {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}",
        flush=True,
    )
    for source in sources:
        if source == "sqlite":
            bench_engine.build_sqlite(bench_engine.sqlite_path(work, args.rows), args.rows)
        else:
            bench_engine.build_postgres(args.pg_url, args.rows)
    runs: dict[str, list[dict[str, Any]]] = {source: [] for source in sources}
    for repetition in range(args.repeat):
        for source in sources:
            runs[source].append(one_repetition(args, source, work))
            print(f"  repetition {repetition + 1}, {source}: done", flush=True)
    summary = {source: medians(runs[source]) for source in sources}
    for source in sources:
        print()
        print("\n".join(report(source, summary[source])))
    if args.json:
        print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
