"""The local replication engine: an in-process stand-in for AWS DMS.

``LocalDms(...).install(session.events)`` answers every DMS call of that boto3/botocore
session from botocore's ``before-send`` event, before moto (or the network) sees it, and
really copies the selected, filtered rows from SQLite, PostgreSQL or MySQL/MariaDB to
Parquet in S3 with DMS's file layout, statuses and table statistics. See docs/engine.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from deltaload.local.answered import claim

from .backend import DmsBackend
from .errors import DmsFault
from .faults import FaultRegistry
from .protocol import error_response, ok_response, parse_request
from .quotas import Clock, Quotas
from .scheduler import Changes, Timing

__all__ = ["Changes", "FaultRegistry", "LocalDms", "Quotas", "Timing"]

LOG = logging.getLogger(__name__)
EVENT = "before-send.database-migration-service"


class LocalDms:
    """An in-process DMS served through botocore's event system."""

    def __init__(
        self,
        clients_for_aws: Callable[[str], Any],
        *,
        timing: Timing | None = None,
        quotas: Quotas | None = None,
        clock: Clock | None = None,
    ) -> None:
        """``clients_for_aws('s3'|'secretsmanager')`` returns the boto3 clients the engine uses.

        ``quotas`` defaults to DMS's own (enforced, as AWS does); ``Quotas.off()`` lifts them.
        ``clock`` (monotonic seconds) drives the API token bucket's refill.
        """
        self.timing = timing or Timing()
        self.faults = FaultRegistry()
        self._backend = DmsBackend(
            clients_for_aws, self.timing, self.faults, quotas=quotas, clock=clock
        )
        self._handler_id = f"deltaload-local-dms-{id(self)}"

    def install(self, events: Any) -> None:
        """Answer DMS calls of the sessions sharing ``events`` (a botocore HierarchicalEmitter)."""
        events.register_first(EVENT, self._on_before_send, unique_id=self._handler_id)

    def uninstall(self, events: Any) -> None:
        """Stop answering DMS calls on ``events``."""
        events.unregister(EVENT, self._on_before_send, unique_id=self._handler_id)

    @property
    def changes(self) -> Changes:
        """The engine's status changes, for pollers that sleep until the next one."""
        return self._backend.changes

    @property
    def quotas(self) -> Quotas:
        """The quotas this engine enforces."""
        return self._backend.quotas

    @property
    def throttled(self) -> list[str]:
        """The operation of every call the API token bucket refused, in order."""
        return list(self._backend.throttled)

    @property
    def quota_faults(self) -> list[tuple[str, str]]:
        """(operation, message) of every create a resource quota refused."""
        return list(self._backend.quota_faults)

    @property
    def api_calls(self) -> int:
        """Calls the API token bucket let through (0 when throttling is off)."""
        bucket = self._backend.api_bucket
        return bucket.taken if bucket is not None else 0

    def shutdown(self) -> None:
        """Stop the background threads (running loads are cancelled first)."""
        self._backend.shutdown()

    def __enter__(self) -> LocalDms:
        return self

    def __exit__(self, *_: object) -> None:
        self.shutdown()

    def _on_before_send(self, request: Any, **_: Any) -> Any:
        url = claim(request)
        operation, params, region = parse_request(request, url)
        try:
            payload = self._backend.handle(operation, params, region)
        except DmsFault as fault:
            LOG.debug("local DMS %s -> %s: %s", operation, fault.code, fault.message)
            return error_response(url, fault)
        return ok_response(url, payload)
