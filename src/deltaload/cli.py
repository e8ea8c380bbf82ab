"""The ``deltaload`` command line.

Exit codes: 0 success; 1 a table failed, an item is invalid or a command could
not finish (the message says why); 2 the command line itself was wrong.
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
from deltaload.items import RUN_STATE_ATTRIBUTES, load_items, parse_item, to_dynamodb

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
) -> None:
    """Offline by default: AWS is emulated in-process and a local engine stands in for DMS."""
    Options.state_dir = state_dir
    Options.source = source
    Options.sqlite_schema = sqlite_schema
    Options.project_root = project


@contextlib.contextmanager
def runtime(**kwargs: Any) -> Iterator[Any]:
    """The local runtime with the shared options; its errors become exit code 1."""
    from deltaload.local.runtime import LocalRuntime, Source

    try:
        source = (
            Source.from_url(Options.source, schema=Options.sqlite_schema)
            if Options.source
            else None
        )
        kwargs.setdefault("log_file", Options.state_dir / "logs" / "functions.log")
        with LocalRuntime(project_root(), Options.state_dir, source, **kwargs) as rt:
            yield rt
    except DeltaloadError as error:
        raise fail(str(error)) from None


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


# DynamoDB's TransactWriteItems takes at most 100 actions:
# https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactWriteItems.html
TRANSACTION_MAX_ITEMS = 100


def _put_preserving_state(
    client: Any, table_name: str, items: list[dict[str, Any]], reset: bool
) -> list[str]:
    """Put the items, keeping each table's watermark and run state unless ``reset``.

    Every item is checked before anything is written: a table whose run holds its lock, or
    whose recorded watermark belongs to another filter column or kind, refuses the whole
    command. The writes are then transactions conditioned on what was read (no lock taken,
    the watermark unchanged), so a run starting in between refuses them too.
    """
    from botocore.exceptions import ClientError

    from deltaload.items import from_dynamodb

    now = int(datetime.now(UTC).timestamp())
    writes: list[dict[str, Any]] = []
    refusals: list[str] = []
    for item in items:
        key = {"targetTableName": {"S": item["targetTableName"]}}
        raw = client.get_item(TableName=table_name, Key=key, ConsistentRead=True).get("Item", {})
        existing = from_dynamodb(raw)
        merged, refusal = _merge_state(item, existing, reset, now)
        if refusal:
            refusals.append(refusal)
            continue
        writes.append(_conditional_put(table_name, merged, existing, now))
    if refusals:
        for refusal in refusals:
            errors.print(f"[red]refused[/red] {escape(refusal)}", highlight=False)
        raise fail("nothing was written: fix the items above first")
    written: list[str] = []
    for start in range(0, len(writes), TRANSACTION_MAX_ITEMS):
        chunk = writes[start : start + TRANSACTION_MAX_ITEMS]
        try:
            client.transact_write_items(TransactItems=chunk)
        except ClientError as error:
            done = f"; already written: {', '.join(written)}" if written else ""
            nothing = "" if written else "nothing was written: "
            raise fail(
                f"{nothing}a run started or an item changed while onboarding "
                f"({error.response.get('Error', {}).get('Message', error)}); onboard again"
                f"{done}"
            ) from None
        written += [w["Put"]["Item"]["targetTableName"]["S"] for w in chunk]
    return written


def _merge_state(
    item: dict[str, Any], existing: dict[str, Any], reset: bool, now: int
) -> tuple[dict[str, Any], str | None]:
    """The item to write (with the run state it keeps) or why it must not be written."""
    table = item["targetTableName"]
    if existing.get("lockOwner") and _number(existing.get("lockExpiresAt")) > now:
        return {}, (
            f"{table}: run {existing['lockOwner']} holds the lock; "
            "onboard again when it has finished"
        )
    merged = {k: v for k, v in item.items() if k not in RUN_STATE_ATTRIBUTES}
    if reset:
        return merged, None
    kept = {
        k: v
        for k, v in existing.items()
        if k in RUN_STATE_ATTRIBUTES and k not in ("lockOwner", "lockExpiresAt")
    }
    watermark = kept.get("watermark")
    if watermark is not None:
        reason = _watermark_mismatch(item, existing, {**merged, "watermark": watermark})
        if reason:
            return {}, (
                f"{table}: the recorded watermark {watermark!r} {reason}; pass --reset to "
                "drop it (and the run state) so the next run starts from startvalue, "
                "or onboard the item with its previous filter"
            )
    return merged | kept, None


def _watermark_mismatch(
    item: dict[str, Any], existing: dict[str, Any], merged: dict[str, Any]
) -> str | None:
    """Why the existing watermark cannot stay on the new item, or None when it can."""
    old_column = existing.get("filtercolumn")
    if old_column != item.get("filtercolumn"):
        return f"was recorded on filter column {old_column!r}, not {item.get('filtercolumn')!r}"
    try:
        old_item = parse_item(existing)
    except InvalidItemError:
        old_item = None
    new_kind = item.get("filtercolumntype")
    if old_item is not None and old_item.filter_column_type.value != new_kind:
        return (
            f"was recorded for {old_item.filter_column_type.value} values of {old_column!r}, "
            f"not {new_kind} ones"
        )
    try:
        parse_item(merged)
    except InvalidItemError as error:
        return "does not fit the new item (" + "; ".join(str(p) for p in error.problems) + ")"
    return None


def _conditional_put(
    table_name: str, merged: dict[str, Any], existing: dict[str, Any], now: int
) -> dict[str, Any]:
    """A TransactWriteItems Put that only succeeds if no run took the lock or moved the
    watermark since the item was read."""
    # A lock whose expiry is not a number counts as expired, as _merge_state read it.
    condition = (
        "(attribute_not_exists(lockOwner) OR NOT attribute_type(lockExpiresAt, :number)"
        " OR lockExpiresAt < :now)"
    )
    values: dict[str, Any] = {":now": {"N": str(now)}, ":number": {"S": "N"}}
    if "watermark" in existing:
        condition += " AND watermark = :seen"
        values[":seen"] = to_dynamodb({"w": existing["watermark"]})["w"]
    else:
        condition += " AND attribute_not_exists(watermark)"
    return {
        "Put": {
            "TableName": table_name,
            "Item": to_dynamodb(merged),
            "ConditionExpression": condition,
            "ExpressionAttributeValues": values,
        }
    }


def _number(value: Any) -> float:
    """A lock expiry as a number; anything unreadable counts as expired."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


# -- plan / status / runs ------------------------------------------------------------------------


@app.command()
def plan(table: Annotated[str, typer.Argument(help="targetTableName of the item.")]):
    """Show what the next run of TABLE would load: window, DMS table mapping, task settings."""
    from deltaload.mapping import table_mapping, task_settings
    from deltaload.window import plan_window

    with runtime() as rt:
        raw = rt.item(table)
        # The stack's default lag, as the template sets it for the functions.
        lag = int(os.environ.get("SAFETY_LAG_SECONDS", "300"))
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


@app.command()
def status(as_json: AS_JSON = False):
    """Every table: active, watermark, last run, rows, state, lock."""
    with runtime() as rt:
        items = rt.items()
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
        ]
        for item in items
    ]
    headers = ["table", "active", "filter", "watermark", "last run", "status", "rows", "lock"]
    view = table_view(headers, rows)
    console.print(view if items else "no controller items yet: `deltaload onboard FILE`")


@app.command()
def runs(
    table: Annotated[str, typer.Argument(help="targetTableName of the item.")],
    as_json: AS_JSON = False,
):
    """The run history of TABLE, oldest first."""
    with runtime() as rt:
        records = rt.history(table)
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
    """One scheduled tick: the starter, then every execution to its end."""
    with runtime() as rt:
        result = tick_with_progress(rt, tables or None)
    print_tick(result)
    if result.failed or result.starter.get("invalid"):
        raise typer.Exit(1)


def tick_with_progress(rt: Any, tables: list[str] | None) -> Any:
    """Run a tick with a live per-table view."""
    with Live(console=console, refresh_per_second=4, transient=True) as live:

        def show(results: list[Any]) -> None:
            view = Table("table", "status", "step")
            for r in results:
                view.add_row(r.table, r.status, _current_step(rt, r))
            live.update(view)

        return rt.tick(tables, progress=show)


def _current_step(rt: Any, result: Any) -> str:
    if result.status != "RUNNING":
        return ""
    arn = f"{rt.state_machine_arn.replace(':stateMachine:', ':execution:')}:{result.name}"
    try:
        events = rt.execution_history(arn)
    except Exception:  # progress is best effort; the tick itself reports the outcome
        return ""
    entered = [e for e in events if e["type"].endswith("StateEntered")]
    return entered[-1]["stateEnteredEventDetails"]["name"] if entered else ""


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
    view = Table("table", "result", "window", "rows", "files", "watermark")
    for execution in result.executions:
        out = execution.output.get("summary") or execution.output
        view.add_row(
            execution.table,
            _result_text(execution),
            str(out.get("window", "")),
            str(out.get("rows", "")),
            str(out.get("files", "")),
            str(out.get("watermark", "")),
        )
    if result.executions:
        console.print(view)
        for execution in result.executions:
            warning = (execution.output.get("recorded") or {}).get("warning")
            if warning:
                console.print(
                    f"[yellow]warning[/yellow] {escape(execution.table)}: {escape(str(warning))}"
                )
    elif not starter.get("invalid"):
        console.print("no active tables to load")


def _result_text(execution: Any) -> str:
    if execution.status == "SUCCEEDED":
        return "[green]loaded[/green]" if not execution.output.get("skipped") else "skipped"
    cause = execution.cause or execution.error or execution.status
    return f"[red]{execution.status}[/red] {str(cause)[:120]}"


@app.command()
def invoke(
    function: Annotated[
        str, typer.Argument(help="Logical id in template.yaml, e.g. StarterFunction.")
    ],
    event: Annotated[Path | None, typer.Option(help="JSON event file (default: {}).")] = None,
):
    """Invoke one function of the template offline, as `sam local invoke` would."""
    payload = json.loads(event.read_text()) if event else {}
    with runtime() as rt:
        result = rt.invoke(function, payload)
    console.print_json(json.dumps(result, default=str))


@app.command()
def demo(
    rows: Annotated[int, typer.Option(help="Rows in the demo orders table.")] = 1000,
):
    """Load the demo orders table twice, with inserts and updates in between."""
    from deltaload.local.demo import run_demo

    run_demo(console, runtime, Options.state_dir, rows)


def main() -> None:
    """Entry point of the `deltaload` script."""
    try:
        app()
    except DeltaloadError as error:
        errors.print(f"[red]error:[/red] {escape(str(error))}", highlight=False)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
