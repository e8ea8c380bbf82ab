"""AcquireLock: take the table's run lock (a second run is skipped)."""

from deltaload.handlers import step_handler

step = step_handler("acquire_lock")


def handler(event: dict, context: object) -> dict:
    return step(event, context)
