"""CheckResources: one look at the run's DMS compute."""

from deltaload.handlers import step_handler

step = step_handler("check_resources")


def handler(event: dict, context: object) -> dict:
    return step(event, context)
