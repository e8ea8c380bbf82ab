"""The local state folder: controller items, run history and the data lake, kept on disk.

Layout (default ``.deltaload/``)::

    tables/<LogicalId>.json      every item of a DynamoDB table, DynamoDB JSON
    s3/<bucket>/<key>            every object of the data-lake bucket, as a plain file
    writer.lock                  held (flock) by the one command that may write; names it
    cache/asl-<hash>.pickle      the state machine definition as parsed by moto's
                                 interpreter (``deltaload.local.interpreter``); safe to delete

Tables are written through: after every successful write to a persisted table the
runtime replaces that table's file (temporary file, fsync, rename, fsync of the folder),
before the write call returns to its caller. The folder is therefore as durable as
DynamoDB is on AWS: a process killed at any point leaves each table as AWS would have it
had the process died there, and each file is always either the old or the new version.

The lake is not restored or saved here: ``deltaload.local.s3`` serves S3 from ``s3/``
directly, so every object is written (atomically) when S3 is called. A
``s3/.etags-<bucket>.json`` left by an earlier version is ignored. The Parquet files
under ``s3/`` open directly in pyarrow, DuckDB or pandas.

Restore refuses a damaged state: a table file that is not valid JSON or not a list of
DynamoDB items with the table's key is an error naming the file and the problem, and
nothing is changed or deleted.

One writer at a time: every command that writes holds an exclusive ``flock`` on
``writer.lock`` for its whole duration and records its pid and command line in it, so a
second writer can say who holds the folder. Readers take no lock: they read the
committed files, each of which is replaced atomically.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from deltaload.local import faults
from deltaload.local.errors import DamagedStateError, StateFolderBusyError

PERSISTED_TABLES = ("ControllerTable", "RunHistoryTable")
LOCK_FILE = "writer.lock"


def write_atomically(path: Path, data: bytes, *, checkpoint: str | None = None) -> None:
    """Write ``data`` to ``path`` so readers see the old or the new content, never a mix.

    The temporary file is fsynced before the rename and the folder after it, so the new
    content survives a power cut once this returns. ``checkpoint`` names the test-only
    fault points between the temporary write and the rename (see ``faults.checkpoint``).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if checkpoint:
            faults.checkpoint(f"before-rename:{checkpoint}")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    # The rename is durable only once the folder's entry is on disk.
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- validating what is read back ------------------------------------------------------------

_SCALARS = {"S": str, "N": str, "B": str, "BOOL": bool}
_SETS = {"SS": str, "NS": str, "BS": str}


def _check_value(value: Any, where: str) -> str | None:
    """Why ``value`` is not a DynamoDB JSON attribute value, or None when it is one."""
    if not isinstance(value, dict) or len(value) != 1:
        return f'{where} is not a DynamoDB attribute value (one type key such as "S")'
    ((kind, inner),) = value.items()
    if kind in _SCALARS:
        if not isinstance(inner, _SCALARS[kind]):
            return f"{where} has type {kind} but holds {type(inner).__name__}"
        if kind == "B":
            try:
                base64.b64decode(inner, validate=True)
            except binascii.Error:
                return f"{where} has type B but is not base64"
        return None
    if kind in _SETS:
        if not isinstance(inner, list) or not all(isinstance(v, str) for v in inner):
            return f"{where} has type {kind} but is not a list of strings"
        return None
    if kind == "NULL":
        return None if inner is True else f"{where} has type NULL but is not true"
    if kind == "L":
        if not isinstance(inner, list):
            return f"{where} has type L but is not a list"
        problems = (_check_value(v, f"{where}[{i}]") for i, v in enumerate(inner))
        return next((p for p in problems if p), None)
    if kind == "M":
        if not isinstance(inner, dict):
            return f"{where} has type M but is not an object"
        problems = (_check_value(v, f"{where}.{k}") for k, v in inner.items())
        return next((p for p in problems if p), None)
    return f"{where} has unknown DynamoDB type {kind!r}"


def parse_table_file(path: Path, key_names: tuple[str, ...]) -> list[dict[str, Any]]:
    """The items of one table file; DamagedStateError naming the file and what is wrong."""

    def damaged(problem: str) -> DamagedStateError:
        return DamagedStateError(
            f"state file {path} is damaged: {problem}. Nothing was changed; restore the "
            "file from a backup or move it away to start that table empty"
        )

    try:
        document = json.loads(path.read_bytes())
    except OSError as error:
        raise damaged(f"cannot be read ({error.strerror or error})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise damaged(f"not valid JSON ({error})") from None
    if not isinstance(document, list):
        raise damaged(f"expected a list of items, found {type(document).__name__}")
    for index, item in enumerate(document):
        where = f"item {index + 1}"
        if not isinstance(item, dict):
            raise damaged(f"{where} is {type(item).__name__}, not an object")
        for key in key_names:
            if not isinstance(item.get(key), dict) or "S" not in item[key]:
                raise damaged(f"{where} has no string key attribute {key!r}")
        for name, value in item.items():
            problem = _check_value(value, f"{where} attribute {name!r}")
            if problem:
                raise damaged(problem)
    return document


# -- the writer lock -------------------------------------------------------------------------


@dataclass(frozen=True)
class LockHolder:
    """Who holds (or last held) the writer lock."""

    pid: int | None
    command: str
    since: str

    def describe(self) -> str:
        """``pid 123 (deltaload run) since <time>``."""
        pid = f"pid {self.pid}" if self.pid else "another process"
        return f"{pid} ({self.command or 'unknown command'}) since {self.since or '?'}"


def _read_holder(path: Path) -> LockHolder | None:
    try:
        data = json.loads(path.read_text() or "null")
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    pid = data.get("pid")
    return LockHolder(
        pid if isinstance(pid, int) else None,
        str(data.get("command", "")),
        str(data.get("since", "")),
    )


class WriterLock:
    """The state folder's exclusive writer lock (``flock``), held for a whole command.

    ``flock`` locks belong to the open file, so the kernel releases this one when the
    process ends in any way, including SIGKILL: a stale lock cannot outlive its holder.
    """

    def __init__(self, folder: Path) -> None:
        self.path = folder / LOCK_FILE
        self._fd: int | None = None
        self.previous: LockHolder | None = None

    def acquire(
        self,
        command: str,
        *,
        timeout: float | None = None,
        on_wait: Callable[[LockHolder | None], None] | None = None,
    ) -> None:
        """Take the lock; wait for it (forever when ``timeout`` is None, not at all at 0).

        ``on_wait`` is told once who holds the lock when this has to wait; when the
        timeout passes, StateFolderBusyError names the holder.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = None if timeout is None else time.monotonic() + timeout
        told = False
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    holder = _read_holder(self.path)
                    if deadline is not None and time.monotonic() >= deadline:
                        who = holder.describe() if holder else "another process"
                        waited = f" after waiting {timeout:g} s" if timeout else ""
                        raise StateFolderBusyError(
                            f"state folder {self.path.parent} is in use by {who}; "
                            f"gave up{waited} (--lock-timeout)"
                        ) from None
                    if not told and on_wait is not None:
                        on_wait(holder)
                        told = True
                    time.sleep(0.1)
        except BaseException:
            os.close(fd)
            raise
        # Whoever held it before us is gone: its record says which command was cut short.
        self.previous = _read_holder(self.path)
        record = {
            "pid": os.getpid(),
            "command": command,
            "since": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Let the next writer in (the holder record stays, for orphan messages)."""
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None


def command_line() -> str:
    """This process's command line, as the lock records it."""
    # ``deltaload`` whether started as the script or as ``python -m deltaload.cli``.
    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    if program in ("cli.py", "__main__.py", "deltaload"):
        program = "deltaload"
    return " ".join([program, *sys.argv[1:]])


class StateFolder:
    """Restores the local runtime's state and keeps it on disk as it changes."""

    def __init__(self, path: Path, *, create: bool = True) -> None:
        self.path = path.resolve()
        if create:
            self.path.mkdir(parents=True, exist_ok=True)
        self.lock = WriterLock(self.path)

    @property
    def lake(self) -> Path:
        """Where the data-lake bucket's objects live on disk."""
        return self.path / "s3"

    def bucket_path(self, bucket: str) -> Path:
        """The folder holding one bucket's objects."""
        return self.lake / bucket

    # -- tables ----------------------------------------------------------------------------------

    def table_file(self, logical_id: str) -> Path:
        """The file holding one persisted table."""
        return self.path / "tables" / f"{logical_id}.json"

    def read_tables(self, keys: Mapping[str, tuple[str, ...]]) -> dict[str, list[dict[str, Any]]]:
        """Every persisted table's items (DynamoDB JSON), all checked before any is used.

        ``keys`` maps each logical id to its key attribute names. A missing file is an
        empty table; a damaged one raises DamagedStateError.
        """
        tables: dict[str, list[dict[str, Any]]] = {}
        for logical_id in PERSISTED_TABLES:
            path = self.table_file(logical_id)
            tables[logical_id] = parse_table_file(path, keys[logical_id]) if path.exists() else []
        return tables

    def remove_leftovers(self) -> list[Path]:
        """Delete temporary files a killed writer left beside the table files (writer only)."""
        folder = self.path / "tables"
        left = sorted(folder.glob(".*.tmp")) if folder.is_dir() else []
        for path in left:
            path.unlink(missing_ok=True)
        return left

    def write_table(self, logical_id: str, items: list[dict[str, Any]], function: str) -> None:
        """Replace one table's file with ``items`` (sorted, so equal tables are equal files)."""
        items = sorted(items, key=lambda i: json.dumps(i, sort_keys=True))
        point = f"{logical_id}@{function}"
        write_atomically(
            self.table_file(logical_id), json.dumps(items, indent=1).encode(), checkpoint=point
        )
        faults.checkpoint(f"after-save:{point}")
