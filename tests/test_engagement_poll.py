"""The engagement poller: every source through its real adapter, health, linking, isolation."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import httpx
import pytest
from pydantic import SecretStr

from bot.demo import demo_sources
from bot.engagement import (
    ARXIV_LOOKUP,
    CitationSource,
    build_sources,
    citation_papers,
    poll_engagement,
)
from feeds.engagement import EngagementResult
from feeds.http import HttpPolicy, build_client
from feeds.records import Paper as PaperRecord
from feeds.records import Signal
from feeds.replay import recorded_transport
from storage import cursors, papers
from storage.db import Database
from storage.engagement import snapshots_since, unlinked_paper_ids

NOW = datetime(2026, 11, 16, 12, 0, tzinfo=UTC)
SOURCES = {"hackernews", "reddit", "bluesky", "huggingface", "semanticscholar"}


def client(handler: Callable[[httpx.Request], httpx.Response] | None = None) -> httpx.AsyncClient:
    transport = recorded_transport() if handler is None else httpx.MockTransport(handler)
    return build_client(HttpPolicy(host_intervals={}, max_retries=0), transport=transport)


def old_paper(arxiv_id: str) -> PaperRecord:
    published = NOW - timedelta(days=10)
    return PaperRecord(
        arxiv_id=arxiv_id, version=1, title=f"Paper {arxiv_id}", abstract="", authors=("A B",),
        categories=("cs.LG",), primary_category="cs.LG", published=published,
        updated=published, announced=published + timedelta(days=1),
    )  # fmt: skip


async def test_every_source_polls_stores_and_reports_health(db: Database) -> None:
    papers.upsert_papers(db, [old_paper("2606.30616"), old_paper("2506.23589")])
    async with client() as http:
        # Linking is left out here: newly linked papers would give citations something new.
        report = await poll_engagement(db, http, demo_sources(http, db), NOW, link_missing=False)
        assert {o.source for o in report.outcomes} == SOURCES
        assert report.failed == {}
        for outcome in report.outcomes:
            assert outcome.ok and outcome.signals > 0 and outcome.stored > 0, outcome
            health = cursors.get(db, outcome.source)
            assert health.last_success_at == NOW and health.consecutive_failures == 0
        stored = snapshots_since(db, NOW - timedelta(days=7))
        assert {s.source for s in stored} == SOURCES
        assert len(stored) == report.stored
        again = await poll_engagement(
            db, http, demo_sources(http, db), NOW + timedelta(hours=1), link_missing=False
        )
    # Same numbers an hour later: health moves on, no snapshot is written twice.
    assert again.failed == {} and again.stored == 0
    assert cursors.get(db, "hackernews").last_success_at == NOW + timedelta(hours=1)


async def test_papers_mentioned_before_ingest_are_fetched_and_linked(
    sqlite_db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    requested: list[str] = []
    replay = recorded_transport()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "export.arxiv.org":
            requested.append(request.url.params["id_list"])
        return replay.handle_request(request)

    async with client(handler) as http:
        sources = [s for s in demo_sources(http, sqlite_db) if s.name == "hackernews"]
        with caplog.at_level(logging.INFO):
            report = await poll_engagement(sqlite_db, http, sources, NOW)
    mentioned = {s.arxiv_id for s in snapshots_since(sqlite_db, NOW - timedelta(days=1))}
    assert report.linked == len(mentioned) > 5
    assert papers.get_papers(sqlite_db, sorted(mentioned)).keys() == mentioned
    assert unlinked_paper_ids(sqlite_db, NOW - timedelta(days=1)) == []
    # One batched request for all of them, not one per paper.
    assert len(requested) == 1 and set(requested[0].split(",")) == mentioned
    assert cursors.get(sqlite_db, ARXIV_LOOKUP).last_success_at == NOW


async def test_lookup_batches_are_capped(sqlite_db: Database) -> None:
    async with client() as http:
        sources = [s for s in demo_sources(http, sqlite_db) if s.name == "bluesky"]
        report = await poll_engagement(sqlite_db, http, sources, NOW, max_lookups=3)
    assert report.linked == 3
    assert len(unlinked_paper_ids(sqlite_db, NOW - timedelta(days=3))) > 0


async def test_a_failed_lookup_keeps_the_snapshots_and_retries_next_poll(
    sqlite_db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    replay = recorded_transport()
    arxiv_down = True

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "export.arxiv.org" and arxiv_down:
            return httpx.Response(503, text="maintenance")
        return replay.handle_request(request)

    async with client(handler) as http:
        sources = [s for s in demo_sources(http, sqlite_db) if s.name == "huggingface"]
        with caplog.at_level(logging.WARNING):
            first = await poll_engagement(sqlite_db, http, sources, NOW)
        assert first.lookup_error and first.linked == 0 and first.failed == {}
        assert "source=arxiv:lookup url=https://export.arxiv.org/api/query" in caplog.text
        assert papers.count_papers(sqlite_db) == 0
        waiting = unlinked_paper_ids(sqlite_db, NOW - timedelta(days=1))
        assert len(waiting) == first.stored // 2  # upvotes and comments per paper
        assert cursors.get(sqlite_db, ARXIV_LOOKUP).consecutive_failures == 1

        arxiv_down = False
        second = await poll_engagement(sqlite_db, http, sources, NOW + timedelta(hours=2))
    assert second.linked == len(waiting)
    assert unlinked_paper_ids(sqlite_db, NOW - timedelta(days=1)) == []
    assert cursors.get(sqlite_db, ARXIV_LOOKUP).consecutive_failures == 0


class Exploding:
    """A source with a bug: it raises something that is not a fetch error."""

    name = "exploding"

    async def poll(self, since: datetime, now: datetime) -> EngagementResult:
        raise KeyError("points")


class Partial:
    """A source that got some data and then hit a rate limit."""

    name = "partial"

    async def poll(self, since: datetime, now: datetime) -> EngagementResult:
        signal = Signal("2611.00001", self.name, "score", 3.0, now, url="https://example.org/1")
        return EngagementResult(
            (signal,), None, ("2611.00001",), problems=("rate limited (https://example.org/x)",)
        )


async def test_a_crashing_adapter_is_isolated_and_counted(
    sqlite_db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    async with client() as http:
        hn = [s for s in demo_sources(http, sqlite_db) if s.name == "hackernews"]
        with caplog.at_level(logging.WARNING):
            report = await poll_engagement(
                sqlite_db, http, [Exploding(), *hn, Partial()], NOW, link_missing=False
            )
    assert report.failed.keys() == {"exploding", "partial"}
    assert report.outcome("hackernews").stored > 0  # type: ignore[union-attr]
    assert "source=exploding" in caplog.text and "KeyError" in caplog.text
    assert cursors.get(sqlite_db, "exploding").consecutive_failures == 1
    # What arrived before the rate limit is kept; the source still counts as failing.
    partial = report.outcome("partial")
    assert partial is not None and partial.stored == 1
    assert cursors.get(sqlite_db, "partial").consecutive_failures == 1
    assert "source=partial error=rate limited (https://example.org/x)" in caplog.text


async def test_citations_only_for_papers_old_enough(sqlite_db: Database) -> None:
    fresh = dataclasses.replace(
        old_paper("2606.29066"), published=NOW - timedelta(hours=20), announced=NOW
    )
    stale = dataclasses.replace(
        old_paper("2506.23025"),
        announced=NOW - timedelta(days=60),
        published=NOW - timedelta(days=61),
    )
    papers.upsert_papers(sqlite_db, [old_paper("2606.30616"), fresh, stale])
    assert citation_papers(sqlite_db)(NOW) == ["2606.30616"]
    asked: list[bytes] = []
    replay = recorded_transport()

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.content)
        return replay.handle_request(request)

    async with client(handler) as http:
        result = await CitationSource(http, citation_papers(sqlite_db)).poll(NOW, NOW)
        nothing = await CitationSource(http, lambda now: []).poll(NOW, NOW)
    assert {s.arxiv_id for s in result.signals} == {"2606.30616"}
    assert {s.metric for s in result.signals} == {"citations", "influential_citations"}
    assert len(asked) == 1 and nothing == EngagementResult()


def settings(**changes: object) -> SimpleNamespace:
    base: dict[str, object] = {
        "reddit_subreddits": ["MachineLearning"],
        "user_agent": "trending-papers/test (+mailto:t@example.invalid)",
        "reddit_client_id": None,
        "reddit_client_secret": None,
        "bluesky_handle": None,
        "bluesky_app_password": None,
        "huggingface_token": None,
        "semantic_scholar_api_key": None,
    }
    return SimpleNamespace(**{**base, **changes})


async def test_build_sources_skips_bluesky_without_credentials_with_one_line(
    sqlite_db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    async with client() as http:
        with caplog.at_level(logging.INFO):
            plain = build_sources(settings(), http)
        assert [s.name for s in plain] == ["hackernews", "reddit", "huggingface"]
        lines = [r for r in caplog.records if "TP_BLUESKY_APP_PASSWORD" in r.getMessage()]
        assert len(lines) == 1

        full = build_sources(
            settings(bluesky_handle="me.bsky.social", bluesky_app_password=SecretStr("pw")),
            http,
            sqlite_db,
        )
        assert [s.name for s in full] == [
            "hackernews", "reddit", "bluesky", "huggingface", "semanticscholar",
        ]  # fmt: skip
        some = build_sources(settings(engagement_sources=["huggingface"]), http, sqlite_db)
        assert [s.name for s in some] == ["huggingface"]
        no_subreddits = build_sources(settings(reddit_subreddits=[]), http)
        assert "reddit" not in [s.name for s in no_subreddits]


async def test_build_sources_reads_real_settings(sqlite_db: Database) -> None:
    from bot.config import Settings

    async with client() as http:
        sources = build_sources(Settings(), http, sqlite_db)
    assert "bluesky" not in {s.name for s in sources}
    assert {"hackernews", "reddit", "huggingface", "semanticscholar"} <= {s.name for s in sources}


async def test_service_jobs_split_social_sources_from_citations(sqlite_db: Database) -> None:
    from bot.engagement import EngagementJobs
    from storage import subscribers
    from storage.models import Platform

    papers.upsert_papers(sqlite_db, [old_paper("2606.30616")])
    linked, _ = subscribers.get_or_create(
        sqlite_db, Platform.CONSOLE, "c1", bluesky_handle="demo-researcher.bsky.social"
    )
    assert linked.id is not None
    async with client() as http:
        jobs = EngagementJobs(
            sqlite_db,
            http,
            settings(bluesky_handle="me.bsky.social", bluesky_app_password=SecretStr("pw")),
        )
        assert [s.name for s in jobs.recent] == ["hackernews", "reddit", "bluesky", "huggingface"]
        assert [s.name for s in jobs.older] == ["semanticscholar"]
        recent = await jobs.poll_recent(NOW)
        older = await jobs.poll_older(NOW)
    assert recent.failed == {} and recent.stored > 0
    assert [o.source for o in older.outcomes] == ["semanticscholar"] and older.stored > 0
    assert cursors.get(sqlite_db, f"circle:{linked.id}").last_success_at == NOW
