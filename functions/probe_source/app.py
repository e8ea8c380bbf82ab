"""ProbeSource: ask the source for the maximum above the watermark and each window's rows."""

from deltaload.handlers import step_handler

step = step_handler("probe_source")


def handler(event: dict, context: object) -> dict:
    return step(event, context)
