"""Teardown: one pass of deleting the run's DMS resources."""

from deltaload.handlers import step_handler

step = step_handler("teardown")


def handler(event: dict, context: object) -> dict:
    return step(event, context)
