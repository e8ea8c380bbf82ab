"""RecordFailure: clean up the run's data, mark it failed, release the lock."""

from deltaload.handlers import step_handler

step = step_handler("record_failure")


def handler(event: dict, context: object) -> dict:
    return step(event, context)
