"""The retry policy's parameters: exponential backoff with full jitter, computed in SQL.

The delay before the retry that follows the n-th failure is uniform in
[0, min(cap, base * 2^(n-1))], and a Retry-After from the failure is a floor. The formula lives in
one place, `tasks_retry_delay` in config/state/080_tasks.sql, because agents record their own
failures there (`fail_task_attempt`) and lease expiry retries there too; the store passes these
parameters. Full jitter spreads the retries of many tasks that failed together (an agent restarting,
a rate limit) instead of sending them back in waves.
"""

from __future__ import annotations

from dataclasses import dataclass

# 2^62 seconds is past any cap; bounding the exponent keeps the arithmetic finite.
_MAX_EXPONENT = 62


@dataclass(frozen=True)
class Backoff:
    """The backoff policy: `base_seconds` doubles per failure up to `cap_seconds`."""

    base_seconds: float = 1.0
    cap_seconds: float = 300.0

    def __post_init__(self) -> None:
        if self.base_seconds < 0 or self.cap_seconds < 0:
            raise ValueError("backoff base and cap must not be negative")

    def ceiling(self, failure: int) -> float:
        """The largest delay before the retry that follows failure number `failure` (>= 1)."""
        if failure < 1:
            raise ValueError(f"failures count from 1, got {failure}")
        return min(self.cap_seconds, self.base_seconds * 2.0 ** min(failure - 1, _MAX_EXPONENT))


DEFAULT_BACKOFF = Backoff()
