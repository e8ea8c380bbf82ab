"""Capped exponential backoff for every wait loop, with a deadline so none waits forever."""

from __future__ import annotations

import time
from collections.abc import Callable

# How a wait loop inside a handler sleeps: time.sleep in AWS. The offline runtime swaps in
# a sleep that also ends at its engine's next emulated status change (deltaload.local).
sleep: Callable[[float], None] = time.sleep


def next_wait(attempt: int, initial: int, maximum: int) -> int:
    """Seconds to wait before poll number ``attempt`` (0-based): initial * 2**attempt, capped."""
    if attempt < 0:
        raise ValueError("attempt must be >= 0")
    initial = max(0, initial)
    maximum = max(initial, maximum)
    if initial == 0:
        return 0
    # Cap the exponent too, so a long loop never builds a huge integer.
    return min(maximum, initial * 2 ** min(attempt, 32))


def deadline_passed(deadline: float, now: float) -> bool:
    """True once ``now`` (epoch seconds) has reached ``deadline`` (epoch seconds)."""
    return now >= deadline


def wait_within(attempt: int, initial: int, maximum: int, deadline: float, now: float) -> int:
    """The next wait, shortened so the following poll happens no later than the deadline."""
    return max(0, min(next_wait(attempt, initial, maximum), int(deadline - now)))
