"""``trending-papers demo``: the real pipeline, offline, on bundled recorded feeds.

The arXiv adapter fetches the recorded announcement feeds through ``httpx.MockTransport``,
papers land in a SQLite file, a console subscriber is ranked against them and the digest goes
through the outbox to the console chat, exactly as a scheduled digest would.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from rich.console import Console

from bot.chat.console import deliver_pending
from bot.digest import build_and_record
from bot.ingest import IngestReport, ingest_announcements
from feeds.http import HttpPolicy, build_client
from feeds.replay import recorded_transport
from storage import deliveries, subscribers
from storage.db import Database
from storage.migrate import upgrade
from storage.models import InterestKind, Platform

DEMO_NOW = datetime(2026, 11, 16, 12, 0, tzinfo=UTC)
"""The recorded feeds are from this announcement day; the demo's clock is pinned to it."""
DEMO_CATEGORIES = ("cs.LG", "cs.CL", "cs.CV", "cs.AI", "stat.ML")
DEMO_INTERESTS = ("large language models", "diffusion", "reinforcement learning")
DEMO_CHAT = "demo"


@dataclass(frozen=True)
class DemoResult:
    """What one demo run did."""

    ingest: IngestReport
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
    async with build_client(policy, transport=recorded_transport()) as client:
        report = await ingest_announcements(db, client, DEMO_CATEGORIES, now=now)
    subscriber, _ = subscribers.get_or_create(
        db, Platform.CONSOLE, DEMO_CHAT, display_name="Demo researcher", digest_size=size
    )
    assert subscriber.id is not None
    subscriber_id = subscriber.id
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
    keywords = ", ".join(subscribers.profile(db, subscriber_id).keywords)
    console.print(f"[dim]Ranking for the demo subscriber, interested in: {keywords}[/]\n")
    sent_before = deliveries.delivery_count(db, subscriber_id)
    outcomes = build_and_record(db, [subscriber], now)
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
    return DemoResult(report, delivered, papers_sent, subscriber_id)
