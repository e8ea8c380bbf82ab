"""When handlers trace to X-Ray: where Powertools' Tracer would trace, and nowhere else."""

from __future__ import annotations

import pytest

from deltaload.observability import tracing_enabled

IN_LAMBDA = {"LAMBDA_TASK_ROOT": "/var/task"}


@pytest.mark.parametrize(
    ("environ", "traced"),
    [
        (IN_LAMBDA, True),
        ({**IN_LAMBDA, "POWERTOOLS_TRACE_DISABLED": "false"}, True),
        ({**IN_LAMBDA, "POWERTOOLS_TRACE_DISABLED": "true"}, False),
        ({**IN_LAMBDA, "POWERTOOLS_TRACE_DISABLED": "1"}, False),
        ({**IN_LAMBDA, "AWS_SAM_LOCAL": "true"}, False),
        ({**IN_LAMBDA, "AWS_CHALICE_CLI_MODE": "true"}, False),
        ({}, False),  # outside the Lambda runtime, as offline and in tests
    ],
    ids=["lambda", "enabled", "disabled", "disabled-1", "sam-local", "chalice", "no-lambda"],
)
def test_tracing_follows_powertools_rule(environ: dict[str, str], traced: bool) -> None:
    assert tracing_enabled(environ) is traced


def test_powertools_draws_the_same_line() -> None:
    import aws_lambda_powertools.tracing.tracer as powertools

    # Powertools' own verdict for the same environment agrees.
    with pytest.MonkeyPatch.context() as patch:
        for name, value in IN_LAMBDA.items():
            patch.setenv(name, value)
        patch.delenv("POWERTOOLS_TRACE_DISABLED", raising=False)
        patch.delenv("AWS_SAM_LOCAL", raising=False)
        assert not powertools.Tracer._is_tracer_disabled()
        patch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
        assert powertools.Tracer._is_tracer_disabled()
