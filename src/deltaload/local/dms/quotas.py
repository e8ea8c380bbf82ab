"""DMS's resource quotas and API request throttling, as the local engine enforces them.

Both come from "Quotas for AWS Database Migration Service"
(https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Limits.html):

- Resource quotas per account and Region: "After a quota for a resource has been reached,
  additional calls to create that resource fail with an exception" (ResourceQuotaExceededFault,
  the fault the DMS API Reference lists for CreateReplicationInstance, CreateEndpoint,
  CreateReplicationTask and CreateReplicationSubnetGroup).
- API request throttling ("Understanding API request throttling"): a bucket of 200 tokens, one
  per API call; an empty bucket answers ``ThrottlingException`` ("Rate exceeded"), and tokens come
  back at 8 per second up to the maximum. The quota cannot be raised.

The clock is injectable so tests can step time by hand instead of sleeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

Clock = Callable[[], float]


@dataclass(frozen=True)
class Quotas:
    """The quotas the engine enforces; ``None`` switches one off.

    The defaults are DMS's (CHAP_Limits); ``Quotas.off()`` enforces nothing.
    """

    instances_per_account: int | None = 60
    storage_gb_per_account: int | None = 30_000
    subnet_groups_per_account: int | None = 60
    endpoints_per_account: int | None = 1_000
    endpoints_per_instance: int | None = 100
    tasks_per_account: int | None = 600
    tasks_per_instance: int | None = 200
    api_bucket_size: int | None = 200
    api_refill_per_second: float = 8.0

    @classmethod
    def off(cls) -> Quotas:
        """No quota and no throttling (for tests that exercise something else)."""
        return cls(
            instances_per_account=None,
            storage_gb_per_account=None,
            subnet_groups_per_account=None,
            endpoints_per_account=None,
            endpoints_per_instance=None,
            tasks_per_account=None,
            tasks_per_instance=None,
            api_bucket_size=None,
        )


@dataclass
class TokenBucket:
    """DMS's API token bucket: ``take()`` spends one token, False when the bucket is empty.

    Tokens refill continuously at ``refill_per_second`` up to ``size``; a refused call spends
    nothing (it never reached the service).
    """

    size: int
    refill_per_second: float
    clock: Clock = time.monotonic
    _tokens: float = field(init=False)
    _last: float = field(init=False)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)
    taken: int = field(init=False, default=0)
    refused: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self._tokens = float(self.size)
        self._last = self.clock()

    def take(self) -> bool:
        """Spend one token if there is one."""
        with self._lock:
            now = self.clock()
            elapsed = max(0.0, now - self._last)
            self._last = now
            self._tokens = min(float(self.size), self._tokens + elapsed * self.refill_per_second)
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                self.taken += 1
                return True
            self.refused += 1
            return False

    @property
    def tokens(self) -> float:
        """Tokens left at the last call (for reports)."""
        return self._tokens


def exceeded(what: str, used: int, limit: int | None, adding: int = 1) -> str | None:
    """The ResourceQuotaExceededFault message when ``used + adding`` passes ``limit``."""
    if limit is None or used + adding <= limit:
        return None
    return (
        f"Quota exceeded for {what}: {used} in use, quota {limit} "
        "(Quotas for AWS Database Migration Service)"
    )
