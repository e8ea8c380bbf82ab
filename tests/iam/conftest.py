"""Fixtures of the IAM contract tests."""

from __future__ import annotations

import pytest

from tests.integration.conftest import Ticks


@pytest.fixture
def ticks() -> Ticks:
    return Ticks()
