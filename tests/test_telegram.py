"""The real python-telegram-bot Application against the fake Bot API server, end to end."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from telegram import Bot, Message
from telegram.error import RetryAfter
from telegram.ext import Application

from bot.chat.sender import PermanentDeliveryError, RetryLater, TransientDeliveryError
from bot.chat.telegram import (
    TelegramSender,
    build_application,
    file_url_for,
    parse_command,
    start_telegram,
    stop_telegram,
    telegram_webhook_route,
    webhook_path,
)
from bot.commands import CommandRouter, menu_commands
from bot.config import Settings
from bot.delivery import DeliveryWorker
from bot.digest import DigestItem, payload
from bot.ratelimit import TELEGRAM_LIMITS, ChatRateLimiter
from bot.throttle import Throttle
from storage import feedback, outbox, papers, subscribers
from storage.db import Database
from storage.models import ChatKind, Platform, Subscriber
from tests.fakes import RecordedCall
from tests.fakes.chat import newest_as_trending, paper, substring_search
from tests.fakes.telegram_api import FakeTelegram, TgChat, TgMessage, TgUser, parse_html

NOW = datetime(2026, 11, 16, 12, 0, tzinfo=UTC)
SECRET = "s3cret-token_for-tests"


def seed(db: Database) -> None:
    papers.upsert_papers(
        db,
        [
            paper("2611.00001", "Diffusion models for protein design"),
            paper("2611.00002", "Faster diffusion models with distillation", category="cs.CV"),
            paper("2611.00003", "Graph neural networks at scale"),
            *[paper(f"2611.1{n:04d}", f"Diffusion study number {n}") for n in range(8)],
        ],
        now=NOW,
    )


def settings_for(fake: FakeTelegram, **extra: object) -> Settings:
    return Settings(
        telegram_token=fake.token,  # type: ignore[arg-type]
        telegram_api_base_url=fake.base_url,
        **extra,  # type: ignore[arg-type]
    )


def router_for(db: Database) -> CommandRouter:
    return CommandRouter(
        db,
        Settings(),
        clock=lambda: NOW,
        search=substring_search,
        trending=newest_as_trending,
        throttle=Throttle(1000, 60.0),
    )


@dataclass
class Bot_:
    fake: FakeTelegram
    app: Application
    db: Database

    async def say(self, chat: TgChat, user: TgUser, text: str) -> TgMessage:
        """The user writes; returns the bot's first answer in that chat."""
        mark = len(self.fake.calls)
        self.fake.user_sends(chat, user, text)
        return await self.fake.wait_for_message(chat.id, since=mark)

    async def press(
        self, chat: TgChat, user: TgUser, message: TgMessage, data: str, method: str
    ) -> RecordedCall:
        """The user presses a button; returns the bot's call of ``method`` in answer."""
        mark = len(self.fake.calls)
        self.fake.user_presses(chat, user, message.message_id, data)
        return await self.fake.wait_for(lambda c: c.method == method and c.ok, since=mark)


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        yield fake


@pytest.fixture
async def bot(telegram: FakeTelegram, sqlite_db: Database) -> AsyncIterator[Bot_]:
    seed(sqlite_db)
    app = build_application(settings_for(telegram), router_for(sqlite_db))
    await start_telegram(app)
    try:
        yield Bot_(telegram, app, sqlite_db)
    finally:
        await stop_telegram(app)


# --------------------------------------------------------------------------- conversation


async def test_a_new_user_subscribes_adds_interests_reads_and_rates(bot: Bot_) -> None:
    fake = bot.fake
    user = fake.new_user("Ada")
    chat = fake.private_chat(user)

    welcome = await bot.say(chat, user, "/start")
    assert welcome.plain_text.startswith("Welcome to Trending Papers!")
    assert welcome.parse_mode == "HTML"
    added = await bot.say(chat, user, "/interests add diffusion models")
    assert added.plain_text == "Added “diffusion models”."

    digest = await bot.say(chat, user, "/digest")
    assert digest.plain_text.startswith("Your papers for 2026-11-16")
    assert digest.params["link_preview_options"] == {"is_disabled": True}
    assert digest.entities[1]["type"] == "bold"  # the paper number; the heading is entity 0
    assert any(e["type"] == "text_link" for e in digest.entities)
    data = digest.callback_data()
    first = data[0].removeprefix("l:")  # whichever paper ranks first
    assert data[:3] == [f"l:{first}", f"d:{first}", f"s:{first}"]
    assert [b["text"] for b in digest.buttons()][:3] == ["1 👍", "1 👎", "1 🔖"]

    await bot.press(chat, user, digest, data[0], "editMessageReplyMarkup")
    answer = fake.calls_to("answerCallbackQuery")[-1]
    assert answer.params["text"] == "👍 Noted: more like this."
    stored = fake.message(chat.id, digest.message_id)
    assert [b["text"] for b in stored.buttons()][:3] == ["1 👍✓", "1 👎", "1 🔖"]
    assert stored.plain_text == digest.plain_text  # only the buttons changed
    sub = subscribers.find(bot.db, Platform.TELEGRAM, str(chat.id))
    assert sub is not None and sub.id is not None
    assert feedback.get(bot.db, sub.id, first).rating == 1  # type: ignore[union-attr]


async def test_search_pages_by_editing_the_same_message(bot: Bot_) -> None:
    user = bot.fake.new_user()
    chat = bot.fake.private_chat(user)
    results = await bot.say(chat, user, "/search diffusion")
    assert results.plain_text.startswith("🔎 “diffusion”: 1–5 of 10 · page 1/2")
    [next_page] = [d for d in results.callback_data() if d.startswith("p:")]
    edit = await bot.press(chat, user, results, next_page, "editMessageText")
    assert edit.params["message_id"] == results.message_id
    page_two = bot.fake.message(chat.id, results.message_id)
    assert "6–10 of 10 · page 2/2" in page_two.plain_text
    assert any(d.startswith("p:1:") for d in page_two.callback_data())


async def test_stop_confirmation_removes_the_keyboard(bot: Bot_) -> None:
    user = bot.fake.new_user()
    chat = bot.fake.private_chat(user)
    await bot.say(chat, user, "/start")
    question = await bot.say(chat, user, "/stop")
    await bot.press(chat, user, question, question.callback_data()[0], "editMessageText")
    done = bot.fake.message(chat.id, question.message_id)
    assert done.plain_text.startswith("Done: this chat is unsubscribed")
    assert done.reply_markup is None
    assert subscribers.find(bot.db, Platform.TELEGRAM, str(chat.id)) is None


async def test_unknown_commands_and_plain_text_get_a_hint(bot: Bot_) -> None:
    user = bot.fake.new_user()
    chat = bot.fake.private_chat(user)
    unknown = await bot.say(chat, user, "/frobnicate now")
    assert unknown.plain_text == "I don't know /frobnicate. Send /help to see every command."
    hint = await bot.say(chat, user, "what's new in diffusion?")
    assert "/search" in hint.plain_text


async def test_commands_for_other_bots_are_ignored(bot: Bot_) -> None:
    user = bot.fake.new_user()
    group = bot.fake.new_group()
    bot.fake.set_admins(group, [user])
    mark = len(bot.fake.calls)
    bot.fake.user_sends(group, user, "/help@some_other_bot")
    bot.fake.user_sends(group, user, "/start@some_other_bot")
    bot.fake.user_sends(group, user, "/weather")  # a bare command we don't know: not ours
    reply = await bot.say(group, user, "/help@trending_papers_bot")
    assert reply.plain_text.startswith("Trending Papers")
    sent = [c for c in bot.fake.calls[mark:] if c.method == "sendMessage"]
    assert len(sent) == 1
    assert subscribers.find(bot.db, Platform.TELEGRAM, str(group.id)) is None
    addressed = await bot.say(group, user, "/weather@trending_papers_bot")
    assert addressed.plain_text.startswith("I don't know /weather.")


async def test_in_a_group_only_admins_change_settings(bot: Bot_) -> None:
    fake = bot.fake
    admin, member = fake.new_user("Ada"), fake.new_user("Bob")
    group = fake.new_group("Journal club")
    fake.set_admins(group, [admin])

    refused = await bot.say(group, member, "/start@trending_papers_bot")
    assert refused.plain_text.startswith("Only this group's admins can change its settings.")
    found = await bot.say(group, member, "/search diffusion")
    assert found.plain_text.startswith("🔎")
    welcome = await bot.say(group, admin, "/start")
    assert "this group" in welcome.plain_text
    sub = subscribers.find(bot.db, Platform.TELEGRAM, str(group.id))
    assert sub is not None and sub.kind == ChatKind.GROUP
    again = await bot.say(group, member, "/time 09:00")
    assert again.plain_text.startswith("Only this group's admins")
    # Membership is looked up once per user and then cached.
    lookups = [c.params["user_id"] for c in fake.calls_to("getChatMember")]
    assert sorted(lookups) == sorted([member.id, admin.id])


async def test_commands_posted_in_a_channel(bot: Bot_) -> None:
    channel = bot.fake.new_channel("New papers")
    mark = len(bot.fake.calls)
    bot.fake.channel_post(channel, "/start")
    welcome = await bot.fake.wait_for_message(channel.id, since=mark)
    assert welcome.plain_text.startswith("Welcome") and "send this channel" in welcome.plain_text
    sub = subscribers.find(bot.db, Platform.TELEGRAM, str(channel.id))
    assert sub is not None and sub.kind == ChatKind.CHANNEL


async def test_inline_query_answers_search_results(bot: Bot_) -> None:
    user = bot.fake.new_user()
    mark = len(bot.fake.calls)
    bot.fake.inline_query(user, "protein")
    call = await bot.fake.wait_for(lambda c: c.method == "answerInlineQuery", since=mark)
    assert call.ok
    [result] = call.params["results"]
    assert (result["type"], result["id"]) == ("article", "2611.00001")
    assert result["title"] == "Diffusion models for protein design"
    text = result["input_message_content"]["message_text"]
    assert parse_html(text).plain.startswith("Diffusion models for protein design")


async def test_inline_query_with_the_real_search(
    telegram: FakeTelegram, sqlite_db: Database
) -> None:
    pytest.importorskip("storage.search")
    seed(sqlite_db)
    router = CommandRouter(sqlite_db, Settings(), clock=lambda: NOW, throttle=Throttle(100, 60.0))
    app = build_application(settings_for(telegram), router)
    await start_telegram(app)
    try:
        mark = len(telegram.calls)
        telegram.inline_query(telegram.new_user(), "protein design")
        call = await telegram.wait_for(lambda c: c.method == "answerInlineQuery", since=mark)
        assert call.ok and [r["id"] for r in call.params["results"]] == ["2611.00001"]
    finally:
        await stop_telegram(app)


async def test_set_my_commands_fills_the_menu(bot: Bot_) -> None:
    [call] = bot.fake.calls_to("setMyCommands")
    assert call.ok
    assert [(c["command"], c["description"]) for c in call.params["commands"]] == menu_commands()


async def test_a_failing_set_my_commands_does_not_stop_start_up(
    telegram: FakeTelegram, sqlite_db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    telegram.fail_next("setMyCommands", 500)
    app = build_application(settings_for(telegram), router_for(sqlite_db))
    with caplog.at_level(logging.WARNING, logger="bot.chat.telegram"):
        await start_telegram(app)
    try:
        assert any("setMyCommands failed" in r.getMessage() for r in caplog.records)
        user = telegram.new_user()
        chat = telegram.private_chat(user)
        mark = len(telegram.calls)
        telegram.user_sends(chat, user, "/help")
        reply = await telegram.wait_for_message(chat.id, since=mark)
        assert reply.plain_text.startswith("Trending Papers")
    finally:
        await stop_telegram(app)


async def test_a_failed_reply_is_logged_and_the_bot_keeps_going(
    bot: Bot_, caplog: pytest.LogCaptureFixture
) -> None:
    user = bot.fake.new_user()
    chat = bot.fake.private_chat(user)
    bot.fake.fail_next("sendMessage", 400, "Bad Request: something odd")
    with caplog.at_level(logging.ERROR, logger="bot.chat.telegram"):
        mark = len(bot.fake.calls)
        bot.fake.user_sends(chat, user, "/help")
        await bot.fake.wait_for(lambda c: c.method == "sendMessage", since=mark)
        reply = await bot.say(chat, user, "/help")
    assert reply.plain_text.startswith("Trending Papers")
    [record] = [r for r in caplog.records if r.getMessage() == "telegram update failed"]
    assert record.chat_id == chat.id  # type: ignore[attr-defined]


def test_parse_command() -> None:
    assert parse_command("/Start@Trending_Papers_Bot  a b ", "trending_papers_bot") == (
        "start",
        "a b",
    )
    assert parse_command("/start@other_bot", "trending_papers_bot") is None
    assert parse_command("/interests add x,\ny", None) == ("interests", "add x,\ny")
    assert parse_command("hello /start", None) is None
    assert file_url_for("https://api.telegram.org/bot") == "https://api.telegram.org/file/bot"


# --------------------------------------------------------------------------- delivery


def _subscriber(db: Database, chat_id: int) -> Subscriber:
    sub, _ = subscribers.get_or_create(db, Platform.TELEGRAM, str(chat_id))
    return sub


def _digest(count: int, title: str = "Diffusion models") -> dict[str, object]:
    items = [
        DigestItem(
            arxiv_id=f"2611.{n:05d}",
            title=f"{title} {n}",
            authors=("Ada Lovelace", "Alan Turing", "Grace Hopper", "Edsger Dijkstra"),
            primary_category="cs.LG",
            url=f"https://arxiv.org/abs/2611.{n:05d}",
            why="matches “diffusion”, <b> & $x_i$",
            trend_line="🔥 HN 312 pts · Bluesky 45 reposts ▁▂▅█",
        )
        for n in range(count)
    ]
    return payload(items, heading="Your papers for 2026-11-16")


@pytest.fixture
async def sender(telegram: FakeTelegram) -> AsyncIterator[TelegramSender]:
    async with Bot(telegram.token, base_url=telegram.base_url) as client:
        yield TelegramSender(client)


async def test_sender_delivers_a_digest(
    telegram: FakeTelegram, sender: TelegramSender, sqlite_db: Database
) -> None:
    chat = telegram.private_chat(telegram.new_user())
    message_id = await sender.send(_subscriber(sqlite_db, chat.id), _digest(3), key="digest:1")
    [message] = telegram.sent_messages(chat.id)
    assert message_id == str(message.message_id)
    assert message.plain_text.startswith("Your papers for 2026-11-16 · 3 new")
    assert "matches “diffusion”, <b> & $x_i$" in message.plain_text
    assert len(message.callback_data()) == 9


async def test_a_digest_over_4096_characters_is_split_between_items(
    telegram: FakeTelegram, sender: TelegramSender, sqlite_db: Database
) -> None:
    chat = telegram.private_chat(telegram.new_user())
    long_title = "A very long title about diffusion & <scaling> " * 12
    first_id = await sender.send(
        _subscriber(sqlite_db, chat.id), _digest(30, long_title), key="digest:2"
    )
    messages = telegram.sent_messages(chat.id)
    assert len(messages) > 2 and first_id == str(messages[0].message_id)
    assert all(len(m.plain_text) <= 4096 for m in messages)
    numbers = [b["text"].split()[0] for m in messages for b in m.buttons()]
    assert numbers == [str(n) for n in range(1, 31) for _ in range(3)]
    for message in messages:
        # Each message holds whole items: as many linked titles as button rows.
        links = [e for e in message.entities if e["type"] == "text_link"]
        assert len(links) == len(message.reply_markup["inline_keyboard"])  # type: ignore[index]


class FlakyBot(Bot):
    """A bot whose n-th sendMessage is refused with 429, as Telegram would."""

    def __init__(self, *args: Any, fail_call: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fail_call = fail_call
        self._send_calls = 0

    async def send_message(self, *args: Any, **kwargs: Any) -> Message:
        self._send_calls += 1
        if self._send_calls == self._fail_call:
            raise RetryAfter(timedelta(seconds=7))
        return await super().send_message(*args, **kwargs)


async def test_a_retry_resumes_after_the_parts_already_sent(
    telegram: FakeTelegram, sqlite_db: Database
) -> None:
    chat = telegram.private_chat(telegram.new_user())
    sub = _subscriber(sqlite_db, chat.id)
    big = _digest(30, "Long title on diffusion models " * 10)
    async with FlakyBot(telegram.token, base_url=telegram.base_url, fail_call=2) as client:
        sender = TelegramSender(client)
        with pytest.raises(RetryLater) as caught:
            await sender.send(sub, big, key="digest:4")
        assert caught.value.seconds == 7
        assert len(telegram.sent_messages(chat.id)) == 1
        first_id = await sender.send(sub, big, key="digest:4")
    messages = telegram.sent_messages(chat.id)
    assert first_id == str(messages[0].message_id)
    assert len(messages) > 2 and len({m.text for m in messages}) == len(messages)
    assert telegram.stats.duplicate_texts == 0


async def test_worker_paces_every_part_of_a_long_digest_without_a_429(sqlite_db: Database) -> None:
    """Through the worker and the real sender to a fake enforcing the limits: a digest of
    many parts goes out one part a second, where back to back it would exceed the chat's
    burst of three and get a 429."""
    scale = 20.0  # the fake's clock and the limiter's both run 20× fast

    async def scaled_sleep(seconds: float) -> None:
        await asyncio.sleep(seconds / scale)

    limiter = ChatRateLimiter(
        TELEGRAM_LIMITS, clock=lambda: time.monotonic() * scale, sleep=scaled_sleep
    )
    async with FakeTelegram(enforce_limits=True, time_scale=scale) as fake:
        long_chat = fake.private_chat(fake.new_user())
        others = [fake.private_chat(fake.new_user()) for _ in range(5)]
        big = _digest(30, "A very long title about diffusion & <scaling> " * 12)
        outbox.enqueue(sqlite_db, _subscriber(sqlite_db, long_chat.id).id or 0, big, key="big")
        for chat in others:
            outbox.enqueue(sqlite_db, _subscriber(sqlite_db, chat.id).id or 0, _digest(2),
                           key=f"small:{chat.id}")  # fmt: skip
        async with Bot(fake.token, base_url=fake.base_url) as client:
            worker = DeliveryWorker(
                sqlite_db,
                {Platform.TELEGRAM: TelegramSender(client)},
                limiters={Platform.TELEGRAM: limiter},
            )
            report = await worker.run_once()
        assert (report.sent, report.rate_limited) == (6, 0)
        assert fake.stats.too_many_requests == 0
        parts = fake.sent_messages(long_chat.id)
        assert len(parts) > 3
        assert all(len(fake.sent_messages(chat.id)) == 1 for chat in others)
        # Each part was answered before the next left, a chat's second apart (1/20 s real).
        answered = [call.timestamp for call in fake.calls_to("sendMessage")
                    if call.params["chat_id"] == long_chat.id]  # fmt: skip
        assert min(b - a for a, b in itertools.pairwise(answered)) >= 1 / scale


async def test_blocked_user_is_a_permanent_failure(
    telegram: FakeTelegram, sender: TelegramSender, sqlite_db: Database
) -> None:
    chat = telegram.private_chat(telegram.new_user())
    telegram.block(chat)
    with pytest.raises(PermanentDeliveryError, match="blocked by the user"):
        await sender.send(_subscriber(sqlite_db, chat.id), _digest(2), key="digest:5")
    group = telegram.new_group()
    telegram.kick(group)
    with pytest.raises(PermanentDeliveryError, match="kicked"):
        await sender.send(_subscriber(sqlite_db, group.id), _digest(2), key="digest:6")
    with pytest.raises(PermanentDeliveryError, match=r"(?i)chat not found"):
        await sender.send(_subscriber(sqlite_db, 424242), _digest(2), key="digest:7")


async def test_rate_limits_and_network_errors_are_retryable(
    telegram: FakeTelegram, sender: TelegramSender, sqlite_db: Database
) -> None:
    chat = telegram.private_chat(telegram.new_user())
    sub = _subscriber(sqlite_db, chat.id)
    telegram.fail_next("sendMessage", 429, retry_after=7)
    with pytest.raises(RetryLater) as caught:
        await sender.send(sub, _digest(2), key="digest:8")
    assert caught.value.seconds == 7.0
    telegram.fail_next("sendMessage", 502)
    with pytest.raises(TransientDeliveryError):
        await sender.send(sub, _digest(2), key="digest:8")
    assert await sender.send(sub, _digest(2), key="digest:8")
    assert len(telegram.sent_messages(chat.id)) == 1


# --------------------------------------------------------------------------- webhook


async def test_webhook_checks_the_secret_on_every_request(
    telegram: FakeTelegram, sqlite_db: Database
) -> None:
    settings = settings_for(
        telegram,
        telegram_webhook_url="https://bot.example.org/tg/hook",
        telegram_webhook_secret=SECRET,
    )
    app = build_application(settings, router_for(sqlite_db))
    await start_telegram(app)
    try:
        [registered] = telegram.calls_to("setWebhook")
        assert registered.params["secret_token"] == SECRET
        assert registered.params["url"] == "https://bot.example.org/tg/hook"
        assert not telegram.calls_to("getUpdates")

        web = Starlette(routes=[telegram_webhook_route(app, SECRET, path=webhook_path(settings))])
        user = telegram.new_user()
        chat = telegram.private_chat(user)
        update = telegram.update_payload(telegram.user_sends(chat, user, "/help"))
        transport = httpx.ASGITransport(app=web)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            missing = await client.post("/tg/hook", json=update)
            wrong = await client.post(
                "/tg/hook", json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "nope"}
            )
            garbage = await client.post(
                "/tg/hook", content=b"[1, 2", headers={"X-Telegram-Bot-Api-Secret-Token": SECRET}
            )
            assert (missing.status_code, wrong.status_code, garbage.status_code) == (401, 401, 400)
            assert telegram.sent_messages(chat.id) == []
            mark = len(telegram.calls)
            good = await client.post(
                "/tg/hook", json=update, headers={"X-Telegram-Bot-Api-Secret-Token": SECRET}
            )
            assert good.status_code == 200
        reply = await telegram.wait_for_message(chat.id, since=mark)
        assert reply.plain_text.startswith("Trending Papers")
    finally:
        await stop_telegram(app)


def test_without_a_token_building_says_what_to_set(sqlite_db: Database) -> None:
    with pytest.raises(ValueError, match="TP_TELEGRAM_TOKEN"):
        build_application(Settings(), router_for(sqlite_db))
