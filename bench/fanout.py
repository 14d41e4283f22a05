"""Fan-out: N subscribers with digests due at the same minute, through the real Telegram sender.

Usage: python bench/fanout.py [N] [--scale S]     (defaults: N = 10,000, S = 2)

The digests go from the outbox through ``DeliveryWorker`` and ``TelegramSender`` (a real
python-telegram-bot ``Bot``) to a fake Bot API server on loopback, in its own process, that
enforces Telegram's limits (30 messages/s overall, 1/s per chat) and answers 429 when they
are exceeded. To finish in minutes, time runs ``S`` times faster on both sides: the fake's
flood clock is scaled by ``S`` (its limits become 30·S messages per real second) and our
limiter reads a clock scaled the same way (``monotonic() × S``, sleeping ``t / S``), with
the limits themselves unchanged. The floor is therefore ``N / (30 × S)`` real seconds, and
both processes must really handle 30·S messages a second: S = 2 (60/s) leaves each of the
two Python processes room on a 2-core machine; S = 1 is the real clock.

Prints: total time against that floor, the share of the limit's throughput reached, 429s
received, messages lost, duplicates, peak memory and each process's CPU per message; and the
same run with a naive sender that sleeps 1/30 s after every message (the "sleep blindly"
baseline) for the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

os.environ.setdefault("PTB_TIMEDELTA", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from telegram import Bot
from telegram.request import HTTPXRequest

from bot.chat.telegram import TelegramSender
from bot.delivery import DeliveryPolicy, DeliveryWorker
from bot.digest import DigestItem, payload
from bot.ratelimit import TELEGRAM_LIMITS, ChatRateLimiter, Limit, PlatformLimits
from storage import outbox
from storage.db import Database
from storage.migrate import upgrade
from storage.models import OUTBOX, SUBSCRIBERS, Platform

NOW = datetime(2026, 11, 16, 8, 0, tzinfo=UTC)
SERVER = """
import asyncio, json, sys, time
from collections import Counter
from tests.fakes.telegram_api import FakeTelegram

async def main():
    async with FakeTelegram(enforce_limits=True, time_scale=float(sys.argv[1]),
                            known_chats_only=False) as fake:
        print(json.dumps({"base_url": fake.base_url, "base_file_url": fake.base_file_url,
                          "token": fake.token}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        per_chat = Counter(c.params.get("chat_id") for c in fake.calls_to("sendMessage") if c.ok)
        print(json.dumps({"per_chat": per_chat, "too_many_requests": fake.stats.too_many_requests,
                          "cpu_seconds": time.process_time()}), flush=True)

asyncio.run(main())
"""


def seed(db: Database, n: int) -> None:
    """N private-chat subscribers, each with one digest of five papers in the outbox."""
    items = [
        DigestItem(
            arxiv_id=f"2611.{i:05d}",
            title=f"A paper about <diffusion> & scaling, part {i}",
            authors=("Ada Lovelace", "Alan Turing", "Grace Hopper", "Edsger Dijkstra"),
            primary_category="cs.LG",
            url=f"https://arxiv.org/abs/2611.{i:05d}",
            why="matches “diffusion”",
            trend_line="🔥 HN 120 pts · Bluesky 40 likes ▁▂▅█",
        )
        for i in range(5)
    ]
    body = payload(items, heading="Your papers for 2026-11-16")
    chat = {
        "platform": "telegram",
        "kind": "user",
        "timezone": "UTC",
        "digest_time": "08:00",
        "digest_size": 5,
        "digest_days": "0123456",
        "weekly": False,
        "trend_weight": 1.0,
        "categories_mode": "boost",
        "active": True,
        "paused": False,
        "created_at": NOW,
    }
    message = {"payload": body, "status": "pending", "attempts": 0, "next_attempt_at": NOW,
               "created_at": NOW}  # fmt: skip
    with db.engine.begin() as connection:
        connection.execute(
            SUBSCRIBERS.insert(),
            [{**chat, "id": i + 1, "chat_id": str(100_000 + i)} for i in range(n)],
        )
        connection.execute(
            OUTBOX.insert(),
            [
                {**message, "subscriber_id": i + 1, "idempotency_key": f"digest:{i}"}
                for i in range(n)
            ],
        )


def start_fake_server(scale: float) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """The fake Bot API in its own process, so it does not share a core with the sender."""
    root = Path(__file__).resolve().parents[1]
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(scale)],
        cwd=root,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert server.stdout is not None
    return server, json.loads(server.stdout.readline())


def server_stats(server: subprocess.Popen[str]) -> dict[str, Any]:
    """Ask the fake for what it received, then let it exit."""
    assert server.stdin is not None
    assert server.stdout is not None
    server.stdin.write("stats\n")
    server.stdin.flush()
    stats: dict[str, Any] = json.loads(server.stdout.readline())
    server.stdin.close()
    server.wait(timeout=30)
    return stats


async def deliver(db: Database, fake: dict[str, str], scale: float, *, naive: bool) -> float:
    """Drain the outbox through the real Telegram sender; returns the seconds it took."""
    # One connection per concurrent send: PTB's default pool of 1 would serialise them.
    request = HTTPXRequest(connection_pool_size=8, pool_timeout=30.0)
    bot = Bot(fake["token"], base_url=fake["base_url"], base_file_url=fake["base_file_url"],
              request=request)  # fmt: skip
    async with bot:
        sender = TelegramSender(bot)
        if naive:
            # The baseline: no schedule, one message at a time and a fixed pause after each.
            unlimited = Limit(10**9)
            limits = PlatformLimits(unlimited, unlimited, unlimited)
            policy = DeliveryPolicy(batch_size=500, concurrency=1)
            original = sender.send

            async def send_then_sleep(*args: Any, **kwargs: Any) -> str:
                result = await original(*args, **kwargs)
                await asyncio.sleep(1 / (30 * scale))
                return result

            sender.send = send_then_sleep  # type: ignore[method-assign]
        else:
            limits = TELEGRAM_LIMITS
            policy = DeliveryPolicy(batch_size=500, concurrency=8)

        async def scaled_sleep(seconds: float) -> None:
            await asyncio.sleep(seconds / scale)

        limiter = ChatRateLimiter(
            limits, clock=lambda: time.monotonic() * scale, sleep=scaled_sleep
        )
        origin = time.monotonic()
        worker = DeliveryWorker(
            db,
            {Platform.TELEGRAM: sender},
            policy=policy,
            limiters={Platform.TELEGRAM: limiter},
            # The worker's clock runs at the fake's speed, so a retry_after (in the fake's
            # seconds) is honoured exactly.
            now=lambda: NOW + timedelta(seconds=(time.monotonic() - origin) * scale),
        )
        while sum(outbox.counts(db).get(s, 0) for s in ("pending", "sending")):
            if (await worker.run_once()).claimed == 0:
                await asyncio.sleep(0.05)  # a backed-off message is not due yet
        return time.monotonic() - origin


def run(n: int, scale: float, *, naive: bool) -> dict[str, float]:
    """One complete run in a fresh database; returns its figures."""
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite:///{Path(tmp) / 'fanout.db'}")
        upgrade(db)
        seed(db, n)
        server, fake = start_fake_server(scale)
        cpu_before = time.process_time()
        try:
            elapsed = asyncio.run(deliver(db, fake, scale, naive=naive))
        finally:
            cpu = time.process_time() - cpu_before
            stats = server_stats(server)
        per_chat = Counter(stats["per_chat"])
        unsent = n - outbox.counts(db).get("sent", 0)
        db.dispose()
    return {
        "elapsed": elapsed,
        "floor": n / (30 * scale),
        "too_many_requests": stats["too_many_requests"],
        "lost": n - len(per_chat),
        "duplicates": sum(c - 1 for c in per_chat.values()),
        "unsent_rows": unsent,
        "sender_cpu_ms": 1000 * cpu / n,
        "server_cpu_ms": 1000 * stats["cpu_seconds"] / n,
    }


def main() -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=10_000)
    parser.add_argument("--scale", type=float, default=2.0, help="time scale of both sides")
    parser.add_argument("--baseline-n", type=int, default=1_000, help="messages for the naive run")
    args = parser.parse_args()
    print(
        f"{args.n:,} digests due at once; the fake's flood clock and our limiter's clock both run"
        f" ×{args.scale:g} (Telegram's limits unchanged: {30 * args.scale:g} msg per real second)"
    )
    load_before = os.getloadavg()[0]
    result = run(args.n, args.scale, naive=False)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    throughput = args.n / result["elapsed"]
    limit = 30 * args.scale
    print(
        f"total time:    {result['elapsed']:.1f} s; floor set by the limits {result['floor']:.1f} s"
        f" (real time: {result['elapsed'] * args.scale:.0f} s vs {args.n / 30:.0f} s)"
    )
    print(f"throughput:    {throughput:.1f} msg/s = {100 * throughput / limit:.1f} % of the limit")
    print(
        f"429s received: {result['too_many_requests']:.0f}   lost: {result['lost']:.0f}   "
        f"duplicates: {result['duplicates']:.0f}   unsent outbox rows: {result['unsent_rows']:.0f}"
    )
    print(f"peak memory:   {peak_mb:.0f} MB max RSS (sender process)")
    print(
        f"CPU per message: sender {result['sender_cpu_ms']:.1f} ms, fake server"
        f" {result['server_cpu_ms']:.1f} ms; load average {load_before:.1f} before the run,"
        f" {os.getloadavg()[0]:.1f} after ({os.cpu_count()} cores)"
    )
    naive = run(args.baseline_n, args.scale, naive=True)
    naive_rate = args.baseline_n / naive["elapsed"]
    print(
        f"naive sender (one at a time, sleep 1/30 s after each; {args.baseline_n:,} messages): "
        f"{naive_rate:.1f} msg/s, {naive['too_many_requests']:.0f} 429s "
        f"→ the scheduled worker is {throughput / naive_rate:.1f}× faster"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
