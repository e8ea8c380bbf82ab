"""CleanupAborted: the failure path for executions stopped or timed out (no Catch runs then)."""

from deltaload.handlers import step_handler

step = step_handler("cleanup_aborted")


def handler(event: dict, context: object) -> dict:
    return step(event, context)
