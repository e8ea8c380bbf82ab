"""CreateResources: create the run's DMS target endpoint and compute."""

from deltaload.handlers import step_handler

step = step_handler("create_resources")


def handler(event: dict, context: object) -> dict:
    return step(event, context)
