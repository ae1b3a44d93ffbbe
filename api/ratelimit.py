"""Per-caller rate limit: a token bucket per key id, refilled continuously (in memory, per replica)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """`per_minute` requests a minute per caller, in bursts of up to `per_minute`; 0 disables it."""

    def __init__(self, per_minute: int, clock=time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def acquire(self, caller_id: str) -> float:
        """0.0 if the request may go ahead (one token taken), else the seconds until it may be retried."""
        if self.capacity == 0:
            return 0.0
        now = self._clock()
        bucket = self._buckets.setdefault(caller_id, _Bucket(self.capacity, now))
        bucket.tokens = min(self.capacity, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate


def retry_after_header(seconds: float) -> str:
    """Retry-After takes whole seconds; round up so a client that obeys it is admitted."""
    return str(max(1, math.ceil(seconds)))
