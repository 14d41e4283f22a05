"""Your circle: whom a subscriber follows on Bluesky, and how their posts count."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from bot.circle import (
    circle_counts,
    circle_key,
    circle_line,
    followed,
    refresh_circle,
    refresh_circles,
    store_follows,
    with_circle,
    with_circle_lines,
)
from feeds.http import HttpPolicy, build_client
from feeds.records import Signal
from feeds.replay import DEMO_BLUESKY_ACTOR, recorded_transport
from storage import cursors, subscribers
from storage.db import Database
from storage.engagement import add_snapshots
from storage.models import Platform, Subscriber

NOW = datetime(2026, 11, 16, 12, 0, tzinfo=UTC)
# The accounts getFollows.json says the demo researcher follows.
DEMO_FOLLOWS = {
    "did:plc:3ranmppiig2yd6vtwpksjanv",
    "did:plc:45g4zszmynyd5tzhwa37wu4q",
    "did:plc:hwyb2tjnnszcjap6fwkxgdlu",
    "did:plc:72u5faehjcps5xwyanrlrgzz",
}


def subscriber(
    db: Database, handle: str | None = DEMO_BLUESKY_ACTOR, chat: str = "c1"
) -> Subscriber:
    sub, _ = subscribers.get_or_create(db, Platform.CONSOLE, chat, bluesky_handle=handle)
    return sub


def post(arxiv_id: str, actor: str, n: int = 0, source: str = "bluesky") -> Signal:
    return Signal(
        arxiv_id, source, "likes", 5.0, NOW, url=f"https://bsky.app/p/{actor}/{n}", actor=actor
    )


def client(handler: object = None) -> httpx.AsyncClient:
    transport = recorded_transport() if handler is None else httpx.MockTransport(handler)  # type: ignore[arg-type]
    return build_client(HttpPolicy(host_intervals={}, max_retries=0), transport=transport)


def test_follow_list_round_trips_through_the_cursor_row(db: Database) -> None:
    sub = subscriber(db)
    assert sub.id is not None
    assert followed(db, sub.id) == frozenset()
    assert store_follows(db, sub.id, ["did:b", "did:a", "did:a"], NOW, handle="a.bsky.social") == 2
    assert followed(db, sub.id) == {"did:a", "did:b"}
    assert followed(db, sub.id, handle="a.bsky.social") == {"did:a", "did:b"}
    assert followed(db, sub.id, handle="someone.else") == frozenset()
    assert cursors.get(db, circle_key(sub.id)).last_success_at == NOW


def test_an_unreadable_follow_list_counts_as_empty(
    sqlite_db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    cursors.record_success(sqlite_db, circle_key(7), now=NOW, cursor="{not json")
    cursors.record_success(sqlite_db, circle_key(8), now=NOW, cursor='["did:a"]')
    with caplog.at_level(logging.WARNING):
        assert followed(sqlite_db, 7) == frozenset()
        assert followed(sqlite_db, 8) == frozenset()
    assert "subscriber=7" in caplog.text


def test_circle_counts_distinct_followed_posters_on_bluesky(db: Database) -> None:
    sub = subscriber(db)
    assert sub.id is not None
    store_follows(db, sub.id, ["did:alice", "did:bob", "did:carol"], NOW)
    add_snapshots(
        db,
        [
            post("2611.00001", "did:alice", 1),
            post("2611.00001", "did:alice", 2),  # two posts by one person count once
            post("2611.00001", "did:bob"),
            post("2611.00001", "did:stranger"),
            post("2611.00002", "did:stranger"),
            post("2611.00003", "did:carol", source="hackernews"),  # HN users are not DIDs
        ],
    )
    counts = circle_counts(db, sub.id, ["2611.00001", "2611.00002", "2611.00003"])
    assert counts == {"2611.00001": 2}
    assert circle_counts(db, sub.id + 1, ["2611.00001"]) == {}


def test_circle_line_and_personal_trend() -> None:
    assert circle_line(0) == ""
    assert circle_line(1) == "1 person you follow posted this"
    assert circle_line(3) == "3 people you follow posted this"
    trend = {"a": 0.5, "b": 0.0, "c": 0.2}
    personal = with_circle(trend, {"a": 3, "b": 1}, weight=1.0)
    # 1 - (1 - s) · (1 + n)^-w: x grows by w · log1p(n).
    assert personal["a"] == pytest.approx(1 - 0.5 / 4)
    assert personal["b"] == pytest.approx(0.5)
    assert personal["c"] == 0.2
    assert with_circle({}, {"z": 1})["z"] == pytest.approx(0.5)
    lines = with_circle_lines({"a": "HN 3 pts", "c": "HF 2 ▲"}, {"a": 3, "b": 1})
    assert lines == {
        "a": "HN 3 pts · 👥 3 people you follow posted this",
        "b": "👥 1 person you follow posted this",
        "c": "HF 2 ▲",
    }


async def test_refresh_reads_public_follows_and_waits_a_day(db: Database) -> None:
    sub = subscriber(db)
    assert sub.id is not None
    async with client() as http:
        assert await refresh_circle(db, http, sub, NOW) == len(DEMO_FOLLOWS)
        assert followed(db, sub.id) == DEMO_FOLLOWS
        # Fresh: no second request within a day, unless forced.
        assert await refresh_circle(db, http, sub, NOW + timedelta(hours=23)) is None
        assert await refresh_circle(db, http, sub, NOW + timedelta(hours=1), force=True) == 4
        assert await refresh_circle(db, http, sub, NOW + timedelta(hours=25)) == 4
        # A new handle is read at once, and the old list never counts for it meanwhile.
        assert sub.id is not None
        moved = subscribers.update(db, sub.id, bluesky_handle="elsewhere.bsky.social")
        assert followed(db, sub.id, handle="elsewhere.bsky.social") == frozenset()
        # (The replay answers every actor with the recorded list.)
        assert await refresh_circle(db, http, moved, NOW + timedelta(hours=26)) == 4
        assert followed(db, sub.id, handle="elsewhere.bsky.social") == DEMO_FOLLOWS


async def test_a_failed_refresh_keeps_the_old_list_and_is_counted(
    sqlite_db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    sub = subscriber(sqlite_db)
    assert sub.id is not None
    store_follows(sqlite_db, sub.id, ["did:old"], NOW - timedelta(days=2))

    def broken(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="bad gateway")

    async with client(broken) as http:
        with caplog.at_level(logging.WARNING):
            assert await refresh_circle(sqlite_db, http, sub, NOW) is None
    assert followed(sqlite_db, sub.id) == {"did:old"}
    state = cursors.get(sqlite_db, circle_key(sub.id))
    assert state.consecutive_failures == 1 and state.last_error_at == NOW
    assert f"subscriber={sub.id}" in caplog.text and "app.bsky.graph.getFollows" in caplog.text


async def test_refresh_many_skips_those_without_a_handle(sqlite_db: Database) -> None:
    linked = subscriber(sqlite_db)
    unlinked = subscriber(sqlite_db, handle=None, chat="c2")
    async with client() as http:
        done = await refresh_circles(sqlite_db, http, [unlinked, linked], NOW)
    assert done == {linked.id: 4}


def test_for_subscriber_personalises_scores_and_lines(sqlite_db: Database) -> None:
    from bot.circle import for_subscriber

    sub = subscriber(sqlite_db)
    assert sub.id is not None
    store_follows(sqlite_db, sub.id, ["did:alice"], NOW)
    add_snapshots(sqlite_db, [post("2611.00001", "did:alice"), post("2611.00002", "did:x")])
    scores, lines = for_subscriber(
        sqlite_db, sub.id, {"2611.00001": 0.2, "2611.00002": 0.2}, {"2611.00002": "HN 4 pts"}
    )
    assert scores["2611.00001"] == pytest.approx(0.6) and scores["2611.00002"] == 0.2
    assert lines == {
        "2611.00001": "👥 1 person you follow posted this",
        "2611.00002": "HN 4 pts",
    }
