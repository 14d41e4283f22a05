"""``trending-papers demo``: the real pipeline, offline, on bundled recorded feeds.

The arXiv adapter fetches the recorded announcement feeds through ``httpx.MockTransport``,
papers land in a SQLite file, the engagement adapters (Hacker News, Reddit, Bluesky, Hugging
Face, Semantic Scholar) poll their recorded payloads the same way, a console subscriber whose
linked Bluesky account follows a few of the posters is ranked against relevance × trend, and
the digest goes through the outbox to the console chat, exactly as a scheduled digest would.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from rich.console import Console

from bot import trend
from bot.chat.console import deliver_pending
from bot.circle import circle_counts, refresh_circle, with_circle, with_circle_lines
from bot.digest import build_and_record, fresh_papers
from bot.engagement import CitationSource, PollReport, citation_papers, poll_engagement
from bot.ingest import IngestReport, ingest_announcements
from feeds.bluesky import BlueskySource
from feeds.engagement import EngagementSource
from feeds.hackernews import HackerNewsSource
from feeds.http import HttpPolicy, build_client
from feeds.huggingface import HuggingFaceSource
from feeds.reddit import RedditSource
from feeds.replay import DEMO_BLUESKY_ACTOR, recorded_transport
from storage import deliveries, subscribers
from storage.db import Database
from storage.migrate import upgrade
from storage.models import InterestKind, Platform

DEMO_NOW = datetime(2026, 11, 16, 12, 0, tzinfo=UTC)
"""The recorded feeds are from this announcement day; the demo's clock is pinned to it."""
DEMO_FRESHNESS_DAYS = 3
DEMO_CATEGORIES = ("cs.LG", "cs.CL", "cs.CV", "cs.AI", "stat.ML")
DEMO_INTERESTS = ("large language models", "diffusion", "reinforcement learning")
DEMO_CHAT = "demo"
DEMO_SUBREDDITS = ("MachineLearning", "LocalLLaMA")
DEMO_USER_AGENT = "python:trending-papers-demo:1 (offline replay)"
# The replay's login accepts any identifier and password and hands out unsigned tokens;
# these never leave the process.
DEMO_BLUESKY_LOGIN = ("demo-researcher.bsky.social", "demo-app-password")


@dataclass(frozen=True)
class DemoResult:
    """What one demo run did."""

    ingest: IngestReport
    engagement: PollReport
    delivered: int
    papers_sent: int
    subscriber_id: int


async def run_demo(
    db: Database,
    console: Console,
    *,
    interests: tuple[str, ...] | None = None,
    size: int = 10,
    now: datetime = DEMO_NOW,
) -> DemoResult:
    """Ingest the recorded feeds, rank for the demo subscriber and print the digest."""
    upgrade(db)
    # Nothing here reaches arXiv, so its 3-second politeness interval would only slow the demo.
    policy = HttpPolicy(host_intervals={})
    subscriber, _ = subscribers.get_or_create(
        db, Platform.CONSOLE, DEMO_CHAT, display_name="Demo researcher", digest_size=size
    )
    assert subscriber.id is not None
    subscriber_id = subscriber.id
    if not subscriber.bluesky_handle:
        subscriber = subscribers.update(db, subscriber_id, bluesky_handle=DEMO_BLUESKY_ACTOR)
    async with build_client(policy, transport=recorded_transport()) as client:
        report = await ingest_announcements(db, client, DEMO_CATEGORIES, now=now)
        engagement = await poll_engagement(db, client, demo_sources(client, db), now)
        await refresh_circle(db, client, subscriber, now)
    if interests is not None:
        current = subscribers.profile(db, subscriber_id).keywords
        subscribers.remove_interests(db, subscriber_id, InterestKind.KEYWORD, current)
        subscribers.add_interests(db, subscriber_id, InterestKind.KEYWORD, interests)
    elif subscribers.profile(db, subscriber_id).is_empty:
        subscribers.add_interests(db, subscriber_id, InterestKind.KEYWORD, DEMO_INTERESTS)
    if subscriber.digest_size != size:
        subscriber = subscribers.update(db, subscriber_id, digest_size=size)
    console.print(
        f"[dim]Ingested {report.fetched} papers from {len(DEMO_CATEGORIES)} recorded arXiv "
        f"feeds ({report.stored.inserted} new, {report.stored.updated} updated, "
        f"{report.stored.unchanged} already stored).[/]"
    )
    scored = trend.table(db, now)
    polled = [o for o in engagement.outcomes if o.ok]
    console.print(
        f"[dim]Polled {len(polled)} recorded engagement sources "
        f"({', '.join(o.source for o in polled)}): {sum(o.signals for o in polled)} signals "
        f"about {len(scored.paper_ids)} papers, {engagement.stored} new snapshots.[/]"
    )
    keywords = ", ".join(subscribers.profile(db, subscriber_id).keywords)
    console.print(
        f"[dim]Ranking for the demo subscriber, interested in: {keywords}; "
        f"following {DEMO_BLUESKY_ACTOR}'s circle on Bluesky[/]\n"
    )
    sent_before = deliveries.delivery_count(db, subscriber_id)
    fresh = fresh_papers(db, now, DEMO_FRESHNESS_DAYS)
    ids = [paper.arxiv_id for paper in fresh.papers]
    scored = trend.with_lines(db, scored, ids, now)
    circle = circle_counts(db, subscriber_id, ids, handle=subscriber.bluesky_handle)
    outcomes = build_and_record(
        db,
        [subscriber],
        now,
        freshness_days=DEMO_FRESHNESS_DAYS,
        trend=with_circle(scored.scores(ids), circle),
        trend_lines=with_circle_lines({i: line for i in ids if (line := scored.line(i))}, circle),
        fresh=fresh,
    )
    delivered = deliver_pending(db, subscriber_id, console)
    papers_sent = sum(len(o.items) for o in outcomes)
    if sent_before:
        console.print(
            f"[dim]{sent_before} papers went to this subscriber in earlier runs and were "
            "skipped: a paper is never sent twice.[/]"
        )
    if not papers_sent:
        console.print(
            "[yellow]Nothing new to send:[/] every fresh paper that matches these interests "
            "was already delivered to the demo subscriber (a paper is never sent twice).\n"
            'Try other interests with [bold]trending-papers demo --interests "…"[/], '
            "or start over with [bold]--reset[/]."
        )
    return DemoResult(report, engagement, delivered, papers_sent, subscriber_id)


def demo_sources(client: httpx.AsyncClient, db: Database) -> list[EngagementSource]:
    """Every engagement adapter, configured as a deployment with all credentials would be."""
    handle, app_password = DEMO_BLUESKY_LOGIN
    return [
        HackerNewsSource(client),
        RedditSource(client, DEMO_SUBREDDITS, DEMO_USER_AGENT),
        BlueskySource(client, handle, app_password),
        HuggingFaceSource(client),
        CitationSource(client, citation_papers(db)),
    ]
