"""Timed state transitions on a background thread, and the Timing of each transition."""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class Timing:
    """Seconds each DMS state transition takes locally (small, but never instant).

    Clients therefore have to poll, as they must against DMS.
    """

    instance_create: float = 0.2  # creating -> available
    instance_delete: float = 0.1  # deleting -> gone
    task_create: float = 0.1  # creating -> ready
    task_start: float = 0.1  # starting -> running
    task_stop: float = 0.05  # stopping -> stopped
    task_delete: float = 0.05  # deleting -> gone
    connection_test: float = 0.05  # testing -> successful/failed
    serverless_provision: float = 0.2  # StartReplication: the seven phases -> running
    serverless_deprovision: float = 0.1  # after stop: deprovisioning -> deprovisioned
    config_delete: float = 0.05  # replication config deleting -> gone

    @classmethod
    def quick(cls) -> Timing:
        """Transitions of a few hundredths of a second: polling still needed, waiting not."""
        return cls(
            instance_create=0.05,
            instance_delete=0.02,
            task_create=0.02,
            task_start=0.02,
            task_stop=0.02,
            task_delete=0.02,
            connection_test=0.01,
            serverless_provision=0.05,
            serverless_deprovision=0.02,
            config_delete=0.01,
        )


class Changes:
    """The engine's status changes, counted per resource, that a poller can block on.

    DMS has no change notification: clients poll its describe calls. Offline, a poller
    may sleep until the next emulated status change of the resources it polls instead of
    sleeping its whole interval; it then polls as it would have, only sooner. Every
    answered call records, for its thread, the count it saw (``observe``), so a change
    that happens between a describe and the sleep after it is never missed.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._count = 0
        self._last: dict[str, int] = {}  # resource identifier (lower case) -> its last change
        self._seen = threading.local()

    @property
    def count(self) -> int:
        """Status changes so far, of every resource."""
        return self._count

    def changed(self, key: str | None = None) -> None:
        """Note a status change of resource ``key`` (its identifier) and wake the waiters."""
        with self._cond:
            self._count += 1
            if key:
                self._last[key.lower()] = self._count
            self._cond.notify_all()

    def observe(self) -> int:
        """Record, for the calling thread, that it has seen every change so far."""
        self._seen.count = self._count
        return self._count

    def seen(self) -> int:
        """The count the calling thread last observed (the current one if it never did)."""
        return getattr(self._seen, "count", self._count)

    def _since(self, since: int, keys: frozenset[str] | None) -> bool:
        if keys is None:
            return self._count > since
        return any(self._last.get(k, 0) > since for k in keys)

    def wait(
        self,
        since: int,
        timeout: float,
        *,
        keys: frozenset[str] | None = None,
        stopped: Callable[[], bool] | None = None,
        slice_seconds: float = 0.1,
    ) -> bool:
        """Block until a change after ``since`` (of one of ``keys``, lower case, if given).

        Returns True if a change ended the wait, False after ``timeout`` seconds or once
        ``stopped()`` (checked every ``slice_seconds``) is true.
        """
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            while not self._since(since, keys):
                left = deadline - time.monotonic()
                if left <= 0 or (stopped is not None and stopped()):
                    return False
                self._cond.wait(min(left, slice_seconds) if stopped else left)
            return True


class Scheduler:
    """Runs callbacks at a given delay on one daemon thread; ``shutdown`` stops it.

    ``on_fired(key)`` runs after each callback given a ``key`` (the engine counts a status
    change of that resource there).
    """

    def __init__(self, on_fired: Callable[[str], None] | None = None) -> None:
        self._on_fired = on_fired
        self._heap: list[tuple[float, int, Callable[[], None], str | None]] = []
        self._counter = itertools.count()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="local-dms-scheduler", daemon=True)
        self._thread.start()

    def later(self, delay: float, callback: Callable[[], None], *, key: str | None = None) -> None:
        """Run ``callback`` after ``delay`` seconds (a transition of resource ``key``)."""
        with self._cond:
            heapq.heappush(
                self._heap, (time.monotonic() + delay, next(self._counter), callback, key)
            )
            self._cond.notify()

    def shutdown(self) -> None:
        """Stop the thread; pending callbacks are dropped."""
        with self._cond:
            self._stopped = True
            self._heap.clear()
            self._cond.notify()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (not self._heap or self._heap[0][0] > time.monotonic()):
                    timeout = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._cond.wait(timeout)
                if self._stopped:
                    return
                _, _, callback, key = heapq.heappop(self._heap)
            try:
                callback()
            except Exception:  # keep the clock running for every other resource
                LOG.exception("local DMS: a scheduled transition failed")
            if self._on_fired is not None and key is not None:
                self._on_fired(key)
