"""PlanRun: validate the controller item and plan the run's window."""

from deltaload.handlers import step_handler

step = step_handler("plan_run")


def handler(event: dict, context: object) -> dict:
    return step(event, context)
