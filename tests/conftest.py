"""Test-wide setup: hypothesis profiles and the database servers some tests need."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# `make test` runs the default profile; `make test-large` runs many more examples.
settings.register_profile("default", max_examples=100, deadline=None)
settings.register_profile(
    "large", max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("DELTALOAD_HYPOTHESIS_PROFILE", "default"))
