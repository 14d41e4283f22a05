"""The service: start, health, metrics, leader election, clean shutdown."""

from __future__ import annotations

import asyncio
import gc
import socket
import time
import weakref
from typing import Any

import httpx
import pytest

from bot.chat.sender import Pace, unpaced
from bot.config import Settings
from bot.leader import LeaderLock
from bot.service import ChatPlatform, MissingConfiguration, Service, freeze_startup_objects
from bot.web import HealthState, build_web_app
from storage import outbox, subscribers
from storage.db import Database
from storage.models import Platform, Subscriber


class RecordingSender:
    platform = Platform.TELEGRAM

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(
        self, subscriber: Subscriber, payload: dict[str, Any], *, key: str, pace: Pace = unpaced
    ) -> str:
        async with pace():
            self.sent.append(subscriber.chat_id)
        return "1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def platform(sender: RecordingSender, events: list[str]) -> ChatPlatform:
    async def start() -> None:
        events.append("start")

    async def stop() -> None:
        events.append("stop")

    return ChatPlatform(Platform.TELEGRAM, sender, start, stop)


def test_no_chat_platform_says_which_variables_to_set(sqlite_db: Database) -> None:
    with pytest.raises(MissingConfiguration) as caught:
        Service(Settings(database_url=sqlite_db.url), [], db=sqlite_db)
    assert "TP_TELEGRAM_TOKEN" in str(caught.value)
    assert "TP_SLACK_BOT_TOKEN" in str(caught.value)


async def test_healthz_and_metrics(sqlite_db: Database) -> None:
    health = HealthState(sqlite_db, is_leader=lambda: True, scheduler_alive=lambda: True)
    app = build_web_app(health)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        ok = await client.get("/healthz")
        assert ok.status_code == 200 and ok.json()["database"] == "ok"
        health.scheduler_alive = lambda: False
        down = await client.get("/healthz")
        assert down.status_code == 503 and down.json()["scheduler"] == "stopped"
        metrics = await client.get("/metrics")
        assert "trending_messages_sent" in metrics.text


async def test_unreachable_database_is_unhealthy() -> None:
    db = Database("postgresql://nobody@127.0.0.1:1/none?connect_timeout=1")
    app = build_web_app(HealthState(db))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        response = await client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["database"].startswith("unreachable")
    db.dispose()


async def test_service_runs_delivers_and_stops_cleanly(sqlite_db: Database) -> None:
    sender, events = RecordingSender(), []
    sub, _ = subscribers.get_or_create(sqlite_db, Platform.TELEGRAM, "42")
    assert sub.id is not None
    outbox.enqueue(sqlite_db, sub.id, {"kind": "digest", "items": []}, key="k1")
    port = free_port()
    settings = Settings(database_url=sqlite_db.url, http_port=port)
    service = Service(settings, [platform(sender, events)], db=sqlite_db,
                      transport=httpx.MockTransport(lambda r: httpx.Response(503)))  # fmt: skip
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    async with httpx.AsyncClient() as client:
        for _ in range(200):
            try:
                response = await client.get(f"http://127.0.0.1:{port}/healthz")
                if sender.sent:
                    break
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.02)
    assert response.status_code == 200
    assert response.json()["leader"] is True
    assert sender.sent == ["42"]
    stop.set()
    await asyncio.wait_for(task, timeout=30)
    assert events == ["start", "stop"]


def test_sqlite_leader_is_exclusive(sqlite_db: Database) -> None:
    first, second = LeaderLock(sqlite_db), LeaderLock(sqlite_db)
    assert first.try_acquire() is True
    assert second.try_acquire() is False
    first._drop()
    assert second.try_acquire() is True
    second._drop()


@pytest.mark.postgres
def test_deployments_in_other_schemas_of_one_database_each_have_a_leader(pg_db: Database) -> None:
    here = LeaderLock(pg_db)
    assert here.try_acquire() is True
    elsewhere_url = pg_db.url.replace(pg_db.url.rsplit("%3D", 1)[1], "public")
    elsewhere = Database(elsewhere_url)
    try:
        assert LeaderLock(elsewhere).try_acquire() is True  # the public schema's own lock
        assert LeaderLock(pg_db).try_acquire() is False  # this schema's lock is taken
    finally:
        elsewhere.dispose()
        here._drop()


@pytest.mark.postgres
def test_postgres_leader_fails_over_when_the_holder_dies(pg_db: Database) -> None:
    first, second = LeaderLock(pg_db), LeaderLock(pg_db)
    assert first.try_acquire() is True
    assert first.try_acquire() is True  # still holding
    assert second.try_acquire() is False
    # The holder's process dies: its session ends without unlocking.
    assert first._connection is not None
    first._connection.invalidate()
    first._connection = None
    # The server ends the dead session (and frees its lock) a moment after the socket closes;
    # a follower retries, as ``keep_trying`` does every few seconds.
    deadline = time.monotonic() + 10
    while not second.try_acquire() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert second.is_leader
    second._drop()


def test_start_up_objects_are_kept_out_of_collections() -> None:
    class Cycle:
        """Garbage that only the collector can free."""

        def __init__(self) -> None:
            self.me = self

    gc.disable()  # only freeze_startup_objects may collect
    try:
        garbage = weakref.ref(Cycle())
        assert garbage() is not None
        freeze_startup_objects()
        assert gc.get_freeze_count() > 10_000  # the imports at least
        assert garbage() is None  # collected first, not frozen with the rest
    finally:
        gc.unfreeze()
        gc.enable()
