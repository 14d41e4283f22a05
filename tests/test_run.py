"""``trending-papers run`` as real processes against a fake Bot API server.

One process on SQLite answers a user and stops cleanly on SIGTERM. Two processes on
PostgreSQL share the database: exactly one runs the scheduler, the other takes over when it is
killed, and both deliver from the outbox; 1,000 digests arrive with none lost or repeated.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from feeds.records import Paper as PaperRecord
from storage import outbox, papers, subscribers
from storage.db import Database
from storage.models import SUBSCRIBERS, InterestKind
from tests import log_audit
from tests.fakes.telegram_api import FakeTelegram

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_service(
    fake: FakeTelegram, database_url: str, port: int, log: Path
) -> subprocess.Popen[bytes]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("TP_") or key == "TP_TEST_POSTGRES_URL"
    }
    env.update(
        PYTHONPATH=str(ROOT),
        TP_DATABASE_URL=database_url,
        TP_TELEGRAM_TOKEN=fake.token,
        TP_TELEGRAM_API_BASE_URL=fake.base_url,
        TP_HTTP_PORT=str(port),
        TP_LOG_FORMAT="json",
        TP_ARXIV_CATEGORIES="cs.LG",
        TP_ENGAGEMENT_SOURCES="hackernews",
    )
    log_audit.include(log)  # searched for the token at the end of the test run
    with log.open("ab") as handle:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "run"],
            cwd=ROOT,
            env=env,
            stdout=handle,
            stderr=handle,
        )


async def health(port: int) -> dict[str, object] | None:
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            return (await client.get(f"http://127.0.0.1:{port}/healthz")).json()  # type: ignore[no-any-return]
    except (httpx.HTTPError, ValueError):
        return None


async def wait_until(predicate: object, limit: float, what: str) -> float:
    """Poll an async predicate; returns the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        if await predicate():  # type: ignore[operator]
            return time.monotonic() - started
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {limit} s waiting for {what}")


def stop(process: subprocess.Popen[bytes], timeout: float = 30) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=timeout)


async def test_run_answers_users_and_stops_cleanly(tmp_path: Path) -> None:
    async with FakeTelegram() as fake:
        port = free_port()
        log = tmp_path / "service.log"
        process = start_service(fake, f"sqlite:///{tmp_path / 'run.db'}", port, log)
        try:
            user = fake.new_user("Ada")
            chat = fake.private_chat(user)
            await wait_until(lambda: _polling(fake), 60, "the bot to start polling")
            fake.user_sends(chat, user, "/start")
            reply = await fake.wait_for_message(chat.id, timeout=30)
            assert "/interests" in reply.plain_text
            status = await health(port)
            assert status is not None and status["status"] == "ok" and status["leader"] is True
        finally:
            code = stop(process)
        assert code == 0, log.read_text()
        output = log.read_text()
        assert fake.token not in output  # the token is in every Bot API URL: masked in logs
        assert '"message": "stopped"' in output
        # The Telegram platform loaded the digest's papers before it took the first command.
        assert "digest papers, index and trend scores loaded in" in output


async def _polling(fake: FakeTelegram) -> bool:
    return bool(fake.calls_to("getUpdates"))


def _due_now() -> tuple[str, str]:
    """A time zone and a digest time that fell due a few minutes ago, well inside staleness."""
    now = datetime.now(UTC)
    for offset in range(0, 24):
        local = now + timedelta(hours=offset)
        if 1 <= local.hour < 20:
            zone = "UTC" if offset == 0 else f"Etc/GMT-{offset}"
            return zone, (local - timedelta(minutes=5)).strftime("%H:%M")
    raise AssertionError("unreachable")


def seed_due_digests(db: Database, count: int) -> None:
    now = datetime.now(UTC)
    papers.upsert_papers(
        db,
        [
            PaperRecord(
                arxiv_id=f"2611.{i:05d}",
                version=1,
                title=f"Diffusion models, study {i}",
                abstract="Diffusion models and their sampling.",
                authors=("A. Author",),
                categories=("cs.LG",),
                primary_category="cs.LG",
                published=now - timedelta(hours=3),
                updated=now - timedelta(hours=3),
                announced=now - timedelta(hours=3),
            )
            for i in range(5)
        ],
    )
    zone, at = _due_now()
    base = dict(
        platform="telegram", kind="user", timezone=zone, digest_time=at, digest_size=3,
        digest_days="0123456", weekly=False, trend_weight=1.0, categories_mode="boost",
        active=True, paused=False, created_at=now,
    )  # fmt: skip
    with db.engine.begin() as connection:
        connection.execute(
            SUBSCRIBERS.insert(),
            [{**base, "chat_id": str(500_000 + i)} for i in range(count)],
        )
    for sub in subscribers.active(db):
        assert sub.id is not None
        subscribers.add_interests(db, sub.id, InterestKind.KEYWORD, ["diffusion"])


@pytest.mark.postgres
@pytest.mark.slow
async def test_two_replicas_share_the_work_and_fail_over(pg_db: Database, tmp_path: Path) -> None:
    async with FakeTelegram(known_chats_only=False) as fake:
        ports = [free_port(), free_port()]
        logs = [tmp_path / "a.log", tmp_path / "b.log"]
        first = start_service(fake, pg_db.url, ports[0], logs[0])
        second = start_service(fake, pg_db.url, ports[1], logs[1])
        processes = [first, second]
        try:

            async def one_leader() -> bool:
                states = [await health(port) for port in ports]
                return all(states) and sum(bool(s["leader"]) for s in states) == 1  # type: ignore[index]

            await wait_until(one_leader, 60, "exactly one leader")
            leader = 0 if (await health(ports[0]))["leader"] else 1  # type: ignore[index]
            follower = 1 - leader
            processes[leader].send_signal(signal.SIGKILL)
            processes[leader].wait()

            async def follower_leads() -> bool:
                state = await health(ports[follower])
                return bool(state and state["leader"])

            takeover = await wait_until(follower_leads, 45, "the follower to take over")
            assert takeover < 30, f"takeover took {takeover:.1f} s"
            processes[leader] = start_service(fake, pg_db.url, ports[leader], logs[leader])

            async def restarted() -> bool:
                state = await health(ports[leader])
                return bool(state) and state["leader"] is False  # type: ignore[index]

            await wait_until(restarted, 60, "the restarted replica to follow")
            seed_due_digests(pg_db, 1000)

            async def all_sent() -> bool:
                counts = outbox.counts(pg_db)
                return counts.get("sent", 0) >= 1000 and not counts.get("pending")

            await wait_until(all_sent, 240, "1,000 digests to be delivered")
        finally:
            codes = [stop(process) for process in processes]
        assert codes == [0, 0], [log.read_text()[-2000:] for log in logs]
        per_chat = Counter(
            call.params["chat_id"] for call in fake.calls_to("sendMessage") if call.ok
        )
        assert len(per_chat) == 1000  # none lost
        assert max(per_chat.values()) == 1  # none repeated
        senders = [
            sum(1 for line in log.read_text().splitlines() if '"message": "delivered"' in line)
            for log in logs
        ]
        assert all(count > 0 for count in senders), senders  # both replicas delivered
        assert json.loads(logs[follower].read_text().splitlines()[0])  # JSON logs
