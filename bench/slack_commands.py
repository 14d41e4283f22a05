"""Slash-command throughput and time to ack through the real slack-bolt app.

Usage: python bench/slack_commands.py [N] [--concurrency C] [--papers P] [--baseline N] [--tuned]

N signed ``/papers`` requests (default 1,000) go through the real ``AsyncApp`` behind the
Starlette route the service mounts (``/slack/events``, over httpx's ASGI transport, signature
checked on every one), the real CommandRouter on a SQLite file in a temporary directory, and
Block Kit rendering; answers are posted to a fake Slack's ``response_url`` on loopback, and
``users.info`` is answered by it too. Simulated users each run a short session (subscribe,
interests add, settings, search, digest, help); C users are active at once (default 32), and
each sends its next command once the answer to the previous one has arrived.

Prints commands/s (all answers delivered), time to ack (request sent → HTTP 200) p50/p99/max
and time to answer (request sent → answer at the response_url); a warm-up session runs first,
off the clock. ``--tuned`` runs the process as ``bench`` recommends for the service: the
start-up heap frozen out of the garbage collector (``gc.freeze()``; full collections over it
stall the event loop for ~0.2 s) and one worker thread per CPU (``/digest`` ranks in a worker
thread, and more CPU-bound threads than CPUs only take the interpreter lock from the event
loop that sends the acks). Then the same for
``--baseline`` commands (default 200) through the naive way this replaces: a listener that
does the work first and acks with the answer (bolt's ``process_before_response``), so the
ack waits for the database and Slack times out whenever a command takes over 3 s.
"""

from __future__ import annotations

import sys
from pathlib import Path

# The fake Slack server lives with the tests; run from anywhere in the repository.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import asyncio
import gc
import hashlib
import hmac
import itertools
import logging
import os
import random
import re
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient
from starlette.applications import Starlette

from bot.chat.slack import EVENTS_PATH, assemble, slack_routes
from bot.chat.slack_render import render
from bot.commands import SORRY, CommandRouter
from bot.config import Settings
from bot.messages import Command
from bot.throttle import Throttle
from feeds.records import Paper as PaperRecord
from storage.db import Database
from storage.migrate import upgrade
from storage.models import ChatKind, Platform
from storage.papers import upsert_papers
from tests.fakes.slack_api import FakeSlack

SECRET = "bench-signing-secret"
TOPICS = (
    "diffusion models",
    "graph neural networks",
    "reinforcement learning",
    "protein design",
    "large language models",
    "contrastive learning",
    "speech recognition",
    "robot control",
    "bayesian optimization",
    "causal inference",
)
FILLER = """method results show propose approach data training evaluation benchmark performance
efficient scalable robust novel framework analysis theory experiments improve state art""".split()
CATEGORIES = ("cs.LG", "cs.CL", "cs.CV", "cs.AI", "stat.ML")


def seed_papers(db: Database, count: int, now: datetime, rng: random.Random) -> None:
    """Fresh synthetic papers about one or two topics each, announced in the last two days."""
    records = []
    for number in range(count):
        topics = rng.sample(TOPICS, rng.randint(1, 2))
        when = now - timedelta(hours=rng.uniform(1, 40))
        records.append(
            PaperRecord(
                arxiv_id=f"2611.{number + 10000:05d}",
                version=1,
                title=f"{topics[0].capitalize()} {' '.join(rng.choices(FILLER, k=5))}",
                abstract=" ".join([*topics, *rng.choices(FILLER, k=rng.randint(60, 120))]),
                authors=tuple(f"Author {rng.randint(1, 500)}" for _ in range(rng.randint(1, 6))),
                categories=(rng.choice(CATEGORIES),),
                primary_category=rng.choice(CATEGORIES),
                published=when,
                updated=when,
                announced=when,
            )
        )
    upsert_papers(db, records)


def session(rng: random.Random) -> list[str]:
    """One user's commands, the mix the benchmark measures."""
    first, second = rng.sample(TOPICS, 2)
    return [
        "subscribe",
        f"interests add {first}, {second}",
        "settings",
        f"search {rng.choice(first.split())}",
        "digest",
        "help",
    ]


def signed(body: str) -> dict[str, str]:
    """Headers of a request Slack signed with ``SECRET``."""
    stamp = str(int(time.time()))
    digest = hmac.new(SECRET.encode(), f"v0:{stamp}:{body}".encode(), hashlib.sha256)
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": f"v0={digest.hexdigest()}",
    }


def naive_app(settings: Settings, router: CommandRouter, client: AsyncWebClient) -> AsyncApp:
    """The baseline: answer inside the ack, after the work (``process_before_response``)."""
    app = AsyncApp(signing_secret=SECRET, client=client, process_before_response=True, name="naive")

    @app.command(re.compile(r"^/"))
    async def on_command(ack: Any, body: dict[str, Any]) -> None:
        name, _, args = str(body.get("text") or "help").partition(" ")
        team, user = str(body["team_id"]), str(body["user_id"])
        reply = await router.handle(
            Command(
                platform=Platform.SLACK,
                chat_id=f"{team}:{user}",
                user_id=f"{team}:{user}",
                name=name,
                args=args,
                chat_kind=ChatKind.USER,
                user_is_admin=True,
                workspace_id=team,
            )
        )
        messages = render(reply)
        first = messages[0] if messages else None
        await ack(
            text=first.text if first else "",
            blocks=first.blocks if first else None,
            response_type="in_channel",
        )

    return app


@dataclass
class Result:
    """What one run measured."""

    commands: int
    seconds: float = 0.0
    acks: list[float] = field(default_factory=list)
    answers: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    failures: int = 0

    @property
    def rate(self) -> float:
        """Commands answered per second over the whole run."""
        return self.commands / self.seconds


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0–100) of ``values``."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


async def user_session(
    http: httpx.AsyncClient,
    fake: FakeSlack,
    user: str,
    commands: list[str],
    gate: asyncio.Semaphore,
    keys: itertools.count[int],
    result: Result,
    *,
    naive: bool,
) -> None:
    """Send each command; record time to ack, then (unless naive) wait for its answer."""
    async with gate:
        for text in commands:
            key = f"r{next(keys)}"
            body = urlencode(
                {
                    "team_id": fake.team_id,
                    "channel_id": fake.dm_channel(user),
                    "channel_name": "directmessage",
                    "user_id": user,
                    "user_name": user.lower(),
                    "command": "/papers",
                    "text": text,
                    "response_url": fake.response_url(key),
                    "trigger_id": "1.2.3",
                }
            )
            mark = len(fake.calls)
            started = time.perf_counter()
            response = await http.post(EVENTS_PATH, content=body, headers=signed(body))
            acked = time.perf_counter() - started
            result.acks.append(acked)
            if response.status_code != 200:
                result.failures += 1
                continue
            if naive:
                answer = response.text
                result.answers[text.split()[0]].append(acked)
            else:
                try:
                    call = await fake.wait_for(
                        lambda c, key=key: (  # type: ignore[misc]
                            c.method == "response_url" and c.params.get("response_url_key") == key
                        ),
                        timeout=30.0,
                        since=mark,
                    )
                except TimeoutError:
                    result.failures += 1
                    continue
                answer = str(call.params.get("text"))
                result.answers[text.split()[0]].append(time.perf_counter() - started)
            if SORRY in answer:
                result.failures += 1


async def run(
    commands: int,
    concurrency: int,
    papers: int,
    *,
    naive: bool,
    tuned: bool = False,
    seed: int = 7,
) -> Result:
    """One complete run in a fresh temporary database."""
    if tuned:
        workers = os.cpu_count() or 1
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(workers))
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        db = Database(url)
        upgrade(db)
        now = datetime.now(UTC)
        seed_papers(db, papers, now, rng)
        async with FakeSlack() as fake:
            settings = Settings(
                slack_bot_token=fake.bot_token,  # type: ignore[arg-type]
                slack_signing_secret=SECRET,  # type: ignore[arg-type]
                slack_api_base_url=fake.base_url,
                digest_size=5,
                database_url=url,
            )
            router = CommandRouter(db, settings, throttle=Throttle(20, 60.0))
            runtime = None
            if naive:
                client = AsyncWebClient(token=fake.bot_token, base_url=fake.base_url)
                routes = slack_routes(naive_app(settings, router, client))
            else:
                runtime = assemble(settings, router, db)
                routes = slack_routes(runtime.app)
            users = -(-commands // 6)
            people = [f"U{n:09d}" for n in range(users)]
            for person in people:
                fake.add_user(person, person.lower(), tz="Europe/Berlin")
            scripts = [session(rng) for _ in people]
            # Trim the last sessions so exactly ``commands`` requests are sent.
            extra = sum(len(s) for s in scripts) - commands
            while extra > 0:
                scripts[-1].pop()
                extra -= 1
                if not scripts[-1]:
                    scripts.pop()
                    people.pop()
            result = Result(commands=sum(len(s) for s in scripts))
            transport = httpx.ASGITransport(app=Starlette(routes=routes))
            async with httpx.AsyncClient(transport=transport, base_url="http://slack") as http:
                gate = asyncio.Semaphore(concurrency)
                keys = itertools.count()
                # Warm up (first-use imports, auth.test, connection pools) off the clock.
                warm = "U0WARMUP00"
                fake.add_user(warm, "warm", tz="Europe/Berlin")
                await user_session(
                    http, fake, warm, session(rng), gate, keys, Result(0), naive=naive
                )
                if tuned:
                    gc.collect()
                    gc.freeze()
                started = time.perf_counter()
                await asyncio.gather(
                    *(
                        user_session(http, fake, person, script, gate, keys, result, naive=naive)
                        for person, script in zip(people, scripts, strict=True)
                    )
                )
                result.seconds = time.perf_counter() - started
            if runtime is not None:
                await runtime.adapter.close()
        db.dispose()
    return result


def report(label: str, result: Result) -> None:
    """Print one run's figures."""
    answers = [value for values in result.answers.values() for value in values]
    print(
        f"{label}: {result.commands} commands in {result.seconds:.1f} s → "
        f"{result.rate:.0f} commands/s; time to ack p50 {percentile(result.acks, 50) * 1000:.1f} "
        f"ms, p99 {percentile(result.acks, 99) * 1000:.1f} ms, max "
        f"{max(result.acks) * 1000:.1f} ms ({sum(a >= 3.0 for a in result.acks)} ≥ 3 s); "
        f"time to answer p50 {percentile(answers, 50) * 1000:.1f} ms, "
        f"p99 {percentile(answers, 99) * 1000:.1f} ms; failures {result.failures}"
    )
    for name, values in sorted(result.answers.items()):
        print(
            f"  {name:<10} answer p50 {percentile(values, 50) * 1000:7.1f} ms   "
            f"p99 {percentile(values, 99) * 1000:7.1f} ms   ({len(values)})"
        )


def main() -> None:
    """Parse arguments, run the benchmark and its baseline, print the comparison."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("commands", nargs="?", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--papers", type=int, default=400, help="fresh papers in the database")
    parser.add_argument(
        "--baseline", type=int, default=200, help="commands for the naive run (0: skip)"
    )
    parser.add_argument(
        "--tuned", action="store_true", help="gc.freeze() and one worker thread per CPU"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    setup = "tuned" if args.tuned else "Python defaults"
    result = asyncio.run(
        run(args.commands, args.concurrency, args.papers, naive=False, tuned=args.tuned)
    )
    report(f"slack /papers, ack first, answer via response_url ({setup})", result)
    late = sum(a >= 3.0 for a in result.acks)
    p99 = percentile(result.acks, 99)
    print(
        f"target: every ack < 3 s: {'met' if not late else 'MISSED'}; "
        f"p99 < 100 ms: {'met' if p99 < 0.1 else 'MISSED'} ({p99 * 1000:.1f} ms)"
    )
    if args.baseline > 0:
        baseline = asyncio.run(
            run(args.baseline, args.concurrency, args.papers, naive=True, tuned=args.tuned)
        )
        report(f"naive baseline, work first, answer in the ack ({setup})", baseline)
        ratio = percentile(baseline.acks, 99) / p99
        print(f"ratio: {ratio:.1f}× lower p99 time to ack than answering inside the ack")
    if result.failures or late:
        sys.exit(1)


if __name__ == "__main__":
    main()
