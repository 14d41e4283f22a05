"""The real slack-bolt app over signed HTTP requests against the fake Slack Web API, end to end."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import httpx
import pytest
import yaml
from aiohttp import web
from slack_sdk.web.async_client import AsyncWebClient
from starlette.applications import Starlette

from bot.chat.sender import PermanentDeliveryError, RetryLater, TransientDeliveryError
from bot.chat.slack import (
    DEFAULT_SCOPES,
    EVENTS_PATH,
    REDIRECT_PATH,
    SlackRuntime,
    SlackSender,
    assemble,
    build_slack_app,
    chat_key,
    conversation_kind,
    parse_message,
    parse_subcommand,
    slack_platform,
    slack_routes,
    socket_mode_handler,
)
from bot.chat.slack_render import DEFAULT_COMMAND
from bot.commands import ADMINS_ONLY, CommandRouter
from bot.config import Settings
from bot.digest import DigestItem, payload
from bot.throttle import Throttle
from storage import feedback, outbox, papers, subscribers
from storage.db import Database
from storage.models import ChatKind, Platform, Subscriber
from tests.fakes import LoopbackServer
from tests.fakes.chat import newest_as_trending, paper, substring_search
from tests.fakes.slack_api import FakeSlack, SlackMessage, block_errors

NOW = datetime(2026, 11, 16, 12, 0, tzinfo=UTC)
SECRET = "signing-secret-for-the-slack-tests"
TEAM = "T0FAKE0001"
READER, ADMIN, MEMBER = "U0READER01", "U0ADMIN001", "U0MEMBER01"
CHANNEL = "C0PAPERS01"


def sign(body: str, *, secret: str = SECRET, timestamp: int | None = None) -> dict[str, str]:
    """The headers Slack sends: ``v0=HMAC-SHA256(secret, "v0:{ts}:{body}")``."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{stamp}:{body}".encode(), hashlib.sha256)
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": f"v0={digest.hexdigest()}"}


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


def router_for(db: Database) -> CommandRouter:
    return CommandRouter(
        db,
        Settings(admin_ids=f"slack:{ADMIN}"),  # type: ignore[arg-type]
        clock=lambda: NOW,
        search=substring_search,
        trending=newest_as_trending,
        throttle=Throttle(1000, 60.0),
    )


def settings_for(fake: FakeSlack, **extra: Any) -> Settings:
    return Settings(
        slack_bot_token=fake.bot_token,  # type: ignore[arg-type]
        slack_signing_secret=SECRET,  # type: ignore[arg-type]
        slack_api_base_url=fake.base_url,
        **extra,
    )


async def settle() -> None:
    """Let bolt's background listener tasks (which run after the ack) finish."""
    markers = ("run_ack_function", "to_runnable_function", "SlackAdapter")
    for _ in range(200):
        pending = [
            task
            for task in asyncio.all_tasks()
            if task is not asyncio.current_task()
            and any(m in getattr(task.get_coro(), "__qualname__", "") for m in markers)
        ]
        if not pending:
            return
        await asyncio.wait(pending, timeout=0.05)


@dataclass
class Harness:
    """The bolt app behind Starlette, a client that signs requests, and the fake Slack."""

    fake: FakeSlack
    db: Database
    runtime: SlackRuntime
    http: httpx.AsyncClient
    keys: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def post(self, body: str, content_type: str, **signing: Any) -> httpx.Response:
        headers = {"Content-Type": content_type, **sign(body, **signing)}
        return await self.http.post(EVENTS_PATH, content=body, headers=headers)

    async def slash(
        self,
        text: str,
        *,
        user: str = READER,
        channel: str | None = None,
        channel_name: str | None = None,
        team: str = TEAM,
        **signing: Any,
    ) -> tuple[httpx.Response, str]:
        """Type ``/papers text``; returns the HTTP answer and the response_url key."""
        key = f"cmd{next(self.keys)}"
        in_dm = channel is None
        form = {
            "token": "legacy-verification-token",
            "team_id": team,
            "team_domain": "fake-lab",
            "channel_id": self.fake.dm_channel(user) if in_dm else channel,
            "channel_name": "directmessage" if in_dm else (channel_name or "papers"),
            "user_id": user,
            "user_name": user.lower(),
            "command": "/papers",
            "text": text,
            "api_app_id": self.fake.app_id,
            "is_enterprise_install": "false",
            "response_url": self.fake.response_url(key),
            "trigger_id": "1337.42.abcdef",
        }
        body = urlencode(form)
        response = await self.post(body, "application/x-www-form-urlencoded", **signing)
        return response, key

    async def answer(self, key: str) -> dict[str, Any]:
        """The first message posted to a response_url."""
        call = await self.fake.wait_for(
            lambda c: c.method == "response_url" and c.params.get("response_url_key") == key
        )
        assert call.status == 200, call.response
        return call.params

    async def ask(self, text: str, **kwargs: Any) -> dict[str, Any]:
        """Type ``/papers text`` and wait for the answer."""
        started = time.perf_counter()
        response, key = await self.slash(text, **kwargs)
        assert response.status_code == 200
        assert response.text == ""  # an empty ack: the answer goes to response_url
        assert time.perf_counter() - started < 3.0
        return await self.answer(key)

    async def press(
        self,
        value: str,
        *,
        user: str = READER,
        message: SlackMessage | None = None,
        channel: str | None = None,
        ephemeral: bool = False,
        home: bool = False,
    ) -> str:
        """Press the button with ``value`` on ``message``; returns the response_url key."""
        key = f"press{next(self.keys)}"
        element: dict[str, Any] = {"action_id": "tp:x:1", "value": value}
        if message is not None and message.blocks:
            element = next(
                e
                for b in message.blocks
                if b["type"] == "actions"
                for e in b["elements"]
                if e.get("value") == value
            )
        body: dict[str, Any] = {
            "type": "block_actions",
            "team": {"id": TEAM, "domain": "fake-lab"},
            "user": {"id": user, "username": user.lower(), "team_id": TEAM},
            "api_app_id": self.fake.app_id,
            "token": "legacy-verification-token",
            "trigger_id": "1337.42.abcdef",
            "actions": [
                {
                    "type": "button",
                    "action_id": element["action_id"],
                    "block_id": "b1",
                    "value": element["value"],
                    "action_ts": "1763294400.000100",
                }
            ],
        }
        if home:
            body["container"] = {"type": "view", "view_id": "V0FAKE"}
            body["view"] = {"id": "V0FAKE", "type": "home", "team_id": TEAM}
        else:
            where = message.channel if message is not None else (channel or "")
            body["container"] = {
                "type": "message",
                "message_ts": message.ts if message is not None else "1763294400.000001",
                "channel_id": where,
                "is_ephemeral": ephemeral,
            }
            body["channel"] = {"id": where, "name": "directmessage" if where[0] == "D" else "x"}
            body["response_url"] = self.fake.response_url(key)
            if message is not None:
                body["message"] = {
                    "type": "message",
                    "ts": message.ts,
                    "text": message.text,
                    "blocks": message.blocks,
                }
        form = urlencode({"payload": json.dumps(body)})
        response = await self.post(form, "application/x-www-form-urlencoded")
        assert response.status_code == 200
        return key

    async def event(self, event: dict[str, Any]) -> httpx.Response:
        """An Events API callback carrying ``event``."""
        body = json.dumps(
            {
                "token": "legacy-verification-token",
                "team_id": TEAM,
                "api_app_id": self.fake.app_id,
                "event": event,
                "type": "event_callback",
                "event_id": f"Ev{next(self.keys):08d}",
                "event_time": int(time.time()),
                "authorizations": [{"team_id": TEAM, "user_id": "U0FAKEBOT1", "is_bot": True}],
            }
        )
        return await self.post(body, "application/json")

    def subscriber(self, conversation: str) -> Subscriber:
        found = subscribers.find(self.db, Platform.SLACK, chat_key(TEAM, conversation))
        assert found is not None
        return found


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as server:
        server.add_user(READER, "ada", real_name="Ada Lovelace", tz="America/New_York")
        server.add_user(ADMIN, "grace", is_admin=True)
        server.add_user(MEMBER, "bob")
        server.add_channel(CHANNEL, "papers")
        yield server


@pytest.fixture
async def slack(fake: FakeSlack, sqlite_db: Database) -> AsyncIterator[Harness]:
    seed(sqlite_db)
    runtime = assemble(settings_for(fake), router_for(sqlite_db), sqlite_db)
    web = Starlette(routes=slack_routes(runtime.app))
    transport = httpx.ASGITransport(app=web)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield Harness(fake, sqlite_db, runtime, http)
        await settle()
    await runtime.adapter.close()


def section_texts(blocks: list[dict[str, Any]]) -> str:
    return "\n".join(
        b["text"]["text"] for b in blocks if b["type"] in ("section", "header") and "text" in b
    )


def button_labels(blocks: list[dict[str, Any]]) -> dict[str, str]:
    return {
        e["value"]: e["text"]["text"]
        for b in blocks
        if b["type"] == "actions"
        for e in b["elements"]
        if "value" in e
    }


# --------------------------------------------------------------------------- slash commands


async def test_subscribe_in_a_dm_creates_the_users_own_subscription(slack: Harness) -> None:
    answer = await slack.ask("subscribe")
    assert answer["text"].startswith("Welcome to Trending Papers!")
    assert answer["response_type"] == "in_channel"
    assert "/papers interests add diffusion models" in answer["text"]  # Slack's own syntax
    assert block_errors(answer["blocks"]) == []
    sub = slack.subscriber(READER)
    assert (sub.kind, sub.workspace_id, sub.owner_user_id) == (
        ChatKind.USER,
        TEAM,
        chat_key(TEAM, READER),
    )
    assert sub.timezone == "America/New_York"  # from users.info
    assert sub.display_name == "Ada Lovelace"
    assert slack.fake.calls_to("users.info")[-1].params["user"] == READER


async def test_interests_digest_and_search_answer_through_response_url(slack: Harness) -> None:
    await slack.ask("subscribe")
    added = await slack.ask("interests add diffusion models")
    assert added["text"] == "Added “diffusion models”."

    digest = await slack.ask("digest")
    blocks = digest["blocks"]
    assert block_errors(blocks) == []
    assert blocks[0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": blocks[0]["text"]["text"], "emoji": True},
    }
    assert blocks[0]["text"]["text"].startswith("Your papers for 2026-11-16")
    assert "<https://arxiv.org/abs/2611.00001|Diffusion models for protein design>" in (
        section_texts(blocks)
    )
    assert button_labels(blocks)["l:2611.00001"] == "👍"
    assert digest["unfurl_links"] is False
    assert digest["text"].startswith("Your papers for 2026-11-16")

    search = await slack.ask("search graph")
    assert "Graph neural networks at scale" in section_texts(search["blocks"])
    assert search["response_type"] == "in_channel"  # a DM: a normal message


async def test_empty_and_unknown_subcommands_get_help(slack: Harness) -> None:
    help_text = await slack.ask("")
    assert help_text["text"].startswith("Trending Papers: the new arXiv papers")
    assert "/papers subscribe" in help_text["text"]
    unknown = await slack.ask("frobnicate now")
    assert unknown["text"] == "I don't know /frobnicate. Send /papers help to see every command."


async def test_slack_escapes_in_the_command_text_are_undone(slack: Harness) -> None:
    await slack.ask("subscribe")
    added = await slack.ask("interests add R&amp;D, a&lt;b")
    assert added["text"] == "Added “R&amp;D”, “a&lt;b”."  # escaped again on the way out
    profile = subscribers.profile(slack.db, slack.subscriber(READER).id or 0)
    assert profile.keywords == ["R&D", "a<b"]


async def test_timezone_auto_reads_the_slack_profile(slack: Harness) -> None:
    await slack.ask("subscribe")
    await slack.ask("timezone Europe/Berlin")
    assert slack.subscriber(READER).timezone == "Europe/Berlin"
    answer = await slack.ask("timezone auto")
    assert answer["text"].startswith("Time zone set")
    assert slack.subscriber(READER).timezone == "America/New_York"


async def test_a_channel_subscription_belongs_to_its_owner_and_the_admins(
    slack: Harness,
) -> None:
    welcome = await slack.ask("subscribe", user=MEMBER, channel=CHANNEL)
    assert welcome["response_type"] == "in_channel"  # the channel sees it was subscribed
    sub = slack.subscriber(CHANNEL)
    assert (sub.kind, sub.owner_user_id) == (ChatKind.CHANNEL, chat_key(TEAM, MEMBER))

    refused = await slack.ask("size 5", user=READER, channel=CHANNEL)
    assert refused["text"] == ADMINS_ONLY.replace("/search", "/papers search").replace(
        "/trending", "/papers trending"
    ).replace("/help", "/papers help")
    assert refused["response_type"] == "ephemeral"
    assert slack.subscriber(CHANNEL).digest_size == 10

    by_owner = await slack.ask("size 5", user=MEMBER, channel=CHANNEL)
    assert by_owner["text"] == "Done: up to 5 papers per digest."
    by_admin = await slack.ask("size 7", user=ADMIN, channel=CHANNEL)
    assert by_admin["text"] == "Done: up to 7 papers per digest."
    assert slack.subscriber(CHANNEL).digest_size == 7

    anyone = await slack.ask("search graph", user=READER, channel=CHANNEL)
    assert anyone["response_type"] == "ephemeral"
    assert "Graph neural networks" in section_texts(anyone["blocks"])


async def test_bot_admins_get_stats_and_others_are_not_allowed(slack: Harness) -> None:
    await slack.ask("subscribe")
    refused = await slack.ask("stats")
    assert refused["text"] == (
        "Sorry, that's not allowed: /papers stats is only for this bot's admins."
    )
    stats = await slack.ask("stats", user=ADMIN)
    assert "slack: 1 active, 0 paused, 0 unreachable" in section_texts(stats["blocks"])
    queued = await slack.ask("announce Reading group moves to Thursday", user=ADMIN)
    assert queued["text"].startswith("📣 Queued for 1 chat")
    [message] = outbox.pending(slack.db)
    assert message.payload["text"] == "Reading group moves to Thursday"


async def test_wrongly_signed_and_stale_requests_are_rejected(slack: Harness) -> None:
    forged, _ = await slack.slash("subscribe", secret="not-the-signing-secret")
    assert forged.status_code == 401
    stale, _ = await slack.slash("subscribe", timestamp=int(time.time()) - 6 * 60)
    assert stale.status_code == 401
    unsigned = await slack.http.post(EVENTS_PATH, content="text=subscribe")
    assert unsigned.status_code == 401
    fresh_enough, key = await slack.slash("help", timestamp=int(time.time()) - 4 * 60)
    assert fresh_enough.status_code == 200
    await slack.answer(key)
    await settle()
    assert subscribers.find(slack.db, Platform.SLACK, chat_key(TEAM, READER)) is None
    assert [c.params["response_url_key"] for c in slack.fake.calls_to("response_url")] == [key]


async def test_oversized_bodies_are_refused_before_parsing(slack: Harness) -> None:
    body = "text=" + "x" * 1_100_000
    response = await slack.post(body, "application/x-www-form-urlencoded")
    assert response.status_code == 413


# --------------------------------------------------------------------------- buttons


async def post_digest(slack: Harness, count: int = 3) -> SlackMessage:
    """A digest delivered to the reader's DM by the outbox sender, as the scheduler would."""
    await slack.ask("subscribe")
    items = [
        DigestItem(
            arxiv_id=f"2611.0000{n}",
            title=f"Paper {n}",
            authors=("Ada Lovelace",),
            primary_category="cs.LG",
            url=f"https://arxiv.org/abs/2611.0000{n}",
            why="matches “diffusion”",
        )
        for n in range(1, count + 1)
    ]
    sender = SlackSender(slack.runtime.client)
    await sender.send(slack.subscriber(READER), payload(items, heading="Your papers"), key="d1")
    message = slack.fake.last_message(slack.fake.dm_channel(READER))
    assert message is not None
    return message


async def test_a_button_click_records_feedback_and_updates_the_message(slack: Harness) -> None:
    message = await post_digest(slack)
    mark = len(slack.fake.calls)
    await slack.press("l:2611.00002", message=message)
    update = await slack.fake.wait_for(lambda c: c.method == "chat.update", since=mark)
    assert update.ok
    assert update.params["ts"] == message.ts
    assert update.params["text"] == message.text  # the notification text stays
    stored = slack.fake.last_message(message.channel)
    assert stored is not None
    labels = button_labels(stored.blocks or [])
    assert labels["l:2611.00002"] == "👍✓"
    assert labels["l:2611.00001"] == "👍"
    assert section_texts(stored.blocks or []) == section_texts(message.blocks or [])
    sub_id = slack.subscriber(READER).id or 0
    row = feedback.get(slack.db, sub_id, "2611.00002")
    assert row is not None
    assert row.rating == 1
    await settle()
    assert not slack.fake.calls_to("response_url")[1:]  # the ✓ says it all: no notice

    mark = len(slack.fake.calls)
    await slack.press("l:2611.00002", message=stored)
    await slack.fake.wait_for(lambda c: c.method == "chat.update", since=mark)
    again = slack.fake.last_message(message.channel)
    assert again is not None
    assert button_labels(again.blocks or [])["l:2611.00002"] == "👍"
    assert feedback.get(slack.db, sub_id, "2611.00002").rating == 0  # type: ignore[union-attr]


async def test_paging_an_ephemeral_search_replaces_it_through_response_url(
    slack: Harness,
) -> None:
    results = await slack.ask("search diffusion", channel=CHANNEL)
    assert results["response_type"] == "ephemeral"
    assert "1–5 of 10" in section_texts(results["blocks"])
    [next_page] = [v for v in button_labels(results["blocks"]) if v.startswith("p:")]
    key = await slack.press(next_page, channel=CHANNEL, ephemeral=True)
    page_two = await slack.answer(key)
    assert page_two["replace_original"] is True
    assert "6–10 of 10 · page 2/2" in section_texts(page_two["blocks"])
    assert not slack.fake.calls_to("chat.update")


async def test_a_button_the_router_refuses_shows_an_ephemeral_notice(slack: Harness) -> None:
    key = await slack.press("l:2611.00001", channel=CHANNEL)  # the channel never subscribed
    notice = await slack.answer(key)
    assert notice["response_type"] == "ephemeral"
    assert notice["replace_original"] is False
    assert notice["text"] == "Send /papers subscribe first so I can remember your ratings."


async def test_stop_asks_then_replaces_the_question(slack: Harness) -> None:
    await slack.ask("subscribe")
    question = await slack.ask("stop")
    [yes] = [v for v in button_labels(question["blocks"]) if v.startswith("x:")]
    key = await slack.press(yes, channel=slack.fake.dm_channel(READER), ephemeral=True)
    done = await slack.answer(key)
    assert done["replace_original"] is True
    assert done["text"].startswith("Done: this chat is unsubscribed")
    assert subscribers.find(slack.db, Platform.SLACK, chat_key(TEAM, READER)) is None


# --------------------------------------------------------------------------- events


async def test_app_home_shows_settings_interests_and_saved_papers(slack: Harness) -> None:
    await slack.ask("subscribe")
    await slack.ask("interests add diffusion models")
    sub_id = slack.subscriber(READER).id or 0
    feedback.set_saved(slack.db, sub_id, "2611.00003", True)
    opened = {"type": "app_home_opened", "user": READER, "channel": "D0READER01", "tab": "home"}
    response = await slack.event(opened)
    assert response.status_code == 200
    call = await slack.fake.wait_for(lambda c: c.method == "views.publish")
    assert call.ok, call.response
    view = slack.fake.home_view(READER)
    assert view is not None
    text = section_texts(view["blocks"])
    assert "Settings" in text
    assert "Keywords: diffusion models" in text
    assert "🔖 Saved papers (1)" in text
    assert "<https://arxiv.org/abs/2611.00003|Graph neural networks at scale>" in text

    # Unsaving from the Home tab republishes it.
    mark = len(slack.fake.calls)
    await slack.press("s:2611.00003", home=True)
    await slack.fake.wait_for(lambda c: c.method == "views.publish", since=mark)
    view = slack.fake.home_view(READER)
    assert view is not None
    assert "Nothing saved yet" in section_texts(view["blocks"])
    assert feedback.saved_ids(slack.db, sub_id) == []

    # A visit right after is not republished; the messages tab never is.
    mark = len(slack.fake.calls)
    await slack.event(opened)
    await slack.event({**opened, "tab": "messages"})
    await settle()
    assert not slack.fake.calls_to("views.publish")[2:]
    assert len(slack.fake.calls) == mark


async def test_app_home_invites_a_newcomer_to_subscribe(slack: Harness) -> None:
    await slack.event({"type": "app_home_opened", "user": MEMBER, "tab": "home"})
    await slack.fake.wait_for(lambda c: c.method == "views.publish")
    view = slack.fake.home_view(MEMBER)
    assert view is not None
    text = section_texts(view["blocks"])
    assert text.startswith("Send /papers subscribe to get a daily digest here.")
    assert "/papers search" in text


async def test_direct_messages_and_mentions_are_read_as_commands(slack: Harness) -> None:
    await slack.ask("subscribe")
    dm = slack.fake.dm_channel(READER)
    await slack.event(
        {"type": "message", "channel": dm, "channel_type": "im", "user": READER,
         "text": "interests add graphs", "ts": "1763294400.000200"}
    )  # fmt: skip
    posted = await slack.fake.wait_for(lambda c: c.method == "chat.postMessage")
    assert posted.params["channel"] == dm
    assert posted.params["text"] == "Added “graphs”."

    mark = len(slack.fake.calls)
    await slack.event(
        {"type": "app_mention", "channel": CHANNEL, "user": READER,
         "text": "<@U0FAKEBOT1> search graph", "ts": "1763294400.000300"}
    )  # fmt: skip
    reply = await slack.fake.wait_for(lambda c: c.method == "chat.postMessage", since=mark)
    assert reply.params["channel"] == CHANNEL
    assert reply.params["thread_ts"] == "1763294400.000300"
    assert "Graph neural networks" in reply.params["text"]

    mark = len(slack.fake.calls)
    await slack.event(
        {"type": "message", "subtype": "message_changed", "channel": dm, "channel_type": "im",
         "ts": "1763294400.000400"}
    )  # fmt: skip
    await settle()
    assert len(slack.fake.calls) == mark


async def test_a_failing_reply_is_logged_and_the_app_keeps_going(
    slack: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    slack.fake.fail_next("response_url", "server_error", status=500)
    with caplog.at_level(logging.WARNING, logger="bot.chat.slack"):
        response, _ = await slack.slash("help")
        assert response.status_code == 200
        await slack.fake.wait_for(lambda c: c.method == "response_url")
        await settle()
    assert any("response_url refused" in r.getMessage() for r in caplog.records)
    assert (await slack.ask("help"))["text"].startswith("Trending Papers")


# --------------------------------------------------------------------------- parsing


def test_parse_subcommand() -> None:
    assert parse_subcommand("") == ("help", "")
    assert parse_subcommand("  Interests   add  x, y ") == ("interests", "add  x, y")
    assert parse_subcommand("/search a b") == ("search", "a b")
    assert parse_message("<@U0BOT> search graph") == ("search", "graph")
    assert parse_message("what is new?") == ("", "what is new?")
    assert conversation_kind("D123") == ChatKind.USER
    assert conversation_kind("C123") == ChatKind.CHANNEL
    assert conversation_kind("G123", "directmessage") == ChatKind.USER


def test_building_without_credentials_says_what_to_set(sqlite_db: Database) -> None:
    router = router_for(sqlite_db)
    with pytest.raises(ValueError, match="TP_SLACK_BOT_TOKEN"):
        build_slack_app(Settings(), router, sqlite_db)
    token_only = Settings(slack_bot_token="xoxb-1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="TP_SLACK_SIGNING_SECRET"):
        build_slack_app(token_only, router, sqlite_db)
    socket_mode = Settings(
        slack_bot_token="xoxb-1",  # type: ignore[arg-type]
        slack_app_token="xapp-1",  # type: ignore[arg-type]
    )
    socket = build_slack_app(socket_mode, router, sqlite_db)
    assert socket.client.token == "xoxb-1"


# --------------------------------------------------------------------------- delivery


@pytest.fixture
async def sender_setup(fake: FakeSlack, sqlite_db: Database) -> tuple[FakeSlack, Subscriber]:
    sub, _ = subscribers.get_or_create(
        sqlite_db, Platform.SLACK, chat_key(TEAM, READER), kind=ChatKind.USER, workspace_id=TEAM
    )
    return fake, sub


def digest_payload(count: int = 3) -> dict[str, Any]:
    items = [
        DigestItem(
            arxiv_id=f"2611.{n:05d}",
            title=f"Paper {n} on <b>bold</b> & co",
            authors=("Ada Lovelace",),
            primary_category="cs.LG",
            url=f"https://arxiv.org/abs/2611.{n:05d}",
            why="matches “diffusion”",
        )
        for n in range(count)
    ]
    return payload(items, heading="Your papers for 2026-11-16")


async def test_sender_posts_the_digest_to_the_users_dm(
    sender_setup: tuple[FakeSlack, Subscriber],
) -> None:
    fake, sub = sender_setup
    sender = SlackSender(AsyncWebClient(token=fake.bot_token, base_url=fake.base_url))
    message_id = await sender.send(sub, digest_payload(), key="k1")
    [posted] = fake.posted_messages(fake.dm_channel(READER))
    assert message_id == f"{posted.channel}/{posted.ts}"
    assert posted.text.startswith("Your papers for 2026-11-16 · 3 new")
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; co" in section_texts(posted.blocks or [])
    assert posted.params["unfurl_links"] is False


async def test_a_long_digest_is_split_and_a_retry_resumes(
    sender_setup: tuple[FakeSlack, Subscriber],
) -> None:
    fake, sub = sender_setup
    client = AsyncWebClient(token=fake.bot_token, base_url=fake.base_url)
    original = client.chat_postMessage
    calls = 0

    async def flaky(**kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            fake.fail_next("chat.postMessage", "ratelimited", retry_after=7)
        return await original(**kwargs)

    client.chat_postMessage = flaky  # type: ignore[method-assign]
    sender = SlackSender(client)
    with pytest.raises(RetryLater) as caught:
        await sender.send(sub, digest_payload(30), key="k30")
    assert caught.value.seconds == 7
    assert len(fake.posted_messages()) == 1
    first = await sender.send(sub, digest_payload(30), key="k30")
    posted = fake.posted_messages()
    assert len(posted) == 2  # the first part was not sent twice
    assert first == f"{posted[0].channel}/{posted[0].ts}"
    cards = sum(1 for m in posted for b in m.blocks or [] if b["type"] == "actions")
    assert cards == 30


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ("channel_not_found", PermanentDeliveryError),
        ("not_in_channel", PermanentDeliveryError),
        ("is_archived", PermanentDeliveryError),
        ("account_inactive", PermanentDeliveryError),
        ("token_revoked", PermanentDeliveryError),
        ("internal_error", TransientDeliveryError),
    ],
)
async def test_sender_maps_slack_errors(
    sender_setup: tuple[FakeSlack, Subscriber], error: str, expected: type[Exception]
) -> None:
    fake, sub = sender_setup
    fake.fail_next("chat.postMessage", error)
    sender = SlackSender(AsyncWebClient(token=fake.bot_token, base_url=fake.base_url))
    with pytest.raises(expected, match=error):
        await sender.send(sub, digest_payload(), key="k")


async def test_rate_limit_429_becomes_retry_later(
    sender_setup: tuple[FakeSlack, Subscriber],
) -> None:
    fake, sub = sender_setup
    fake.fail_next("chat.postMessage", "ratelimited", retry_after=30)
    sender = SlackSender(AsyncWebClient(token=fake.bot_token, base_url=fake.base_url))
    with pytest.raises(RetryLater) as caught:
        await sender.send(sub, digest_payload(), key="k")
    assert caught.value.seconds == 30


async def test_revoked_and_invalid_tokens(sender_setup: tuple[FakeSlack, Subscriber]) -> None:
    fake, sub = sender_setup
    stranger = SlackSender(AsyncWebClient(token="xoxb-unknown", base_url=fake.base_url))
    # One shared token that Slack does not know: fix the configuration, keep the subscribers.
    with pytest.raises(TransientDeliveryError, match="TP_SLACK_BOT_TOKEN"):
        await stranger.send(sub, digest_payload(), key="k")
    fake.revoke_token(fake.bot_token)
    sender = SlackSender(AsyncWebClient(token=fake.bot_token, base_url=fake.base_url))
    with pytest.raises(PermanentDeliveryError, match="token_revoked"):
        await sender.send(sub, digest_payload(), key="k")


async def test_a_channel_the_bot_left_deactivates(fake: FakeSlack, sqlite_db: Database) -> None:
    fake.add_channel("C0LEFT0001", "left", is_member=False)
    sub, _ = subscribers.get_or_create(
        sqlite_db, Platform.SLACK, chat_key(TEAM, "C0LEFT0001"), kind=ChatKind.CHANNEL
    )
    sender = SlackSender(AsyncWebClient(token=fake.bot_token, base_url=fake.base_url))
    with pytest.raises(PermanentDeliveryError, match="not_in_channel"):
        await sender.send(sub, digest_payload(), key="k")


async def test_network_errors_are_transient(sender_setup: tuple[FakeSlack, Subscriber]) -> None:
    _, sub = sender_setup
    closed = AsyncWebClient(token="xoxb-1", base_url="http://127.0.0.1:9/api/", timeout=2)
    closed.retry_handlers = []
    with pytest.raises(TransientDeliveryError):
        await SlackSender(closed).send(sub, digest_payload(), key="k")


# --------------------------------------------------------------------------- the platform


async def test_platform_in_http_mode_serves_events_and_checks_the_token(
    fake: FakeSlack, sqlite_db: Database
) -> None:
    platform = slack_platform(settings_for(fake), router_for(sqlite_db), sqlite_db)
    assert platform.platform == Platform.SLACK
    assert [route.path for route in platform.routes] == [EVENTS_PATH]  # type: ignore[attr-defined]
    await platform.start()
    assert fake.calls_to("auth.test")
    await platform.stop()

    socket = slack_platform(
        settings_for(fake, slack_app_token="xapp-1-A0FAKE-1"), router_for(sqlite_db), sqlite_db
    )
    assert socket.routes == []  # Slack is reached over the WebSocket: no public endpoint

    fake.revoke_token(fake.bot_token)
    broken = slack_platform(settings_for(fake), router_for(sqlite_db), sqlite_db)
    with pytest.raises(ValueError, match="TP_SLACK_BOT_TOKEN"):
        await broken.start()


# --------------------------------------------------------------------------- Socket Mode


class SocketModeServer:
    """``apps.connections.open`` plus the WebSocket Slack pushes envelopes through."""

    def __init__(self) -> None:
        app = web.Application()
        app.router.add_post("/api/apps.connections.open", self._open)
        app.router.add_get("/link", self._link)
        self.server = LoopbackServer(app)
        self.socket: web.WebSocketResponse | None = None
        self.connected = asyncio.Event()
        self.acks: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.app_tokens: list[str] = []

    async def _open(self, request: web.Request) -> web.Response:
        self.app_tokens.append(request.headers.get("Authorization", ""))
        url = f"ws://127.0.0.1:{self.server.port}/link"
        return web.json_response({"ok": True, "url": url})

    async def _link(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        self.socket = socket
        await socket.send_json({"type": "hello", "num_connections": 1})
        self.connected.set()
        async for message in socket:
            if message.type == aiohttp.WSMsgType.TEXT:
                await self.acks.put(json.loads(message.data))
        return socket

    async def push(self, envelope: dict[str, Any]) -> None:
        assert self.socket is not None
        await self.socket.send_json(envelope)


async def test_socket_mode_receives_a_slash_command_and_acks_it(
    fake: FakeSlack, sqlite_db: Database
) -> None:
    seed(sqlite_db)
    settings = Settings(
        slack_bot_token=fake.bot_token, slack_app_token="xapp-1-A0FAKE-1-socket",  # type: ignore[arg-type]
        slack_api_base_url=fake.base_url,
    )  # fmt: skip
    runtime = assemble(settings, router_for(sqlite_db), sqlite_db)
    server = SocketModeServer()
    await server.server.start()
    socket = socket_mode_handler(
        runtime.app,
        "xapp-1-A0FAKE-1-socket",
        web_client=AsyncWebClient(base_url=f"{server.server.root}/api/"),
    )
    try:
        await socket.connect_async()
        await asyncio.wait_for(server.connected.wait(), 5)
        assert server.app_tokens == ["Bearer xapp-1-A0FAKE-1-socket"]
        await server.push(
            {
                "envelope_id": "env-1",
                "type": "slash_commands",
                "accepts_response_payload": True,
                "payload": {
                    "team_id": TEAM,
                    "channel_id": fake.dm_channel(READER),
                    "channel_name": "directmessage",
                    "user_id": READER,
                    "user_name": "ada",
                    "command": "/papers",
                    "text": "subscribe",
                    "response_url": fake.response_url("socket"),
                    "trigger_id": "1.2.3",
                },
            }
        )
        ack = await asyncio.wait_for(server.acks.get(), 5)
        assert ack["envelope_id"] == "env-1"
        answer = await fake.wait_for(lambda c: c.method == "response_url")
        assert answer.params["text"].startswith("Welcome to Trending Papers!")
        assert subscribers.find(sqlite_db, Platform.SLACK, chat_key(TEAM, READER)) is not None
    finally:
        await settle()
        await socket.close_async()
        await runtime.adapter.close()
        await server.server.stop()


# --------------------------------------------------------------------------- the manifest

MANIFEST = Path(__file__).resolve().parents[1] / "deploy" / "slack-manifest.yaml"


def test_the_manifest_asks_for_what_the_app_uses() -> None:
    manifest = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    [command] = manifest["features"]["slash_commands"]
    assert command["command"] == DEFAULT_COMMAND
    assert command["should_escape"] is False
    assert set(manifest["oauth_config"]["scopes"]["bot"]) == set(DEFAULT_SCOPES)
    settings_part = manifest["settings"]
    assert set(settings_part["event_subscriptions"]["bot_events"]) == {
        "app_home_opened",
        "app_mention",
        "app_uninstalled",
        "message.im",
        "tokens_revoked",
    }
    assert settings_part["interactivity"]["is_enabled"] is True
    assert settings_part["socket_mode_enabled"] is True
    assert manifest["features"]["app_home"]["home_tab_enabled"] is True


def test_the_manifests_http_mode_points_every_url_at_our_routes() -> None:
    lines = []
    for line in MANIFEST.read_text(encoding="utf-8").splitlines():
        stripped = line.lstrip()
        if re.match(r"#\s*(url|request_url|redirect_urls):|#\s+- https://", stripped):
            line = line.replace("# ", "", 1)
        lines.append(line.replace("socket_mode_enabled: true", "socket_mode_enabled: false"))
    manifest = yaml.safe_load("\n".join(lines))
    urls = [
        manifest["features"]["slash_commands"][0]["url"],
        manifest["settings"]["event_subscriptions"]["request_url"],
        manifest["settings"]["interactivity"]["request_url"],
    ]
    assert all(url.endswith(EVENTS_PATH) for url in urls)
    assert manifest["oauth_config"]["redirect_urls"] == ["https://YOUR-HOST" + REDIRECT_PATH]
    assert manifest["settings"]["socket_mode_enabled"] is False
