"""CleanupAborted: the failure path for executions stopped or timed out (no Catch runs then)."""

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


@instrumented(correlation_path="detail.name")
def handler(event: dict, context: object) -> dict:
    """Clean up after one ABORTED or TIMED_OUT execution status change event."""
    settings, clients = dependencies()
    return workflow.cleanup_aborted(event, clients, settings)
