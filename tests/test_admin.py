"""Bot admins: ``TP_ADMIN_IDS``, ``/stats`` and ``/announce`` (through the outbox, opt-out kept)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError
from telegram import Bot

from bot.admin import AdminIds, announce
from bot.chat.telegram import TelegramSender, build_application, start_telegram, stop_telegram
from bot.commands import CommandRouter, menu_commands
from bot.config import Settings
from bot.delivery import DeliveryWorker
from bot.ratelimit import TELEGRAM_LIMITS, ChatRateLimiter
from bot.throttle import Throttle
from storage import cursors, deliveries, outbox, subscribers
from storage.db import Database
from storage.models import OUTBOX, ChatKind, OutboxStatus, Platform
from tests.fakes.chat import FakeChat, newest_as_trending, substring_search
from tests.fakes.telegram_api import FakeTelegram

NOW = datetime(2026, 11, 16, 12, 0, tzinfo=UTC)
ADMIN, READER = "424242", "1001"


def make_router(db: Database, admins: str = f"telegram:{ADMIN},slack:U0ADMIN001") -> CommandRouter:
    return CommandRouter(
        db,
        Settings(admin_ids=admins),  # type: ignore[arg-type]
        clock=lambda: NOW,
        search=substring_search,
        trending=newest_as_trending,
        throttle=Throttle(1000, 60.0),
    )


def text_of(reply: object) -> str:
    blocks = getattr(reply, "blocks", ())
    return "\n".join(getattr(block, "text", "") for block in blocks)


def chats(router: CommandRouter) -> tuple[FakeChat, FakeChat]:
    admin = FakeChat(router, chat_id=ADMIN, user_id=ADMIN, display_name="Grace")
    reader = FakeChat(router, chat_id=READER, user_id=READER)
    return admin, reader


# --------------------------------------------------------------------------- who is an admin


def test_admin_ids_match_per_platform() -> None:
    admins = AdminIds(["telegram:42", "slack:U0ADMIN001", "slack:T0OTHER:U0BOSS0001"])
    assert admins.allows(Platform.TELEGRAM, "42")
    assert not admins.allows(Platform.SLACK, "42")  # the same number on another platform
    assert not admins.allows(Platform.TELEGRAM, "U0ADMIN001")
    assert admins.allows(Platform.SLACK, "T0LAB:U0ADMIN001")  # a bare member id: any workspace
    assert admins.allows(Platform.SLACK, "T0OTHER:U0BOSS0001")
    assert not admins.allows(Platform.SLACK, "T0LAB:U0BOSS0001")  # only in its own workspace
    assert not AdminIds()


@pytest.mark.parametrize("bad", ["42", "tg:42", "telegram:", "telegram:ada", "slack"])
def test_a_malformed_admin_id_stops_start_up_with_the_expected_form(bad: str) -> None:
    with pytest.raises(ValidationError, match="telegram:123456789"):
        Settings(admin_ids=bad)  # type: ignore[arg-type]


def test_admin_ids_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TP_ADMIN_IDS", "telegram:42, slack:U0ADMIN001")
    assert Settings().admin_ids == ["telegram:42", "slack:U0ADMIN001"]


async def test_non_admins_are_not_allowed_and_nothing_is_queued(db: Database) -> None:
    router = make_router(db)
    _, reader = chats(router)
    await reader.say("/start")
    for text in ("/stats", "/announce hello everyone"):
        reply = await reader.say(text)
        assert "not allowed" in text_of(reply)
        assert "only for this bot's admins" in text_of(reply)
    assert outbox.counts(db) == {}
    # Without any TP_ADMIN_IDS nobody is an admin, not even a chat's owner.
    nobody = FakeChat(make_router(db, admins=""), chat_id=ADMIN, user_id=ADMIN)
    assert "not allowed" in text_of(await nobody.say("/stats"))


async def test_help_shows_admin_commands_to_admins_only(db: Database) -> None:
    admin, reader = chats(make_router(db))
    assert "/announce <text>" in text_of(await admin.say("/help"))
    assert "/announce" not in text_of(await reader.say("/help"))
    assert "/stats" in text_of(await admin.say("/help stats"))
    assert all(name not in ("stats", "announce") for name, _ in menu_commands())


# --------------------------------------------------------------------------- /stats


async def test_stats_counts_subscribers_digests_today_and_source_health(db: Database) -> None:
    router = make_router(db)
    admin, reader = chats(router)
    await reader.say("/start")
    paused = FakeChat(router, chat_id="2002", user_id="2002")
    await paused.say("/start")
    await paused.say("/pause")
    slack = FakeChat(router, platform=Platform.SLACK, chat_id="D0SLACK01", user_id="T0:U0X")
    await slack.say("/start")
    gone, _ = subscribers.get_or_create(db, Platform.TELEGRAM, "3003")
    assert gone.id is not None
    subscribers.update(db, gone.id, active=False)
    # Two digests sent today, one yesterday, one still waiting.
    reader_sub = subscribers.find(db, Platform.TELEGRAM, READER)
    assert reader_sub is not None and reader_sub.id is not None
    for n, sent_at in enumerate([NOW - timedelta(hours=1), NOW - timedelta(hours=2),
                                 NOW - timedelta(days=1), None]):  # fmt: skip
        recorded = deliveries.record_digest(
            db, reader_sub.id, [], payload={"heading": "x", "items": []}
        )
        key = f"test:{n}"
        message = outbox.enqueue(db, reader_sub.id, {"heading": "x", "items": []}, key=key, now=NOW)
        assert message is not None
        with db.engine.begin() as connection:
            connection.execute(
                OUTBOX.update().where(OUTBOX.c.id == message).values(digest_id=recorded.digest_id)
            )
        if sent_at is not None:
            outbox.mark_sent(db, message, platform_message_id=str(n), now=sent_at)
    cursors.record_success(db, "arxiv:rss:cs.LG", now=NOW - timedelta(minutes=30))
    cursors.record_failure(db, "hackernews", "HTTP 503 from the Algolia API", now=NOW)
    cursors.record_failure(db, "hackernews", "HTTP 503 from the Algolia API", now=NOW)

    reply = text_of(await admin.say("/stats"))
    assert reply.startswith("Bot stats")
    assert "telegram: 1 active, 1 paused, 1 unreachable" in reply
    assert "slack: 1 active, 0 paused, 0 unreachable" in reply
    assert "Digests sent today (UTC): 2 (telegram 2)" in reply
    assert "Outbox: 1 waiting, 0 failed" in reply
    assert "arxiv:rss:cs.LG: ok 30 min ago" in reply
    assert "hackernews: never succeeded; 2 failures in a row (HTTP 503" in reply


async def test_stats_on_an_empty_database(db: Database) -> None:
    admin, _ = chats(make_router(db))
    reply = text_of(await admin.say("/stats"))
    assert "Subscribers:\n  none yet" in reply
    assert "Digests sent today (UTC): 0" in reply
    assert "none polled yet" in reply


# --------------------------------------------------------------------------- /announce


async def test_announce_queues_one_message_per_chat_and_respects_the_opt_out(
    db: Database,
) -> None:
    router = make_router(db)
    admin, reader = chats(router)
    quiet = FakeChat(router, chat_id="2002", user_id="2002")
    for chat in (admin, reader, quiet):
        await chat.say("/start")
    assert "no more announcements" in text_of(await quiet.say("/settings announcements off"))
    assert "Announcements: off" in text_of(await quiet.say("/settings"))
    blocked, _ = subscribers.get_or_create(db, Platform.TELEGRAM, "3003")
    assert blocked.id is not None
    subscribers.update(db, blocked.id, active=False)

    reply = text_of(await admin.say("/announce Maintenance tonight:\n  back by 22:00 UTC."))
    assert reply.startswith("📣 Queued for 2 chats; 1 turned announcements off; 1 unreachable.")
    pending = outbox.pending(db)
    assert sorted(subscribers.get(db, m.subscriber_id).chat_id for m in pending) == [  # type: ignore[union-attr]
        READER,
        ADMIN,
    ]
    assert {m.payload["text"] for m in pending} == {"Maintenance tonight:\nback by 22:00 UTC."}
    assert {m.payload["author"] for m in pending} == {"Grace"}

    again = text_of(await admin.say("/announce Maintenance tonight:\n  back by 22:00 UTC."))
    assert again.startswith("Already announced today: all 2 chats")
    assert len(outbox.pending(db)) == 2

    await quiet.say("/settings announcements on")
    back = text_of(await admin.say("/announce Maintenance tonight:\n  back by 22:00 UTC."))
    assert back.startswith("📣 Queued for 1 chat; 1 unreachable; 2 already had it.")
    assert len(outbox.pending(db)) == 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/announce", "Write the message after the command"),
        ("/announce   \u200b  ", "Write the message after the command"),
        ("/announce " + "x" * 3600, "keep an announcement under 3,500"),
        ("/settings announcements maybe", "/settings announcements off"),
    ],
)
async def test_bad_announce_input_gets_one_clear_line(
    sqlite_db: Database, text: str, expected: str
) -> None:
    admin, _ = chats(make_router(sqlite_db))
    await admin.say("/start")
    assert expected in text_of(await admin.say(text))
    assert outbox.pending(sqlite_db) == []


async def test_only_admins_of_a_group_turn_its_announcements_off(sqlite_db: Database) -> None:
    router = make_router(sqlite_db)
    owner = FakeChat(router, chat_id="-100", user_id="7", kind=ChatKind.GROUP, admin=True)
    await owner.say("/start")
    member = owner.member(user_id="8", admin=False)
    assert "Only this group's admins" in text_of(await member.say("/settings announcements off"))
    sub = subscribers.find(sqlite_db, Platform.TELEGRAM, "-100")
    assert sub is not None and sub.announcements


def test_announce_to_many_chats_is_one_bulk_insert(db: Database) -> None:
    for n in range(1200):
        subscribers.get_or_create(db, Platform.TELEGRAM, f"chat{n}")
    result = announce(db, "Hello, everyone.", NOW)
    assert (result.queued, result.opted_out, result.already_sent, result.unreachable) == (
        1200, 0, 0, 0)  # fmt: skip
    assert outbox.counts(db) == {OutboxStatus.PENDING.value: 1200}


# --------------------------------------------------------------------------- end to end


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        yield fake


async def test_an_admin_announces_over_telegram_and_the_worker_delivers_it(
    telegram: FakeTelegram, sqlite_db: Database
) -> None:
    """/announce through the real Application, then the outbox through the real sender."""
    boss, reader, quiet = (telegram.new_user(name) for name in ("Grace", "Ada", "Lin"))
    settings = Settings(
        telegram_token=telegram.token,  # type: ignore[arg-type]
        telegram_api_base_url=telegram.base_url,
        admin_ids=f"telegram:{boss.id}",  # type: ignore[arg-type]
    )
    router = CommandRouter(sqlite_db, settings, clock=lambda: NOW, throttle=Throttle(1000, 60.0))
    app = build_application(settings, router)
    await start_telegram(app)
    try:
        for user in (boss, reader, quiet):
            chat = telegram.private_chat(user)
            mark = len(telegram.calls)
            telegram.user_sends(chat, user, "/start")
            await telegram.wait_for_message(chat.id, since=mark)
        quiet_chat = telegram.private_chat(quiet)
        mark = len(telegram.calls)
        telegram.user_sends(quiet_chat, quiet, "/settings announcements off")
        await telegram.wait_for_message(quiet_chat.id, since=mark)

        reader_chat = telegram.private_chat(reader)
        mark = len(telegram.calls)
        telegram.user_sends(reader_chat, reader, "/announce I am not an admin")
        refused = await telegram.wait_for_message(reader_chat.id, since=mark)
        assert "not allowed" in refused.plain_text

        boss_chat = telegram.private_chat(boss)
        mark = len(telegram.calls)
        telegram.user_sends(boss_chat, boss, "/announce New <b>server</b> & more papers")
        queued = await telegram.wait_for_message(boss_chat.id, since=mark)
        assert queued.plain_text.startswith("📣 Queued for 2 chats")
    finally:
        await stop_telegram(app)

    async with Bot(telegram.token, base_url=telegram.base_url) as client:
        limiter = ChatRateLimiter(TELEGRAM_LIMITS)
        worker = DeliveryWorker(
            sqlite_db, {Platform.TELEGRAM: TelegramSender(client)},
            limiters={Platform.TELEGRAM: limiter}, now=lambda: NOW,
        )  # fmt: skip
        report = await worker.run_once()
    assert (report.sent, report.failed) == (2, 0)
    for user in (boss, reader):
        [announcement] = [
            m for m in telegram.sent_messages(telegram.private_chat(user).id)
            if m.plain_text.startswith("📣 Announcement")
        ]  # fmt: skip
        assert "New <b>server</b> & more papers" in announcement.plain_text  # escaped, not markup
        assert "/settings announcements off" in announcement.plain_text
    assert not any(
        m.plain_text.startswith("📣 Announcement") for m in telegram.sent_messages(quiet_chat.id)
    )
    assert outbox.counts(sqlite_db) == {OutboxStatus.SENT.value: 2}
