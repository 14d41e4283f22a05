"""Trend scores shared by the ``/digest`` commands of a few minutes.

Every ``/digest`` ranks with the trend scores of all fresh papers, the same for every chat:
computing them reads the engagement of every paper talked about in the trend window (about
30 ms for 400 fresh papers, 100 ms for 3,000 on SQLite), several times the rest of a digest.
They change when new engagement is stored or new papers arrive, and otherwise only drift with
time on a scale of hours (the half-life), so one computation serves until either happens or
``max_age`` seconds have passed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from bot.warm import need_load
from storage.db import Database
from storage.engagement import latest_snapshot_id

TrendResult = tuple[Mapping[str, float], Mapping[str, str]]
"""Trend scores and trend lines by arXiv id."""
TrendProvider = Callable[[Database, Sequence[str], datetime], TrendResult]
"""Trend scores and lines of candidate paper ids at a moment (``bot.trend.provider_for``)."""

DEFAULT_MAX_AGE_SECONDS = 300.0


@dataclass(frozen=True)
class _Entry:
    key: tuple[object, ...]
    computed_at: float
    result: TrendResult


class TrendCache:
    """A ``TrendProvider`` that reuses its last result while the engagement and papers stand.

    The returned mappings are shared between callers: read them, never change them.
    """

    def __init__(
        self,
        provider: TrendProvider,
        *,
        max_age: float = DEFAULT_MAX_AGE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.provider = provider
        self.max_age = max_age
        self.clock = clock
        self._last: _Entry | None = None
        self._lock = threading.Lock()

    def __call__(self, db: Database, arxiv_ids: Sequence[str], now: datetime) -> TrendResult:
        """Trend scores and lines of ``arxiv_ids`` at ``now`` (or at most ``max_age`` before)."""
        key = (id(db), latest_snapshot_id(db), tuple(arxiv_ids))
        reusable = self._reusable(key)
        if reusable is not None:
            return reusable
        need_load("the trend scores")
        with self._lock:
            # Another caller may have computed them while this one waited.
            reusable = self._reusable(key)
            if reusable is not None:
                return reusable
            started = self.clock()
            result = self.provider(db, arxiv_ids, now)
            self._last = _Entry(key, started, result)
            return result

    def _reusable(self, key: tuple[object, ...]) -> TrendResult | None:
        last = self._last
        if last is None or last.key != key or self.clock() - last.computed_at >= self.max_age:
            return None
        return last.result
