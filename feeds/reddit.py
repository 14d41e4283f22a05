"""Reddit posts that link arXiv papers, read from subreddit ``new`` listings.

Without credentials the public ``www.reddit.com/…/new.json`` endpoint is used (Reddit allows
about 10 requests a minute there); with an app's client id and secret an app-only OAuth token
unlocks ``oauth.reddit.com`` (100 a minute). Either way Reddit reports its budget in
``x-ratelimit-*`` headers, and when it is spent the source pauses until the reset instead of
retrying into a ban.
"""

from __future__ import annotations

import html
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from feeds.engagement import (
    EngagementResult,
    as_number,
    expect_list,
    expect_object,
    merge_results,
    metric_signals,
    optional_str,
    reading,
    require_aware,
    utc_from_timestamp,
)
from feeds.http import FetchError, MalformedPayload, RateLimited, parse_json, raise_for_status
from feeds.ids import find_ids
from feeds.records import Signal

log = logging.getLogger(__name__)

SOURCE = "reddit"
PUBLIC_LISTING_URL = "https://www.reddit.com/r/{subreddit}/new.json"
OAUTH_LISTING_URL = "https://oauth.reddit.com/r/{subreddit}/new"
OAUTH_GRANT_URL = "https://www.reddit.com/api/v1/access_token"
MAX_PAGES = 3
TOKEN_EXPIRY_MARGIN = 60.0
"""Renew the OAuth token this many seconds before Reddit says it expires."""
DEFAULT_RESET = 60.0
"""Pause used when the budget is spent but Reddit gave no reset time."""


@dataclass(frozen=True, slots=True)
class RedditPage:
    """One listing page, reduced to posts that mention arXiv papers."""

    signals: tuple[Signal, ...]
    mentioned_ids: tuple[str, ...]
    after: str | None
    """Fullname (``t3_…``) to pass as ``after`` for the next, older page; None at the end."""
    post_count: int
    oldest_created_at: datetime | None


@dataclass(frozen=True, slots=True)
class RateState:
    """Reddit's request budget as reported in ``x-ratelimit-*`` headers (None when absent)."""

    remaining: float | None = None
    used: float | None = None
    reset_seconds: float | None = None
    """Seconds until the budget window resets."""

    @property
    def exhausted(self) -> bool:
        """True when not even one more request is allowed before the reset."""
        return self.remaining is not None and self.remaining < 1


def parse_rate_headers(headers: Mapping[str, str]) -> RateState:
    """Read ``x-ratelimit-remaining/used/reset`` (float-like strings such as ``"996.0"``)."""
    lowered = {name.lower(): value for name, value in headers.items()}

    def number(name: str) -> float | None:
        try:
            value = float(lowered.get(name, ""))
        except ValueError:
            return None
        return value if math.isfinite(value) else None

    return RateState(
        remaining=number("x-ratelimit-remaining"),
        used=number("x-ratelimit-used"),
        reset_seconds=number("x-ratelimit-reset"),
    )


def post_arxiv_ids(post: Mapping[str, Any]) -> list[str]:
    """arXiv ids a post links: its URL first, then its self text."""
    found: dict[str, None] = {}
    for field in ("url", "selftext"):
        text = optional_str(post.get(field))
        if text:
            # raw_json=1 should give unescaped text, but older or cached responses carry &amp;.
            found.update(dict.fromkeys(find_ids(html.unescape(text))))
    return list(found)


def parse_reddit_listing(raw: bytes, observed_at: datetime) -> RedditPage:
    """Parse a Listing of posts into ``score`` and ``comments`` signals per arXiv post."""
    body = expect_object(parse_json(raw), "Reddit listing")
    if body.get("kind", "Listing") != "Listing":
        raise MalformedPayload(f"Reddit listing: unexpected kind {body.get('kind')!r}")
    data = expect_object(body.get("data"), "Reddit listing 'data'")
    children = expect_list(data.get("children"), "Reddit listing 'children'")
    signals: list[Signal] = []
    mentioned: dict[str, None] = {}
    oldest: float | None = None
    for child in children:
        thing = expect_object(child, "Reddit listing child")
        if thing.get("kind") != "t3":
            continue
        post = expect_object(thing.get("data"), "Reddit post 'data'")
        created = as_number(post.get("created_utc"))
        if created is not None:
            oldest = created if oldest is None else min(oldest, created)
        arxiv_ids = post_arxiv_ids(post)
        if not arxiv_ids:
            continue
        mentioned.update(dict.fromkeys(arxiv_ids))
        permalink = optional_str(post.get("permalink"))
        author = optional_str(post.get("author"))
        signals += metric_signals(
            arxiv_ids,
            {"score": post.get("score"), "comments": post.get("num_comments")},
            source=SOURCE,
            observed_at=observed_at,
            url=f"https://www.reddit.com{permalink}" if permalink else None,
            actor=None if author == "[deleted]" else author,
        )
    return RedditPage(
        signals=tuple(signals),
        mentioned_ids=tuple(mentioned),
        after=optional_str(data.get("after")),
        post_count=len(children),
        oldest_created_at=utc_from_timestamp(oldest),
    )


class RedditSource:
    """Polls the ``new`` listing of each subreddit for posts that link arXiv papers."""

    name = SOURCE

    def __init__(
        self,
        client: httpx.AsyncClient,
        subreddits: Sequence[str],
        user_agent: str,
        client_id: str | None = None,
        client_secret: str | None = None,
        *,
        max_pages: int = MAX_PAGES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not user_agent.strip():
            # Reddit throttles generic agents; it wants "<platform>:<app>:<version> (by /u/…)".
            raise ValueError("Reddit needs a descriptive User-Agent")
        self._client = client
        self._subreddits = tuple(subreddits)
        self._user_agent = user_agent
        self._credentials: tuple[str, str] | None = (
            (client_id, client_secret) if client_id and client_secret else None
        )
        self._max_pages = max_pages
        self._clock = clock
        self._token: str | None = None
        self._token_expires_at = 0.0
        self._paused_until: float | None = None
        self.rate = RateState()
        """The budget Reddit reported on the last response."""

    @property
    def paused_for(self) -> float:
        """Seconds left before polling resumes after the budget ran out (0 when not paused)."""
        if self._paused_until is None:
            return 0.0
        return max(0.0, self._paused_until - self._clock())

    async def poll(self, since: datetime, now: datetime) -> EngagementResult:
        """Signals from each subreddit's newest posts, paging back until posts predate ``since``."""
        since = require_aware(since, "since")
        if self.paused_for > 0:
            log.info("Reddit: request budget spent; skipping poll for %.0f s more", self.paused_for)
            return EngagementResult(
                problems=(f"request budget spent; polling paused for {self.paused_for:.0f} s more",)
            )
        self._paused_until = None
        results: list[EngagementResult] = []
        for subreddit in self._subreddits:
            try:
                results.append(await self._poll_subreddit(subreddit, since, now))
            except FetchError as exc:
                if exc.status not in (403, 404):
                    raise
                # A private, banned or renamed subreddit should not stop the others.
                log.warning(
                    "Reddit: r/%s is not readable (HTTP %s); skipped", subreddit, exc.status
                )
                results.append(
                    EngagementResult(
                        problems=(f"r/{subreddit} not readable (HTTP {exc.status}) ({exc.url})",)
                    )
                )
            if self._paused_until is not None:
                break
        return merge_results(results)

    async def _poll_subreddit(
        self, subreddit: str, since: datetime, now: datetime
    ) -> EngagementResult:
        pages: list[RedditPage] = []
        problems: list[str] = []
        after: str | None = None
        for _ in range(self._max_pages):
            params: dict[str, str | int] = {"limit": 100, "raw_json": 1}
            if after:
                params["after"] = after
            try:
                response = await self._get_listing(subreddit, params)
            except RateLimited as exc:
                wait = self._pause(exc.retry_after)
                problems.append(f"rate limited; polling paused for {wait:.0f} s ({exc.url})")
                break
            self.rate = parse_rate_headers(response.headers)
            if response.status_code == 429:
                # Only reached with a client that does not retry 429s itself.
                wait = self._pause(self.rate.reset_seconds)
                problems.append(
                    f"rate limited; polling paused for {wait:.0f} s ({response.request.url})"
                )
                break
            raise_for_status(response)
            with reading(response):
                page = parse_reddit_listing(response.content, now)
            pages.append(page)
            after = page.after
            if self.rate.exhausted:
                self._pause(self.rate.reset_seconds)
                break
            if not after or page.oldest_created_at is None or page.oldest_created_at < since:
                break
        return merge_results(
            [
                *(EngagementResult(p.signals, None, p.mentioned_ids) for p in pages),
                EngagementResult(problems=tuple(problems)),
            ]
        )

    async def _get_listing(self, subreddit: str, params: dict[str, str | int]) -> httpx.Response:
        headers = {"User-Agent": self._user_agent}
        if self._credentials is None:
            url = PUBLIC_LISTING_URL.format(subreddit=subreddit)
            return await self._client.get(url, params=params, headers=headers)
        url = OAUTH_LISTING_URL.format(subreddit=subreddit)
        headers["Authorization"] = f"bearer {await self._access_token(self._credentials)}"
        response = await self._client.get(url, params=params, headers=headers)
        if response.status_code == 401:
            # Revoked or expired early: one fresh token, one retry.
            self._token = None
            headers["Authorization"] = f"bearer {await self._access_token(self._credentials)}"
            response = await self._client.get(url, params=params, headers=headers)
        return response

    async def _access_token(self, credentials: tuple[str, str]) -> str:
        if self._token is not None and self._clock() < self._token_expires_at:
            return self._token
        response = await self._client.post(
            OAUTH_GRANT_URL,
            data={"grant_type": "client_credentials"},
            auth=credentials,
            headers={"User-Agent": self._user_agent},
        )
        raise_for_status(response)
        body = expect_object(parse_json(response.content, OAUTH_GRANT_URL), "Reddit token response")
        token = optional_str(body.get("access_token"))
        if token is None:
            # Reddit answers some credential errors with HTTP 200 and {"error": …}.
            raise MalformedPayload(
                f"Reddit token response has no access_token (error: {body.get('error')!r})",
                OAUTH_GRANT_URL,
                response.status_code,
            )
        lifetime = as_number(body.get("expires_in")) or 3600.0
        self._token = token
        self._token_expires_at = self._clock() + max(0.0, lifetime - TOKEN_EXPIRY_MARGIN)
        return token

    def _pause(self, seconds: float | None) -> float:
        wait = DEFAULT_RESET if seconds is None else max(seconds, 1.0)
        self._paused_until = self._clock() + wait
        log.warning("Reddit: request budget spent; pausing polls for %.0f s", wait)
        return wait
