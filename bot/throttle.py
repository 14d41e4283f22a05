"""A per-user command rate limit: one token bucket per key, on an injected monotonic clock.

The default allows a burst of 20 commands and refills at 20 per minute, so a person typing
never notices it while a script (or a stuck client) cannot flood the bot or the database.
Only the first refused command of a burst is meant to be answered; later ones are dropped
quietly until tokens are back, or the answers themselves would be the flood.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    """Whether one command may run now."""

    allowed: bool
    retry_after: float = 0.0
    """Seconds until the next command would be allowed (0 when allowed)."""
    first_refusal: bool = False
    """True for the first refused command since the key was last allowed: answer this one."""


@dataclass
class _Bucket:
    tokens: float
    updated: float
    warned: bool = False


class Throttle:
    """Token buckets keyed by anything hashable (``(platform, user_id)`` in the router)."""

    def __init__(
        self,
        rate: int = 20,
        per: float = 60.0,
        *,
        burst: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        if rate <= 0 or per <= 0:
            raise ValueError("rate and per must be positive")
        self.rate = rate / per
        self.burst = float(burst if burst is not None else rate)
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: OrderedDict[Hashable, _Bucket] = OrderedDict()

    def check(self, key: Hashable) -> Verdict:
        """Take one token for ``key`` if there is one."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(tokens=self.burst, updated=now)
            self._buckets[key] = bucket
            # Forgetting the least recently seen key only ever gives it a fresh, full bucket.
            while len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            elapsed = max(0.0, now - bucket.updated)
            bucket.tokens = min(self.burst, bucket.tokens + elapsed * self.rate)
            bucket.updated = now
        # The epsilon absorbs float error: waiting exactly ``retry_after`` must be enough.
        if bucket.tokens >= 1.0 - 1e-9:
            bucket.tokens = max(0.0, bucket.tokens - 1.0)
            bucket.warned = False
            return Verdict(True)
        first = not bucket.warned
        bucket.warned = True
        return Verdict(False, retry_after=(1.0 - bucket.tokens) / self.rate, first_refusal=first)

    def __len__(self) -> int:
        return len(self._buckets)
