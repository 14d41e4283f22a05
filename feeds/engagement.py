"""What every engagement source (Hacker News, Reddit, Bluesky, Hugging Face…) has in common.

A source polls its API for posts that mention arXiv papers and turns each post's numbers into
``Signal`` records. The schema checks below make a parser fail with ``MalformedPayload``, never
with ``KeyError`` or ``TypeError``, when an API changes shape under us.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx

from feeds.http import MalformedPayload
from feeds.records import Signal


@dataclass(frozen=True, slots=True)
class EngagementResult:
    """The outcome of one poll of one source."""

    signals: tuple[Signal, ...] = ()
    cursor: str | None = None
    """Where paging stopped when the poll ended early (page cap, rate limit); None when complete."""
    mentioned_ids: tuple[str, ...] = ()
    """Every arXiv id the poll saw, in first-seen order, even ones without a usable number."""
    problems: tuple[str, ...] = field(default=(), compare=False)
    """Faults that cut the poll short without failing it (a rate-limit pause, an unreadable
    subreddit), each naming its URL, so the caller can log them and count them in the source's
    health. Diagnostics only: two results with the same data compare equal."""


class EngagementSource(Protocol):
    """A social or bibliometric source that can be polled for recent paper mentions."""

    name: str

    async def poll(self, since: datetime, now: datetime) -> EngagementResult:
        """Signals for posts created after ``since``, observed at ``now`` (both UTC-aware)."""


def merge_results(
    results: Iterable[EngagementResult], cursor: str | None = None
) -> EngagementResult:
    """Concatenate several results (pages, subreddits) into one, keeping order.

    A post seen twice (listings shift while we page through them) counts once: the first
    reading of each (paper, metric, post) wins.
    """
    signals: dict[tuple[str, str, str, str | None], Signal] = {}
    seen: dict[str, None] = {}
    problems: list[str] = []
    for result in results:
        for signal in result.signals:
            signals.setdefault((signal.arxiv_id, signal.source, signal.metric, signal.url), signal)
        seen.update(dict.fromkeys(result.mentioned_ids))
        problems.extend(result.problems)
    return EngagementResult(tuple(signals.values()), cursor, tuple(seen), tuple(problems))


def metric_signals(
    arxiv_ids: Iterable[str],
    metrics: Mapping[str, object],
    *,
    source: str,
    observed_at: datetime,
    url: str | None,
    actor: str | None = None,
) -> list[Signal]:
    """One signal per (id, metric) with a numeric value; missing or null metrics are skipped."""
    numbers = {name: as_number(raw) for name, raw in metrics.items()}
    return [
        Signal(arxiv_id, source, metric, value, observed_at, url=url, actor=actor)
        for arxiv_id in arxiv_ids
        for metric, value in numbers.items()
        if value is not None
    ]


def as_number(value: object) -> float | None:
    """A JSON count as float; None for null, booleans and anything non-numeric."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def utc_from_timestamp(seconds: float | None) -> datetime | None:
    """Unix seconds as an aware UTC datetime; None when absent or outside the calendar."""
    if seconds is None:
        return None
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None


@contextmanager
def reading(response: httpx.Response) -> Iterator[None]:
    """Name ``response``'s URL and status in a ``MalformedPayload`` raised while parsing it.

    The pure parsers never see a URL; without this, "unexpected schema" errors would be
    logged without saying which request returned the bad body.
    """
    try:
        yield
    except MalformedPayload as exc:
        if exc.url:
            raise
        raise MalformedPayload(exc.reason, str(response.request.url), response.status_code) from exc


def expect_object(value: object, what: str) -> dict[str, Any]:
    """``value`` if it is a JSON object, else ``MalformedPayload`` naming ``what``."""
    if not isinstance(value, dict):
        raise MalformedPayload(f"{what}: expected a JSON object, got {type(value).__name__}")
    return value


def expect_list(value: object, what: str) -> list[Any]:
    """``value`` if it is a JSON array, else ``MalformedPayload`` naming ``what``."""
    if not isinstance(value, list):
        raise MalformedPayload(f"{what}: expected a JSON array, got {type(value).__name__}")
    return value


def optional_object(value: object) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty one: for optional nested fields."""
    return value if isinstance(value, dict) else {}


def optional_str(value: object) -> str | None:
    """``value`` if it is a non-empty string, else None."""
    return value if isinstance(value, str) and value else None


def require_aware(moment: datetime, what: str) -> datetime:
    """``moment`` in UTC; a naive datetime is a programming error, so it raises ``ValueError``."""
    if moment.tzinfo is None:
        raise ValueError(f"{what} must be timezone-aware")
    return moment.astimezone(UTC)
