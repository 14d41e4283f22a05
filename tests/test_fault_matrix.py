"""Every source × every way a source can fail: the others ingest, the fault is logged with its
source and URL, counted in the source's health, nothing is half-written, the next poll recovers.

The healthy answers come from the recorded demo payloads, through the real adapters and the
real shared client (one retry, fake sleep, fake clocks). The arXiv by-id lookup that links
papers mentioned before their announcement is part of the matrix too.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from bot.engagement import ARXIV_LOOKUP, CitationSource, citation_papers, poll_engagement
from feeds.bluesky import BlueskySession, BlueskySource
from feeds.engagement import EngagementSource
from feeds.hackernews import HackerNewsSource
from feeds.http import HttpPolicy, build_client
from feeds.huggingface import HuggingFaceSource
from feeds.records import Paper as PaperRecord
from feeds.reddit import RedditSource
from feeds.replay import recorded_transport
from storage import cursors, papers
from storage.db import Database
from storage.engagement import snapshots_since

NOW = datetime(2026, 11, 16, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(hours=2)
MAX_BYTES = 300_000
"""Above every recorded payload (the largest is ~50 kB), far below the fault's body."""
HOSTS = {
    "hackernews": "hn.algolia.com",
    "reddit": "www.reddit.com",
    "bluesky": "bsky.social",
    "huggingface": "huggingface.co",
    "semanticscholar": "api.semanticscholar.org",
    ARXIV_LOOKUP: "export.arxiv.org",
}
ENGAGEMENT = [name for name in HOSTS if name != ARXIV_LOOKUP]
FAULTS = [
    "connect timeout",
    "read timeout",
    "429 with Retry-After",
    "500",
    "503",
    "malformed body",
    "empty body",
    "body over the size cap",
    "unexpected schema",
]
# Seeded papers, published long enough ago for Semantic Scholar to be asked about them.
CITED = ("2606.30616", "2506.23589")


def fault(kind: str, request: httpx.Request) -> httpx.Response:
    """The server (or network) misbehaving in one particular way."""
    xml = request.url.host == HOSTS[ARXIV_LOOKUP]
    if kind == "connect timeout":
        raise httpx.ConnectTimeout("timed out connecting", request=request)
    if kind == "read timeout":
        raise httpx.ReadTimeout("timed out reading", request=request)
    if kind == "429 with Retry-After":
        return httpx.Response(429, headers={"Retry-After": "7"}, text="slow down")
    if kind in ("500", "503"):
        return httpx.Response(int(kind), text="upstream trouble")
    if kind == "malformed body":
        body = b"<feed><entry><title>cut off" if xml else b'{"hits": [{"title": "cut off'
        return httpx.Response(200, content=body)
    if kind == "empty body":
        return httpx.Response(200, content=b"")
    if kind == "body over the size cap":
        return httpx.Response(200, content=b"[" + b" " * MAX_BYTES + b"]")
    if kind == "unexpected schema":
        if xml:
            return httpx.Response(200, content=b"<html><body>Down for maintenance</body></html>")
        return httpx.Response(200, json={"data": {"moved": "https://example.org/v2"}})
    raise AssertionError(kind)


class FakeClock:
    """Monotonic seconds that only move when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def seed(db: Database) -> None:
    published = NOW - timedelta(days=9)
    papers.upsert_papers(
        db,
        [
            PaperRecord(
                arxiv_id=arxiv_id,
                version=1,
                title=f"Seeded {arxiv_id}",
                abstract="",
                authors=("A B",),
                categories=("cs.LG",),
                primary_category="cs.LG",
                published=published,
                updated=published,
                announced=published,
            )
            for arxiv_id in CITED
        ],
    )


def sources(client: httpx.AsyncClient, db: Database, clock: FakeClock) -> list[EngagementSource]:
    async def no_wait(seconds: float) -> None:
        return None

    return [
        HackerNewsSource(client),
        RedditSource(client, ["MachineLearning", "LocalLLaMA"], "python:tp-test:1", clock=clock),
        BlueskySource(client, session=BlueskySession(client, "me.test", "pw", clock=clock)),
        HuggingFaceSource(client),
        CitationSource(client, citation_papers(db), sleep=no_wait),
    ]


@pytest.mark.parametrize("kind", FAULTS)
@pytest.mark.parametrize("broken", list(HOSTS))
async def test_fault_is_isolated_logged_counted_and_recovered(
    sqlite_db: Database, caplog: pytest.LogCaptureFixture, broken: str, kind: str
) -> None:
    db = sqlite_db
    seed(db)
    replay = recorded_transport()
    failing = True
    sleeps: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if failing and request.url.host == HOSTS[broken]:
            return fault(kind, request)
        return replay.handle_request(request)

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    clock = FakeClock()
    policy = HttpPolicy(max_retries=1, max_bytes=MAX_BYTES, host_intervals={})
    transport = httpx.MockTransport(handler)
    async with build_client(policy, transport=transport, sleep=fake_sleep, clock=clock) as client:
        polled = sources(client, db, clock)
        with caplog.at_level(logging.WARNING):
            report = await poll_engagement(db, client, polled, NOW)

        # The others ingested.
        healthy = [name for name in ENGAGEMENT if name != broken]
        for name in healthy:
            outcome = report.outcome(name)
            assert outcome is not None and outcome.error is None, (name, outcome)
            assert outcome.stored > 0, name
            assert cursors.get(db, name).last_success_at == NOW
        stored = snapshots_since(db, NOW - timedelta(days=7))
        assert {s.source for s in stored} == set(healthy)

        # The fault is logged with source and URL, and counted.
        host = HOSTS[broken]
        logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert any(f"source={broken}" in m and f"https://{host}/" in m for m in logged), logged
        health = cursors.get(db, broken)
        assert health.consecutive_failures == 1
        assert health.last_error and health.last_error_at == NOW
        assert health.last_success_at is None
        if kind == "429 with Retry-After":
            assert 7 in sleeps  # Retry-After was honoured before giving up

        # Nothing half-written.
        if broken == ARXIV_LOOKUP:
            assert report.linked == 0 and report.lookup_error
            assert papers.count_papers(db) == len(CITED)
        else:
            assert report.failed.keys() == {broken}
            assert not [s for s in stored if s.source == broken]
            assert report.linked > 0

        # The next poll recovers (Reddit's and Bluesky's own back-off clocks have run out).
        failing = False
        clock.now += 3600
        recovered = await poll_engagement(db, client, polled, LATER)
    assert recovered.failed == {} and recovered.lookup_error is None
    health = cursors.get(db, broken)
    assert health.consecutive_failures == 0 and health.last_success_at == LATER
    if broken == ARXIV_LOOKUP:
        assert recovered.linked > 0
    else:
        outcome = recovered.outcome(broken)
        assert outcome is not None and outcome.stored > 0


@pytest.mark.parametrize("broken", ENGAGEMENT)
async def test_failures_in_a_row_are_counted_until_success(
    sqlite_db: Database, broken: str
) -> None:
    seed(sqlite_db)
    replay = recorded_transport()
    calls = {"polls": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == HOSTS[broken] and calls["polls"] < 3:
            return httpx.Response(503, text="down")
        return replay.handle_request(request)

    async def no_wait(seconds: float) -> None:
        return None

    clock = FakeClock()
    policy = HttpPolicy(max_retries=1, max_bytes=MAX_BYTES, host_intervals={})
    async with build_client(
        policy, transport=httpx.MockTransport(handler), sleep=no_wait, clock=clock
    ) as client:
        polled = [s for s in sources(client, sqlite_db, clock) if s.name == broken]
        for hour in range(4):
            await poll_engagement(
                sqlite_db, client, polled, NOW + timedelta(hours=hour), link_missing=False
            )
            calls["polls"] += 1
            clock.now += 3600
            health = cursors.get(sqlite_db, broken)
            assert health.consecutive_failures == (hour + 1 if hour < 3 else 0)
    assert health.last_success_at == NOW + timedelta(hours=3)
    assert "503" in (health.last_error or "")


async def test_a_fault_on_a_later_page_writes_nothing_for_that_source(
    sqlite_db: Database,
) -> None:
    # Hugging Face is read one day per request; the third day fails after two succeeded.
    replay = recorded_transport()
    days: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == HOSTS["huggingface"]:
            days.append(request.url.params.get("date", ""))
            if len(days) == 3:
                return httpx.Response(200, content=b"[{")
        return replay.handle_request(request)

    policy = HttpPolicy(max_retries=0, max_bytes=MAX_BYTES, host_intervals={})
    async with build_client(policy, transport=httpx.MockTransport(handler)) as client:
        report = await poll_engagement(
            sqlite_db, client, [HuggingFaceSource(client)], NOW, link_missing=False
        )
    assert len(days) == 3
    assert report.failed.keys() == {"huggingface"}
    assert snapshots_since(sqlite_db, NOW - timedelta(days=7)) == []
