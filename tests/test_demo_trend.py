"""The offline demo polls the recorded engagement payloads and ranks with the trend."""

from __future__ import annotations

import io

from rich.console import Console

from bot import trend
from bot.circle import circle_counts, followed, with_circle
from bot.demo import DEMO_NOW, run_demo
from bot.digest import candidates, rank_for
from storage import outbox, subscribers
from storage.db import Database
from storage.models import InterestKind, OutboxStatus, Platform


def console() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, width=200, color_system=None), buffer


async def test_demo_digest_shows_trend_lines_and_the_circle(db: Database) -> None:
    out, text = console()
    result = await run_demo(db, out, size=10)
    printed = text.getvalue()
    assert {o.source for o in result.engagement.outcomes} == {
        "hackernews", "reddit", "bluesky", "huggingface", "semanticscholar",
    }  # fmt: skip
    assert result.engagement.failed == {}
    assert "Polled 5 recorded engagement sources" in printed
    assert "🔥 " in printed and "HN " in printed and " pts" in printed
    assert "you follow posted this" in printed
    assert followed(db, result.subscriber_id)  # the demo researcher's circle was read

    sent = outbox.messages(db, status=OutboxStatus.SENT, limit=5)
    items = sent[0].payload["items"]
    lines = [item["trend_line"] for item in items if item["trend_line"]]
    assert len(lines) >= 3
    # The printed lines are the stored ones: the digest carries what the score used.
    assert all(line in printed for line in lines)


async def test_trend_changes_the_ranking(sqlite_db: Database) -> None:
    out, _ = console()
    result = await run_demo(sqlite_db, out, size=10)
    sub = subscribers.find(sqlite_db, Platform.CONSOLE, "demo")
    assert sub is not None and sub.id == result.subscriber_id
    # Rank again from scratch (a second subscriber with the same interests, nothing sent yet).
    twin, _ = subscribers.get_or_create(sqlite_db, Platform.CONSOLE, "twin", digest_size=10)
    assert twin.id is not None
    profile = subscribers.profile(sqlite_db, sub.id)
    subscribers.add_interests(sqlite_db, twin.id, InterestKind.KEYWORD, profile.keywords)
    ids = [p.arxiv_id for p in candidates(sqlite_db, DEMO_NOW, 3)]
    scores = trend.trend_scores(sqlite_db, ids, DEMO_NOW)
    with_trend = rank_for(sqlite_db, [twin], DEMO_NOW, trend=scores)[twin.id]
    without = rank_for(sqlite_db, [twin], DEMO_NOW)[twin.id]
    assert [i.arxiv_id for i in with_trend] != [i.arxiv_id for i in without]
    trending_first = with_trend[0].arxiv_id
    assert scores[trending_first] > 0.5
    # Following people who posted a paper lifts it further for that subscriber only.
    circle = circle_counts(sqlite_db, sub.id, ids)
    assert circle and all(with_circle(scores, circle)[i] > scores[i] for i in circle)


async def test_second_demo_run_repolls_without_new_snapshots(sqlite_db: Database) -> None:
    out, _ = console()
    first = await run_demo(sqlite_db, out, size=5)
    out, text = console()
    second = await run_demo(sqlite_db, out, size=5)
    assert first.engagement.stored > 0
    assert second.engagement.stored == 0 and second.engagement.failed == {}
    assert "0 new snapshots" in text.getvalue()
