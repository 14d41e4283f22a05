"""Every command through ``CommandRouter.handle``, as a conversation with a fake chat."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console
from sqlalchemy import select, text

from bot import categories, timezones
from bot.cli_chat import register, repl
from bot.commands import (
    COMMANDS,
    SORRY,
    CommandRouter,
    ServiceDigest,
    describe_days,
    digest_builder,
    digest_reply,
    is_button_update,
    parse_days,
    parse_terms,
    parse_time,
    reply_for_payload,
)
from bot.config import Settings
from bot.digest import DigestOutcome, payload
from bot.messages import Action, Command, PaperBlock, Reply, TextBlock
from bot.throttle import Throttle
from bot.trend_cache import TrendProvider
from bot.warm import NotWarm
from storage import deliveries, feedback, outbox, papers, subscribers
from storage.db import Database
from storage.models import OUTBOX, ChatKind, OutboxStatus, Platform, Subscriber
from tests.fakes.chat import (
    FakeChat,
    buttons_of,
    newest_as_trending,
    paper,
    substring_search,
)

NOW = datetime(2026, 11, 16, 12, 0, tzinfo=UTC)


class Ticker:
    """A monotonic clock for the throttle that moves only when told."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make_router(db: Database, **overrides: object) -> CommandRouter:
    options: dict[str, object] = {
        "clock": lambda: NOW,
        "search": substring_search,
        "trending": newest_as_trending,
        "throttle": Throttle(1000, 60.0),
    }
    options.update(overrides)
    return CommandRouter(db, Settings(), **options)  # type: ignore[arg-type]


def seed(db: Database) -> None:
    papers.upsert_papers(
        db,
        [
            paper("2611.00001", "Diffusion models for protein design"),
            paper("2611.00002", "Faster diffusion models with distillation", category="cs.CV"),
            paper("2611.00003", "Graph neural networks at scale"),
            paper("2611.00004", "A survey of reinforcement learning", category="cs.AI"),
            paper("2611.00005", "Diffusion transformers for video", category="cs.CV"),
            paper("2611.00006", "Diffusion on graphs", authors=("Yoshua Bengio",)),
            paper("2611.00007", "Diffusion language models", category="cs.CL"),
        ],
        now=NOW,
    )


@pytest.fixture
def router(db: Database) -> CommandRouter:
    seed(db)
    return make_router(db)


@pytest.fixture
def chat(router: CommandRouter) -> FakeChat:
    return FakeChat(router)


def text_of(reply: Reply) -> str:
    """All the text a reply shows."""
    return reply.plain_text


def subscriber_of(db: Database, chat: FakeChat) -> int:
    found = subscribers.find(db, chat.platform, chat.chat_id)
    assert found is not None and found.id is not None
    return found.id


# --------------------------------------------------------------------------- start, help


async def test_start_subscribes_once_and_explains_the_next_step(
    chat: FakeChat, db: Database
) -> None:
    welcome = text_of(await chat.say("/start"))
    assert "Welcome" in welcome and "/interests add" in welcome and "08:00 (UTC)" in welcome
    again = text_of(await chat.say("/start"))
    assert again.startswith("You're already subscribed: 10 papers every day at 08:00 (UTC).")
    assert "/interests add" in again
    await chat.say("/pause")
    assert text_of(await chat.say("/start")).startswith("Welcome back! Digests are on again")
    assert len(subscribers.active(db)) == 1


async def test_start_uses_the_platform_time_zone_when_it_is_valid(router: CommandRouter) -> None:
    chat = FakeChat(router, user_timezone="America/New_York")
    assert "America/New_York" in text_of(await chat.say("/start"))
    other = FakeChat(router, chat_id="2002", user_id="2002", user_timezone="Mars/Olympus")
    assert "(UTC)" in text_of(await other.say("/start"))


async def test_help_lists_every_command_with_an_example(chat: FakeChat) -> None:
    text = text_of(await chat.say("/help"))
    for spec in COMMANDS:
        assert spec.usage in text and spec.example in text
    assert text_of(await chat.say("/help timezone")).startswith("/timezone")


async def test_unknown_commands_get_one_line_pointing_to_help(chat: FakeChat) -> None:
    reply = await chat.say("/intrests add x")
    assert text_of(reply) == (
        "I don't know /intrests. Did you mean /interests? Send /help to see every command."
    )
    assert "/help" in text_of(await chat.say("/frobnicate"))
    assert "/search" in text_of(await chat.say("just some words"))


async def test_commands_before_start_ask_for_start(chat: FakeChat) -> None:
    for typed in ("/interests add x", "/digest", "/time 08:00", "/saved", "/settings", "/stop"):
        assert "Send /start first" in text_of(await chat.say(typed)), typed


# --------------------------------------------------------------------------- interests


def test_terms_split_on_commas_and_quotes() -> None:
    assert parse_terms("diffusion models") == ["diffusion models"]
    assert parse_terms("diffusion models, protein design") == ["diffusion models", "protein design"]
    assert parse_terms('"graph neural networks" ssl') == ["graph neural networks", "ssl"]
    assert parse_terms("“smart quotes” too") == ["smart quotes", "too"]
    assert parse_terms('unbalanced "quote') == ["unbalanced quote"]
    assert parse_terms(" , ,, ") == []
    assert parse_terms("a, A, a") == ["a"]


async def test_interests_add_show_remove(chat: FakeChat, db: Database) -> None:
    await chat.say("/start")
    assert text_of(await chat.say("/interests add diffusion models, protein design")) == (
        "Added “diffusion models”, “protein design”."
    )
    assert "Already there: “Diffusion Models”" in text_of(
        await chat.say("/interests add Diffusion Models")
    )
    shown = text_of(await chat.say("/interests"))
    assert "Keywords: diffusion models, protein design" in shown
    removed = text_of(await chat.say("/interests remove protein design, nothing"))
    assert removed.startswith("Removed “protein design”.") and "Not found: “nothing”" in removed
    assert subscribers.profile(db, subscriber_of(db, chat)).keywords == ["diffusion models"]
    assert "/interests add" in text_of(await chat.say("/interests frobnicate"))
    assert "Tell me which terms" in text_of(await chat.say("/interests add"))
    assert "too long" in text_of(await chat.say("/interests add " + "x" * 101))
    assert "no letters" in text_of(await chat.say("/interests add ???"))


async def test_follow_and_unfollow_match_names_loosely(chat: FakeChat, db: Database) -> None:
    await chat.say("/start")
    assert "Following Yoshua Bengio" in text_of(await chat.say("/follow Yoshua Bengio"))
    assert "Already following Y. Bengio" in text_of(await chat.say("/follow Y. Bengio"))
    assert "Stopped following Yoshua Bengio" in text_of(await chat.say("/unfollow bengio"))
    assert "You don't follow Hinton" in text_of(await chat.say("/unfollow Hinton"))
    assert "doesn't look like a person" in text_of(await chat.say("/follow 1234"))
    assert subscribers.profile(db, subscriber_of(db, chat)).authors == []


async def test_categories_are_validated_against_the_taxonomy(chat: FakeChat, db: Database) -> None:
    await chat.say("/start")
    assert "No categories chosen" in text_of(await chat.say("/categories"))
    ok = text_of(await chat.say("/categories cs.lg, CS.CL"))
    assert "cs.LG (Machine Learning), cs.CL (Computation and Language)" in ok
    assert "rank higher" in ok
    bad = text_of(await chat.say("/categories cs.LGG"))
    assert "cs.LGG is not an arXiv category (did you mean cs.LG" in bad and "Nothing changed" in bad
    assert "whole archive" in text_of(await chat.say("/categories cs"))
    assert "Only papers in them" in text_of(await chat.say("/categories filter"))
    sub = subscribers.find(db, chat.platform, chat.chat_id)
    assert sub is not None and sub.categories_mode == "filter"
    assert "cs.IT (Information Theory)" in text_of(await chat.say("/categories math.IT"))
    assert subscribers.profile(db, subscriber_of(db, chat)).categories == ["cs.IT"]
    assert "cleared" in text_of(await chat.say("/categories clear"))
    assert subscribers.profile(db, subscriber_of(db, chat)).categories == []


def test_category_lookup() -> None:
    assert categories.check("STAT.ml").code == "stat.ML"
    assert categories.check("cond-mat.STAT-MECH").code == "cond-mat.stat-mech"
    assert categories.check("q-fin.EC").code == "econ.GN"
    assert categories.check("hep-th").code == "hep-th"
    assert categories.check("physics").archive == "physics"
    assert categories.check("cs.XX").code is None
    assert len(categories.CATEGORIES) + len(categories.ALIASES) == 155


async def test_mute_and_unmute(chat: FakeChat, db: Database) -> None:
    await chat.say("/start")
    assert "Muted “blockchain”" in text_of(await chat.say("/mute blockchain"))
    assert subscribers.profile(db, subscriber_of(db, chat)).muted == ["blockchain"]
    assert "Removed “blockchain”" in text_of(await chat.say("/unmute blockchain"))


# --------------------------------------------------------------------------- digest


async def test_digest_now_records_deliveries_and_never_repeats(
    chat: FakeChat, db: Database
) -> None:
    await chat.say("/start")
    await chat.say("/interests add diffusion")
    reply = await chat.say("/digest")
    cards = [b for b in reply.blocks if isinstance(b, PaperBlock)]
    assert cards and all("diffusion" in c.item.title.casefold() for c in cards)
    assert text_of(reply).startswith(f"Your papers for 2026-11-16 · {len(cards)} new")
    assert [b.label for b in cards[0].buttons] == ["👍", "👎", "🔖"]
    sid = subscriber_of(db, chat)
    assert deliveries.delivery_count(db, sid) == len(cards)
    # The reply delivered it: nothing is left in the outbox for the delivery worker.
    assert outbox.pending(db, subscriber_id=sid) == []
    again = await chat.say("/digest")
    shown_again = {b.item.arxiv_id for b in again.blocks if isinstance(b, PaperBlock)}
    assert not shown_again & {c.item.arxiv_id for c in cards}


async def test_digest_with_nothing_new_says_so(router: CommandRouter, db: Database) -> None:
    chat = FakeChat(router)
    await chat.say("/start")
    await chat.say("/size 30")
    await chat.say("/digest")
    empty = text_of(await chat.say("/digest"))
    assert empty.startswith("Nothing new right now")


async def test_digest_outbox_row_is_marked_sent(db: Database) -> None:
    seed(db)
    router = make_router(db)
    chat = FakeChat(router)
    await chat.say("/start")
    await chat.say("/interests add diffusion")
    await chat.say("/digest")
    with db.session() as session:
        statuses = list(session.execute(select(OUTBOX.c.status)).scalars())
    assert statuses == [OutboxStatus.SENT]


def test_outbox_payload_renders_like_a_digest() -> None:
    from bot.digest import DigestItem

    items = [
        DigestItem("2611.00001", "T", ("A",), "cs.LG", "https://arxiv.org/abs/2611.00001", "w")
    ]
    reply = reply_for_payload(payload(items, heading="Your papers for 2026-11-16"))
    assert reply == digest_reply(items, heading="Your papers for 2026-11-16")


# --------------------------------------------------------------------------- schedule


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("08:30", (8, 30)),
        ("8:30", (8, 30)),
        ("0830", (8, 30)),
        ("8.30", (8, 30)),
        ("20h15", (20, 15)),
        ("8", (8, 0)),
        ("8am", (8, 0)),
        ("8:30 pm", (20, 30)),
        ("12am", (0, 0)),
        ("12pm", (12, 0)),
        ("noon", (12, 0)),
        ("24:00", None),
        ("13pm", None),
        ("8:60", None),
        ("soon", None),
        ("", None),
    ],
)
def test_parse_time(text: str, expected: tuple[int, int] | None) -> None:
    assert parse_time(text) == expected


def test_parse_days() -> None:
    assert parse_days("weekdays") == "01234"
    assert parse_days("Mon-Fri") == "01234"
    assert parse_days("fri-mon") == "0456"
    assert parse_days("mon, wed friday") == "024"
    assert parse_days("every day") == "0123456"
    assert parse_days("someday") is None
    assert describe_days("024") == "on Mon, Wed, Fri"


async def test_time_timezone_and_size(chat: FakeChat, db: Database) -> None:
    await chat.say("/start")
    assert "at 07:15, UTC time" in text_of(await chat.say("/time 7:15am"))
    assert "I need a time like 08:30" in text_of(await chat.say("/time 25:00"))
    berlin = text_of(await chat.say("/timezone berlin"))
    assert berlin.startswith("Time zone set: berlin → Europe/Berlin.")
    assert "It's 13:00 there now (UTC+01:00)" in berlin
    offset = text_of(await chat.say("/timezone UTC+2"))
    assert "Etc/GMT-2" in offset and "fixed offset" in offset
    half = text_of(await chat.say("/timezone UTC+05:30"))
    assert "no fixed-offset zone" in half and "Asia/Kolkata" in half
    assert "Did you mean Europe/Berlin" in text_of(await chat.say("/timezone berlni"))
    sub = subscribers.find(db, chat.platform, chat.chat_id)
    assert sub is not None and (sub.timezone, sub.digest_time) == ("Etc/GMT-2", "07:15")
    assert "Your time zone is Etc/GMT-2" in text_of(await chat.say("/timezone"))
    assert "up to 5 papers" in text_of(await chat.say("/size 5"))
    for bad in ("0", "31", "ten", "-1", "5.5"):
        assert "from 1 to 30" in text_of(await chat.say(f"/size {bad}")), bad


def test_timezone_resolution() -> None:
    assert timezones.resolve("new york").zone == "America/New_York"
    assert timezones.resolve("EUROPE/LONDON").zone == "Europe/London"
    assert timezones.resolve("São Paulo").zone == "America/Sao_Paulo"
    assert timezones.resolve("-3").zone == "Etc/GMT+3"
    assert timezones.resolve("GMT").zone == "UTC"
    assert timezones.resolve("PST").zone == "America/Los_Angeles"
    assert timezones.resolve("+15").zone is None
    assert timezones.resolve("Munich").zone == "Europe/Berlin"
    assert timezones.resolve("").zone is None


async def test_pause_resume_and_settings(chat: FakeChat, db: Database) -> None:
    await chat.say("/start")
    assert text_of(await chat.say("/pause")).startswith("Paused")
    assert text_of(await chat.say("/pause")).startswith("Already paused")
    overview = text_of(await chat.say("/settings"))
    assert "Status: paused" in overview and "Digest: 10 papers every day at 08:00 (UTC)" in overview
    assert "Ranking: level 2 of 3" in overview
    assert text_of(await chat.say("/resume")).startswith("Resumed")
    assert "level 3 of 3" in text_of(await chat.say("/settings trend more"))
    assert "already the end" in text_of(await chat.say("/settings trend more"))
    assert "level 0 of 3" in text_of(await chat.say("/settings trend 0"))
    sub = subscribers.find(db, chat.platform, chat.chat_id)
    assert sub is not None and sub.trend_weight == 0.0
    assert "level 1 of 3" in text_of(await chat.say("/settings trend more"))
    assert "/settings trend more" in text_of(await chat.say("/settings trend lots"))
    assert "on weekdays" in text_of(await chat.say("/settings days weekdays"))
    assert "Tell me the days" in text_of(await chat.say("/settings days someday"))
    assert "I can change" in text_of(await chat.say("/settings colour blue"))


# --------------------------------------------------------------------------- stop


async def test_stop_asks_then_deletes_everything(chat: FakeChat, db: Database) -> None:
    await chat.say("/start")
    await chat.say("/interests add diffusion")
    await chat.say("/digest")
    sid = subscriber_of(db, chat)
    question = await chat.say("/stop")
    assert [b.action for b in question.buttons] == [Action.CONFIRM_STOP, Action.CANCEL]
    cancelled = await chat.press(question, "Cancel")
    assert cancelled.edit and "still subscribed" in text_of(cancelled)
    done = await chat.press(question, "Yes, delete everything")
    assert done.edit and "everything I stored about it is deleted" in text_of(done)
    assert subscribers.find(db, chat.platform, chat.chat_id) is None
    assert deliveries.delivery_count(db, sid) == 0
    assert subscribers.profile(db, sid).keywords == []
    stale = await chat.press(question, "Yes, delete everything")
    assert stale.notice is not None and "out of date" in stale.notice


# --------------------------------------------------------------------------- search, trending


async def test_search_pages_with_buttons_that_edit(chat: FakeChat) -> None:
    first = await chat.say("/search diffusion")
    assert text_of(first).startswith("🔎 “diffusion”: 1–5 of 5")
    cards = [b for b in first.blocks if isinstance(b, PaperBlock)]
    assert [c.number for c in cards] == [1, 2, 3, 4, 5]
    assert cards[0].snippet and [b.label for b in cards[0].buttons] == ["👍", "🔖"]
    assert first.buttons == ()
    await chat.say("/start")
    await chat.say("/like 2611.00001")
    again = await chat.say("/search protein")
    assert "1–1 of 1" in text_of(again)
    assert [b.label for b in buttons_of(again)] == ["👍✓", "🔖"]


async def test_search_paging_and_expiry(db: Database) -> None:
    seed(db)
    papers.upsert_papers(db, [paper(f"2611.1{n:04d}", f"Diffusion study {n}") for n in range(9)])
    chat = FakeChat(make_router(db))
    first = await chat.say("/search diffusion")
    assert text_of(first).startswith("🔎 “diffusion”: 1–5 of 14 · page 1/3")
    [next_button] = first.buttons
    assert next_button.label == "Next ▶" and len(f"p:{next_button.target}".encode()) <= 64
    second = await chat.press(first, "Next ▶")
    assert second.edit and "6–10 of 14 · page 2/3" in text_of(second)
    assert [b.label for b in second.buttons] == ["◀ Prev", "Next ▶"]
    back = await chat.press(second, "◀ Prev")
    assert "1–5 of 14" in text_of(back)
    forgetful = FakeChat(make_router(db))
    expired = await forgetful.press(first, "Next ▶")
    assert expired.notice == "This search has expired; please send /search again."


async def test_search_edge_cases(chat: FakeChat) -> None:
    assert "Search for what?" in text_of(await chat.say("/search"))
    assert "Nothing matches" in text_of(await chat.say("/search zebras"))
    assert "too long" in text_of(await chat.say("/search " + "a" * 400))


async def test_trending_lists_papers_with_their_trend_line(chat: FakeChat) -> None:
    reply = await chat.say("/trending")
    assert text_of(reply).startswith("🔥 Trending on arXiv")
    cards = [b for b in reply.blocks if isinstance(b, PaperBlock)]
    assert cards[0].item.trend_line.startswith("🔥 HN")
    only_cv = await chat.say("/trending cs.cv")
    assert "in cs.CV (Computer Vision and Pattern Recognition)" in text_of(only_cv)
    assert {b.item.primary_category for b in only_cv.blocks if isinstance(b, PaperBlock)} == {
        "cs.CV"
    }
    assert "not an arXiv category" in text_of(await chat.say("/trending cooking"))
    assert "Nothing is trending in astro-ph.CO" in text_of(await chat.say("/trending astro-ph.CO"))


# --------------------------------------------------------------------------- feedback


async def test_buttons_record_feedback_and_show_the_choice(chat: FakeChat, db: Database) -> None:
    await chat.say("/start")
    await chat.say("/interests add diffusion")
    digest = await chat.say("/digest")
    first_id = next(b.item.arxiv_id for b in digest.blocks if isinstance(b, PaperBlock))
    sid = subscriber_of(db, chat)

    liked = await chat.press(digest, "👍", 0)
    assert is_button_update(liked) and liked.notice == "👍 Noted: more like this."
    assert [b.label for b in liked.buttons] == ["👍✓", "👎", "🔖"]
    assert {b.target for b in liked.buttons} == {first_id}
    assert feedback.get(db, sid, first_id).rating == 1  # type: ignore[union-attr]

    disliked = await chat.press(digest, "👎", 0)
    assert [b.label for b in disliked.buttons] == ["👍", "👎✓", "🔖"]
    cleared = await chat.press(digest, "👎", 0)
    assert cleared.notice == "Rating removed." and [b.label for b in cleared.buttons][:2] == [
        "👍",
        "👎",
    ]
    saved = await chat.press(digest, "🔖", 0)
    assert saved.notice == "🔖 Saved: find it in /saved." and saved.buttons[2].label == "🔖✓"
    listed = await chat.say("/saved")
    assert text_of(listed).startswith("🔖 Saved papers (1)")
    assert [b.label for b in buttons_of(listed)] == ["👍", "👎", "🔖✓"]
    unsaved = await chat.press(listed, "🔖")
    assert unsaved.notice == "Removed from /saved."
    assert "Nothing saved yet" in text_of(await chat.say("/saved"))


async def test_forged_or_stale_buttons_are_answered(chat: FakeChat) -> None:
    await chat.say("/start")
    base = chat.command("")
    for action, target in [(Action.LIKE, "not-an-id"), (None, "x"), (Action.PAGE, "zz:nope")]:
        command = Command(**{**base.__dict__, "name": "button", "action": action, "target": target})
        reply = await chat.send(command)
        assert reply.notice, (action, target)


async def test_like_seeds_the_profile(chat: FakeChat, db: Database) -> None:
    await chat.say("/start")
    sid = subscriber_of(db, chat)
    known = text_of(await chat.say("/like https://arxiv.org/abs/2611.00003v2"))
    assert known.startswith("👍 noted for “Graph neural networks at scale” (2611.00003)")
    unknown = text_of(await chat.say("/like 1706.03762"))
    assert "don't have that paper in my archive yet" in unknown
    assert feedback.ratings(db, [sid])[sid] == {"2611.00003": 1, "1706.03762": 1}
    by_title = text_of(await chat.say("/like graph neural networks at scale"))
    assert by_title.startswith("👍 noted for “Graph neural networks at scale”")
    choices = await chat.say("/like diffusion")
    assert text_of(choices).startswith("Which one do you mean?")
    picked = await chat.press(choices, "👍", 1)
    assert picked.notice == "👍 Noted: more like this."
    assert "couldn't find" in text_of(await chat.say("/like zebra crossings"))
    assert "Tell me a paper" in text_of(await chat.say("/like"))


async def test_export_has_profile_feedback_and_saved(chat: FakeChat) -> None:
    await chat.say("/start")
    await chat.say("/interests add diffusion")
    await chat.say("/follow Yoshua Bengio")
    digest = await chat.say("/digest")
    await chat.press(digest, "👍", 0)
    await chat.press(digest, "🔖", 1)
    reply = await chat.say("/export")
    document = reply.extra["document"]
    assert isinstance(document, dict)
    data = json.loads(str(document["content"]))
    assert data["interests"]["keywords"] == ["diffusion"]
    assert data["interests"]["authors"] == ["Yoshua Bengio"]
    assert sorted(row["rating"] for row in data["feedback"]) == [0, 1]
    assert len(data["saved"]) == 1 and data["settings"]["digest_time"] == "08:00"
    assert isinstance(reply.blocks[-1], TextBlock) and reply.blocks[-1].text == document["content"]


# --------------------------------------------------------------------------- groups


async def test_in_groups_only_admins_change_settings(router: CommandRouter, db: Database) -> None:
    admin = FakeChat(router, chat_id="-100500", user_id="1", kind=ChatKind.GROUP, admin=True)
    member = admin.member("2")
    assert "Only this group's admins" in text_of(await member.say("/start"))
    assert "this group" in text_of(await admin.say("/start"))
    for typed in (
        "/interests add x",
        "/time 09:00",
        "/size 3",
        "/pause",
        "/digest",
        "/stop",
        "/categories cs.LG",
        "/settings trend more",
        "/export",
    ):
        assert text_of(await member.say(typed)) == (
            "Only this group's admins can change its settings. Anyone can use /search, "
            "/trending and /help."
        ), typed
    assert text_of(await member.say("/search diffusion")).startswith("🔎")
    assert text_of(await member.say("/trending")).startswith("🔥")
    assert "only admins change settings" in text_of(await member.say("/help"))
    assert "Settings" in text_of(await member.say("/settings"))
    question = await admin.say("/stop")
    refused = await member.press(question, "Yes, delete everything")
    assert refused.notice == "Only this group's admins can do that."
    assert subscribers.find(db, Platform.TELEGRAM, "-100500") is not None
    assert "Added" in text_of(await admin.say("/interests add x"))


# --------------------------------------------------------------------------- failures and limits


async def test_unexpected_errors_become_a_polite_reply_and_a_log_line(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    def broken_search(*args: object, **kwargs: object) -> object:
        raise RuntimeError("index on fire")

    chat = FakeChat(make_router(db, search=broken_search))
    with caplog.at_level(logging.ERROR, logger="bot.commands"):
        reply = await chat.say("/search diffusion")
    assert text_of(reply) == SORRY
    [record] = [r for r in caplog.records if r.getMessage() == "command failed"]
    assert (record.chat_id, record.command) == ("1001", "search")  # type: ignore[attr-defined]
    assert record.exc_info is not None and "index on fire" in str(record.exc_info[1])
    press = Command(
        platform=Platform.TELEGRAM,
        chat_id="1001",
        user_id="1001",
        name="button",
        action=Action.PAGE,
        target="2:" + "0" * 12,
    )
    router = make_router(db, search=broken_search)
    router._queries.put("x")
    key = router._queries.put("diffusion")
    reply = await router.handle(Command(**{**press.__dict__, "target": f"2:{key}"}))
    assert reply.notice == SORRY and not reply.blocks


async def test_storage_failure_is_contained(db: Database) -> None:
    chat = FakeChat(make_router(db))
    with db.engine.begin() as connection:
        connection.execute(text("DROP TABLE interest"))
    reply = await chat.say("/start")
    assert "Welcome" in text_of(reply)
    assert text_of(await chat.say("/interests add x")) == SORRY


async def test_per_user_limit_answers_once_then_stays_quiet(db: Database) -> None:
    clock = Ticker()
    router = make_router(db, throttle=Throttle(20, 60.0, clock=clock))
    chat = FakeChat(router)
    for _ in range(20):
        assert text_of(await chat.say("/help"))
    refused = await chat.say("/help")
    assert text_of(refused).startswith("You're sending commands faster than I can answer them.")
    assert "wait 3 seconds" in text_of(refused)
    assert await chat.say("/help") == Reply()
    other = FakeChat(router, chat_id="2", user_id="2")
    assert text_of(await other.say("/help"))
    clock.now += 3.0
    assert text_of(await chat.say("/help")).startswith("Trending Papers")


def test_throttle_refills_and_forgets_old_keys() -> None:
    clock = Ticker()
    throttle = Throttle(2, 10.0, clock=clock, max_keys=2)
    assert throttle.check("a").allowed and throttle.check("a").allowed
    refused = throttle.check("a")
    assert not refused.allowed and refused.first_refusal and refused.retry_after == 5.0
    assert not throttle.check("a").first_refusal
    clock.now += 5.0
    assert throttle.check("a").allowed
    throttle.check("b")
    throttle.check("c")
    assert len(throttle) == 2


# --------------------------------------------------------------------------- fuzz


@pytest.fixture(scope="module")
def fuzz_router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CommandRouter]:
    from storage.migrate import upgrade

    db = Database(f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'fuzz.db'}")
    upgrade(db)
    seed(db)
    router = make_router(db, throttle=Throttle(10**9, 1.0))
    asyncio.run(router.handle(FakeChat(router).command("/start")))
    yield router
    db.dispose()


NAMES = [spec.name for spec in COMMANDS] + ["", "button", "unknown", "HELP", "/start"]


@pytest.mark.parametrize("name", NAMES)
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(args=st.text(max_size=300) | st.sampled_from(["add", "remove x", "trend", "days", "-"]))
def test_every_command_answers_any_argument(
    fuzz_router: CommandRouter, name: str, args: str
) -> None:
    chat = FakeChat(fuzz_router, kind=ChatKind.USER)
    command = Command(**{**chat.command("").__dict__, "name": name, "args": args})
    if name == "stop":
        command = Command(**{**command.__dict__, "name": "help"})  # keep the subscriber
    reply = asyncio.run(fuzz_router.handle(command))
    assert isinstance(reply, Reply)
    assert reply.blocks or reply.notice
    assert SORRY not in reply.plain_text


@settings(max_examples=200, deadline=None)
@given(
    action=st.sampled_from([*Action, None]),
    target=st.text(max_size=80),
)
def test_every_button_answers_any_target(
    fuzz_router: CommandRouter, action: Action | None, target: str
) -> None:
    command = Command(
        platform=Platform.TELEGRAM,
        chat_id="1001",
        user_id="1001",
        name="button",
        action=action,
        target=target,
    )
    if action == Action.CONFIRM_STOP:
        target = "not-the-subscriber"
        command = Command(**{**command.__dict__, "target": target})
    reply = asyncio.run(fuzz_router.handle(command))
    assert isinstance(reply, Reply) and (reply.notice or reply.blocks)
    assert SORRY not in (reply.notice or "")


# --------------------------------------------------------------------------- real collaborators


async def test_the_real_search_and_trending_plug_in(db: Database) -> None:
    pytest.importorskip("storage.search")
    pytest.importorskip("bot.trend")
    seed(db)
    papers.upsert_papers(db, [paper(f"2611.1{n:04d}", f"Diffusion study {n}") for n in range(6)])
    router = CommandRouter(db, Settings(), clock=lambda: NOW, throttle=Throttle(1000, 60.0))
    chat = FakeChat(router)
    await chat.say("/start")
    first = await chat.say("/search diffusion")
    assert text_of(first).startswith("🔎 “diffusion”: 1–5 of 11 · page 1/3")
    cards = [b for b in first.blocks if isinstance(b, PaperBlock)]
    assert all(any(highlighted for _, highlighted in c.snippet) for c in cards)
    second = await chat.press(first, "Next ▶")
    assert second.edit and "6–10 of 11" in text_of(second)
    assert "No papers match “zebra”" in text_of(await chat.say("/search zebra"))
    assert "Type what to look for" in text_of(await chat.say('/search ""'))
    liked = text_of(await chat.say("/like graph neural networks at scale"))
    assert liked.startswith("👍 noted for “Graph neural networks at scale” (2611.00003)")
    assert text_of(await chat.say("/trending")).startswith(("🔥", "Nothing is trending"))


async def test_a_suggested_query_becomes_a_button(db: Database) -> None:
    seed(db)

    def suggesting(database: Database, query: str, **kwargs: object) -> object:
        page = substring_search(database, query, **kwargs)  # type: ignore[arg-type]
        return page if page.hits else replace(page, suggestion="diffusion")

    chat = FakeChat(make_router(db, search=suggesting))
    reply = await chat.say("/search diffusoin")
    assert [b.label for b in reply.buttons] == ["🔎 “diffusion”"]
    found = await chat.press(reply, "🔎 “diffusion”")
    assert found.edit and text_of(found).startswith("🔎 “diffusion”: 1–5 of 5")


async def test_digest_builder_uses_the_schedulers_trend_input(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    seed(db)
    asked: list[int] = []

    def provider(database: Database, ids: object, now: datetime) -> tuple[dict, dict]:
        asked.append(len(list(ids)))  # type: ignore[call-overload]
        return {"2611.00002": 5.0}, {"2611.00002": "🔥 HN 312 pts"}

    chat = FakeChat(make_router(db, digest=digest_builder(Settings(), provider)))
    await chat.say("/start")
    await chat.say("/interests add diffusion")
    reply = await chat.say("/digest")
    lines = {b.item.arxiv_id: b.item.trend_line for b in reply.blocks if isinstance(b, PaperBlock)}
    assert asked == [7] and lines["2611.00002"] == "🔥 HN 312 pts"

    def broken(database: Database, ids: object, now: datetime) -> tuple[dict, dict]:
        raise RuntimeError("no engagement today")

    other = FakeChat(make_router(db, digest=digest_builder(Settings(), broken)), chat_id="9")
    await other.say("/start")
    await other.say("/interests add diffusion")
    with caplog.at_level(logging.ERROR, logger="bot.commands"):
        assert text_of(await other.say("/digest")).startswith("Your papers for")
    assert "trend scores unavailable" in caplog.text


class WatchedDigest(ServiceDigest):
    """The service's ``/digest`` builder, noting the thread and outcome of every attempt."""

    def __init__(self, trend: TrendProvider) -> None:
        super().__init__(Settings(), trend)
        self.attempts: list[tuple[int, str]] = []

    def __call__(self, db: Database, subscriber: Subscriber, now: datetime) -> DigestOutcome:
        try:
            outcome = super().__call__(db, subscriber, now)
        except NotWarm:
            self.attempts.append((threading.get_ident(), "not warm"))
            raise
        self.attempts.append((threading.get_ident(), "built"))
        return outcome


def thread_noting_trend(
    threads: list[int], scores: dict[str, float], lines: dict[str, str]
) -> TrendProvider:
    """A trend provider answering ``scores`` and ``lines``, noting the thread of every call."""

    def provider(database: Database, ids: object, now: datetime) -> tuple[dict, dict]:
        threads.append(threading.get_ident())
        return scores, lines

    return provider


async def test_heavy_commands_run_on_the_loop_for_sqlite_and_in_threads_for_postgresql(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    seed(db)
    searches: list[int] = []
    trend_calls: list[int] = []
    hn = thread_noting_trend(trend_calls, {"2611.00002": 5.0}, {"2611.00002": "🔥 HN 312 pts"})
    digest = WatchedDigest(hn)

    def search(database: Database, query: str, **options: Any) -> object:
        searches.append(threading.get_ident())
        return substring_search(database, query, **options)

    chat = FakeChat(make_router(db, digest=digest, search=search))
    other = FakeChat(make_router(db, digest=digest, search=search), chat_id="99")
    for user in (chat, other):
        await user.say("/start")
        await user.say("/interests add diffusion")
    with caplog.at_level(logging.DEBUG, logger="bot.commands"):
        assert text_of(await chat.say("/digest")).startswith("Your papers for")
        first = list(digest.attempts)
        digest.attempts.clear()
        reply = await other.say("/digest")
    lines = {b.item.arxiv_id: b.item.trend_line for b in reply.blocks if isinstance(b, PaperBlock)}
    assert lines["2611.00002"] == "🔥 HN 312 pts"  # the shared trend scores
    assert "Diffusion" in text_of(await chat.say("/search diffusion"))
    assert "trend scores unavailable" not in caplog.text
    loop = threading.get_ident()
    worker = first[-1][0]
    assert worker != loop and first[-1][1] == "built"
    if db.dialect == "sqlite":
        # All in-process work: a thread would only contend with the event loop for the GIL,
        # but loading the fresh papers, their index and the trend scores must not stall it.
        assert first == [(loop, "not warm"), (worker, "built")]
        assert "building it in a worker thread" in caplog.text
        assert digest.attempts == [(loop, "built")] and searches == [loop]
    else:
        # Waiting on the server: other chats' commands go on meanwhile.
        assert first == [(worker, "built")]
        assert digest.attempts[0][0] != loop and searches[0] != loop
    assert trend_calls == [worker]  # computed once, by the thread, and shared


async def test_warm_up_loads_what_the_first_digest_needs(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    seed(db)
    calls: list[int] = []
    digest = WatchedDigest(thread_noting_trend(calls, {}, {}))
    router = make_router(db, digest=digest)
    with caplog.at_level(logging.INFO, logger="bot.commands"):
        await router.warm_up()
    assert "digest papers, index and trend scores loaded" in caplog.text
    assert calls and calls[0] != threading.get_ident()  # loaded in a worker thread
    chat = FakeChat(router)
    await chat.say("/start")
    await chat.say("/interests add diffusion")
    assert text_of(await chat.say("/digest")).startswith("Your papers for")
    cold = [attempt for attempt in digest.attempts if attempt[1] == "not warm"]
    assert cold == [] and len(calls) == 1  # the first /digest found everything loaded


class BrokenWarmUp(ServiceDigest):
    """A builder whose loading ahead of commands fails."""

    def warm_up(self, db: Database, now: datetime) -> None:
        raise RuntimeError("disk on fire")


async def test_a_failed_warm_up_is_logged_and_commands_still_work(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    seed(db)
    router = make_router(db, digest=BrokenWarmUp(Settings()))
    with caplog.at_level(logging.WARNING, logger="bot.commands"):
        await router.warm_up()
    assert "could not load the digest's papers ahead of commands" in caplog.text
    chat = FakeChat(router)
    await chat.say("/start")
    await chat.say("/interests add diffusion")
    assert text_of(await chat.say("/digest")).startswith("Your papers for")


# --------------------------------------------------------------------------- terminal chat


async def test_terminal_chat_runs_commands_and_presses_buttons(db: Database) -> None:
    seed(db)
    lines = iter(["/start", "/interests add diffusion", "/digest", "!1", "!99", "", "quit"])
    buffer = io.StringIO()
    console = Console(file=buffer, width=120, color_system=None)
    answered = await repl(make_router(db), console, read=lambda prompt: next(lines))
    out = buffer.getvalue()
    assert answered == 4
    assert "Welcome to Trending Papers" in out and "Your papers for 2026-11-16" in out
    assert "[1] 👍" in out and "» 👍 Noted: more like this." in out and "now: 👍✓" in out
    assert "No button 99." in out


def test_chat_command_is_registered(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    app = typer.Typer()
    register(app)

    @app.command()
    def other() -> None:
        """Keeps typer from collapsing a single command into the root."""

    url = f"sqlite:///{tmp_path / 'chat.db'}"
    result = CliRunner().invoke(app, ["chat", "--database", url], input="/start\n/help\n")
    assert result.exit_code == 0, result.output
    assert "Welcome to Trending Papers" in result.output and "/search <query>" in result.output
