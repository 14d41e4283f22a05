"""Bluesky posts that link arXiv papers, weighted by how many people follow the poster.

Search needs an authenticated session: since 2025 the public AppView mostly refuses
``searchPosts`` without one, and always refuses its ``cursor``. A session is created from a
handle and an app password and then refreshed, because ``createSession`` itself is limited to
30 calls per 5 minutes per account. The follow graph (for "papers my circle shares") stays
public and needs no session.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

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
from feeds.http import FetchError, MalformedPayload, parse_json, raise_for_status
from feeds.ids import find_ids
from feeds.records import Signal

log = logging.getLogger(__name__)

SOURCE = "bluesky"
PDS_URL = "https://bsky.social"
PUBLIC_APPVIEW_URL = "https://public.api.bsky.app"
MAX_PAGES = 5
MAX_FOLLOW_PAGES = 50
PROFILES_PER_CALL = 25
"""``app.bsky.actor.getProfiles`` accepts at most 25 actors."""
SESSION_CREATE_INTERVAL = 300.0
"""Minimum seconds between two ``createSession`` calls, whatever happens to refreshes."""
MISSING_CREDENTIALS_MESSAGE = (
    "Bluesky search needs TP_BLUESKY_HANDLE and TP_BLUESKY_APP_PASSWORD; skipping"
)
_LINK_FACET = "app.bsky.richtext.facet#link"
_EXPIRED_TOKEN_ERRORS = frozenset({"ExpiredToken", "InvalidToken"})


@dataclass(frozen=True, slots=True)
class BlueskySearchPage:
    """One ``searchPosts`` page, reduced to posts that mention arXiv papers."""

    signals: tuple[Signal, ...]
    mentioned_ids: tuple[str, ...]
    cursor: str | None
    hits_total: int | None
    """The server's (possibly rounded) total of matching posts."""
    post_count: int
    authors: tuple[str, ...]
    """DIDs of the authors of the arXiv posts, for follower weighting."""


def post_web_url(at_uri: str, handle: str | None) -> str | None:
    """``at://did/app.bsky.feed.post/rkey`` as a bsky.app link (by handle when it is valid)."""
    if not at_uri.startswith("at://"):
        return None
    parts = at_uri.removeprefix("at://").split("/")
    if len(parts) != 3 or parts[1] != "app.bsky.feed.post" or not parts[2]:
        return None
    authority, _, rkey = parts
    profile = handle if handle and handle != "handle.invalid" else authority
    return f"https://bsky.app/profile/{profile}/post/{rkey}"


def post_arxiv_ids(post: Mapping[str, Any]) -> list[str]:
    """arXiv ids in a post's link facets, link cards and text, in that order."""
    record = optional_object(post.get("record"))
    link_uris: list[str] = []
    linked_ranges: list[tuple[int, int]] = []
    facets = record.get("facets")
    for facet in facets if isinstance(facets, list) else ():
        facet = optional_object(facet)
        features = facet.get("features")
        for feature in features if isinstance(features, list) else ():
            feature = optional_object(feature)
            uri = optional_str(feature.get("uri"))
            if feature.get("$type") == _LINK_FACET and uri:
                link_uris.append(uri)
                linked_ranges.extend(_byte_range(facet.get("index")))
    for embed in (optional_object(record.get("embed")), optional_object(post.get("embed"))):
        link_uris.extend(_external_uris(embed))
    # Link text is shown shortened ("arxiv.org/html/2401.1234..."), which could spell a
    # different id; the facet already carries the full URI, so read only the unlinked text.
    text = _without_ranges(optional_str(record.get("text")) or "", linked_ranges)
    found: dict[str, None] = {}
    for chunk in (*link_uris, text):
        found.update(dict.fromkeys(find_ids(chunk)))
    return list(found)


def parse_search_posts(raw: bytes, observed_at: datetime) -> BlueskySearchPage:
    """Parse ``app.bsky.feed.searchPosts`` into likes/reposts/quotes/replies signals per paper."""
    body = expect_object(parse_json(raw), "Bluesky searchPosts response")
    posts = expect_list(body.get("posts"), "Bluesky searchPosts 'posts'")
    signals: list[Signal] = []
    mentioned: dict[str, None] = {}
    authors: dict[str, None] = {}
    for item in posts:
        post = expect_object(item, "Bluesky post")
        arxiv_ids = post_arxiv_ids(post)
        uri = optional_str(post.get("uri"))
        if not arxiv_ids or uri is None:
            continue
        author = optional_object(post.get("author"))
        did = optional_str(author.get("did"))
        mentioned.update(dict.fromkeys(arxiv_ids))
        if did:
            authors[did] = None
        signals += metric_signals(
            arxiv_ids,
            {
                "likes": post.get("likeCount"),
                "reposts": post.get("repostCount"),
                "quotes": post.get("quoteCount"),
                "replies": post.get("replyCount"),
            },
            source=SOURCE,
            observed_at=observed_at,
            url=post_web_url(uri, optional_str(author.get("handle"))),
            actor=did,
        )
    # The lexicon renamed hits_total to hitsTotal; servers may send either.
    total = body.get("hitsTotal", body.get("hits_total"))
    return BlueskySearchPage(
        signals=tuple(signals),
        mentioned_ids=tuple(mentioned),
        cursor=optional_str(body.get("cursor")),
        hits_total=total if isinstance(total, int) and not isinstance(total, bool) else None,
        post_count=len(posts),
        authors=tuple(authors),
    )


def parse_profiles(raw: bytes) -> dict[str, int]:
    """Follower counts by DID from ``getProfiles``; profiles without a count are left out."""
    body = expect_object(parse_json(raw), "Bluesky getProfiles response")
    followers: dict[str, int] = {}
    for item in expect_list(body.get("profiles"), "Bluesky getProfiles 'profiles'"):
        profile = expect_object(item, "Bluesky profile")
        did = optional_str(profile.get("did"))
        count = profile.get("followersCount")
        if did and isinstance(count, int) and not isinstance(count, bool):
            followers[did] = count
    return followers


def parse_follows(raw: bytes) -> tuple[list[str], str | None]:
    """DIDs of the accounts in one ``app.bsky.graph.getFollows`` page, and the next cursor."""
    body = expect_object(parse_json(raw), "Bluesky getFollows response")
    dids = []
    for item in expect_list(body.get("follows"), "Bluesky getFollows 'follows'"):
        did = optional_str(expect_object(item, "Bluesky follow").get("did"))
        if did:
            dids.append(did)
    return dids, optional_str(body.get("cursor"))


def reach_weight(followers: int) -> float:
    """Reach of a poster with ``followers``: ``min(log10(followers + 1), 4) / 2``, in [0, 2]."""
    return min(math.log10(max(followers, 0) + 1), 4.0) / 2


def apply_reach(signals: Iterable[Signal], followers: Mapping[str, int]) -> tuple[Signal, ...]:
    """Set each signal's weight from its actor's follower count; unknown actors keep weight 1."""
    return tuple(
        replace(signal, weight=reach_weight(followers[signal.actor]))
        if signal.actor is not None and signal.actor in followers
        else signal
        for signal in signals
    )


class BlueskySession:
    """An authenticated XRPC session on a PDS that refreshes itself and never spams logins."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        handle: str,
        app_password: str,
        *,
        service: str = PDS_URL,
        clock: Callable[[], float] = time.monotonic,
        min_create_interval: float = SESSION_CREATE_INTERVAL,
    ) -> None:
        self._client = client
        self._handle = handle
        self._app_password = app_password
        self._service = service.rstrip("/")
        self._clock = clock
        self._min_create_interval = min_create_interval
        self._access_jwt: str | None = None
        self._refresh_jwt: str | None = None
        self._last_create: float | None = None
        self.did: str | None = None

    def __repr__(self) -> str:
        return f"BlueskySession(handle={self._handle!r}, service={self._service!r})"

    async def get(self, method: str, params: Any = None) -> httpx.Response:
        """GET ``/xrpc/<method>`` with the session's token, renewing it once if it expired."""
        if self._access_jwt is None:
            await self._create()
        response = await self._send(method, params)
        if _token_expired(response):
            await self._renew()
            response = await self._send(method, params)
        return response

    async def _send(self, method: str, params: Any) -> httpx.Response:
        return await self._client.get(
            f"{self._service}/xrpc/{method}",
            params=params,
            headers={"Authorization": f"Bearer {self._access_jwt}"},
        )

    async def _renew(self) -> None:
        if self._refresh_jwt is not None:
            url = f"{self._service}/xrpc/com.atproto.server.refreshSession"
            response = await self._client.post(
                url, headers={"Authorization": f"Bearer {self._refresh_jwt}"}
            )
            if response.is_success:
                self._store(response, url)
                return
            log.info(
                "Bluesky: session refresh refused (HTTP %d); logging in again", response.status_code
            )
        self._access_jwt = self._refresh_jwt = None
        await self._create()

    async def _create(self) -> None:
        url = f"{self._service}/xrpc/com.atproto.server.createSession"
        now = self._clock()
        if self._last_create is not None and now - self._last_create < self._min_create_interval:
            wait = self._min_create_interval - (now - self._last_create)
            raise FetchError(url, None, f"Bluesky login held back for {wait:.0f} s more")
        self._last_create = now
        response = await self._client.post(
            url, json={"identifier": self._handle, "password": self._app_password}
        )
        raise_for_status(response)
        self._store(response, url)
        log.info("Bluesky: logged in as %s", self._handle)

    def _store(self, response: httpx.Response, url: str) -> None:
        body = expect_object(parse_json(response.content, url), "Bluesky session response")
        access, refresh = optional_str(body.get("accessJwt")), optional_str(body.get("refreshJwt"))
        if access is None or refresh is None:
            raise MalformedPayload("Bluesky session response lacks its tokens", url)
        self._access_jwt, self._refresh_jwt = access, refresh
        self.did = optional_str(body.get("did")) or self.did


class BlueskySource:
    """Searches recent Bluesky posts linking arxiv.org; silent without credentials."""

    name = SOURCE

    def __init__(
        self,
        client: httpx.AsyncClient,
        handle: str | None = None,
        app_password: str | None = None,
        *,
        max_pages: int = MAX_PAGES,
        session: BlueskySession | None = None,
    ) -> None:
        if session is None and handle and app_password:
            session = BlueskySession(client, handle, app_password)
        self._session = session
        self._max_pages = max_pages
        if session is None:
            log.info(MISSING_CREDENTIALS_MESSAGE)

    async def poll(self, since: datetime, now: datetime) -> EngagementResult:
        """Follower-weighted signals for posts since ``since``; empty without credentials."""
        if self._session is None:
            return EngagementResult()
        since = require_aware(since, "since")
        pages: list[BlueskySearchPage] = []
        cursor: str | None = None
        for page_number in range(self._max_pages):
            params: dict[str, str | int] = {
                "q": "arxiv.org",
                "domain": "arxiv.org",
                "sort": "latest",
                "since": since.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                "limit": 100,
            }
            if cursor:
                params["cursor"] = cursor
            response = await self._session.get("app.bsky.feed.searchPosts", params)
            raise_for_status(response)
            with reading(response):
                page = parse_search_posts(response.content, now)
            pages.append(page)
            cursor = page.cursor
            if not cursor or not page.post_count:
                cursor = None
                break
            if page_number + 1 == self._max_pages:
                log.info("Bluesky: stopped after %d pages of search results", len(pages))
        merged = merge_results(
            (EngagementResult(page.signals, None, page.mentioned_ids) for page in pages), cursor
        )
        authors = list(dict.fromkeys(did for page in pages for did in page.authors))
        followers = await _followers(self._session, authors)
        return replace(merged, signals=apply_reach(merged.signals, followers))


async def fetch_follows(
    client: httpx.AsyncClient, actor: str, *, max_pages: int = MAX_FOLLOW_PAGES
) -> list[str]:
    """DIDs that ``actor`` (handle or DID) follows, from the public AppView (no login)."""
    dids: dict[str, None] = {}
    cursor: str | None = None
    for _ in range(max_pages):
        params: dict[str, str | int] = {"actor": actor, "limit": 100}
        if cursor:
            params["cursor"] = cursor
        response = await client.get(
            f"{PUBLIC_APPVIEW_URL}/xrpc/app.bsky.graph.getFollows", params=params
        )
        raise_for_status(response)
        with reading(response):
            page, cursor = parse_follows(response.content)
        dids.update(dict.fromkeys(page))
        if not cursor or not page:
            break
    return list(dids)


async def _followers(session: BlueskySession, dids: Sequence[str]) -> dict[str, int]:
    followers: dict[str, int] = {}
    for start in range(0, len(dids), PROFILES_PER_CALL):
        chunk = dids[start : start + PROFILES_PER_CALL]
        try:
            response = await session.get(
                "app.bsky.actor.getProfiles", [("actors", did) for did in chunk]
            )
            raise_for_status(response)
            with reading(response):
                followers.update(parse_profiles(response.content))
        except FetchError as exc:
            # Weighting is a refinement: unweighted signals beat no signals.
            log.warning("Bluesky: could not read follower counts (%s); posts stay unweighted", exc)
    return followers


def _token_expired(response: httpx.Response) -> bool:
    if response.status_code == 401:
        return True
    if response.status_code != 400:
        return False
    try:
        error = parse_json(response.content).get("error")
    except (MalformedPayload, AttributeError):
        return False
    return error in _EXPIRED_TOKEN_ERRORS


def _external_uris(embed: Mapping[str, Any]) -> list[str]:
    # A link card sits in ``external``, or in ``media.external`` when a quote is attached.
    uris = []
    for holder in (embed, optional_object(embed.get("media"))):
        uri = optional_str(optional_object(holder.get("external")).get("uri"))
        if uri:
            uris.append(uri)
    return uris


def _byte_range(index: object) -> list[tuple[int, int]]:
    index = optional_object(index)
    start, end = index.get("byteStart"), index.get("byteEnd")
    if isinstance(start, int) and isinstance(end, int) and 0 <= start <= end:
        return [(start, end)]
    return []


def _without_ranges(text: str, ranges: Sequence[tuple[int, int]]) -> str:
    # Facet offsets count UTF-8 bytes, not characters.
    if not ranges:
        return text
    data = bytearray(text.encode("utf-8"))
    for start, end in sorted(ranges, reverse=True):
        data[start:end] = b" "
    return data.decode("utf-8", errors="replace")
