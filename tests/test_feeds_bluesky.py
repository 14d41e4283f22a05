"""Bluesky: post parsing, follower weighting, session life cycle, the credential-less mode."""

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

from feeds.bluesky import (
    MISSING_CREDENTIALS_MESSAGE,
    BlueskySession,
    BlueskySource,
    apply_reach,
    fetch_follows,
    parse_follows,
    parse_profiles,
    parse_search_posts,
    post_web_url,
    reach_weight,
)
from feeds.engagement import EngagementResult, EngagementSource
from feeds.http import FetchError, MalformedPayload
from feeds.records import Signal
from tests import golden

DATA = Path(__file__).parent / "data" / "bluesky"
assert_golden = partial(golden.assert_golden, DATA)
OBSERVED_AT = datetime(2025, 7, 21, 14, 0, tzinfo=UTC)
SINCE = datetime(2025, 7, 21, 0, 0, tzinfo=UTC)
HANDLE = "reader.example.com"
APP_PASSWORD = "abcd-efgh-ijkl-mnop"


FUZZ_KEYS = [
    "posts",
    "uri",
    "author",
    "did",
    "handle",
    "record",
    "text",
    "facets",
    "features",
    "index",
    "byteStart",
    "byteEnd",
    "$type",
    "embed",
    "external",
    "media",
    "likeCount",
    "repostCount",
    "quoteCount",
    "replyCount",
    "cursor",
    "hitsTotal",
    "hits_total",
    "profiles",
    "followersCount",
    "follows",
]
FUZZ_STRINGS = [
    "app.bsky.richtext.facet#link",
    "https://arxiv.org/abs/2401.12345",
    "arXiv:2401.12345",
    "at://did:plc:x/app.bsky.feed.post/1",
    "did:plc:x",
    "handle.invalid",
    "é🚀",
]


def json_like() -> st.SearchStrategy[Any]:
    """Any JSON value whose objects use the keys this parser looks at."""
    return golden.json_like(FUZZ_KEYS, FUZZ_STRINGS)


def json_objects() -> st.SearchStrategy[dict[str, Any]]:
    """Objects where each key this parser reads may or may not be present, with any value."""
    return golden.json_objects(FUZZ_KEYS, FUZZ_STRINGS)


@pytest.mark.parametrize("name", ["search_posts", "search_posts_hits_total"])
def test_search_posts_match_golden(name: str) -> None:
    assert_golden(name, parse_search_posts((DATA / f"{name}.json").read_bytes(), OBSERVED_AT))


def test_profiles_and_follows_match_golden() -> None:
    assert_golden("get_profiles", parse_profiles((DATA / "get_profiles.json").read_bytes()))
    assert_golden("get_follows", parse_follows((DATA / "get_follows.json").read_bytes()))


def test_search_posts_finds_papers_in_facets_cards_and_text() -> None:
    page = parse_search_posts((DATA / "search_posts.json").read_bytes(), OBSERVED_AT)
    # The shortened link text "arxiv.org/html/2502.1108..." must not yield 2502.1108.
    assert page.mentioned_ids == (
        "2502.11089",
        "2406.11794",
        "2404.19756",
        "2305.18290",
        "2203.02155",
    )
    assert page.cursor == "100"
    assert page.hits_total == 2140
    assert page.post_count == 5
    two_papers = [s for s in page.signals if s.metric == "likes" and s.value == 57.0]
    assert [s.arxiv_id for s in two_papers] == ["2305.18290", "2203.02155"]
    assert {s.url for s in two_papers} == {
        "https://bsky.app/profile/rlhf-notes.bsky.social/post/3lma7zvtw4c2k"
    }
    text_only = [s for s in page.signals if s.arxiv_id == "2404.19756"]
    # No quoteCount on that older view, and its handle is invalid so the URL uses the DID.
    assert sorted(s.metric for s in text_only) == ["likes", "replies", "reposts"]
    assert text_only[0].url == (
        "https://bsky.app/profile/did:plc:p5a6xmo4emyqnbhxo42tfq5q/post/3lmaa4ufn5k2x"
    )
    assert text_only[0].actor == "did:plc:p5a6xmo4emyqnbhxo42tfq5q"


def test_older_envelope_with_hits_total_and_quote_with_media_card() -> None:
    page = parse_search_posts((DATA / "search_posts_hits_total.json").read_bytes(), OBSERVED_AT)
    assert page.hits_total == 1
    assert page.cursor is None
    assert page.mentioned_ids == ("2310.11511",)


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        (
            "at://did:plc:abc/app.bsky.feed.post/3kx",
            "https://bsky.app/profile/me.bsky.social/post/3kx",
        ),
        ("at://did:plc:abc/app.bsky.feed.like/3kx", None),
        ("https://bsky.app/profile/x/post/3kx", None),
        ("at://did:plc:abc/app.bsky.feed.post/", None),
    ],
)
def test_post_web_url(uri: str, expected: str | None) -> None:
    assert post_web_url(uri, "me.bsky.social") == expected


@pytest.mark.parametrize(
    ("followers", "weight"),
    [(0, 0.0), (9, 0.5), (99, 1.0), (9_999, 2.0), (2_000_000, 2.0), (-5, 0.0)],
)
def test_reach_weight_is_capped_log_followers(followers: int, weight: float) -> None:
    assert reach_weight(followers) == pytest.approx(weight)


def test_apply_reach_weights_known_actors_only() -> None:
    signals = [
        Signal("2401.00001", "bluesky", "likes", 3, OBSERVED_AT, actor="did:plc:a"),
        Signal("2401.00001", "bluesky", "likes", 4, OBSERVED_AT, actor="did:plc:b"),
        Signal("2401.00001", "bluesky", "likes", 5, OBSERVED_AT, actor=None),
    ]
    weighted = apply_reach(signals, {"did:plc:a": 999})
    assert [s.weight for s in weighted] == [pytest.approx(1.5), 1.0, 1.0]


@pytest.mark.parametrize(
    ("parse", "raw", "message"),
    [
        (lambda raw: parse_search_posts(raw, OBSERVED_AT), b"", "empty JSON"),
        (lambda raw: parse_search_posts(raw, OBSERVED_AT), b'{"posts": "none"}', "'posts'"),
        (lambda raw: parse_search_posts(raw, OBSERVED_AT), b'{"posts": [1]}', "Bluesky post"),
        (parse_profiles, b'{"profile": []}', "'profiles'"),
        (parse_profiles, b'{"profiles": ["did:plc:a"]}', "Bluesky profile"),
        (parse_follows, b'{"follows": {}}', "'follows'"),
        (parse_follows, b"403 Forbidden", "malformed JSON"),
    ],
)
def test_malformed_payloads_raise_malformed_payload(parse: Any, raw: bytes, message: str) -> None:
    with pytest.raises(MalformedPayload, match=message):
        parse(raw)


def test_odd_facets_and_embeds_do_not_break_parsing() -> None:
    post = {
        "uri": "at://did:plc:x/app.bsky.feed.post/1",
        "author": {"did": "did:plc:x", "handle": "x.bsky.social"},
        "record": {
            "text": "see arXiv:2401.04088",
            "facets": [
                "not a facet",
                {"index": {"byteStart": 99, "byteEnd": 3}, "features": [{"$type": "x"}]},
                {"index": None, "features": [{"$type": "app.bsky.richtext.facet#link", "uri": 7}]},
            ],
            "embed": {"external": "nope"},
        },
        "embed": [],
        "likeCount": 1,
    }
    page = parse_search_posts(json.dumps({"posts": [post]}).encode(), OBSERVED_AT)
    assert [(s.arxiv_id, s.metric) for s in page.signals] == [("2401.04088", "likes")]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _search_page(rkey: str, arxiv_id: str, did: str, cursor: str | None) -> dict[str, Any]:
    post = {
        "uri": f"at://{did}/app.bsky.feed.post/{rkey}",
        "author": {"did": did, "handle": f"{rkey}.bsky.social"},
        "record": {"text": f"arxiv.org/abs/{arxiv_id}"},
        "likeCount": 2,
        "repostCount": 0,
        "replyCount": 0,
        "quoteCount": 0,
    }
    return {"posts": [post], **({"cursor": cursor} if cursor else {})}


class FakePds:
    """bsky.social: hands out numbered token pairs and expires them on demand."""

    def __init__(self, search_pages: list[dict[str, Any]], followers: dict[str, int]) -> None:
        self.search_pages = search_pages
        self.followers = followers
        self.requests: list[httpx.Request] = []
        self.sessions = 0
        self.expired: set[str] = set()
        self.refresh_refused = False
        self.profiles_status = 200

    def calls(self, method: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path == f"/xrpc/{method}"]

    def _tokens(self) -> dict[str, str]:
        self.sessions += 1
        return {
            "accessJwt": f"access-{self.sessions}",
            "refreshJwt": f"refresh-{self.sessions}",
            "handle": HANDLE,
            "did": "did:plc:reader",
        }

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        assert request.url.host == "bsky.social"
        method = request.url.path.removeprefix("/xrpc/")
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if method == "com.atproto.server.createSession":
            return httpx.Response(200, json=self._tokens())
        if method == "com.atproto.server.refreshSession":
            if self.refresh_refused or not bearer.startswith("refresh-"):
                return httpx.Response(
                    400, json={"error": "ExpiredToken", "message": "Token has expired"}
                )
            return httpx.Response(200, json=self._tokens())
        if bearer in self.expired or not bearer.startswith("access-"):
            return httpx.Response(
                400, json={"error": "ExpiredToken", "message": "Token has expired"}
            )
        if method == "app.bsky.feed.searchPosts":
            index = int(request.url.params.get("cursor", "0"))
            return httpx.Response(200, json=self.search_pages[index])
        if method == "app.bsky.actor.getProfiles":
            if self.profiles_status != 200:
                return httpx.Response(self.profiles_status, json={"error": "InternalServerError"})
            profiles = [
                {"did": did, "handle": "h", "followersCount": self.followers[did]}
                for did in request.url.params.get_list("actors")
                if did in self.followers
            ]
            return httpx.Response(200, json={"profiles": profiles})
        return httpx.Response(404, json={"error": "MethodNotImplemented"})


async def test_without_credentials_nothing_is_searched_and_one_line_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(500)

    with caplog.at_level(logging.DEBUG, logger="feeds.bluesky"):
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            source: EngagementSource = BlueskySource(client, handle=HANDLE, app_password=None)
            first = await source.poll(SINCE, OBSERVED_AT)
            second = await source.poll(SINCE, OBSERVED_AT)
    assert first == second == EngagementResult()
    assert requests == []
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.INFO, MISSING_CREDENTIALS_MESSAGE)
    ]


async def test_search_logs_in_once_pages_and_weights_by_followers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dids = [f"did:plc:author{n:02d}" for n in range(30)]
    pages = [_search_page(f"r{n}", f"2507.{n:05d}", dids[n], str(n + 1)) for n in range(30)]
    pages[2]["cursor"] = None  # the search ends on the third page
    fake = FakePds(pages, {dids[0]: 9, dids[1]: 9_999, dids[2]: 0})
    with caplog.at_level(logging.DEBUG):
        async with httpx.AsyncClient(transport=httpx.MockTransport(fake.handler)) as client:
            source = BlueskySource(client, HANDLE, APP_PASSWORD)
            result = await source.poll(SINCE, OBSERVED_AT)
            await source.poll(SINCE, OBSERVED_AT)

    login = fake.calls("com.atproto.server.createSession")
    assert len(login) == 1
    assert json.loads(login[0].content) == {"identifier": HANDLE, "password": APP_PASSWORD}

    searches = fake.calls("app.bsky.feed.searchPosts")
    assert len(searches) == 6
    assert dict(searches[0].url.params) == {
        "q": "arxiv.org",
        "domain": "arxiv.org",
        "sort": "latest",
        "since": "2025-07-21T00:00:00.000Z",
        "limit": "100",
    }
    assert [r.url.params.get("cursor") for r in searches[:3]] == [None, "1", "2"]
    assert all(r.headers["Authorization"] == "Bearer access-1" for r in searches)

    profiles = fake.calls("app.bsky.actor.getProfiles")
    assert [r.url.params.get_list("actors") for r in profiles[:1]] == [dids[:3]]
    weights = {s.actor: s.weight for s in result.signals}
    assert weights == {dids[0]: 0.5, dids[1]: 2.0, dids[2]: 0.0}
    assert result.cursor is None
    for secret in (APP_PASSWORD, "access-1", "refresh-1"):
        assert secret not in caplog.text


async def test_search_stops_at_the_page_cap_and_profiles_go_in_batches_of_25() -> None:
    dids = [f"did:plc:author{n:02d}" for n in range(30)]
    pages = [_search_page(f"r{n}", f"2507.{n:05d}", dids[n], str(n + 1)) for n in range(30)]
    fake = FakePds(pages, {did: 10 for did in dids})
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake.handler)) as client:
        result = await BlueskySource(client, HANDLE, APP_PASSWORD, max_pages=28).poll(
            SINCE, OBSERVED_AT
        )
    assert len(fake.calls("app.bsky.feed.searchPosts")) == 28
    assert result.cursor == "28"
    batches = [r.url.params.get_list("actors") for r in fake.calls("app.bsky.actor.getProfiles")]
    assert [len(batch) for batch in batches] == [25, 3]
    assert batches[0] + batches[1] == dids[:28]


async def test_expired_access_token_is_refreshed_not_recreated() -> None:
    fake = FakePds([_search_page("r0", "2507.00001", "did:plc:a", None)], {})
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake.handler)) as client:
        source = BlueskySource(client, HANDLE, APP_PASSWORD)
        await source.poll(SINCE, OBSERVED_AT)
        fake.expired.add("access-1")
        result = await source.poll(SINCE, OBSERVED_AT)
    assert len(fake.calls("com.atproto.server.createSession")) == 1
    refresh = fake.calls("com.atproto.server.refreshSession")
    assert len(refresh) == 1
    assert refresh[0].method == "POST"
    assert refresh[0].headers["Authorization"] == "Bearer refresh-1"
    assert fake.calls("app.bsky.feed.searchPosts")[-1].headers["Authorization"] == "Bearer access-2"
    assert result.mentioned_ids == ("2507.00001",)


async def test_failed_refresh_never_logs_in_again_within_the_interval() -> None:
    fake = FakePds([_search_page("r0", "2507.00001", "did:plc:a", None)], {})
    clock = FakeClock()
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake.handler)) as client:
        session = BlueskySession(client, HANDLE, APP_PASSWORD, clock=clock)
        source = BlueskySource(client, session=session)
        await source.poll(SINCE, OBSERVED_AT)
        fake.expired.add("access-1")
        fake.refresh_refused = True
        clock.now += 60
        with pytest.raises(FetchError, match="login held back") as raised:
            await source.poll(SINCE, OBSERVED_AT)
        assert len(fake.calls("com.atproto.server.createSession")) == 1
        with pytest.raises(FetchError, match="login held back"):
            await source.poll(SINCE, OBSERVED_AT)
        assert len(fake.calls("com.atproto.server.createSession")) == 1

        clock.now += 300
        result = await source.poll(SINCE, OBSERVED_AT)
    assert len(fake.calls("com.atproto.server.createSession")) == 2
    assert result.mentioned_ids == ("2507.00001",)
    assert APP_PASSWORD not in str(raised.value)
    assert APP_PASSWORD not in repr(session)


async def test_401_also_triggers_a_refresh() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        method = request.url.path.removeprefix("/xrpc/")
        calls.append(method)
        if method == "com.atproto.server.createSession":
            return httpx.Response(
                200, json={"accessJwt": "a1", "refreshJwt": "r1", "did": "did:plc:me"}
            )
        if method == "com.atproto.server.refreshSession":
            return httpx.Response(
                200, json={"accessJwt": "a2", "refreshJwt": "r2", "did": "did:plc:me"}
            )
        if request.headers["Authorization"] == "Bearer a1":
            return httpx.Response(401, json={"error": "AuthenticationRequired"})
        return httpx.Response(200, json={"profiles": []})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        session = BlueskySession(client, HANDLE, APP_PASSWORD)
        response = await session.get("app.bsky.actor.getProfiles", {"actors": "did:plc:x"})
    assert response.status_code == 200
    assert session.did == "did:plc:me"
    assert calls == [
        "com.atproto.server.createSession",
        "app.bsky.actor.getProfiles",
        "com.atproto.server.refreshSession",
        "app.bsky.actor.getProfiles",
    ]


async def test_bad_query_is_an_error_not_a_refresh() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("createSession"):
            return httpx.Response(200, json={"accessJwt": "a1", "refreshJwt": "r1"})
        return httpx.Response(400, json={"error": "BadQueryString", "message": "bad query"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(FetchError) as raised:
            await BlueskySource(client, HANDLE, APP_PASSWORD).poll(SINCE, OBSERVED_AT)
    assert raised.value.status == 400


async def test_missing_follower_counts_leave_signals_unweighted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakePds([_search_page("r0", "2507.00001", "did:plc:a", None)], {"did:plc:a": 50})
    fake.profiles_status = 502
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake.handler)) as client:
        result = await BlueskySource(client, HANDLE, APP_PASSWORD).poll(SINCE, OBSERVED_AT)
    assert {s.weight for s in result.signals} == {1.0}
    assert "could not read follower counts" in caplog.text


async def test_fetch_follows_pages_the_public_appview_without_auth() -> None:
    seen: list[httpx.Request] = []
    first_page = (DATA / "get_follows.json").read_bytes()
    last_page = json.dumps(
        {"follows": [{"did": "did:plc:last"}, {"did": "did:plc:m7fvmm5ct3qjtr56vb7cewwn"}]}
    )

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200, content=last_page if "cursor" in request.url.params else first_page
        )

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        follows = await fetch_follows(client, "me.example.com")
    assert follows == [
        "did:plc:m7fvmm5ct3qjtr56vb7cewwn",
        "did:plc:5ropmahji6f3nzijewa4ylrr",
        "did:web:lab.example.org",
        "did:plc:last",
    ]
    assert len(seen) == 2
    assert f"{seen[0].url.scheme}://{seen[0].url.host}{seen[0].url.path}" == (
        "https://public.api.bsky.app/xrpc/app.bsky.graph.getFollows"
    )
    assert dict(seen[0].url.params) == {"actor": "me.example.com", "limit": "100"}
    assert seen[1].url.params["cursor"] == "3lbvkq6ue7s2c"
    assert all("Authorization" not in r.headers for r in seen)


@settings(max_examples=80, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(json_objects(), max_size=4), json_like())
def test_any_shape_parses_or_raises_malformed_payload(items: list[Any], envelope: Any) -> None:
    bodies = ({"posts": items}, {"profiles": items}, {"follows": items}, envelope)
    for body in bodies:
        raw = json.dumps(body).encode()
        for parse in (lambda r: parse_search_posts(r, OBSERVED_AT), parse_profiles, parse_follows):
            with contextlib.suppress(MalformedPayload):
                parse(raw)
