"""Reddit: listing parsing, public vs OAuth fetching, token caching and the rate-limit pause."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feeds.engagement import EngagementResult, EngagementSource
from feeds.http import MalformedPayload, build_client
from feeds.reddit import RateState, RedditSource, parse_rate_headers, parse_reddit_listing
from tests import golden

DATA = Path(__file__).parent / "data" / "reddit"
assert_golden = partial(golden.assert_golden, DATA)
OBSERVED_AT = datetime(2025, 7, 21, 14, 0, tzinfo=UTC)
SINCE = datetime(2025, 7, 21, 0, 0, tzinfo=UTC)
USER_AGENT = "linux:trending-papers-tests:0.1 (by /u/example)"


FUZZ_KEYS = [
    "kind",
    "data",
    "children",
    "after",
    "url",
    "selftext",
    "permalink",
    "author",
    "score",
    "num_comments",
    "created_utc",
]
FUZZ_STRINGS = [
    "Listing",
    "t3",
    "https://arxiv.org/abs/2401.12345",
    "/r/x/comments/1/y/",
    "[deleted]",
]


def json_like() -> st.SearchStrategy[Any]:
    """Any JSON value whose objects use the keys this parser looks at."""
    return golden.json_like(FUZZ_KEYS, FUZZ_STRINGS)


def json_objects() -> st.SearchStrategy[dict[str, Any]]:
    """Objects where each key this parser reads may or may not be present, with any value."""
    return golden.json_objects(FUZZ_KEYS, FUZZ_STRINGS)


def test_listing_matches_golden() -> None:
    page = parse_reddit_listing((DATA / "new_machinelearning.json").read_bytes(), OBSERVED_AT)
    assert_golden("new_machinelearning", page)


def test_listing_reads_links_and_self_text_and_ignores_other_posts() -> None:
    page = parse_reddit_listing((DATA / "new_machinelearning.json").read_bytes(), OBSERVED_AT)
    # URL post, self post with two papers, escaped self text; the GitHub post is ignored.
    assert page.mentioned_ids == ("2301.05217", "2405.04517", "2312.00752", "2310.06825")
    assert page.after == "t3_1e2b1q5"
    assert page.post_count == 4
    assert page.oldest_created_at == datetime(2025, 7, 21, 7, 12, tzinfo=UTC)
    by_post = {(s.arxiv_id, s.metric): s for s in page.signals}
    assert by_post[("2405.04517", "score")].url == (
        "https://www.reddit.com/r/MachineLearning/comments/1e2d9x1/d_xlstm_vs_mamba_which_one_holds_up/"
    )
    assert by_post[("2312.00752", "comments")].value == 41.0
    assert by_post[("2310.06825", "score")].actor is None  # "[deleted]"


def test_escaped_entities_in_urls_are_read_defensively() -> None:
    listing = {
        "kind": "Listing",
        "data": {
            "after": None,
            "children": [
                {
                    "kind": "t3",
                    "data": {
                        "url": "https:&#x2F;&#x2F;arxiv.org&#x2F;pdf&#x2F;2402.17764v1",
                        "permalink": "/r/LocalLLaMA/comments/abc/x/",
                        "score": 3,
                        "num_comments": 1,
                        "author": "u1",
                    },
                },
                {"kind": "t1", "data": {"body": "arxiv.org/abs/2402.17764"}},
            ],
        },
    }
    page = parse_reddit_listing(json.dumps(listing).encode(), OBSERVED_AT)
    assert [(s.arxiv_id, s.metric) for s in page.signals] == [
        ("2402.17764", "score"),
        ("2402.17764", "comments"),
    ]
    assert page.after is None


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"<html>busy</html>", "malformed JSON"),
        (b'{"kind": "t3", "data": {}}', "unexpected kind"),
        (b'{"kind": "Listing"}', "'data'"),
        (b'{"kind": "Listing", "data": {"children": null}}', "'children'"),
        (b'{"kind": "Listing", "data": {"children": [{"kind": "t3", "data": []}]}}', "Reddit post"),
        (b'{"kind": "Listing", "data": {"children": [7]}}', "child"),
    ],
)
def test_malformed_listings_raise_malformed_payload(raw: bytes, message: str) -> None:
    with pytest.raises(MalformedPayload, match=message):
        parse_reddit_listing(raw, OBSERVED_AT)


def test_rate_headers_are_float_strings_in_any_case() -> None:
    recorded = {
        "x-ratelimit-remaining": "996.0",
        "x-ratelimit-used": "4",
        "x-ratelimit-reset": "11",
    }
    assert parse_rate_headers(recorded) == RateState(remaining=996.0, used=4.0, reset_seconds=11.0)
    assert parse_rate_headers(httpx.Headers({"X-Ratelimit-Remaining": "0.0"})).exhausted
    assert (
        parse_rate_headers({"X-RATELIMIT-RESET": "nan", "x-ratelimit-used": "lots"}) == RateState()
    )
    assert not parse_rate_headers({}).exhausted


class FakeClock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


def _listing(posts: list[tuple[str, float, str]], after: str | None) -> bytes:
    children = [
        {
            "kind": "t3",
            "data": {
                "id": post_id,
                "url": url,
                "permalink": f"/r/MachineLearning/comments/{post_id}/p/",
                "score": 10,
                "num_comments": 2,
                "created_utc": created,
                "author": "poster",
            },
        }
        for post_id, created, url in posts
    ]
    return json.dumps({"kind": "Listing", "data": {"after": after, "children": children}}).encode()


RECENT = SINCE.timestamp() + 3600
OLD = SINCE.timestamp() - 3600


async def test_public_fetch_sends_user_agent_and_pages_back_to_since() -> None:
    seen: list[httpx.Request] = []
    pages = {
        None: _listing([("a1", RECENT, "https://arxiv.org/abs/2507.00001")], "t3_a1"),
        "t3_a1": _listing([("a2", OLD, "https://arxiv.org/abs/2507.00002")], "t3_a2"),
    }

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=pages[request.url.params.get("after")])

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        source: EngagementSource = RedditSource(client, ["MachineLearning"], USER_AGENT)
        result = await source.poll(SINCE, OBSERVED_AT)
    # The second page reached posts older than ``since``, so there is no third request.
    assert len(seen) == 2
    first = seen[0]
    assert f"{first.url.scheme}://{first.url.host}{first.url.path}" == (
        "https://www.reddit.com/r/MachineLearning/new.json"
    )
    assert dict(first.url.params) == {"limit": "100", "raw_json": "1"}
    assert seen[1].url.params["after"] == "t3_a1"
    assert all(r.headers["User-Agent"] == USER_AGENT for r in seen)
    assert all("Authorization" not in r.headers for r in seen)
    assert result.mentioned_ids == ("2507.00001", "2507.00002")


def test_an_empty_user_agent_is_refused() -> None:
    with pytest.raises(ValueError, match="User-Agent"):
        RedditSource(httpx.AsyncClient(), ["MachineLearning"], "  ")


class OAuthReddit:
    """A fake reddit.com + oauth.reddit.com that hands out numbered tokens."""

    def __init__(self) -> None:
        self.token_requests: list[httpx.Request] = []
        self.listing_requests: list[httpx.Request] = []
        self.revoked: set[str] = set()
        self.listing_headers: dict[str, str] = {
            "x-ratelimit-remaining": "590.0",
            "x-ratelimit-reset": "300",
        }

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == "www.reddit.com" and request.url.path == "/api/v1/access_token":
            self.token_requests.append(request)
            token = f"token-{len(self.token_requests)}"
            body = {"access_token": token, "token_type": "bearer", "expires_in": 3600, "scope": "*"}
            return httpx.Response(200, json=body)
        assert request.url.host == "oauth.reddit.com"
        self.listing_requests.append(request)
        if request.headers["Authorization"].removeprefix("bearer ") in self.revoked:
            return httpx.Response(401, json={"message": "Unauthorized", "error": 401})
        sub = request.url.path.split("/")[2]
        content = _listing([(f"{sub}1", RECENT, "https://arxiv.org/abs/2507.00003")], None)
        return httpx.Response(200, content=content, headers=self.listing_headers)


async def test_oauth_token_is_fetched_once_and_cached_until_expiry() -> None:
    fake, clock = OAuthReddit(), FakeClock()
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake.handler)) as client:
        source = RedditSource(
            client, ["MachineLearning", "LocalLLaMA"], USER_AGENT, "my-id", "my-secret", clock=clock
        )
        await source.poll(SINCE, OBSERVED_AT)
        clock.now += 1800
        await source.poll(SINCE, OBSERVED_AT)
        assert len(fake.token_requests) == 1
        clock.now += 1800  # past expires_in minus the safety margin
        await source.poll(SINCE, OBSERVED_AT)
    assert len(fake.token_requests) == 2

    grant = fake.token_requests[0]
    assert grant.method == "POST"
    assert (
        grant.headers["Authorization"] == "Basic " + base64.b64encode(b"my-id:my-secret").decode()
    )
    assert grant.headers["User-Agent"] == USER_AGENT
    assert parse_qs(grant.content.decode()) == {"grant_type": ["client_credentials"]}

    listing = fake.listing_requests[0]
    assert f"{listing.url.scheme}://{listing.url.host}{listing.url.path}" == (
        "https://oauth.reddit.com/r/MachineLearning/new"
    )
    assert dict(listing.url.params) == {"limit": "100", "raw_json": "1"}
    assert listing.headers["Authorization"] == "bearer token-1"
    assert listing.headers["User-Agent"] == USER_AGENT
    assert fake.listing_requests[-1].headers["Authorization"] == "bearer token-2"
    assert source.rate == RateState(remaining=590.0, reset_seconds=300.0)


async def test_a_revoked_token_is_replaced_once() -> None:
    fake = OAuthReddit()
    fake.revoked.add("token-1")
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake.handler)) as client:
        source = RedditSource(client, ["MachineLearning"], USER_AGENT, "id", "secret")
        result = await source.poll(SINCE, OBSERVED_AT)
    assert [r.headers["Authorization"] for r in fake.listing_requests] == [
        "bearer token-1",
        "bearer token-2",
    ]
    assert result.mentioned_ids == ("2507.00003",)


async def test_a_token_answer_without_a_token_is_malformed() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"error": "invalid_grant"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        source = RedditSource(client, ["MachineLearning"], USER_AGENT, "id", "wrong")
        with pytest.raises(MalformedPayload, match="invalid_grant"):
            await source.poll(SINCE, OBSERVED_AT)


async def test_spent_budget_pauses_polling_until_reset(caplog: pytest.LogCaptureFixture) -> None:
    fake, clock = OAuthReddit(), FakeClock()
    fake.listing_headers = {
        "x-ratelimit-remaining": "0.0",
        "x-ratelimit-used": "600",
        "x-ratelimit-reset": "42",
    }
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake.handler)) as client:
        source = RedditSource(client, ["a", "b", "c"], USER_AGENT, "id", "secret", clock=clock)
        with caplog.at_level(logging.INFO, logger="feeds.reddit"):
            first = await source.poll(SINCE, OBSERVED_AT)
            # The page that spent the budget still counts, but r/b and r/c wait.
            assert len(fake.listing_requests) == 1
            assert first.mentioned_ids == ("2507.00003",)
            assert source.paused_for == 42

            clock.now += 30
            assert await source.poll(SINCE, OBSERVED_AT) == EngagementResult()
            assert len(fake.listing_requests) == 1

            clock.now += 13
            fake.listing_headers = {"x-ratelimit-remaining": "599.0", "x-ratelimit-reset": "600"}
            await source.poll(SINCE, OBSERVED_AT)
    assert len(fake.listing_requests) == 4
    assert "pausing polls for 42 s" in caplog.text
    assert "skipping poll" in caplog.text


async def test_a_429_pauses_instead_of_raising() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return httpx.Response(
            429, headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": "30"}
        )

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        source = RedditSource(client, ["a", "b"], USER_AGENT, clock=FakeClock())
        assert await source.poll(SINCE, OBSERVED_AT) == EngagementResult()
    assert seen == ["/r/a/new.json"]
    assert source.paused_for == 30


async def test_a_long_retry_after_from_the_shared_client_pauses_the_source() -> None:
    seen: list[str] = []
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return httpx.Response(429, headers={"Retry-After": "900"})

    clock = FakeClock()
    transport = httpx.MockTransport(handler)
    async with build_client(transport=transport, sleep=fake_sleep, clock=clock) as client:
        source = RedditSource(client, ["a", "b"], USER_AGENT, clock=clock)
        assert await source.poll(SINCE, OBSERVED_AT) == EngagementResult()
    assert seen == ["/r/a/new.json"]
    assert sleeps == []
    assert source.paused_for == 900


async def test_unreadable_subreddit_is_skipped_and_others_polled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if "/r/gone/" in request.url.path:
            return httpx.Response(
                404, json={"reason": "banned", "message": "Not Found", "error": 404}
            )
        return httpx.Response(
            200, content=_listing([("x", RECENT, "arxiv.org/abs/2507.00004")], None)
        )

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        source = RedditSource(client, ["gone", "MachineLearning"], USER_AGENT)
        result = await source.poll(SINCE, OBSERVED_AT)
    assert result.mentioned_ids == ("2507.00004",)
    assert "r/gone is not readable" in caplog.text


@settings(max_examples=80, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(json_objects(), max_size=4), json_like())
def test_any_shape_parses_or_raises_malformed_payload(posts: list[Any], envelope: Any) -> None:
    listing = {"kind": "Listing", "data": {"children": [{"kind": "t3", "data": p} for p in posts]}}
    for body in (listing, envelope):
        with contextlib.suppress(MalformedPayload):
            parse_reddit_listing(json.dumps(body).encode(), OBSERVED_AT)
