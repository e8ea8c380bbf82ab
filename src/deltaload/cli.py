"""The ``deltaload`` command line.

Exit codes: 0 success (every table loaded, had nothing to load, or was skipped with
the reason printed); 1 a table failed, an item is invalid, the state folder is damaged
or busy past ``--lock-timeout``, or a command could not finish (the message says why);
2 the command line itself was wrong; 130 interrupted (Ctrl-C or SIGTERM): the runs in
progress went through the failure path and their tables are not left locked.

Commands that write (onboard, run, retry, reset, invoke, demo) hold the state folder's
writer lock for their whole duration; a second one waits, saying which pid and command
holds it. Readers (status, runs, plan) take no lock and write nothing: they read the
committed state files directly, without starting the emulated AWS.

With ``--stack NAME`` the commands work on a deployed stack instead (see ``remote``);
``invoke`` and ``demo`` are offline only. The command line's options may also follow the
command, and the tables are printed to fit 80 columns (see ``terminal``).
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.text import Text

from deltaload.errors import DeltaloadError, InvalidItemError
from deltaload.terminal import GlobalOptionsAnywhere, compact_time, table_view


class _Commands(GlobalOptionsAnywhere):
    """The commands; an error a command meets (DeltaloadError) is printed, never a traceback."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except DeltaloadError as error:
            raise fail(str(error)) from None


app = typer.Typer(
    cls=_Commands,
    help="Metadata-driven delta loads into an S3 data lake, deployed with SAM or run offline. "
    "The options below may also be given after the command.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _consoles() -> tuple[Console, Console]:
    """Standard output and standard error, as the environment asks for them now (COLUMNS,
    NO_COLOR, FORCE_COLOR are read when a console is made)."""
    # Problems are printed whole, never wrapped: they name files, tables and values that
    # users copy, grep and paste, and a wrap inside a path breaks all three.
    return Console(), Console(stderr=True, soft_wrap=True)


console, errors = _consoles()


class Options:
    """Options shared by every command (set by the callback)."""

    state_dir: Path = Path(".deltaload")
    source: str | None = None
    sqlite_schema: str = "dwh"
    project_root: Path | None = None
    lock_timeout: float | None = None
    stack: str | None = None
    profile: str | None = None
    region: str | None = None


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
    stack: Annotated[
        str | None,
        typer.Option(
            envvar="DELTALOAD_STACK",
            help="Work on this deployed CloudFormation stack instead of the local state.",
        ),
    ] = None,
    profile: Annotated[
        str | None, typer.Option(help="AWS profile (with --stack or onboard --table).")
    ] = None,
    region: Annotated[
        str | None, typer.Option(help="AWS region (with --stack or onboard --table).")
    ] = None,
) -> None:
    """Offline by default: AWS is emulated in-process and a local engine stands in for DMS."""
    global console, errors
    console, errors = _consoles()
    Options.stack, Options.profile, Options.region = stack, profile, region
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
    from deltaload.local.dms import Timing
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
        # The engine's statuses change in hundredths of a second: the workflow still has
        # to poll for each one, as on AWS, but a command waits for no made-up DMS time.
        kwargs.setdefault("timing", Timing.quick())
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
            started_up()
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
        state = StateReader(project_root(), Options.state_dir)
        started_up()
        return state
    except DeltaloadError as error:
        raise fail(str(error)) from None


def started_up() -> None:
    """Start-up's objects (modules, service models, the emulated services) live as long as
    the command: from now on the garbage collector runs, and skips them.

    main() turns the collector off for start-up, where it found nothing to free and cost
    a run about 0.4 s; a command run inside another program (the tests) is left as it is.
    """
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


# Test-only: the tests of the real command line set this for zero-second polls.
QUICK_ENV = "DELTALOAD_TEST_QUICK"


def _quick_runtime() -> dict[str, Any]:
    return {"environment": {"POLL_INITIAL_SECONDS": "0", "POLL_MAX_SECONDS": "1"}}


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
    files: Annotated[
        list[Path] | None, typer.Argument(help="Item files (plain or DynamoDB JSON).")
    ] = None,
):
    """Check controller items without writing anything.

    Checks the files given, or with --stack and no file the items deployed in the
    stack's controller table.
    """
    if files:
        valid, problems = read_item_files(files)
    elif Options.stack:
        valid, problems = _deployed_items(remote_stack())
    else:
        raise fail("give item files to check, or --stack NAME to check the deployed items")
    for item in valid:
        console.print(f"[green]ok[/green]   {escape(str(item['targetTableName']))}")
    for problem in problems:
        errors.print(f"[red]invalid[/red] {escape(problem)}", highlight=False)
    if problems:
        raise typer.Exit(1)


def _deployed_items(stack: Any) -> tuple[list[dict[str, Any]], list[str]]:
    """The stack's items that are valid, and one message per invalid one."""
    from deltaload.items import parse_item

    valid: list[dict[str, Any]] = []
    problems: list[str] = []
    for raw in stack.items():
        try:
            valid.append(parse_item(raw).to_plain())
        except InvalidItemError as error:
            problems.append(f"{stack.controller_table}: {error}")
    return valid, problems


@app.command()
def onboard(
    files: Annotated[list[Path], typer.Argument(help="Item files (plain or DynamoDB JSON).")],
    table: Annotated[str | None, typer.Option(help="Controller table name to write.")] = None,
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
    if Options.stack or table:
        from deltaload.aws import for_profile

        clients = for_profile(Options.profile, Options.region)
        name = table or remote_stack(clients).controller_table
        for item in _put_preserving_state(clients.dynamodb, name, valid, reset):
            console.print(f"onboarded {item} into {name}")
        return
    with runtime() as rt:
        client = rt.session.client("dynamodb")
        for item in _put_preserving_state(client, rt.controller_table, valid, reset):
            console.print(f"onboarded {item} (local)")
        rt.save()


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


AS_JSON = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def state_source() -> Any:
    """Where the readers read: the deployed stack with --stack, else the state folder."""
    return remote_stack() if Options.stack else reader()


def remote_stack(clients: Any = None) -> Any:
    """The stack named by --stack (read from its CloudFormation outputs)."""
    from deltaload.aws import for_profile
    from deltaload.remote import Stack

    if not Options.stack:
        raise fail("this needs --stack NAME: the deployed stack to work on")
    stack = Stack.read(clients or for_profile(Options.profile, Options.region), Options.stack)
    started_up()
    return stack


def offline_only(command: str) -> None:
    """Refuse --stack for a command that only works offline."""
    if Options.stack:
        raise fail(
            f"`deltaload {command}` works offline only; on a stack, `deltaload run` "
            "invokes the deployed starter"
        )


def print_json(document: Any) -> None:
    """JSON on standard output, whole (no highlighting, no wrapping)."""
    console.print_json(json.dumps(document, default=str), highlight=False)


@app.command()
def plan(
    table: Annotated[str, typer.Argument(help="targetTableName of the item.")],
    as_json: AS_JSON = False,
):
    """Show what the next run of TABLE would load: window (each window of an item with a
    windowsize), DMS table mapping, task settings."""
    from deltaload.items import parse_item
    from deltaload.mapping import table_mapping, task_settings
    from deltaload.window import plan_windows, span_of

    state = state_source()
    raw = state.item(table)
    if raw is None:
        raise fail(f"no controller item {table!r}; see `deltaload status`")
    # The stack's default lag, as the template sets it for the functions.
    lag = int(
        state.function_environment("SAFETY_LAG_SECONDS")
        or os.environ.get("SAFETY_LAG_SECONDS", "300")
    )
    try:
        item = parse_item(raw)
    except InvalidItemError as error:
        raise fail(str(error)) from None
    now = datetime.now(UTC)
    probed, unprobed = _probe_for_plan(state, item, now, lag)
    if probed is None:
        windows = plan_windows(item, now, default_safety_lag=lag)
        counts: list[dict[str, Any]] = []
    else:
        from deltaload import probe

        # The windows the run would plan now; the mapping is the one DMS would get.
        windows = probe.planned_windows(item, now, probed.maximum, lag)
        counts = [w.document() for w in probed.windows]
    rows = {(c["lower"], c["upper"]): c["rows"] for c in counts}
    window = span_of(windows, item.filter_column)
    mapping, settings = table_mapping(item, window), task_settings(item)
    if as_json:
        document: dict[str, Any] = {
            "table": table,
            "window": window.describe(),
            "watermark": item.watermark,
            "probe": (
                {"maximum": probed.maximum, "windows": counts}
                if probed is not None
                else {"notProbed": unprobed}
            ),
            "tableMapping": mapping,
            "taskSettings": settings,
        }
        if len(windows) > 1:
            document["windows"] = [
                {
                    "index": i,
                    "window": w.describe(),
                    "lower": w.lower,
                    "upper": w.upper,
                    "rows": rows.get((w.lower, w.upper)),
                }
                for i, w in enumerate(windows, start=1)
            ]
            document["concurrency"] = item.concurrency
        print_json(document)
        return
    console.print(f"[bold]{escape(table)}[/bold]: {escape(window.describe())}")
    if len(windows) > 1:
        console.print(f"{len(windows)} windows, {item.concurrency} at once:")
        for index, each in enumerate(windows, start=1):
            count = rows.get((each.lower, each.upper))
            probed_rows = f": {count} rows at the source (probed now)" if count is not None else ""
            console.print(f"  {index:>3}. {escape(each.describe())}{probed_rows}")
    console.print(f"watermark now: {escape(item.watermark or '(none: starts at startvalue)')}")
    if probed is None:
        console.print(f"rows: not probed ({escape(unprobed)})")
    for count in counts if len(windows) == 1 else []:
        upper = count["upper"] if count["upper"] is not None else "max loaded value"
        console.print(
            f"window [{escape(str(count['lower']))}, {escape(str(upper))}]: "
            f"{count['rows']} rows at the source (probed now)"
        )
    if probed is not None and not any(count["rows"] for count in counts):
        console.print("nothing new at the source: the next run loads nothing unless rows arrive")
    console.print("table mapping:")
    print_json(mapping)
    console.print("task settings:")
    print_json(settings)


def _probe_for_plan(state: Any, item: Any, now: datetime, lag: int) -> tuple[Any, str]:
    """The source probe of the next run's windows, offline; (None, why not) otherwise."""
    if Options.stack:
        return None, "on a stack the source is reached only from its subnets"
    if (state.function_environment("PROBE_ENABLED") or "false").lower() != "true":
        return None, "the stack's ProbeSource is false"
    from deltaload import probe
    from deltaload.local.source import Source

    url = Options.source or f"sqlite:///{Options.state_dir / 'source.sqlite'}"
    source = Source.from_url(url, schema=Options.sqlite_schema)
    try:
        access = probe.source_access(source.secret(), source.engine)
        return probe.probe_source(access, item, now, default_safety_lag=lag), ""
    except probe.ProbeError as error:
        return None, str(error)


def _active(value: Any) -> str:
    from deltaload.items import active_flag

    flag = active_flag(value)
    return "?" if flag is None else ("yes" if flag else "no")


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


BACKLOG = Annotated[
    bool,
    typer.Option(
        "--backlog",
        help="Also ask the source (offline: the probe's read-only queries) how far each "
        "active table is behind: rows above its watermark, and windows for an item with a "
        "windowsize.",
    ),
]
# The most windows --backlog counts for one item (a fine windowsize over a long span).
BACKLOG_WINDOWS_MAX = 100_000


def _backlog(state: Any, raw: dict[str, Any], now: datetime, lag: int) -> dict[str, Any]:
    """How far ``raw``'s table is behind its source: rows, and windows when it has a
    windowsize; or why that is not known."""
    from deltaload.items import parse_item
    from deltaload.window import plan_windows

    try:
        item = parse_item(raw)
    except InvalidItemError:
        return {"notProbed": "the item is invalid (`deltaload validate`)"}
    if not item.active:
        return {"notProbed": "the item is not active"}
    if not item.is_incremental:
        return {"notProbed": "a one-shot item has no backlog"}
    # One window over everything above the watermark: one COUNT, whatever the windowsize.
    whole = item.model_copy(update={"window_span": None, "window_size": None})
    probed, why = _probe_for_plan(state, whole, now, lag)
    if probed is None:
        return {"notProbed": why}
    backlog: dict[str, Any] = {
        "rows": sum(w.rows for w in probed.windows),
        "maximum": probed.maximum,
    }
    if item.window_span is not None:
        every = item.model_copy(update={"max_windows": BACKLOG_WINDOWS_MAX})
        windows = plan_windows(every, now, source_max=probed.maximum, default_safety_lag=lag)
        backlog["windows"] = 0 if backlog["rows"] == 0 else len(windows)
        backlog["windowsPerRun"] = item.windows_per_run
    return backlog


def _backlog_text(backlog: dict[str, Any]) -> str:
    if "notProbed" in backlog:
        return f"not probed ({backlog['notProbed']})"
    text = f"{backlog['rows']:,} rows above the watermark"
    if "windows" in backlog:
        runs = -(-backlog["windows"] // backlog["windowsPerRun"])  # ceiling
        text += (
            f", {backlog['windows']} window(s): {runs} run(s) of at most {backlog['windowsPerRun']}"
        )
    return text


@app.command()
def status(as_json: AS_JSON = False, backlog: BACKLOG = False):
    """Every table: active, filter, watermark, last run (UTC), its status (and lock), rows,
    freshness, last schema change; with --backlog, how far each is behind its source."""
    state = state_source()
    items = state.items()
    now = datetime.now(UTC)
    behind: dict[str, dict[str, Any]] = {}
    if backlog:
        lag = int(
            state.function_environment("SAFETY_LAG_SECONDS")
            or os.environ.get("SAFETY_LAG_SECONDS", "300")
        )
        behind = {str(i["targetTableName"]): _backlog(state, i, now, lag) for i in items}
    if as_json:
        print_json(
            [{**i, "backlog": behind[str(i["targetTableName"])]} for i in items]
            if backlog
            else items
        )
        return
    rows: list[list[str | Text]] = [
        [
            str(item["targetTableName"]),
            _active(item.get("activeflag")),
            f"{item.get('filtercolumn')} {item.get('filteroperator')} {item.get('startvalue', '')}",
            str(item.get("watermark", "-")),
            compact_time(item.get("lastRunEndedAt") or item.get("lastRunStartedAt")),
            _status_text(
                str(item.get("lastRunStatus", "-")) + (" locked" if item.get("lockOwner") else "")
            ),
            str(item.get("lastRunRows", "-")),
        ]
        for item in items
    ]
    headers = ["table", "active", "filter", "watermark", "last run", "status", "rows"]
    if not items:
        console.print("no controller items yet: `deltaload onboard FILE`")
        return
    console.print(table_view(headers, rows, console.width))
    # Freshness and schema changes are sentences, not columns: the table stays in 80.
    for item in items:
        name = escape(str(item["targetTableName"]))
        console.print(f"{name}: last success {escape(_freshness_text(item, now))}")
        if item.get("lastSchemaChange"):
            change = escape(_short(str(item["lastSchemaChange"]), 200))
            console.print(f"{name}: last schema change {change}")
        if backlog:
            text = _backlog_text(behind[str(item["targetTableName"])])
            console.print(f"{name}: backlog {escape(text)}")


@app.command()
def ddl(table: Annotated[str, typer.Argument(help="targetTableName of the item.")]):
    """The Athena DDL of TABLE as the stack catalogs it: its Glue table, a partition per
    published run and, for an item with keycolumns, the view of each row's current version."""
    from deltaload import catalog, names
    from deltaload.items import parse_item

    state = state_source()
    raw = state.item(table)
    if raw is None:
        raise fail(f"no controller item {table!r}: `deltaload status` lists the items")
    try:
        item = parse_item(raw)
    except DeltaloadError as error:
        raise fail(str(error)) from None
    bucket = state.function_environment("DATA_BUCKET")
    database = state.function_environment("GLUE_DATABASE")
    if not bucket or not database:
        raise fail("the functions' environment names no DATA_BUCKET or GLUE_DATABASE")
    prefix = names.as_prefix(
        names.folder(item.output_s3_prefix, item.source_schema, item.target_table_name)
    )
    key = item.run_state.get("schemaManifestKey")
    body = state.lake_object(bucket, str(key)) if key else None
    if body is None:
        raise fail(
            f"table {table!r}: no run has published files yet, so its columns are unknown; "
            "`deltaload run` first"
        )
    manifests = f"{prefix}_manifests/"
    runs = [
        k[len(manifests) : -len(".json")]
        for k in state.lake_keys(bucket, manifests)
        if k.endswith(".json") and "/" not in k[len(manifests) :]
    ]
    try:
        text = catalog.athena_ddl(
            database,
            item.target_table_name,
            f"s3://{bucket}/{prefix}",
            json.loads(body)["tableSchema"],
            runs,
            key_columns=item.key_columns,
            order_column=item.filter_column,
        )
    except (DeltaloadError, KeyError, ValueError) as error:
        raise fail(f"table {table!r}: cannot write its DDL: {error}") from None
    console.print(text, soft_wrap=True, highlight=False, markup=False)


_STATUS_COLOURS = {"SUCCEEDED": "green", "FAILED": "red", "RUNNING": "yellow", "RESET": "cyan"}


def _status_text(value: str) -> Text:
    return Text(value, style=_STATUS_COLOURS.get(value, ""))


@app.command()
def runs(
    table: Annotated[str, typer.Argument(help="targetTableName of the item.")],
    as_json: AS_JSON = False,
):
    """The run history of TABLE, oldest first (with --stack: each run's execution too)."""
    state = state_source()
    records = state.history(table)
    links: dict[str, tuple[str, str]] = {}
    if Options.stack:
        for r in records:
            if str(r.get("status")) != "RESET":
                arn = state.execution_arn(str(r.get("runId")))
                links[str(r.get("runId"))] = (arn, state.console_url(arn))
    if as_json:
        for r in records:
            if str(r.get("runId")) in links:
                r["executionArn"], r["consoleUrl"] = links[str(r.get("runId"))]
        print_json(records)
        return
    rows: list[list[str | Text]] = []
    for r in records:
        window = r.get("window") or {}
        rows.append(
            [
                str(r.get("runId")),
                _status_text(str(r.get("status"))),
                _window_text(window),
                str(r.get("rows", "-")),
                str(r.get("watermark", "-")),
                _shorten(str(r.get("error") or r.get("note") or "")),
            ]
        )
    # A run's id holds its start (table-YYYYMMDDTHHMMSSZ); --json has every time whole.
    headers = ["run", "status", "window", "rows", "watermark", "error / note"]
    console.print(
        table_view(headers, rows, console.width) if records else f"no runs of {table!r} yet"
    )
    for run_id, (_arn, url) in links.items():
        console.print(f"{escape(run_id)}: {escape(url)}", soft_wrap=True, highlight=False)


def _window_text(window: Any) -> str:
    if not isinstance(window, dict) or not window:
        return "-"
    upper = window.get("upper")
    # An open upper bound is the highest value the load finds.
    return f"{window.get('lower', '')} .. {'max' if upper is None else upper}"


def _shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


# -- run / retry / reset / invoke ----------------------------------------------------------------


WAIT = Annotated[
    bool,
    typer.Option(
        "--wait/--no-wait",
        help="Follow the runs until each has ended (--no-wait: start them and return; "
        "with --stack only).",
    ),
]


@app.command()
def run(
    tables: Annotated[
        list[str] | None, typer.Argument(help="Limit the tick to these tables.")
    ] = None,
    wait: WAIT = True,
    as_json: AS_JSON = False,
):
    """One scheduled tick: the starter, then every execution to its end.

    Prints each table's outcome (loaded, nothing to load, skipped and why, failed and
    why) with its window, rows, files and new watermark. Exit 0 when nothing failed, 1
    when a table failed or an item is invalid, 130 when interrupted (Ctrl-C, SIGTERM):
    offline, the runs then go through the failure path, so no table is left locked;
    with --stack they go on in AWS, and only the following stops.
    """
    report_tick(start_and_follow(tables or None, wait, as_json), as_json)


def start_and_follow(tables: list[str] | None, wait: bool = True, as_json: bool = False) -> Any:
    """A tick, offline or on the stack, followed with live progress; its TickResult.

    With ``as_json`` the progress goes to standard error, leaving standard output to the
    JSON document.
    """
    out = errors if as_json else console
    if Options.stack:
        return _remote_tick(tables, wait, out)
    if not wait:
        raise fail("--no-wait needs --stack: offline runs live only as long as the command")
    from deltaload.local.runtime import Interrupted, interruptible

    with runtime() as rt, interruptible() as stop:
        try:
            return tick_with_progress(rt, tables, stop, out)
        except Interrupted as interrupted:
            print_executions(interrupted.executions)
            raise interrupted_exit() from None


def _remote_tick(tables: list[str] | None, wait: bool, out: Console) -> Any:
    from deltaload.outcome import ExecutionResult, TickResult

    stack = remote_stack()
    summary = stack.start(tables)
    arns = [stack.execution_arn(s["runId"]) for s in summary.get("started", [])]
    if not wait:
        started = [
            ExecutionResult(s["table"], s["runId"], "RUNNING", arn=arn)
            for s, arn in zip(summary.get("started", []), arns, strict=True)
        ]
        return TickResult(starter=summary, executions=started)
    show = _progress(lambda r: stack.current_step(r.arn) if r.status == "RUNNING" else "", out)
    try:
        with show.live:
            executions = stack.follow(arns, show)
    except KeyboardInterrupt:
        errors.print(
            "[red]interrupted[/red]: stopped following; the runs go on in the stack "
            "(`deltaload runs TABLE --stack` shows how they end)",
            highlight=False,
        )
        raise typer.Exit(130) from None
    return TickResult(starter=summary, executions=executions)


def report_tick(result: Any, as_json: bool) -> None:
    """Print a tick (as JSON with ``as_json``); exit 1 when a table failed or is invalid."""
    if as_json:
        print_json({**result.starter, "executions": [e.to_json() for e in result.executions]})
    else:
        print_tick(result)
    if any(e.status not in ("SUCCEEDED", "RUNNING") for e in result.executions) or (
        result.starter.get("invalid")
    ):
        raise typer.Exit(1)


@app.command()
def retry(
    table: Annotated[str, typer.Argument(help="targetTableName of the failed table.")],
    wait: WAIT = True,
    as_json: AS_JSON = False,
):
    """Run TABLE again now, outside the schedule, after its last run failed.

    The failed window is loaded again in full (the watermark did not move); exit codes
    as for `run`.
    """
    item = state_source().item(table)
    if item is None:
        raise fail(f"no controller item {table!r}; see `deltaload status`")
    last = str(item.get("lastRunStatus") or "")
    if last != "FAILED":
        said = f"its last run is {last}" if last else "it has not run yet"
        raise fail(
            f"{table}: {said}, so there is nothing to retry; `deltaload run {table}` "
            "starts a run anyway"
        )
    result = start_and_follow([table], wait, as_json)
    if _started_this_tick(result, table):
        # Runs are named after the tick, to the second: the failed run started within the
        # same second, so start again in the next one.
        time.sleep(1.0)
        result = start_and_follow([table], wait, as_json)
    report_tick(result, as_json)


def _started_this_tick(result: Any, table: str) -> bool:
    return not result.executions and any(
        s.get("table") == table and s.get("reason") == "already started for this tick"
        for s in result.starter.get("skipped", [])
    )


@app.command()
def reset(
    table: Annotated[str, typer.Argument(help="targetTableName of the item.")],
    to: Annotated[
        str | None,
        typer.Option(
            help="The new watermark (default: drop it; the next run starts at startvalue)."
        ),
    ] = None,
    as_json: AS_JSON = False,
):
    """Move TABLE's watermark to --to VALUE, or drop it, on purpose.

    Refused while a run holds the table's lock; recorded in the run history with who
    did it, when, and the previous and new watermark (see `deltaload runs TABLE`).
    """
    from deltaload import store
    from deltaload.settings import Settings

    now = datetime.now(UTC)
    if Options.stack:
        stack = remote_stack()
        settings = Settings(
            controller_table=stack.controller_table,
            history_table=stack.history_table,
            data_bucket="",
        )
        record = store.reset_watermark(stack.clients, settings, table, to, who=_who(stack), now=now)
    else:
        from deltaload.aws import Clients

        with runtime() as rt:
            settings = Settings(
                controller_table=rt.controller_table,
                history_table=rt.history_table,
                data_bucket=rt.bucket,
            )
            clients = Clients(rt.session)
            record = store.reset_watermark(clients, settings, table, to, who=_who(), now=now)
    if as_json:
        print_json(record)
        return
    console.print(f"reset {escape(table)}: {escape(record['note'])} (by {escape(record['by'])})")


def _who(stack: Any = None) -> str:
    """Who is resetting: the AWS identity with --stack, else user@host."""
    import getpass
    import socket

    local = f"{getpass.getuser()}@{socket.gethostname()}"
    if stack is None:
        return local
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        arn = stack.clients.client("sts").get_caller_identity()["Arn"]
    except (BotoCoreError, ClientError):  # no STS access: the local user still says who
        return local
    return f"{arn} ({local})"


def interrupted_exit() -> typer.Exit:
    """Say that the command was interrupted and return exit 130."""
    errors.print(
        "[red]interrupted[/red]: the runs in progress were stopped and recorded as FAILED, "
        "their staging data deleted and their locks released; the next run loads their "
        "windows again",
        highlight=False,
    )
    return typer.Exit(130)


def tick_with_progress(
    rt: Any, tables: list[str] | None, stop: Any = None, out: Console | None = None
) -> Any:
    """Run a tick with live per-table progress (a live view on a terminal, lines otherwise)."""
    show = _progress(lambda r: _current_step(rt, r), out)
    with show.live:
        return rt.tick(tables, progress=show, stop=stop)


class _progress:
    """Progress of the executions: a live table on a terminal, one line per step elsewhere."""

    def __init__(self, step_of: Callable[[Any], str], out: Console | None = None) -> None:
        self.step_of = step_of
        self.out = out or console
        self.terminal = self.out.is_terminal
        self.live: Any = (
            Live(console=self.out, refresh_per_second=4, transient=True)
            if self.terminal
            else contextlib.nullcontext()
        )
        self.seen: dict[str, str] = {}

    def __call__(self, results: list[Any]) -> None:
        steps = [(r, self.step_of(r)) for r in results]
        if self.terminal:
            self.live.update(
                table_view(
                    ["table", "status", "step"],
                    [[r.table, _status_text(r.status), step] for r, step in steps],
                )
            )
            return
        for r, step in steps:
            now = step or r.status
            if self.seen.get(r.name) != now:
                self.seen[r.name] = now
                self.out.print(f"  {r.table}: {step or now.lower()}", highlight=False)


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
    for entry in starter.get("errors", []):
        errors.print(
            f"[red]not started[/red] {escape(str(entry.get('table')))}: "
            f"{escape(str(entry.get('error', '')))}",
            highlight=False,
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
    rows: list[list[str | Text]] = []
    reasons: list[str] = []
    for execution in executions:
        out = execution.outcome
        if out is None:  # started with --no-wait, or not finished
            where = f" ({execution.arn})" if execution.arn else ""
            rows.append([execution.table, _status_text(execution.status), "", "", "", ""])
            reasons.append(f"started {escape(execution.table)}: {escape(execution.name + where)}")
            continue
        colour = _COLOURS.get(out.result, "red")
        rows.append(
            [
                execution.table,
                Text(out.result, style=colour),
                out.window or "-",
                "-" if out.rows is None else str(out.rows),
                "-" if out.files is None else str(out.files),
                str(out.watermark) if out.watermark is not None else "-",
            ]
        )
        if out.reason:
            # Reasons name files, runs and values people copy: printed whole, never wrapped.
            reasons.append(
                f"[{colour}]{out.result}[/{colour}] {escape(execution.table)}: {escape(out.reason)}"
            )
    headers = ["table", "result", "window", "rows", "files", "watermark"]
    console.print(table_view(headers, rows, console.width))
    for reason in reasons:
        console.print(reason, soft_wrap=True, highlight=False)


@app.command()
def invoke(
    function: Annotated[
        str, typer.Argument(help="Logical id in template.yaml, e.g. StarterFunction.")
    ],
    event: Annotated[Path | None, typer.Option(help="JSON event file (default: {}).")] = None,
    as_json: AS_JSON = False,
):
    """Invoke one function of the template offline, as `sam local invoke` would.

    Executions the function starts (StarterFunction) are followed to their end, as
    `deltaload run` does; exit codes as for `run`.
    """
    from deltaload.local.runtime import Interrupted, interruptible

    offline_only("invoke")
    payload = json.loads(event.read_text()) if event else {}
    with runtime() as rt, interruptible() as stop:
        result = rt.invoke(function, payload)
        if not as_json:
            print_json(result)
        arns = rt.running_executions()
        executions: list[Any] = []
        if arns:
            show = _progress(lambda r: _current_step(rt, r), errors if as_json else None)
            try:
                with show.live:
                    executions = rt.wait_for(arns, show, stop=stop)
            except Interrupted as interrupted:
                print_executions(interrupted.executions)
                raise interrupted_exit() from None
            rt.save()
    if as_json:
        print_json({"result": result, "executions": [e.to_json() for e in executions]})
    elif executions:
        print_executions(executions)
    if any(e.status != "SUCCEEDED" for e in executions):
        raise typer.Exit(1)


@app.command()
def demo(
    rows: Annotated[int, typer.Option(help="Rows in the demo orders table.")] = 1000,
):
    """Load the demo orders table twice, with inserts and updates in between."""
    offline_only("demo")
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
    gc.disable()  # until started_up()
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
    finally:
        # The command's files are written and closed. Without this the interpreter's
        # last garbage collections walk every module and emulated service before the
        # process ends: two thirds of a second after a run, a fifth of a no-op's time.
        gc.freeze()


if __name__ == "__main__":
    main()
