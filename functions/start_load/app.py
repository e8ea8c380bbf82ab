"""StartLoad: create the full-load task and start it."""

from deltaload.handlers import step_handler

step = step_handler("start_load")


def handler(event: dict, context: object) -> dict:
    return step(event, context)
