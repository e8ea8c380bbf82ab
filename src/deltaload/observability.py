"""Powertools Logger, Metrics and Tracer, set up once for every handler.

The run id is the correlation id of every log line of a run; metrics carry the table
as their dimension. Events are never logged whole (no secrets ever reach a payload,
but task settings and errors can be long); log explicit fields instead.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Mapping
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit
from aws_lambda_powertools.shared import constants
from aws_lambda_powertools.shared.functions import resolve_truthy_env_var_choice

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME") or "deltaload"
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "deltaload"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)


def tracing_enabled(environ: Mapping[str, str]) -> bool:
    """Whether handlers trace to X-Ray: Powertools' own rule, and aws-xray-sdk installed.

    Powertools' Tracer does nothing when POWERTOOLS_TRACE_DISABLED is true or outside the
    Lambda runtime (no LAMBDA_TASK_ROOT, or under ``sam local``), yet building one imports
    the X-Ray SDK, whose recorder creates a botocore session and an X-Ray client (about
    0.5 s). So where it would do nothing, no Tracer is built.
    """
    if importlib.util.find_spec("aws_xray_sdk") is None:  # aws-lambda-powertools[tracer]
        return False
    if resolve_truthy_env_var_choice(env=environ.get(constants.TRACER_DISABLED_ENV, "false")):
        return False
    in_lambda = bool(environ.get(constants.LAMBDA_TASK_ROOT_ENV))
    emulated = bool(
        environ.get(constants.SAM_LOCAL_ENV) or environ.get(constants.CHALICE_LOCAL_ENV)
    )
    return in_lambda and not emulated


TRACING = tracing_enabled(os.environ)
tracer = Tracer(service=SERVICE) if TRACING else None


def instrumented(correlation_path: str = "runId") -> Callable[[Callable], Callable]:
    """Decorate a Lambda handler with context logging, the correlation id, metrics, tracing."""

    def decorate(function: Callable[[dict, Any], dict]) -> Callable[[dict, Any], dict]:
        wrapped = logger.inject_lambda_context(correlation_id_path=correlation_path)(function)
        wrapped = metrics.log_metrics(wrapped)
        if tracer is not None:
            wrapped = tracer.capture_lambda_handler(wrapped, capture_response=False)
        return wrapped

    return decorate


def _table_metrics(table: str) -> EphemeralMetrics:
    # Per-table metrics get their own set: the table dimension must not stay on the shared
    # handler metrics (nor leak into another table's line in the same process).
    table_metrics = EphemeralMetrics(namespace=NAMESPACE, service=SERVICE)
    table_metrics.add_dimension(name="table", value=table)
    return table_metrics


def run_metrics(table: str, *, rows: int, files: int, size: int, seconds: float) -> None:
    """Rows, files, bytes and duration of a successful run, by table."""
    table_metrics = _table_metrics(table)
    table_metrics.add_metric(name="RowsLoaded", unit=MetricUnit.Count, value=rows)
    table_metrics.add_metric(name="FilesPublished", unit=MetricUnit.Count, value=files)
    table_metrics.add_metric(name="BytesPublished", unit=MetricUnit.Bytes, value=size)
    table_metrics.add_metric(name="RunDuration", unit=MetricUnit.Seconds, value=max(0.0, seconds))
    table_metrics.flush_metrics()


def failure_metric(table: str) -> None:
    """One failed run of ``table``."""
    table_metrics = _table_metrics(table)
    table_metrics.add_metric(name="RunFailures", unit=MetricUnit.Count, value=1)
    table_metrics.flush_metrics()


def starter_metrics(started: int, skipped: int, invalid: int, deferred: int) -> None:
    """What one schedule tick did."""
    metrics.add_metric(name="RunsStarted", unit=MetricUnit.Count, value=started)
    metrics.add_metric(name="RunsSkipped", unit=MetricUnit.Count, value=skipped)
    metrics.add_metric(name="InvalidItems", unit=MetricUnit.Count, value=invalid)
    metrics.add_metric(name="RunsDeferred", unit=MetricUnit.Count, value=deferred)


def freshness_metrics(tables: list[Any]) -> None:
    """Per table: seconds since its last successful run and its watermark's lag behind the
    clock (when known); and how many tables are past their freshness limit (StaleTables,
    what the stack's freshness alarm watches). ``tables``: freshness.Freshness values."""
    for fresh in tables:
        if fresh.seconds_since_success is None and fresh.watermark_lag_seconds is None:
            continue
        table_metrics = _table_metrics(fresh.table)
        if fresh.seconds_since_success is not None:
            table_metrics.add_metric(
                name="SecondsSinceLastSuccess",
                unit=MetricUnit.Seconds,
                value=fresh.seconds_since_success,
            )
        if fresh.watermark_lag_seconds is not None:
            table_metrics.add_metric(
                name="WatermarkLagSeconds",
                unit=MetricUnit.Seconds,
                value=fresh.watermark_lag_seconds,
            )
        table_metrics.flush_metrics()
    stale = [f.table for f in tables if f.stale]
    metrics.add_metric(name="StaleTables", unit=MetricUnit.Count, value=len(stale))
    if stale:
        logger.warning("tables past their freshness limit", extra={"tables": stale})
