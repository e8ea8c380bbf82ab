from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def published_item() -> dict[str, Any]:
    """The demo item exactly as the published layout writes it."""
    return {
        "targetTableName": "orders_s3",
        "activeflag": "true",
        "sourceSchema": "dwh",
        "sourceTable": "orders_rds",
        "filtercolumn": "row_id",
        "filteroperator": "gte",
        "startvalue": "1",
        "endvalue": "",
        "ouputs3Prefix": "datalake",
        "replication_task_settings": "",
    }
