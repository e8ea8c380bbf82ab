"""What the commands that only read (status, runs, plan) see: the committed state files.

Every persisted table is written through to its own file, each replaced atomically (see
``persistence``), so a reader needs neither the emulated services nor the writer lock:
it parses the files the runtime would restore, with the same checks (a damaged file is a
DamagedStateError naming it, and nothing is changed), and answers with the same values
the runtime's scans return. Nothing here imports boto3, moto or the engine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deltaload.local.persistence import PERSISTED_TABLES, StateFolder
from deltaload.local.template import Template


class StateReader:
    """The controller items and run history of a state folder, read from its files."""

    def __init__(self, root: Path, state_dir: Path) -> None:
        self.template = Template.load(root.resolve())
        keys = {
            logical_id: tuple(
                k["AttributeName"] for k in self.template.properties(logical_id)["KeySchema"]
            )
            for logical_id in PERSISTED_TABLES
        }
        # Every file is checked before anything is used, as the runtime's restore does.
        self._folder = StateFolder(state_dir, create=False)
        self._tables = self._folder.read_tables(keys)

    def _plain(self, logical_id: str) -> list[dict[str, Any]]:
        from deltaload.items import from_dynamodb

        return [from_dynamodb(item) for item in self._tables[logical_id]]

    def items(self) -> list[dict[str, Any]]:
        """Every controller item, by table name (as ``LocalRuntime.items``)."""
        return sorted(self._plain("ControllerTable"), key=lambda i: i["targetTableName"])

    def item(self, table: str) -> dict[str, Any] | None:
        """One controller item, or None."""
        return next((i for i in self.items() if i["targetTableName"] == table), None)

    def history(self, table: str | None = None) -> list[dict[str, Any]]:
        """Run records, oldest first (as ``LocalRuntime.history``)."""
        records = self._plain("RunHistoryTable")
        if table:
            records = [r for r in records if r.get("targetTableName") == table]
        return sorted(records, key=lambda r: (str(r.get("startedAt", "")), str(r.get("runId"))))

    def function_environment(self, name: str) -> str | None:
        """A variable of the functions' shared environment, as the template sets it."""
        environment: dict[str, str] = {}
        for logical_id in self.template.of_type("AWS::Serverless::Function"):
            environment.update(self.template.function(logical_id).environment)
        return environment.get(name)

    def lake_object(self, bucket: str, key: str) -> bytes | None:
        """An object of the lake (the state folder's file), or None."""
        path = self._folder.bucket_path(bucket) / key
        return path.read_bytes() if path.is_file() else None

    def lake_keys(self, bucket: str, prefix: str) -> list[str]:
        """The keys of the lake's objects under ``prefix``, sorted."""
        root = self._folder.bucket_path(bucket)
        folder = root / prefix
        if not folder.is_dir():
            return []
        return sorted(str(p.relative_to(root)) for p in folder.rglob("*") if p.is_file())
