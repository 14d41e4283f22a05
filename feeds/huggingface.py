"""Hugging Face Daily Papers: community upvotes and comment counts for arXiv papers.

Each entry of ``/api/daily_papers`` wraps a ``paper`` object. ``upvotes`` lives inside ``paper``
while ``numComments`` sits on the entry, and there are two ``publishedAt`` fields: the paper's is
the arXiv publication time, the entry's is when it was put on Daily Papers. Neither is needed
for a signal (``observed_at`` is when we looked), so neither is read.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

import httpx

from feeds.engagement import (
    EngagementResult,
    expect_list,
    expect_object,
    merge_results,
    metric_signals,
    optional_object,
    optional_str,
    reading,
    require_aware,
)
from feeds.http import parse_json, raise_for_status
from feeds.ids import find_ids
from feeds.records import Signal

SOURCE = "huggingface"
DAILY_PAPERS_URL = "https://huggingface.co/api/daily_papers"
MAX_DAYS = 7


def paper_page_url(arxiv_id: str) -> str:
    """The paper's page (and discussion) on Hugging Face."""
    return f"https://huggingface.co/papers/{arxiv_id}"


def parse_daily_papers(raw: bytes, observed_at: datetime) -> tuple[Signal, ...]:
    """``upvotes`` and ``comments`` signals for every arXiv paper in a daily_papers response."""
    signals: list[Signal] = []
    for item in expect_list(parse_json(raw), "HF daily_papers response"):
        entry = expect_object(item, "HF daily_papers entry")
        paper = expect_object(entry.get("paper"), "HF daily_papers entry 'paper'")
        arxiv_ids = find_ids(optional_str(paper.get("id")) or "")[:1]
        if not arxiv_ids:
            continue
        submitter = optional_object(entry.get("submittedBy")) or optional_object(
            paper.get("submittedOnDailyBy")
        )
        signals += metric_signals(
            arxiv_ids,
            {"upvotes": paper.get("upvotes"), "comments": entry.get("numComments")},
            source=SOURCE,
            observed_at=observed_at,
            url=paper_page_url(arxiv_ids[0]),
            actor=optional_str(submitter.get("user")),
        )
    return tuple(signals)


async def fetch_daily_papers(
    client: httpx.AsyncClient,
    day: date,
    token: str | None = None,
    *,
    observed_at: datetime | None = None,
) -> tuple[Signal, ...]:
    """Signals for the papers featured on ``day``; a token only raises the rate-limit bucket."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await client.get(
        DAILY_PAPERS_URL, params={"date": day.isoformat(), "limit": 100}, headers=headers
    )
    raise_for_status(response)
    with reading(response):
        return parse_daily_papers(response.content, observed_at or datetime.now(UTC))


class HuggingFaceSource:
    """Polls Daily Papers for each UTC day from ``since`` to ``now`` (at most ``max_days``)."""

    name = SOURCE

    def __init__(
        self, client: httpx.AsyncClient, token: str | None = None, *, max_days: int = MAX_DAYS
    ) -> None:
        self._client = client
        self._token = token
        self._max_days = max_days

    async def poll(self, since: datetime, now: datetime) -> EngagementResult:
        """Current upvotes and comments of papers featured since ``since``."""
        days = days_between(require_aware(since, "since"), require_aware(now, "now"))
        results = []
        for day in days[-self._max_days :]:
            signals = await fetch_daily_papers(self._client, day, self._token, observed_at=now)
            ids = tuple(dict.fromkeys(signal.arxiv_id for signal in signals))
            results.append(EngagementResult(signals, None, ids))
        return merge_results(results)


def days_between(start: datetime, end: datetime) -> Sequence[date]:
    """Every UTC calendar day from ``start`` to ``end`` inclusive (empty if ``end`` is earlier)."""
    first, last = start.astimezone(UTC).date(), end.astimezone(UTC).date()
    return [first + timedelta(days=offset) for offset in range((last - first).days + 1)]
