"""Poll every engagement source once: store its signals, record its health, link new papers.

Each source is polled on its own: a timeout, a 429, a 5xx or a payload in an unexpected shape
is logged with the source and URL, counted in that source's ``source_cursor`` row (last
success, last error, consecutive failures) and never stops the others. A source's signals are
stored in one transaction only after its whole poll succeeded, so a failure half-way through
its pages writes nothing. Papers that people talk about before the announcement feed brought
them in keep their snapshots (no foreign key) and are fetched by id from the arXiv API,
batched and paced by the shared client.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx

from bot.circle import refresh_circles
from feeds.arxiv import fetch_by_ids
from feeds.bluesky import MISSING_CREDENTIALS_MESSAGE, BlueskySource
from feeds.engagement import EngagementResult, EngagementSource
from feeds.hackernews import HackerNewsSource
from feeds.http import FetchError
from feeds.huggingface import HuggingFaceSource
from feeds.reddit import RedditSource
from feeds.semanticscholar import SOURCE as SEMANTIC_SCHOLAR
from feeds.semanticscholar import fetch_citations
from storage import cursors, subscribers
from storage.db import Database
from storage.engagement import add_snapshots, citation_candidates, known_paper_ids
from storage.errors import StorageError
from storage.papers import upsert_papers
from storage.types import utcnow

log = logging.getLogger(__name__)

DEFAULT_LOOKBACK = timedelta(days=3)
"""Each poll re-reads posts this recent, so their growing counts become new snapshots."""
ARXIV_LOOKUP = "arxiv:lookup"
"""Health record of the by-id arXiv lookups for papers mentioned before they were ingested."""
MAX_LOOKUPS = 200
"""Papers looked up per poll at most (two API requests, 3 s apart)."""
LOOKUP_BATCH = 100
CITATIONS_MIN_AGE = timedelta(days=3)
CITATIONS_MAX_AGE = timedelta(days=30)
CITATIONS_MAX_PAPERS = 1000
ALL_SOURCES = ("hackernews", "reddit", "bluesky", "huggingface", "semanticscholar")

Sleep = Callable[[float], Awaitable[None]]


@dataclass
class SourceOutcome:
    """What polling one source did."""

    source: str
    ok: bool
    signals: int = 0
    stored: int = 0
    mentioned: int = 0
    error: str | None = None
    """Why it failed, or the problems that cut a successful poll short."""


@dataclass
class PollReport:
    """What one engagement round did, source by source."""

    outcomes: list[SourceOutcome] = field(default_factory=list)
    linked: int = 0
    """Papers fetched by id from arXiv because someone mentioned them before we had them."""
    lookup_error: str | None = None

    @property
    def failed(self) -> dict[str, str]:
        """Sources whose poll failed or was cut short, with the reason."""
        return {o.source: o.error for o in self.outcomes if o.error is not None}

    @property
    def stored(self) -> int:
        """Snapshot rows written across sources."""
        return sum(o.stored for o in self.outcomes)

    def outcome(self, source: str) -> SourceOutcome | None:
        """The outcome of one source, if it was polled."""
        return next((o for o in self.outcomes if o.source == source), None)


async def poll_engagement(
    db: Database,
    client: httpx.AsyncClient,
    sources: Sequence[EngagementSource],
    now: datetime,
    *,
    lookback: timedelta = DEFAULT_LOOKBACK,
    link_missing: bool = True,
    max_lookups: int = MAX_LOOKUPS,
) -> PollReport:
    """Poll each source for posts since ``now - lookback``; see the module docstring."""
    report = PollReport()
    mentioned: dict[str, None] = {}
    for source in sources:
        outcome = await _poll_one(db, source, now - lookback, now)
        report.outcomes.append(outcome.outcome)
        mentioned.update(dict.fromkeys(outcome.mentioned))
    if link_missing and mentioned:
        await _link_missing(db, client, list(mentioned), now, max_lookups, report)
    log.info(
        "engagement poll: stored=%d linked=%d failed=%s",
        report.stored,
        report.linked,
        ",".join(sorted(report.failed)) or "-",
    )
    return report


@dataclass
class _Polled:
    outcome: SourceOutcome
    mentioned: tuple[str, ...] = ()


async def _poll_one(
    db: Database, source: EngagementSource, since: datetime, now: datetime
) -> _Polled:
    name = source.name
    try:
        result: EngagementResult = await source.poll(since, now)
    except FetchError as exc:
        log.warning(
            "engagement source failed: source=%s url=%s error=%s", name, exc.url or "-", exc.reason
        )
        cursors.record_failure(db, name, str(exc), now=now)
        return _Polled(SourceOutcome(name, ok=False, error=str(exc)))
    except Exception as exc:
        # An adapter bug must not take the other sources down; the traceback goes to the log.
        log.exception("engagement source crashed: source=%s error=%s", name, exc)
        cursors.record_failure(db, name, f"{type(exc).__name__}: {exc}", now=now)
        return _Polled(SourceOutcome(name, ok=False, error=f"{type(exc).__name__}: {exc}"))
    try:
        stored = add_snapshots(db, result.signals)
    except StorageError as exc:
        log.error("engagement not stored: source=%s signals=%d error=%s", name,
                  len(result.signals), exc)  # fmt: skip
        cursors.record_failure(db, name, f"storing failed: {exc}", now=now)
        return _Polled(SourceOutcome(name, ok=False, error=str(exc)), result.mentioned_ids)
    outcome = SourceOutcome(
        name,
        ok=True,
        signals=len(result.signals),
        stored=stored,
        mentioned=len(result.mentioned_ids),
    )
    if result.problems:
        # The data that did arrive is stored, but the source is not healthy.
        for problem in result.problems:
            log.warning("engagement source problem: source=%s error=%s", name, problem)
        outcome.error = "; ".join(result.problems)
        cursors.record_failure(db, name, outcome.error, now=now)
    else:
        cursors.record_success(db, name, now=now, cursor=result.cursor)
    log.info(
        "engagement source polled: source=%s signals=%d stored=%d papers=%d",
        name,
        outcome.signals,
        stored,
        outcome.mentioned,
    )
    return _Polled(outcome, result.mentioned_ids)


async def _link_missing(
    db: Database,
    client: httpx.AsyncClient,
    mentioned: list[str],
    now: datetime,
    max_lookups: int,
    report: PollReport,
) -> None:
    known = known_paper_ids(db, mentioned)
    missing = [arxiv_id for arxiv_id in mentioned if arxiv_id not in known][:max_lookups]
    if not missing:
        return
    try:
        found = await fetch_by_ids(client, missing, batch_size=LOOKUP_BATCH)
        stored = upsert_papers(db, found, now=now)
    except (FetchError, ValueError, StorageError) as exc:
        # The snapshots are kept; the next poll mentions these papers again and retries.
        url = getattr(exc, "url", None) or "-"
        log.warning("arXiv lookup failed: source=%s url=%s papers=%d error=%s", ARXIV_LOOKUP,
                    url, len(missing), exc)  # fmt: skip
        cursors.record_failure(db, ARXIV_LOOKUP, str(exc), now=now)
        report.lookup_error = str(exc)
        return
    cursors.record_success(db, ARXIV_LOOKUP, now=now)
    report.linked = stored.inserted + stored.updated
    if len(found) < len(missing):
        log.info("arXiv lookup: %d of %d mentioned ids are unknown to arXiv (yet)",
                 len(missing) - len(found), len(missing))  # fmt: skip


class EngagementJobs:
    """The two scheduled engagement jobs of a running service, sharing its client.

    ``poll_recent`` (every 30 minutes) reads the social sources; ``poll_older`` (every few
    hours) asks Semantic Scholar for citations and refreshes the circles that are due.
    """

    def __init__(self, db: Database, client: httpx.AsyncClient, settings: Any) -> None:
        self._db = db
        self._client = client
        self._lookback = timedelta(
            days=float(getattr(settings, "engagement_lookback_days", DEFAULT_LOOKBACK.days))
        )
        sources = build_sources(settings, client, db)
        self.recent = [s for s in sources if s.name != SEMANTIC_SCHOLAR]
        self.older = [s for s in sources if s.name == SEMANTIC_SCHOLAR]

    async def poll_recent(self, now: datetime | None = None) -> PollReport:
        """Poll Hacker News, Reddit, Bluesky and Hugging Face once."""
        return await poll_engagement(
            self._db, self._client, self.recent, now or utcnow(), lookback=self._lookback
        )

    async def poll_older(self, now: datetime | None = None) -> PollReport:
        """Poll citation counts and refresh every linked Bluesky circle older than a day."""
        now = now or utcnow()
        report = await poll_engagement(self._db, self._client, self.older, now)
        linked = [s for s in subscribers.active(self._db) if s.bluesky_handle]
        await refresh_circles(self._db, self._client, linked, now)
        return report


class CitationSource:
    """Semantic Scholar citation counts for recent papers old enough to have some."""

    name = SEMANTIC_SCHOLAR

    def __init__(
        self,
        client: httpx.AsyncClient,
        papers: Callable[[datetime], Sequence[str]],
        api_key: str | None = None,
        *,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._client = client
        self._papers = papers
        self._api_key = api_key
        self._sleep = sleep

    async def poll(self, since: datetime, now: datetime) -> EngagementResult:
        """Citations of the papers ``papers(now)`` names (``since`` is not used: S2 has no feed)."""
        ids = list(self._papers(now))
        if not ids:
            return EngagementResult()
        signals = await fetch_citations(
            self._client, ids, self._api_key, observed_at=now, sleep=self._sleep
        )
        return EngagementResult(signals, None, tuple(dict.fromkeys(s.arxiv_id for s in signals)))


def citation_papers(
    db: Database,
    *,
    min_age: timedelta = CITATIONS_MIN_AGE,
    max_age: timedelta = CITATIONS_MAX_AGE,
    limit: int = CITATIONS_MAX_PAPERS,
) -> Callable[[datetime], Sequence[str]]:
    """Which papers ``CitationSource`` asks about: recent ones published ``min_age`` ago."""

    def papers(now: datetime) -> Sequence[str]:
        return citation_candidates(db, now, min_age=min_age, max_age=max_age, limit=limit)

    return papers


def _secret(value: Any) -> str | None:
    if value is None:
        return None
    reveal = getattr(value, "get_secret_value", None)
    return str(reveal() if reveal else value) or None


def build_sources(
    settings: Any,
    client: httpx.AsyncClient,
    db: Database | None = None,
    *,
    sleep: Sleep = asyncio.sleep,
) -> list[EngagementSource]:
    """The engagement sources the settings enable, sharing ``client``.

    Bluesky without a handle and app password is left out with one log line. Semantic
    Scholar needs ``db`` (to choose papers old enough for citations) and is left out without
    it. Optional settings, read when present: ``engagement_sources`` (names to enable),
    ``citations_min_age_days`` and ``citations_max_age_days``.
    """
    enabled = set(getattr(settings, "engagement_sources", None) or ALL_SOURCES)
    sources: list[EngagementSource] = []
    if "hackernews" in enabled:
        sources.append(HackerNewsSource(client))
    if "reddit" in enabled and settings.reddit_subreddits:
        sources.append(
            RedditSource(
                client,
                settings.reddit_subreddits,
                settings.user_agent,
                settings.reddit_client_id,
                _secret(settings.reddit_client_secret),
            )
        )
    if "bluesky" in enabled:
        password = _secret(settings.bluesky_app_password)
        if settings.bluesky_handle and password:
            sources.append(BlueskySource(client, settings.bluesky_handle, password))
        else:
            log.info(MISSING_CREDENTIALS_MESSAGE)
    if "huggingface" in enabled:
        sources.append(HuggingFaceSource(client, _secret(settings.huggingface_token)))
    if "semanticscholar" in enabled and db is not None:
        ages = (
            getattr(settings, "citations_min_age_days", CITATIONS_MIN_AGE.days),
            getattr(settings, "citations_max_age_days", CITATIONS_MAX_AGE.days),
        )
        papers = citation_papers(
            db, min_age=timedelta(days=float(ages[0])), max_age=timedelta(days=float(ages[1]))
        )
        sources.append(
            CitationSource(client, papers, _secret(settings.semantic_scholar_api_key), sleep=sleep)
        )
    return sources
