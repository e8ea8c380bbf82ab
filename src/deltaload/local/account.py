"""The one AWS account and region the offline runtime emulates (and the tests use).

The account is moto's default, so that moto's backends, our DMS engine and the ARNs the
template resolves to all name the same account.
"""

from __future__ import annotations

ACCOUNT = "123456789012"
REGION = "us-east-1"
