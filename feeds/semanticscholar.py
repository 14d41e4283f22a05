"""Citation counts from the Semantic Scholar Graph API, asked for in batches by arXiv id.

The batch endpoint answers with one array element per requested id, in request order: ``null``
for an id it does not know, and sometimes a stub whose ``paperId`` is null. Papers are matched
to ids by their ``externalIds.ArXiv`` when S2 reports it and by position otherwise.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime

import httpx

from feeds.engagement import (
    expect_list,
    expect_object,
    metric_signals,
    optional_object,
    optional_str,
    reading,
)
from feeds.http import parse_json, raise_for_status
from feeds.ids import find_id
from feeds.records import Signal

SOURCE = "semanticscholar"
PAPER_BATCH_URL = "https://api.semanticscholar.org/graph/v1/paper/batch"
FIELDS = "externalIds,citationCount,influentialCitationCount"
BATCH_SIZE = 500
"""The batch endpoint accepts 1 to 500 ids."""
PAUSE_WITH_KEY = 1.0
"""An API key allows one request per second across all endpoints."""
PAUSE_WITHOUT_KEY = 3.0
"""Anonymous callers share one pool that often answers 429, so they go slower."""


def paper_url(paper_id: str) -> str:
    """The paper's page on semanticscholar.org."""
    return f"https://www.semanticscholar.org/paper/{paper_id}"


def parse_paper_batch(
    raw: bytes, requested_ids: Sequence[str], observed_at: datetime
) -> tuple[Signal, ...]:
    """``citations`` and ``influential_citations`` per known paper of one batch response."""
    items = expect_list(parse_json(raw), "S2 paper batch response")
    requested = [find_id(raw_id) for raw_id in requested_ids]
    # Positions only mean something when the answer lines up with the question.
    by_position = len(items) == len(requested)
    signals: dict[str, list[Signal]] = {}
    for position, item in enumerate(items):
        if item is None:
            continue
        paper = expect_object(item, "S2 paper")
        paper_id = optional_str(paper.get("paperId"))
        if paper_id is None:
            continue
        reported = optional_str(optional_object(paper.get("externalIds")).get("ArXiv"))
        arxiv_id = find_id(reported) if reported else None
        if arxiv_id is None and by_position:
            arxiv_id = requested[position]
        if arxiv_id is None or arxiv_id in signals:
            continue
        signals[arxiv_id] = metric_signals(
            [arxiv_id],
            {
                "citations": paper.get("citationCount"),
                "influential_citations": paper.get("influentialCitationCount"),
            },
            source=SOURCE,
            observed_at=observed_at,
            url=paper_url(paper_id),
        )
    return tuple(signal for group in signals.values() for signal in group)


async def fetch_citations(
    client: httpx.AsyncClient,
    arxiv_ids: Iterable[str],
    api_key: str | None = None,
    *,
    observed_at: datetime | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    batch_size: int = BATCH_SIZE,
) -> tuple[Signal, ...]:
    """Citation signals for ``arxiv_ids`` (any id form; invalid ones are dropped), in batches."""
    observed_at = observed_at or datetime.now(UTC)
    unique = list(dict.fromkeys(arxiv_id for raw in arxiv_ids if (arxiv_id := find_id(raw))))
    headers = {"x-api-key": api_key} if api_key else {}
    pause = PAUSE_WITH_KEY if api_key else PAUSE_WITHOUT_KEY
    signals: list[Signal] = []
    for start in range(0, len(unique), batch_size):
        if start:
            await sleep(pause)
        chunk = unique[start : start + batch_size]
        response = await client.post(
            PAPER_BATCH_URL,
            params={"fields": FIELDS},
            json={"ids": [f"ARXIV:{arxiv_id}" for arxiv_id in chunk]},
            headers=headers,
        )
        raise_for_status(response)
        with reading(response):
            signals += parse_paper_batch(response.content, chunk, observed_at)
    return tuple(signals)
