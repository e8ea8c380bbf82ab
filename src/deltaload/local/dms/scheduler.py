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


class Scheduler:
    """Runs callbacks at a given delay on one daemon thread; ``shutdown`` stops it."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._counter = itertools.count()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="local-dms-scheduler", daemon=True)
        self._thread.start()

    def later(self, delay: float, callback: Callable[[], None]) -> None:
        """Run ``callback`` after ``delay`` seconds."""
        with self._cond:
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._counter), callback))
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
                _, _, callback = heapq.heappop(self._heap)
            try:
                callback()
            except Exception:  # keep the clock running for every other resource
                LOG.exception("local DMS: a scheduled transition failed")
