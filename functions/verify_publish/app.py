"""VerifyPublish: reconcile row counts, publish with a manifest."""

from deltaload.handlers import step_handler

step = step_handler("verify_publish")


def handler(event: dict, context: object) -> dict:
    return step(event, context)
