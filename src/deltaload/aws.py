"""The one AWS client factory. Everything that talks to AWS takes a ``Clients``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from deltaload.errors import DeltaloadError, TransientError

# Codes AWS answers when a call may succeed if simply repeated later.
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ProvisionedThroughputExceededException",
        "RequestThrottled",
        "RequestThrottledException",
        "SlowDown",
        "ServiceUnavailable",
        "InternalFailure",
        "InternalError",
        "InternalServerError",
    }
)


def error_code(error: ClientError) -> str:
    """The AWS error code of a ClientError."""
    return str(error.response.get("Error", {}).get("Code", ""))


def is_throttling(error: ClientError) -> bool:
    """True for throttling and transient server-side errors."""
    return error_code(error) in THROTTLING_CODES


@contextlib.contextmanager
def transient_errors() -> Iterator[None]:
    """Turn throttling ClientErrors into TransientError, which the state machine retries."""
    try:
        yield
    except ClientError as error:
        if is_throttling(error):
            raise TransientError(f"AWS is throttling: {error}") from error
        raise


class Clients:
    """Lazily created, cached boto3 clients sharing one session and retry configuration.

    Without a session the clients come from boto3's default session, the one the local
    runtime hooks its handlers onto; ``overrides`` replaces single clients (test fakes).
    """

    def __init__(
        self,
        session: boto3.Session | None = None,
        region: str | None = None,
        config: Config | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> None:
        self._session = session
        self._region = region
        self._config = config or Config(
            retries={"mode": "adaptive", "max_attempts": 8},
            connect_timeout=10,
            read_timeout=60,
        )
        self._cache: dict[str, Any] = dict(overrides or {})

    def client(self, service: str) -> Any:
        """The cached client of ``service`` (a boto3 service name)."""
        if service not in self._cache:
            factory = self._session.client if self._session else boto3.client
            self._cache[service] = factory(service, region_name=self._region, config=self._config)
        return self._cache[service]

    @property
    def dynamodb(self) -> Any:
        """DynamoDB client."""
        return self.client("dynamodb")

    @property
    def s3(self) -> Any:
        """S3 client."""
        return self.client("s3")

    @property
    def dms(self) -> Any:
        """DMS client."""
        return self.client("dms")

    @property
    def sfn(self) -> Any:
        """Step Functions client."""
        return self.client("stepfunctions")

    @property
    def sns(self) -> Any:
        """SNS client."""
        return self.client("sns")

    @property
    def secrets(self) -> Any:
        """Secrets Manager client."""
        return self.client("secretsmanager")

    @property
    def lambda_(self) -> Any:
        """Lambda client."""
        return self.client("lambda")

    @property
    def cloudformation(self) -> Any:
        """CloudFormation client."""
        return self.client("cloudformation")

    @property
    def cloudwatch(self) -> Any:
        """CloudWatch client."""
        return self.client("cloudwatch")

    @property
    def glue(self) -> Any:
        """Glue (Data Catalog) client."""
        return self.client("glue")


def for_profile(profile: str | None = None, region: str | None = None) -> Clients:
    """Clients for a named AWS profile and region (boto3's default session without one)."""
    from botocore.exceptions import BotoCoreError

    if not profile:
        return Clients(region=region)
    try:
        session = boto3.Session(profile_name=profile, region_name=region)
    except BotoCoreError as error:
        raise DeltaloadError(f"AWS profile {profile!r}: {error}") from None
    return Clients(session, region=region or session.region_name)
