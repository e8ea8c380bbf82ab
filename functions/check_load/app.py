"""CheckLoad: one look at the DMS full load."""

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
    """Return the state document with this step's result under 'poll'."""
    settings, clients = dependencies()
    return {**event, "poll": workflow.check_load(event, clients, settings)}
