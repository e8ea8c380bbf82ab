"""RecordFailure: clean up the run's data, mark it failed, release the lock."""

import functools
import os

from deltaload import workflow
from deltaload.aws import Clients
from deltaload.observability import instrumented
from deltaload.settings import Settings


@functools.cache
def dependencies() -> tuple[Settings, Clients]:
    """Settings and clients, created once per container."""
    return Settings.from_env(os.environ), Clients()


@instrumented()
def handler(event: dict, context: object) -> dict:
    """Return the state document with this step's result under 'failure'."""
    settings, clients = dependencies()
    return {**event, "failure": workflow.record_failure(event, clients, settings)}
