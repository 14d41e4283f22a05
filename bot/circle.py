"""Your circle: papers posted by the Bluesky accounts a subscriber follows.

The original Trending arXiv counted what the people *one* reader followed were tweeting. Here a
subscriber links a Bluesky handle; whom that account follows is read from the public
``app.bsky.graph.getFollows`` (no login), refreshed at most once a day, and kept in the
``source_cursor`` row ``circle:<subscriber id>`` (``cursor`` holds ``{"handle": …, "follows":
[DIDs]}``, ``last_success_at`` the refresh time, failures are counted like any source's). A
changed handle is re-read at once and an old list never counts for a new handle. Bluesky posts
are stored with their author's DID, so counting a circle's posts is a lookup, not a poll.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta

import httpx

from feeds.bluesky import SOURCE as BLUESKY
from feeds.bluesky import fetch_follows
from feeds.http import FetchError
from storage import cursors
from storage.db import Database
from storage.engagement import actors_by_paper
from storage.models import Subscriber

log = logging.getLogger(__name__)

CIRCLE_PREFIX = "circle:"
REFRESH_AFTER = timedelta(hours=24)
DEFAULT_CIRCLE_WEIGHT = 1.0


def circle_key(subscriber_id: int) -> str:
    """The ``source_cursor`` key holding one subscriber's follows."""
    return f"{CIRCLE_PREFIX}{subscriber_id}"


def is_circle_key(source: str) -> bool:
    """True for circle rows, which are not sources of their own."""
    return source.startswith(CIRCLE_PREFIX)


def store_follows(
    db: Database, subscriber_id: int, dids: Iterable[str], now: datetime, *, handle: str = ""
) -> int:
    """Replace a subscriber's follow list (read for ``handle``); returns its size."""
    unique = sorted(set(dids))
    record = json.dumps({"handle": handle, "follows": unique})
    cursors.record_success(db, circle_key(subscriber_id), now=now, cursor=record)
    return len(unique)


def _stored(db: Database, subscriber_id: int) -> tuple[str | None, frozenset[str]]:
    raw = cursors.get(db, circle_key(subscriber_id)).cursor
    if not raw:
        return None, frozenset()
    try:
        record = json.loads(raw)
    except json.JSONDecodeError:
        record = None
    if not isinstance(record, dict) or not isinstance(record.get("follows"), list):
        log.warning("circle: unreadable follow list for subscriber=%d; ignored", subscriber_id)
        return None, frozenset()
    handle = record.get("handle")
    follows = frozenset(d for d in record["follows"] if isinstance(d, str))
    return (handle if isinstance(handle, str) else None), follows


def followed(db: Database, subscriber_id: int, *, handle: str | None = None) -> frozenset[str]:
    """DIDs the subscriber's linked Bluesky account follows (empty if unknown).

    With ``handle``, a list read for another handle (the subscriber changed it) is ignored.
    """
    stored_handle, follows = _stored(db, subscriber_id)
    if handle is not None and stored_handle != handle:
        return frozenset()
    return follows


async def refresh_circle(
    db: Database,
    client: httpx.AsyncClient,
    subscriber: Subscriber,
    now: datetime,
    *,
    max_age: timedelta = REFRESH_AFTER,
    force: bool = False,
) -> int | None:
    """Re-read whom the subscriber's Bluesky account follows when the list is older than a day.

    Returns the number of accounts stored, or None when nothing was fetched (no handle, still
    fresh, or the fetch failed: then the old list stays and the failure is recorded).
    """
    if subscriber.id is None or not subscriber.bluesky_handle:
        return None
    key = circle_key(subscriber.id)
    state = cursors.get(db, key)
    fresh = state.last_success_at is not None and now - state.last_success_at < max_age
    same_handle = _stored(db, subscriber.id)[0] == subscriber.bluesky_handle
    if fresh and same_handle and not force:
        return None
    try:
        dids = await fetch_follows(client, subscriber.bluesky_handle)
    except FetchError as exc:
        log.warning(
            "circle: could not read follows subscriber=%d handle=%s url=%s error=%s",
            subscriber.id,
            subscriber.bluesky_handle,
            exc.url,
            exc.reason,
        )
        cursors.record_failure(db, key, str(exc), now=now)
        return None
    count = store_follows(db, subscriber.id, dids, now, handle=subscriber.bluesky_handle)
    log.info("circle: subscriber=%d follows %d Bluesky accounts", subscriber.id, count)
    return count


async def refresh_circles(
    db: Database, client: httpx.AsyncClient, subscribers: Sequence[Subscriber], now: datetime
) -> dict[int, int]:
    """Refresh every due circle, one subscriber's failure never stopping the others."""
    refreshed: dict[int, int] = {}
    for subscriber in subscribers:
        count = await refresh_circle(db, client, subscriber, now)
        if count is not None and subscriber.id is not None:
            refreshed[subscriber.id] = count
    return refreshed


def circle_counts(
    db: Database, subscriber_id: int, arxiv_ids: Sequence[str], *, handle: str | None = None
) -> dict[str, int]:
    """How many accounts the subscriber follows posted each paper (papers with none left out).

    Pass the subscriber's current ``handle`` to ignore a list read for a previous one.
    """
    follows = followed(db, subscriber_id, handle=handle)
    if not follows:
        return {}
    posters = actors_by_paper(db, arxiv_ids, BLUESKY)
    counts = {arxiv_id: len(actors & follows) for arxiv_id, actors in posters.items()}
    return {arxiv_id: count for arxiv_id, count in counts.items() if count}


def circle_line(count: int) -> str:
    """The digest's circle note, e.g. "3 people you follow posted this" ("" for none)."""
    if count <= 0:
        return ""
    return f"{count} {'person' if count == 1 else 'people'} you follow posted this"


def with_circle(
    trend: Mapping[str, float], counts: Mapping[str, int], weight: float = DEFAULT_CIRCLE_WEIGHT
) -> dict[str, float]:
    """The trend as one subscriber sees it: ``x`` grows by ``weight · log1p(circle posters)``.

    Since ``trend = 1 − exp(−x)``, that is ``1 − (1 − trend) · (1 + n) ** −weight``. With
    weight 1, one followed poster adds ``log 2 ≈ 0.69`` to ``x``, about what a whole source's
    90th-percentile crowd adds (1.0 times that source's weight); three add ``log 4 ≈ 1.39``.
    """
    personal = dict(trend)
    for arxiv_id, count in counts.items():
        base = personal.get(arxiv_id, 0.0)
        personal[arxiv_id] = 1.0 - (1.0 - base) * math.pow(1.0 + count, -weight)
    return personal


def with_circle_lines(lines: Mapping[str, str], counts: Mapping[str, int]) -> dict[str, str]:
    """Trend lines with "· 👥 N people you follow posted this" added where it applies."""
    personal = dict(lines)
    for arxiv_id, count in counts.items():
        note = circle_line(count)
        if note:
            line = personal.get(arxiv_id, "")
            personal[arxiv_id] = f"{line} · 👥 {note}" if line else f"👥 {note}"
    return personal


def for_subscriber(
    db: Database,
    subscriber_id: int,
    scores: Mapping[str, float],
    lines: Mapping[str, str],
    *,
    handle: str | None = None,
    weight: float = DEFAULT_CIRCLE_WEIGHT,
) -> tuple[dict[str, float], dict[str, str]]:
    """The global trend scores and lines of ``scores``' papers as one subscriber sees them."""
    counts = circle_counts(db, subscriber_id, list(scores), handle=handle)
    return with_circle(scores, counts, weight), with_circle_lines(lines, counts)
