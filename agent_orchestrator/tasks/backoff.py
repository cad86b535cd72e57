"""Retry delays: exponential backoff with full jitter.

`attempt` is the number of the attempt that just failed, counted in failures against the budget
(1 for the first failure; a dispatcher's release is not one). The delay before the retry after
attempt n is uniform in [0, min(cap, base * 2^(n-1))].
Full jitter spreads the retries of many tasks that failed together (an agent restarting, a rate
limit) instead of sending them back in waves. A Retry-After from the failure is a floor: the retry
waits at least that long. The store turns the delay into the task's `not_before`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# 2^62 seconds is past any cap; bounding the exponent keeps the float arithmetic finite.
_MAX_EXPONENT = 62


@dataclass(frozen=True)
class Backoff:
    """The backoff policy: `base_seconds` doubles per failure up to `cap_seconds`."""

    base_seconds: float = 1.0
    cap_seconds: float = 300.0

    def __post_init__(self) -> None:
        if self.base_seconds < 0 or self.cap_seconds < 0:
            raise ValueError("backoff base and cap must not be negative")

    def ceiling(self, attempt: int) -> float:
        """The largest delay before the retry that follows failed attempt `attempt` (>= 1)."""
        if attempt < 1:
            raise ValueError(f"attempt counts from 1, got {attempt}")
        return min(self.cap_seconds, self.base_seconds * 2.0 ** min(attempt - 1, _MAX_EXPONENT))

    def delay(
        self, attempt: int, retry_after: float | None = None, rng: random.Random | None = None
    ) -> float:
        """A full-jitter delay in [0, ceiling(attempt)], raised to `retry_after` when that is longer."""
        jittered = (rng or _RANDOM).uniform(0.0, self.ceiling(attempt))
        if retry_after is None:
            return jittered
        return max(jittered, max(retry_after, 0.0))


DEFAULT_BACKOFF = Backoff()
# One generator for the process: jitter needs no cryptographic quality.
_RANDOM = random.Random()


def retry_delay(
    attempt: int,
    retry_after: float | None = None,
    *,
    backoff: Backoff = DEFAULT_BACKOFF,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before retrying after failed attempt `attempt`, honouring a Retry-After."""
    return backoff.delay(attempt, retry_after, rng)
