"""RecordSuccess: commit the watermark and run state, release the lock."""

from deltaload.handlers import step_handler

step = step_handler("record_success")


def handler(event: dict, context: object) -> dict:
    return step(event, context)
