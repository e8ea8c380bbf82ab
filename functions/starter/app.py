"""Starter: start one state machine execution per valid active controller item."""

import functools
import os

from deltaload.aws import Clients
from deltaload.observability import instrumented
from deltaload.settings import Settings
from deltaload.starter import start_tick


@functools.cache
def dependencies() -> tuple[Settings, Clients]:
    """Settings and clients, created once per container."""
    return Settings.from_env(os.environ), Clients()


@instrumented(correlation_path="id")
def handler(event: dict, context: object) -> dict:
    """Start this tick's runs; returns started, skipped, invalid and deferred tables."""
    settings, clients = dependencies()
    return start_tick(event, clients, settings)
