"""The controller item most tests start from (sales.orders, an integer key, gte) and their clock."""

from __future__ import annotations

from datetime import UTC, datetime

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

ORDERS = {
    "targetTableName": "orders",
    "activeflag": "true",
    "sourceSchema": "sales",
    "sourceTable": "orders",
    "filtercolumn": "id",
    "filteroperator": "gte",
    "startvalue": "1",
    "ouputs3Prefix": "datalake/sales",
}
