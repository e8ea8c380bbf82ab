"""CheckLoad: one look at the DMS full load."""

from deltaload.handlers import step_handler

step = step_handler("check_load")


def handler(event: dict, context: object) -> dict:
    return step(event, context)
