"""Hacker News stories that link or mention arXiv papers, read from the Algolia HN Search API.

Algolia's ``restrictSearchableAttributes=url`` is a typo-tolerant token match, not a URL filter,
so every hit is checked again here: only stories whose URL, title or text yields an arXiv id
count. Hits come in two shapes (2016: null fields and ``.000Z`` times; 2025: sorted keys and
absent fields instead of nulls), so every field is optional.
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from feeds.engagement import (
    EngagementResult,
    expect_list,
    expect_object,
    merge_results,
    metric_signals,
    optional_str,
    reading,
    require_aware,
    utc_from_timestamp,
)
from feeds.http import MalformedPayload, parse_json, raise_for_status
from feeds.ids import find_ids
from feeds.records import Signal

log = logging.getLogger(__name__)

SOURCE = "hackernews"
SEARCH_BY_DATE_URL = "https://hn.algolia.com/api/v1/search_by_date"
HITS_PER_PAGE = 100
REACHABLE_HITS = 1000
"""Algolia serves at most this many hits of one query, whatever the page number."""
MAX_PAGES = 10


@dataclass(frozen=True, slots=True)
class HnPage:
    """One page of Algolia search results, reduced to arXiv stories."""

    signals: tuple[Signal, ...]
    mentioned_ids: tuple[str, ...]
    page: int
    nb_pages: int
    hits_per_page: int
    nb_hits: int
    """Stories matching the query in total (Algolia serves only the first 1000)."""
    hit_count: int
    """Hits on this page before filtering, to tell an empty page from a page of non-arXiv links."""
    oldest_created_at: datetime | None
    """Creation time of the oldest hit on the page (search_by_date pages go newest first)."""

    @property
    def is_last(self) -> bool:
        """True when Algolia has no further page for this query."""
        return self.hit_count == 0 or self.page + 1 >= self.nb_pages


def story_url(object_id: str) -> str:
    """The Hacker News discussion page of a story."""
    return f"https://news.ycombinator.com/item?id={object_id}"


def story_arxiv_ids(hit: dict[str, Any]) -> list[str]:
    """arXiv ids a story points at: its link first, then its title and (HTML) text."""
    texts = [optional_str(hit.get("url")), optional_str(hit.get("title"))]
    story_text = optional_str(hit.get("story_text"))
    if story_text:
        # Algolia stores story text as HTML with entity-escaped slashes (``https:&#x2F;&#x2F;``).
        texts.append(html.unescape(story_text))
    found: dict[str, None] = {}
    for text in texts:
        if text:
            found.update(dict.fromkeys(find_ids(text)))
    return list(found)


def parse_hn_search(raw: bytes, observed_at: datetime) -> HnPage:
    """Parse one Algolia search response into ``points`` and ``comments`` signals per story."""
    body = expect_object(parse_json(raw), "HN search response")
    hits = expect_list(body.get("hits"), "HN search 'hits'")
    page = _int_field(body, "page", 0)
    hits_per_page = _int_field(body, "hitsPerPage", len(hits))
    signals: list[Signal] = []
    mentioned: dict[str, None] = {}
    oldest: int | None = None
    for item in hits:
        hit = expect_object(item, "HN hit")
        created = hit.get("created_at_i")
        if isinstance(created, int) and not isinstance(created, bool):
            oldest = created if oldest is None else min(oldest, created)
        if not _is_story(hit):
            continue
        object_id = hit.get("objectID")
        arxiv_ids = story_arxiv_ids(hit)
        if not arxiv_ids or not isinstance(object_id, str | int) or isinstance(object_id, bool):
            continue
        mentioned.update(dict.fromkeys(arxiv_ids))
        signals += metric_signals(
            arxiv_ids,
            {"points": hit.get("points"), "comments": hit.get("num_comments")},
            source=SOURCE,
            observed_at=observed_at,
            url=story_url(str(object_id)),
            actor=optional_str(hit.get("author")),
        )
    return HnPage(
        signals=tuple(signals),
        mentioned_ids=tuple(mentioned),
        page=page,
        nb_pages=_int_field(body, "nbPages", page + 1),
        hits_per_page=hits_per_page,
        nb_hits=_int_field(body, "nbHits", page * hits_per_page + len(hits)),
        hit_count=len(hits),
        oldest_created_at=utc_from_timestamp(oldest),
    )


async def fetch_hn(
    client: httpx.AsyncClient,
    since: datetime,
    *,
    observed_at: datetime | None = None,
    max_pages: int = MAX_PAGES,
) -> EngagementResult:
    """Stories created after ``since`` whose URL mentions arxiv.org, newest first, all pages.

    Stops at ``max_pages`` or at Algolia's 1000-hit ceiling; if stories were left unread, the
    result's ``cursor`` is the creation time (ISO) of the oldest story read.
    """
    since = require_aware(since, "since")
    observed_at = observed_at or datetime.now(UTC)
    pages: list[HnPage] = []
    cursor: str | None = None
    for page_number in range(max_pages):
        response = await client.get(
            SEARCH_BY_DATE_URL,
            params={
                "query": "arxiv.org",
                "restrictSearchableAttributes": "url",
                "tags": "story",
                "numericFilters": f"created_at_i>{int(since.timestamp())}",
                "hitsPerPage": HITS_PER_PAGE,
                "page": page_number,
            },
        )
        raise_for_status(response)
        with reading(response):
            page = parse_hn_search(response.content, observed_at)
        pages.append(page)
        read = (page.page + 1) * page.hits_per_page
        if not page.is_last and read < REACHABLE_HITS and page_number + 1 < max_pages:
            continue
        if page.hit_count and page.nb_hits > read:
            oldest = page.oldest_created_at
            cursor = oldest.isoformat() if oldest else None
            log.warning(
                "Hacker News: read %d of %d matching stories; older than %s left unread",
                read,
                page.nb_hits,
                cursor,
            )
        break
    return merge_results(
        (EngagementResult(page.signals, None, page.mentioned_ids) for page in pages), cursor
    )


class HackerNewsSource:
    """Polls Algolia for recent arXiv stories on Hacker News (no credentials needed)."""

    name = SOURCE

    def __init__(self, client: httpx.AsyncClient, *, max_pages: int = MAX_PAGES) -> None:
        self._client = client
        self._max_pages = max_pages

    async def poll(self, since: datetime, now: datetime) -> EngagementResult:
        """Signals for arXiv stories posted after ``since``."""
        return await fetch_hn(self._client, since, observed_at=now, max_pages=self._max_pages)


def _is_story(hit: dict[str, Any]) -> bool:
    tags = hit.get("_tags")
    if isinstance(tags, list):
        return "story" in tags
    # Without tags, a comment is recognisable by its text field.
    return not hit.get("comment_text")


def _int_field(body: dict[str, Any], key: str, default: int) -> int:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedPayload(f"HN search '{key}': expected an integer, got {value!r}")
    return value
