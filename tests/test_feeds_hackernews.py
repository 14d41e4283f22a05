"""Hacker News via Algolia: both hit shapes, the arXiv post-filter, and paging limits."""

from __future__ import annotations

import contextlib
import json
import logging
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feeds.engagement import EngagementSource
from feeds.hackernews import HackerNewsSource, fetch_hn, parse_hn_search
from feeds.http import MalformedPayload
from tests import golden

DATA = Path(__file__).parent / "data" / "hackernews"
assert_golden = partial(golden.assert_golden, DATA)
OBSERVED_AT = datetime(2025, 7, 21, 14, 0, tzinfo=UTC)


FUZZ_KEYS = [
    "hits",
    "objectID",
    "url",
    "title",
    "story_text",
    "comment_text",
    "author",
    "points",
    "num_comments",
    "created_at_i",
    "_tags",
    "page",
    "nbPages",
    "hitsPerPage",
    "nbHits",
]
FUZZ_STRINGS = ["story", "https://arxiv.org/abs/2401.12345", "arXiv:2401.12345", "12345"]


def json_like() -> st.SearchStrategy[Any]:
    """Any JSON value whose objects use the keys this parser looks at."""
    return golden.json_like(FUZZ_KEYS, FUZZ_STRINGS)


def json_objects() -> st.SearchStrategy[dict[str, Any]]:
    """Objects where each key this parser reads may or may not be present, with any value."""
    return golden.json_objects(FUZZ_KEYS, FUZZ_STRINGS)


@pytest.mark.parametrize("name", ["search_by_date_2016", "search_by_date_2025"])
def test_parse_matches_golden(name: str) -> None:
    page = parse_hn_search((DATA / f"{name}.json").read_bytes(), OBSERVED_AT)
    assert_golden(name, page)


def test_2016_shape_keeps_only_stories_that_name_a_paper() -> None:
    page = parse_hn_search((DATA / "search_by_date_2016.json").read_bytes(), OBSERVED_AT)
    # The fuzzy "arxivist" match is dropped; the Ask HN post counts through its HTML text.
    assert page.mentioned_ids == ("1606.06565", "1512.03385", "1609.08144")
    assert page.hit_count == 4
    points = {s.arxiv_id: s.value for s in page.signals if s.metric == "points"}
    assert points == {"1606.06565": 214.0, "1512.03385": 38.0, "1609.08144": 9.0}
    ask = [s for s in page.signals if s.arxiv_id == "1609.08144"]
    assert {s.url for s in ask} == {"https://news.ycombinator.com/item?id=12617200"}
    assert {s.actor for s in ask} == {"mt_curious"}


def test_2025_shape_reads_html_alphaxiv_and_hugging_face_links() -> None:
    page = parse_hn_search((DATA / "search_by_date_2025.json").read_bytes(), OBSERVED_AT)
    assert page.mentioned_ids == ("2501.12948", "2502.02737", "2502.09992", "2312.00752")
    assert page.oldest_created_at == datetime(2025, 7, 21, 4, 10, 9, tzinfo=UTC)
    assert all(s.observed_at == OBSERVED_AT and s.source == "hackernews" for s in page.signals)
    zero_comments = [
        s for s in page.signals if s.arxiv_id == "2502.09992" and s.metric == "comments"
    ]
    assert [s.value for s in zero_comments] == [0.0]


def test_title_mention_counts_and_missing_numbers_are_skipped() -> None:
    raw = json.dumps(
        {
            "hits": [
                {
                    "objectID": 501,
                    "title": "Discussion of arXiv:2401.04088",
                    "author": "someone",
                    "points": None,
                    "num_comments": 12,
                    "_tags": ["story"],
                },
                {
                    "objectID": "502",
                    "comment_text": "see arxiv.org/abs/2401.04088",
                    "_tags": ["comment"],
                },
            ]
        }
    ).encode()
    page = parse_hn_search(raw, OBSERVED_AT)
    assert [(s.arxiv_id, s.metric, s.value) for s in page.signals] == [
        ("2401.04088", "comments", 12.0)
    ]
    assert page.signals[0].url == "https://news.ycombinator.com/item?id=501"
    assert page.is_last


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "empty JSON"),
        (b"{not json", "malformed JSON"),
        (b"[]", "expected a JSON object"),
        (b'{"hits": {"a": 1}}', "'hits'"),
        (b'{"nbPages": 2}', "'hits'"),
        (b'{"hits": ["story"]}', "HN hit"),
        (b'{"hits": [], "nbPages": "3"}', "nbPages"),
    ],
)
def test_malformed_payloads_raise_malformed_payload(raw: bytes, message: str) -> None:
    with pytest.raises(MalformedPayload, match=message):
        parse_hn_search(raw, OBSERVED_AT)


def _page(page: int, nb_pages: int, count: int, nb_hits: int | None = None) -> bytes:
    hits = [
        {
            "objectID": str(40_000_000 + page * 100 + n),
            "url": f"https://arxiv.org/abs/2507.{page * 100 + n:05d}",
            "title": "t",
            "author": "a",
            "points": 1,
            "num_comments": 0,
            "created_at_i": 1_753_000_000 - page * 1000 - n,
            "_tags": ["story"],
        }
        for n in range(count)
    ]
    body = {
        "hits": hits,
        "page": page,
        "nbPages": nb_pages,
        "hitsPerPage": 100,
        "nbHits": nb_hits if nb_hits is not None else nb_pages * 100,
    }
    return json.dumps(body).encode()


def _client(pages: dict[int, bytes], seen: list[httpx.Request]) -> httpx.AsyncClient:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=pages[int(request.url.params["page"])])

    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


async def test_fetch_sends_the_documented_query_and_pages_until_done() -> None:
    seen: list[httpx.Request] = []
    since = datetime(2025, 7, 20, 0, 0, tzinfo=UTC)
    pages = {0: _page(0, 3, 100), 1: _page(1, 3, 100), 2: _page(2, 3, 40, nb_hits=240)}
    async with _client(pages, seen) as client:
        result = await fetch_hn(client, since, observed_at=OBSERVED_AT)
    assert len(seen) == 3
    first = seen[0]
    assert first.method == "GET"
    assert f"{first.url.scheme}://{first.url.host}{first.url.path}" == (
        "https://hn.algolia.com/api/v1/search_by_date"
    )
    assert dict(first.url.params) == {
        "query": "arxiv.org",
        "restrictSearchableAttributes": "url",
        "tags": "story",
        "numericFilters": f"created_at_i>{int(since.timestamp())}",
        "hitsPerPage": "100",
        "page": "0",
    }
    assert [r.url.params["page"] for r in seen] == ["0", "1", "2"]
    assert len(result.mentioned_ids) == 240
    assert len(result.signals) == 480
    assert result.cursor is None


async def test_fetch_stops_at_algolias_thousand_hit_ceiling(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[httpx.Request] = []
    # Algolia reports every match in nbHits but caps nbPages at the reachable 1000 hits.
    pages = {n: _page(n, 10, 100, nb_hits=4321) for n in range(12)}
    with caplog.at_level(logging.WARNING, logger="feeds.hackernews"):
        async with _client(pages, seen) as client:
            result = await fetch_hn(
                client, datetime(2025, 7, 1, tzinfo=UTC), observed_at=OBSERVED_AT, max_pages=50
            )
    assert len(seen) == 10
    assert result.cursor == datetime.fromtimestamp(1_753_000_000 - 9099, UTC).isoformat()
    assert "read 1000 of 4321" in caplog.text


async def test_fetch_respects_its_page_cap() -> None:
    seen: list[httpx.Request] = []
    pages = {n: _page(n, 8, 100) for n in range(8)}
    async with _client(pages, seen) as client:
        result = await fetch_hn(
            client, datetime(2025, 7, 1, tzinfo=UTC), observed_at=OBSERVED_AT, max_pages=2
        )
    assert len(seen) == 2
    assert result.cursor is not None


async def test_fetch_stops_on_an_empty_page() -> None:
    seen: list[httpx.Request] = []
    pages = {0: json.dumps({"hits": [], "page": 0, "nbPages": 0, "nbHits": 0}).encode()}
    async with _client(pages, seen) as client:
        result = await fetch_hn(client, datetime(2025, 7, 1, tzinfo=UTC), observed_at=OBSERVED_AT)
    assert len(seen) == 1
    assert result.signals == ()


async def test_fetch_rejects_naive_since() -> None:
    async with _client({}, []) as client:
        with pytest.raises(ValueError, match="timezone-aware"):
            await fetch_hn(client, datetime(2025, 7, 1))


async def test_source_polls_with_now_as_observation_time() -> None:
    seen: list[httpx.Request] = []
    raw = (DATA / "search_by_date_2025.json").read_bytes()
    async with _client({0: raw}, seen) as client:
        source: EngagementSource = HackerNewsSource(client)
        now = datetime(2025, 7, 21, 15, 30, tzinfo=UTC)
        result = await source.poll(datetime(2025, 7, 21, tzinfo=UTC), now)
    assert source.name == "hackernews"
    assert {s.observed_at for s in result.signals} == {now}
    assert result.mentioned_ids == ("2501.12948", "2502.02737", "2502.09992", "2312.00752")


@settings(max_examples=80, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(json_objects(), max_size=4), json_like())
def test_any_shape_parses_or_raises_malformed_payload(hits: list[Any], envelope: Any) -> None:
    for body in ({"hits": hits, "nbPages": 1}, envelope):
        with contextlib.suppress(MalformedPayload):
            parse_hn_search(json.dumps(body).encode(), OBSERVED_AT)
