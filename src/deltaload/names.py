"""Names derived from a table and a run: DMS identifiers, execution names, S3 keys (pure).

DMS identifiers (replication instances, endpoints, tasks, replication configs) must
start with a letter, contain only ASCII letters, digits and hyphens, not end with a
hyphen nor contain two consecutive hyphens; instance identifiers are at most 63
characters and stored lower case, so every identifier here is lower case and at
most 63 characters. Each embeds a short hash of the run id: unique per run, and
recomputable from (table, runId) alone, so teardown finds what a run created even
when the step that created it failed before reporting.

Step Functions execution names are at most 80 characters of letters, digits, ``-``
and ``_``; the execution name is the run id and appears in S3 keys.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime

from deltaload.runstate import DmsNames, RunKeys

DMS_IDENTIFIER_MAX = 63
EXECUTION_NAME_MAX = 80
TICK_FORMAT = "%Y%m%dT%H%M%SZ"

_DMS_IDENTIFIER = re.compile(r"^[a-z](?:[a-z0-9]|-(?=[a-z0-9]))*$")
_EXECUTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")


def short_hash(text: str, length: int = 8) -> str:
    """A stable lower-case hex digest prefix of ``text``."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def is_dms_identifier(name: str) -> bool:
    """True when DMS accepts ``name`` as an instance, endpoint, task or config identifier."""
    return len(name) <= DMS_IDENTIFIER_MAX and bool(_DMS_IDENTIFIER.fullmatch(name))


def dms_identifier(kind: str, table: str, run_id: str) -> str:
    """``dl-<kind>-<table>-<hash of run id>``, sanitised and cut to DMS's limits."""
    suffix = short_hash(run_id, 10)
    head = _hyphenate(f"dl-{kind}-{table}")
    room = DMS_IDENTIFIER_MAX - len(suffix) - 1
    head = head[:room].rstrip("-")
    name = f"{head}-{suffix}"
    if not is_dms_identifier(name):  # pragma: no cover - guarded by the tests
        raise ValueError(f"cannot build a DMS identifier from {table!r}")
    return name


def _hyphenate(text: str) -> str:
    text = re.sub(r"[^a-z0-9]+", "-", text.lower())
    return text.strip("-")


def dms_names(table: str, run_id: str) -> DmsNames:
    """The per-run DMS identifiers of ``table``'s run ``run_id``."""
    return DmsNames(
        instance=dms_identifier("ri", table, run_id),
        target_endpoint=dms_identifier("tgt", table, run_id),
        task=dms_identifier("task", table, run_id),
        config=dms_identifier("cfg", table, run_id),
    )


def tick(moment: datetime) -> str:
    """The tick of ``moment``: UTC, to the second, ``YYYYMMDDTHHMMSSZ``."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime(TICK_FORMAT)


TICK_LENGTH = len(tick(datetime(2000, 1, 1, tzinfo=UTC)))  # every tick's, and a run id's end


def execution_name(table: str, tick_text: str) -> str:
    """``<sanitised table>-<tick>``; a short hash keeps altered or cut names distinct."""
    clean = re.sub(r"[^A-Za-z0-9_-]", "_", table)
    room = EXECUTION_NAME_MAX - len(tick_text) - 1
    if clean != table or len(clean) > room:
        digest = short_hash(table, 6)
        clean = f"{clean[: room - len(digest) - 1]}_{digest}"
    name = f"{clean}-{tick_text}"
    if not _EXECUTION_NAME.fullmatch(name):
        raise ValueError(f"cannot build an execution name from {table!r} and {tick_text!r}")
    return name


def folder(*parts: str) -> str:
    """Join key parts with single slashes, no leading or trailing slash."""
    pieces = [p.strip("/") for p in parts if p and p.strip("/")]
    return "/".join(pieces)


def as_prefix(key_folder: str) -> str:
    """A folder as a listing prefix: exactly one trailing slash (ORDERS/ never matches
    ORDERS_ITEMS/)."""
    text = key_folder.strip("/")
    return f"{text}/" if text else ""


def staging_folder(staging_root: str, table: str, run_id: str) -> str:
    """``<StagingPrefix>/<targetTableName>/<runId>``: the per-run DMS BucketFolder."""
    return folder(staging_root, table, run_id)


def run_keys(
    staging_root: str, output_prefix: str, schema: str, table: str, run_id: str
) -> RunKeys:
    """Every S3 location of one run."""
    stage = staging_folder(staging_root, table, run_id)
    final = as_prefix(folder(output_prefix, schema, table))
    return RunKeys(
        staging_folder=stage,
        staging_prefix=as_prefix(stage),
        final_prefix=final,
        run_prefix=f"{final}run={run_id}/",
        manifest_key=f"{final}_manifests/{run_id}.json",
    )


def window_label(run_id: str, index: int) -> str:
    """``<runId>-w<NNNN>``: the id of window ``index`` of a run (its folder and manifest)."""
    return f"{run_id}-w{index:04d}"


def window_names(table: str, run_id: str, index: int, instances: int = 1) -> DmsNames:
    """The DMS identifiers of window ``index`` of a run: a task (or, in serverless mode, a
    replication config) and a target endpoint of its own, on the run's instance, or spread
    round robin over ``instances`` instances (the run's is the first); recomputable from
    (table, runId, index, instances)."""
    label = window_label(run_id, index)
    slot = (index - 1) % instances + 1
    return DmsNames(
        instance=instance_name(table, run_id, slot),
        target_endpoint=dms_identifier("tgt", table, label),
        task=dms_identifier("task", table, label),
        config=dms_identifier("cfg", table, label),
    )


def run_identifiers(table: str, run_id: str, windows: int, instances: int) -> frozenset[str]:
    """Every DMS identifier a run of ``table`` may create with up to ``windows`` windows
    spread over up to ``instances`` instances (the run's own names included)."""
    found = set(dms_names(table, run_id).identifiers())
    for index in range(1, windows + 1):
        found.update(window_names(table, run_id, index, instances).identifiers())
    found.update(instance_name(table, run_id, slot) for slot in range(1, instances + 1))
    return frozenset(found)


def instance_name(table: str, run_id: str, slot: int) -> str:
    """The replication instance ``slot`` (1-based) of a run; slot 1 is the run's own."""
    if slot == 1:
        return dms_identifier("ri", table, run_id)
    return dms_identifier("ri", table, f"{run_id}-i{slot}")


def window_keys(keys: RunKeys, run_id: str, index: int) -> RunKeys:
    """The S3 locations of window ``index``: a staging folder inside the run's (so removing
    the run's staging removes every window's), and a published folder and manifest of
    its own, ``run=<runId>-w<NNNN>/`` and ``_manifests/<runId>-w<NNNN>.json``."""
    label = window_label(run_id, index)
    stage = folder(keys.staging_folder, f"w{index:04d}")
    return RunKeys(
        staging_folder=stage,
        staging_prefix=as_prefix(stage),
        final_prefix=keys.final_prefix,
        run_prefix=f"{keys.final_prefix}run={label}/",
        manifest_key=f"{keys.final_prefix}_manifests/{label}.json",
    )
