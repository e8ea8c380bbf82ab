"""The ``deltaload`` command line.

Exit codes: 0 success (every table loaded, had nothing to load, or was skipped with
the reason printed); 1 a table failed, an item is invalid, the state folder is damaged
or busy past ``--lock-timeout``, or a command could not finish (the message says why);
2 the command line itself was wrong; 130 interrupted (Ctrl-C or SIGTERM): the runs in
progress went through the failure path and their tables are not left locked.

Commands that write (onboard, run, invoke, demo) hold the state folder's writer lock for
their whole duration; a second one waits, saying which pid and command holds it. Readers
(status, runs, plan) take no lock and write nothing: they read the committed state files
directly, without starting the emulated AWS.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from deltaload.errors import DeltaloadError, InvalidItemError

app = typer.Typer(
    help="Metadata-driven delta loads into an S3 data lake, deployed with SAM or run offline.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
# Problems are printed whole, never wrapped: they name files, tables and values that
# users copy, grep and paste, and a wrap inside a path breaks all three.
errors = Console(stderr=True, soft_wrap=True)


class Options:
    """Options shared by every command (set by the callback)."""

    state_dir: Path = Path(".deltaload")
    source: str | None = None
    sqlite_schema: str = "dwh"
    project_root: Path | None = None
    lock_timeout: float | None = None


def project_root() -> Path:
    """Where template.yaml lives: --project-root, else the working folder or the checkout."""
    if Options.project_root:
        return Options.project_root
    for folder in (Path.cwd(), *Path.cwd().parents):
        if (folder / "template.yaml").is_file() and (folder / "statemachine").is_dir():
            return folder
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "template.yaml").is_file():
        return checkout
    raise typer.BadParameter("cannot find template.yaml; pass --project-root")


@app.callback()
def main_options(
    state_dir: Annotated[
        Path,
        typer.Option(
            envvar="DELTALOAD_STATE_DIR", help="Local state folder (items, history, lake)."
        ),
    ] = Path(".deltaload"),
    source: Annotated[
        str | None,
        typer.Option(
            envvar="DELTALOAD_SOURCE_URL",
            help="Source database URL: sqlite:///file, postgresql://user@host/db, "
            "mysql+pymysql://user@host/db. Default: the demo SQLite file in the state folder.",
        ),
    ] = None,
    sqlite_schema: Annotated[
        str, typer.Option(help="The schema name a SQLite source answers to.")
    ] = "dwh",
    project: Annotated[
        Path | None,
        typer.Option("--project-root", help="Folder with template.yaml and statemachine/."),
    ] = None,
    lock_timeout: Annotated[
        float | None,
        typer.Option(
            envvar="DELTALOAD_LOCK_TIMEOUT",
            min=0,
            help="Seconds a writing command waits for another one using the state folder "
            "(0: refuse at once). Default: wait until it has finished.",
        ),
    ] = None,
) -> None:
    """Offline by default: AWS is emulated in-process and a local engine stands in for DMS."""
    Options.state_dir = state_dir
    Options.source = source
    Options.sqlite_schema = sqlite_schema
    Options.project_root = project
    Options.lock_timeout = lock_timeout


@contextlib.contextmanager
def runtime(*, writer: bool = True, **kwargs: Any) -> Iterator[Any]:
    """The local runtime with the shared options; its errors become exit code 1.

    A writer holds the state folder's lock until the block ends (waiting for it with a
    message when another command holds it) and first finishes any run a dead process
    left locked; a reader (``writer=False``) takes no lock and writes nothing.
    """
    from deltaload.local.runtime import LocalRuntime, Source

    def waiting(holder: Any) -> None:
        who = holder.describe() if holder else "another process"
        errors.print(
            f"[yellow]waiting[/yellow]: the state folder {escape(str(Options.state_dir))} is "
            f"in use by {escape(who)}; this command starts when it has finished "
            "(--lock-timeout to give up)",
            highlight=False,
        )

    try:
        source = (
            Source.from_url(Options.source, schema=Options.sqlite_schema)
            if Options.source
            else None
        )
        if writer:
            kwargs.setdefault("log_file", Options.state_dir / "logs" / "functions.log")
        if os.environ.get(QUICK_ENV):
            kwargs.update(_quick_runtime())
        with LocalRuntime(
            project_root(),
            Options.state_dir,
            source,
            writer=writer,
            lock_timeout=Options.lock_timeout,
            on_lock_wait=waiting,
            **kwargs,
        ) as rt:
            for run in rt.recovered:
                failure = run.failure.get("failure") or {}
                errors.print(
                    f"[yellow]recovered[/yellow] {escape(run.table)}: run {escape(run.run_id)} "
                    "was interrupted by the end of its process; marked FAILED, lock released, "
                    f"{failure.get('objectsDeleted', 0)} unrecorded object(s) deleted",
                    highlight=False,
                )
            yield rt
    except DeltaloadError as error:
        raise fail(str(error)) from None
    except KeyboardInterrupt:
        # Waiting for the lock, recovering or onboarding: every table write is committed
        # whole or not at all, so there is nothing half-done to clean up.
        errors.print("[red]interrupted[/red]", highlight=False)
        raise typer.Exit(130) from None


def reader() -> Any:
    """The committed state of the folder, read from its files: no lock, no emulated AWS.

    ``--source`` is still checked, so a bad URL is the same error for every command; a
    damaged state file is an error (exit 1) and nothing is changed.
    """
    from deltaload.local.reader import StateReader
    from deltaload.local.source import Source

    try:
        if Options.source:
            Source.from_url(Options.source, schema=Options.sqlite_schema)
        return StateReader(project_root(), Options.state_dir)
    except DeltaloadError as error:
        raise fail(str(error)) from None


# Test-only: the tests of the real command line set this for the engine's quick timing.
QUICK_ENV = "DELTALOAD_TEST_QUICK"


def _quick_runtime() -> dict[str, Any]:
    from deltaload.local.dms import Timing

    return {
        "timing": Timing.quick(),
        "environment": {"POLL_INITIAL_SECONDS": "0", "POLL_MAX_SECONDS": "1"},
    }


def table_view(headers: list[str], rows: list[list[str]]) -> Table:
    """A table whose first column (the name people search for) is never wrapped or cut."""
    view = Table()
    for index, header in enumerate(headers):
        if index == 0:
            width = max([len(header), *(len(r[0]) for r in rows)])
            view.add_column(header, no_wrap=True, min_width=width)
        else:
            view.add_column(header, overflow="fold")
    for row in rows:
        view.add_row(*row)
    return view


def fail(message: str) -> typer.Exit:
    """Print an error and return the exit to raise."""
    errors.print(f"[red]error:[/red] {escape(str(message))}", highlight=False)
    return typer.Exit(1)


def read_item_files(
    files: list[Path], unique: bool = False
) -> tuple[list[dict[str, Any]], list[str]]:
    """Every item in the files, plus one message per invalid item or unreadable file (and,
    with ``unique``, per table given more than once)."""
    from deltaload.items import load_items, parse_item

    valid: list[dict[str, Any]] = []
    problems: list[str] = []
    where: dict[str, Path] = {}
    for file in files:
        try:
            document = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as error:
            problems.append(f"{file}: cannot read JSON: {error}")
            continue
        for raw in load_items(document):
            try:
                item = parse_item(raw).to_plain()
            except InvalidItemError as error:
                problems.append(f"{file}: {error}")
                continue
            table = item["targetTableName"]
            if unique and table in where:
                problems.append(
                    f"{file}: the item for table {table!r} is given twice "
                    f"(also in {where[table]}); give each table once"
                )
                continue
            where[table] = file
            valid.append(item)
    return valid, problems


# -- validate / onboard --------------------------------------------------------------------------


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="Item files (plain or DynamoDB JSON).")],
):
    """Check controller items without writing anything."""
    valid, problems = read_item_files(files)
    for item in valid:
        console.print(f"[green]ok[/green]   {item['targetTableName']}")
    for problem in problems:
        errors.print(f"[red]invalid[/red] {escape(problem)}", highlight=False)
    if problems:
        raise typer.Exit(1)


@app.command()
def onboard(
    files: Annotated[list[Path], typer.Argument(help="Item files (plain or DynamoDB JSON).")],
    stack: Annotated[str | None, typer.Option(help="Deployed stack whose table to write.")] = None,
    table: Annotated[str | None, typer.Option(help="Controller table name to write.")] = None,
    profile: Annotated[str | None, typer.Option(help="AWS profile (with --stack/--table).")] = None,
    region: Annotated[str | None, typer.Option(help="AWS region (with --stack/--table).")] = None,
    reset: Annotated[
        bool,
        typer.Option(help="Drop the recorded watermark and run state: reload from startvalue."),
    ] = False,
):
    """Validate items, then put them into the controller table (local unless --stack/--table).

    An item that already exists keeps its watermark and run state unless --reset is given;
    nothing is written when any item is invalid, or while a table's run holds its lock.
    """
    valid, problems = read_item_files(files, unique=True)
    if problems:
        for problem in problems:
            errors.print(f"[red]invalid[/red] {escape(problem)}", highlight=False)
        raise fail("nothing was written: fix the items above first")
    if stack or table:
        import boto3

        session = boto3.Session(profile_name=profile, region_name=region)
        name = table or _stack_output(session, stack or "", "ControllerTableName")
        for item in _put_preserving_state(session.client("dynamodb"), name, valid, reset):
            console.print(f"onboarded {item} into {name}")
        return
    with runtime() as rt:
        client = rt.session.client("dynamodb")
        for item in _put_preserving_state(client, rt.controller_table, valid, reset):
            console.print(f"onboarded {item} (local)")
        rt.save()


def _stack_output(session: Any, stack: str, key: str) -> str:
    outputs = session.client("cloudformation").describe_stacks(StackName=stack)["Stacks"][0]
    for output in outputs.get("Outputs", []):
        if output["OutputKey"] == key:
            return str(output["OutputValue"])
    raise fail(f"stack {stack!r} has no output {key}")


def _put_preserving_state(
    client: Any, table_name: str, items: list[dict[str, Any]], reset: bool
) -> list[str]:
    """Onboard the items through ``client`` (store.onboard_items); a refusal is exit 1."""
    from deltaload.aws import Clients
    from deltaload.store import OnboardRefusedError, onboard_items

    try:
        return onboard_items(
            Clients(overrides={"dynamodb": client}),
            table_name,
            items,
            reset=reset,
            now=datetime.now(UTC),
        )
    except OnboardRefusedError as refused:
        for refusal in refused.refusals:
            errors.print(f"[red]refused[/red] {escape(refusal)}", highlight=False)
        if refused.written:
            raise fail(f"already written: {', '.join(refused.written)}") from None
        raise fail("nothing was written: each refusal above says what to do") from None


# -- plan / status / runs ------------------------------------------------------------------------


@app.command()
def plan(table: Annotated[str, typer.Argument(help="targetTableName of the item.")]):
    """Show what the next run of TABLE would load: window, DMS table mapping, task settings."""
    from deltaload.items import parse_item
    from deltaload.mapping import table_mapping, task_settings
    from deltaload.window import plan_window

    state = reader()
    raw = state.item(table)
    # The stack's default lag, as the template sets it for the functions.
    lag = int(
        state.function_environment("SAFETY_LAG_SECONDS")
        or os.environ.get("SAFETY_LAG_SECONDS", "300")
    )
    if raw is None:
        raise fail(f"no controller item {table!r}; see `deltaload status`")
    try:
        item = parse_item(raw)
    except InvalidItemError as error:
        raise fail(str(error)) from None
    window = plan_window(item, datetime.now(UTC), default_safety_lag=lag)
    console.print(f"[bold]{table}[/bold]: {window.describe()}")
    console.print(f"watermark now: {item.watermark or '(none: starts at startvalue)'}")
    console.print("table mapping:")
    console.print_json(json.dumps(table_mapping(item, window)))
    console.print("task settings:")
    console.print_json(json.dumps(task_settings(item)))


AS_JSON = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _freshness_text(raw: dict[str, Any], now: datetime) -> str:
    """How long ago the table last succeeded (and its limit, its data's lag), or "-"."""
    from deltaload.freshness import describe, table_freshness
    from deltaload.items import parse_item

    try:
        return describe(table_freshness(parse_item(raw), now))
    except InvalidItemError:
        return "- (invalid item)"


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


@app.command()
def status(as_json: AS_JSON = False):
    """Every table: active, watermark, last run, rows, state, lock, freshness, schema change."""
    items = reader().items()
    now = datetime.now(UTC)
    if as_json:
        console.print_json(json.dumps(items, default=str))
        return
    rows = [
        [
            item["targetTableName"],
            str(item.get("activeflag")),
            f"{item.get('filtercolumn')} {item.get('filteroperator')} {item.get('startvalue', '')}",
            str(item.get("watermark", "-")),
            str(item.get("lastRunEndedAt") or item.get("lastRunStartedAt") or "-"),
            str(item.get("lastRunStatus", "-")),
            str(item.get("lastRunRows", "-")),
            str(item.get("lockOwner", "")),
            _freshness_text(item, now),
            _short(str(item.get("lastSchemaChange", ""))),
        ]
        for item in items
    ]
    headers = ["table", "active", "filter", "watermark", "last run", "status", "rows", "lock"]
    headers += ["last success", "schema change"]
    view = table_view(headers, rows)
    console.print(view if items else "no controller items yet: `deltaload onboard FILE`")


@app.command()
def runs(
    table: Annotated[str, typer.Argument(help="targetTableName of the item.")],
    as_json: AS_JSON = False,
):
    """The run history of TABLE, oldest first."""
    records = reader().history(table)
    if as_json:
        console.print_json(json.dumps(records, default=str))
        return
    rows = []
    for r in records:
        window = r.get("window") or {}
        rows.append(
            [
                str(r.get("runId")),
                str(r.get("status")),
                f"{window.get('lower', '')} .. {window.get('upper', '')}" if window else "-",
                str(r.get("rows", "-")),
                str(r.get("files", "-")),
                str(r.get("watermark", "-")),
                str(r.get("error", "") or "")[:80],
            ]
        )
    view = table_view(["run", "status", "window", "rows", "files", "watermark", "error"], rows)
    console.print(view if records else f"no runs of {table!r} yet")


# -- run / invoke --------------------------------------------------------------------------------


@app.command()
def run(
    tables: Annotated[
        list[str] | None, typer.Argument(help="Limit the tick to these tables.")
    ] = None,
):
    """One scheduled tick: the starter, then every execution to its end.

    Prints each table's outcome (loaded, nothing to load, skipped and why, failed and
    why) with its window, rows, files and new watermark. Exit 0 when nothing failed, 1
    when a table failed or an item is invalid, 130 when interrupted (Ctrl-C, SIGTERM):
    the runs then go through the failure path, so no table is left locked.
    """
    from deltaload.local.runtime import Interrupted, interruptible

    with runtime() as rt, interruptible() as stop:
        try:
            result = tick_with_progress(rt, tables or None, stop)
        except Interrupted as interrupted:
            print_executions(interrupted.executions)
            raise interrupted_exit() from None
    print_tick(result)
    if result.failed or result.starter.get("invalid"):
        raise typer.Exit(1)


def interrupted_exit() -> typer.Exit:
    """Say that the command was interrupted and return exit 130."""
    errors.print(
        "[red]interrupted[/red]: the runs in progress were stopped and recorded as FAILED, "
        "their staging data deleted and their locks released; the next run loads their "
        "windows again",
        highlight=False,
    )
    return typer.Exit(130)


def tick_with_progress(rt: Any, tables: list[str] | None, stop: Any = None) -> Any:
    """Run a tick with live per-table progress (a live view on a terminal, lines otherwise)."""
    show = _progress(rt)
    with show.live:
        return rt.tick(tables, progress=show, stop=stop)


class _progress:
    """Progress of the executions: a live table on a terminal, one line per step elsewhere."""

    def __init__(self, rt: Any) -> None:
        self.rt = rt
        self.terminal = console.is_terminal
        self.live: Any = (
            Live(console=console, refresh_per_second=4, transient=True)
            if self.terminal
            else contextlib.nullcontext()
        )
        self.seen: dict[str, str] = {}

    def __call__(self, results: list[Any]) -> None:
        steps = [(r, _current_step(self.rt, r)) for r in results]
        if self.terminal:
            view = Table("table", "status", "step")
            for r, step in steps:
                view.add_row(r.table, r.status, step)
            self.live.update(view)
            return
        for r, step in steps:
            now = step or r.status
            if self.seen.get(r.name) != now:
                self.seen[r.name] = now
                console.print(f"  {r.table}: {step or now.lower()}", highlight=False)


def _current_step(rt: Any, result: Any) -> str:
    if result.status != "RUNNING":
        return ""
    # The runtime records each state entered as it happens: nothing is re-read here.
    return str(rt.current_step(rt.execution_arn(result.name)))


def print_tick(result: Any) -> None:
    """The summary of a tick."""
    starter = result.starter
    for entry in starter.get("invalid", []):
        errors.print(
            f"[red]invalid[/red] {escape(str(entry['table']))}: {escape(str(entry['errors']))}",
            highlight=False,
        )
    for entry in starter.get("skipped", []) + starter.get("deferred", []):
        console.print(
            f"[yellow]skipped[/yellow] {escape(str(entry['table']))}: "
            f"{escape(str(entry.get('reason', '')))}"
        )
    if result.executions:
        print_executions(result.executions)
        for execution in result.executions:
            warning = (execution.output.get("recorded") or {}).get("warning")
            if warning:
                console.print(
                    f"[yellow]warning[/yellow] {escape(execution.table)}: {escape(str(warning))}",
                    soft_wrap=True,
                )
    elif not starter.get("invalid") and not starter.get("skipped") and not starter.get("deferred"):
        console.print("no active tables to load")


_COLOURS = {"loaded": "green", "nothing to load": "green", "skipped": "yellow"}


def print_executions(executions: list[Any]) -> None:
    """One row per run (outcome, window, rows, files, new watermark), then each reason whole."""
    view = Table("table", "result", "window", "rows", "files", "new watermark")
    reasons: list[str] = []
    for execution in executions:
        out = execution.outcome
        if out is None:  # pragma: no cover - every finished run has one
            view.add_row(execution.table, execution.status, "", "", "", "")
            continue
        colour = _COLOURS.get(out.result, "red")
        view.add_row(
            execution.table,
            f"[{colour}]{out.result}[/{colour}]",
            escape(out.window or "-"),
            "-" if out.rows is None else str(out.rows),
            "-" if out.files is None else str(out.files),
            escape(str(out.watermark)) if out.watermark is not None else "-",
        )
        if out.reason:
            # Reasons name files, runs and values people copy: printed whole, never wrapped.
            reasons.append(
                f"[{colour}]{out.result}[/{colour}] {escape(execution.table)}: {escape(out.reason)}"
            )
    console.print(view)
    for reason in reasons:
        console.print(reason, soft_wrap=True, highlight=False)


@app.command()
def invoke(
    function: Annotated[
        str, typer.Argument(help="Logical id in template.yaml, e.g. StarterFunction.")
    ],
    event: Annotated[Path | None, typer.Option(help="JSON event file (default: {}).")] = None,
):
    """Invoke one function of the template offline, as `sam local invoke` would.

    Executions the function starts (StarterFunction) are followed to their end, as
    `deltaload run` does; exit codes as for `run`.
    """
    from deltaload.local.runtime import Interrupted, interruptible

    payload = json.loads(event.read_text()) if event else {}
    with runtime() as rt, interruptible() as stop:
        result = rt.invoke(function, payload)
        console.print_json(json.dumps(result, default=str))
        arns = rt.running_executions()
        if not arns:
            return
        show = _progress(rt)
        try:
            with show.live:
                executions = rt.wait_for(arns, show, stop=stop)
        except Interrupted as interrupted:
            print_executions(interrupted.executions)
            raise interrupted_exit() from None
        rt.save()
    print_executions(executions)
    if any(e.status != "SUCCEEDED" for e in executions):
        raise typer.Exit(1)


@app.command()
def demo(
    rows: Annotated[int, typer.Option(help="Rows in the demo orders table.")] = 1000,
):
    """Load the demo orders table twice, with inserts and updates in between."""
    from deltaload.local.demo import run_demo
    from deltaload.local.persistence import StateFolderBusyError, WriterLock, command_line

    # The demo recreates <state>/demo: hold the state folder's lock so that no other
    # command (or demo) works there meanwhile; its runtime locks the demo folder itself.
    lock = WriterLock(Options.state_dir)
    try:
        lock.acquire(command_line(), timeout=Options.lock_timeout)
    except StateFolderBusyError as error:
        raise fail(str(error)) from None
    try:
        run_demo(console, runtime, Options.state_dir, rows, project_root())
    finally:
        lock.release()


def main() -> None:
    """Entry point of the `deltaload` script."""
    try:
        app()
    except DeltaloadError as error:
        errors.print(f"[red]error:[/red] {escape(str(error))}", highlight=False)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        # Outside a run's executions (waiting for the lock, onboarding): nothing is left
        # half-done, since every table write is committed whole or not at all.
        errors.print("[red]interrupted[/red]", highlight=False)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
