"""Starter: start one state machine execution per valid active controller item."""

from deltaload.handlers import starter_handler

step = starter_handler()


def handler(event: dict, context: object) -> dict:
    return step(event, context)
