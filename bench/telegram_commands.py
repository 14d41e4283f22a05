"""Command throughput and latency through the real Telegram Application.

Usage: python bench/telegram_commands.py [N] [--rate R] [--concurrency C] [--papers P]
       [--baseline-users B] [--without-digest]

N simulated users (default 1,000) each run a short session against a fake Bot API server on
loopback: /start, /interests add, /settings, /search, /digest, /help — every command goes
through python-telegram-bot's real Application (long polling, handlers, HTML rendering) and
the real CommandRouter on a SQLite file in a temporary directory. Two runs:

- at a given load: all N users are subscribed (through the bot, not measured), then all are in
  the chat at once, each sending the six commands in a random order and reading each answer
  for a random while (N/R seconds on average), so together they send R commands/s (default
  250, above the 200 the bot must sustain) in a steady mix. Latency here is what people see
  while the bot carries that load.
- at saturation: C users at a time (default 32) send their next command the moment the answer
  arrives, with no pause, so the bot never idles. This gives the most commands/s the bot can
  answer; latency here is mostly queueing (C commands in flight share one CPU), and grows in
  proportion to C whatever the bot does.

The fake server and the simulated users run in a child process, the bot in this one, as they
would in production (Telegram is not inside the bot's process); otherwise the benchmark would
mostly measure the fake server's own HTTP handling competing with the bot for one CPU.

Prints commands/s and p50/p99 latency (update queued at the fake server → the bot's answer
recorded there), per command and overall, the CPU each process spent per command (the bot's
bounds the throughput; the child's shows whether the fake is the bottleneck), then the
saturation run for B users (default 200) through the naive way this replaces: a new database engine
(and connections) per command, trend scores computed for every /digest, and PTB's default of
processing one update at a time. As the service does, the bot loads the digest's papers
before it takes commands and freezes its start-up objects out of the garbage collector's way.

/digest is built as ``trending-papers run`` builds it, ranked with the trend scores of the
fresh papers, half of which have two days of engagement on one to four sources.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# The fake Bot API server lives with the tests; run from anywhere in the repository.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("PTB_TIMEDELTA", "1")

import argparse
import asyncio
import gc
import logging
import multiprocessing
import random
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from typing import Any

from telegram import Bot

from bot.chat.telegram import build_application, start_telegram, stop_telegram
from bot.commands import SORRY, CommandRouter, DigestBuilder, digest_builder
from bot.config import Settings
from bot.messages import Command, Reply
from bot.service import freeze_startup_objects
from bot.throttle import Throttle
from bot.trend import provider_for
from feeds.records import Paper as PaperRecord
from feeds.records import Signal
from storage.db import Database
from storage.engagement import add_snapshots
from storage.migrate import upgrade
from storage.papers import upsert_papers
from tests.fakes.telegram_api import FakeTelegram, TgChat, TgUser

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
SURNAMES = ("Nguyen", "Smith", "Müller", "García", "Kowalski", "Tanaka", "Okafor", "Rossi")
FORENAMES = ("Ana", "Bo", "Chen", "Dmitri", "Eve", "Farah", "Giulia", "Hiro")
CATEGORIES = ("cs.LG", "cs.CL", "cs.CV", "cs.AI", "stat.ML")
PROBES_PER_CHAT = 10


def seed_papers(db: Database, count: int, now: datetime, rng: random.Random) -> None:
    """Fresh synthetic papers: each about one or two topics, announced in the last two days."""
    records = []
    for number in range(count):
        topics = rng.sample(TOPICS, rng.randint(1, 2))
        title = f"{topics[0].capitalize()} {' '.join(rng.choices(FILLER, k=5))}"
        abstract = " ".join([*topics, *rng.choices(FILLER, k=rng.randint(60, 120)), *topics])
        when = now - timedelta(hours=rng.uniform(1, 40))
        records.append(
            PaperRecord(
                arxiv_id=f"2611.{number + 10000:05d}",
                version=1,
                title=title,
                abstract=abstract,
                authors=tuple(
                    f"{rng.choice(FORENAMES)} {rng.choice(SURNAMES)}"
                    for _ in range(rng.randint(1, 6))
                ),
                categories=(rng.choice(CATEGORIES),),
                primary_category=rng.choice(CATEGORIES),
                published=when,
                updated=when,
                announced=when,
            )
        )
    upsert_papers(db, records)


ENGAGEMENT = (
    ("hackernews", "points"),
    ("reddit", "score"),
    ("bluesky", "likes"),
    ("huggingface", "upvotes"),
)
POLLS = 12
POLL_INTERVAL = timedelta(hours=4)


def seed_engagement(db: Database, count: int, now: datetime, rng: random.Random) -> None:
    """Half the papers talked about on one to four sources, polled every 4 hours for 2 days."""
    talked = [
        (f"2611.{number + 10000:05d}", rng.randint(1, len(ENGAGEMENT)), rng.uniform(1, 50))
        for number in rng.sample(range(count), count // 2)
    ]
    for poll in range(POLLS):
        moment = now - POLL_INTERVAL * (POLLS - 1 - poll)
        add_snapshots(
            db,
            [
                Signal(
                    arxiv_id,
                    source,
                    metric,
                    float(int(pace * (poll + 1))),
                    moment,
                    url=f"https://example.org/{source}/{arxiv_id}",
                )
                for arxiv_id, sources, pace in talked
                for source, metric in ENGAGEMENT[:sources]
            ],
        )


def production_digest(settings: Settings) -> DigestBuilder:
    """/digest as ``trending-papers run`` builds it: ranked with the trend scores."""
    return digest_builder(settings, provider_for(settings))


def session(rng: random.Random, *, digest: bool = True) -> list[str]:
    """One user's commands, the mix the benchmark measures."""
    first, second = rng.sample(TOPICS, 2)
    commands = [
        "/start",
        f"/interests add {first}, {second}",
        "/settings",
        f"/search {rng.choice(first.split())}",
        "/digest",
        "/help",
    ]
    return [c for c in commands if digest or c != "/digest"]


class EnginePerCommandRouter:
    """The naive baseline: a fresh engine (new connections, PRAGMAs) for every command."""

    def __init__(self, url: str, settings: Settings, throttle: Throttle) -> None:
        self.url = url
        self.settings = settings
        self.throttle = throttle

    async def handle(self, command: Command) -> Reply:
        """Open the database, answer, close it again."""
        db = Database(self.url)
        try:
            router = CommandRouter(
                db, self.settings, throttle=self.throttle, digest=production_digest(self.settings)
            )
            return await router.handle(command)
        finally:
            db.dispose()


@dataclass
class Result:
    """What one run measured."""

    users: int
    commands: int
    seconds: float
    latencies: dict[str, list[float]] = field(default_factory=dict)
    failures: int = 0
    extra_messages: int = 0
    round_trips_per_second: float = 0.0
    bot_cpu_seconds: float = 0.0
    load_cpu_seconds: float = 0.0
    """CPU of the child process (fake server and simulated users) during the run."""

    @property
    def rate(self) -> float:
        """Commands per second over the whole run."""
        return self.commands / self.seconds

    def all_latencies(self) -> list[float]:
        """Every command's latency in seconds."""
        return [value for values in self.latencies.values() for value in values]


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0–100) of ``values``."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


async def user_session(
    fake: FakeTelegram,
    user: TgUser,
    chat: TgChat,
    commands: list[str],
    gate: asyncio.Semaphore,
    result: Result,
    send_at: list[float | None],
) -> None:
    """Send each command (at its time, if it has one), wait for the answer, time the answer."""
    async with gate:
        for text, due in zip(commands, send_at, strict=True):
            if due is not None and due > time.perf_counter():
                await asyncio.sleep(due - time.perf_counter())
            mark = len(fake.calls)
            started = time.perf_counter()
            fake.user_sends(chat, user, text)
            try:
                reply = await fake.wait_for_message(chat.id, timeout=60.0, since=mark)
            except TimeoutError:
                result.failures += 1
                continue
            result.latencies.setdefault(text.split()[0], []).append(time.perf_counter() - started)
            if SORRY in reply.plain_text:
                result.failures += 1


def send_times(
    scripts: list[list[str]], rate: float | None, rng: random.Random
) -> list[list[float | None]]:
    """When each user sends each command, in seconds from the start (None: right away).

    At a given load the commands of all users together arrive as a Poisson stream of ``rate``
    per second; each user's commands keep their order and take random places in that stream.
    A user whose answer comes after their next place in the stream sends the next command
    right after it. At saturation nobody pauses.
    """
    if not rate:
        return [[None for _ in script] for script in scripts]
    turns = [user for user, script in enumerate(scripts) for _ in script]
    rng.shuffle(turns)
    times: list[list[float | None]] = [[] for _ in scripts]
    clock = 0.0
    for user in turns:
        clock += rng.expovariate(rate)
        times[user].append(clock)
    return times


@dataclass(frozen=True)
class Workload:
    """What the simulated users do in one run."""

    users: int
    concurrency: int
    """Users at a time at saturation (and while they subscribe before a run at a given load)."""
    rate: float | None = None
    """Commands/s all users send together; None: saturation."""
    digest: bool = True
    seed: int = 7


async def _load(connection: Connection, work: Workload) -> None:
    """Child process: serve the fake Bot API, play the users once the bot says it is up."""
    loop = asyncio.get_running_loop()
    users, concurrency, rate = work.users, work.concurrency, work.rate
    rng = random.Random(work.seed)
    async with FakeTelegram(max_long_poll=1.0) as fake:
        probes = [fake.private_chat(fake.new_user("Probe")).id for _ in range(concurrency)]
        connection.send((fake.token, fake.base_url, probes))
        people = [fake.new_user(f"User{n}") for n in range(users)]
        chats = [fake.private_chat(person) for person in people]
        scripts = [session(rng, digest=work.digest) for _ in people]
        setup: list[list[str]] = []
        if rate:
            # A community in its steady state: everyone subscribed (not measured), then each
            # user's commands in a random order, so every moment sees the same mix.
            setup = [script[:2] for script in scripts]
            for script in scripts:
                rng.shuffle(script)
        schedule = send_times(scripts, rate, rng)
        result = Result(users=users, commands=sum(len(s) for s in scripts), seconds=0.0)
        await loop.run_in_executor(None, connection.recv)  # the bot is polling
        if setup:
            ignored = Result(users=users, commands=0, seconds=0.0)
            setup_gate = asyncio.Semaphore(max(concurrency, 8))
            await asyncio.gather(
                *(
                    user_session(fake, person, chat, script, setup_gate, ignored, [None, None])
                    for person, chat, script in zip(people, chats, setup, strict=True)
                )
            )
        connection.send("measuring")
        gate = asyncio.Semaphore(users if rate else concurrency)
        # The fake keeps every call it serves, so its heap only grows and each full collection
        # walks all of it: pauses of 100 ms and more here that the users would measure as the
        # bot's latency. Nothing of the load's is garbage until the run ends.
        gc.collect()
        gc.disable()
        cpu = time.process_time()
        started = time.perf_counter()
        offsets = [[None if at is None else started + at for at in times] for times in schedule]
        try:
            await asyncio.gather(
                *(
                    user_session(fake, person, chat, script, gate, result, times)
                    for person, chat, script, times in zip(
                        people, chats, scripts, offsets, strict=True
                    )
                )
            )
        finally:
            result.seconds = time.perf_counter() - started
            result.load_cpu_seconds = time.process_time() - cpu
            gc.enable()
        await asyncio.sleep(0.2)  # a trailing second part of a reply would land now
        probed = len(probes) * PROBES_PER_CHAT
        answered = result.commands + sum(len(script) for script in setup)
        result.extra_messages = fake.stats.messages_sent - probed - answered
        connection.send(result)
        await loop.run_in_executor(None, connection.recv)  # the bot has stopped


async def round_trips(bot: Bot, chats: list[int]) -> float:
    """Plain sendMessage calls per second to the fake server, as many in flight as users.

    Every command costs at least one such call, so this is the ceiling for commands/s on this
    machine, whatever the bot does.
    """

    async def probe(chat_id: int) -> None:
        """Send this chat its share of probe messages, one after another."""
        for number in range(PROBES_PER_CHAT):
            await bot.send_message(chat_id, f"probe {number}")

    started = time.perf_counter()
    await asyncio.gather(*(probe(chat_id) for chat_id in chats))
    return len(chats) * PROBES_PER_CHAT / (time.perf_counter() - started)


def load_process(connection: Connection, work: Workload) -> None:
    """Entry point of the child process."""
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(_load(connection, work))


async def run(work: Workload, papers: int, *, naive: bool) -> Result:
    """One complete run in a fresh temporary database."""
    loop = asyncio.get_running_loop()
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    child = context.Process(target=load_process, args=(theirs, work))
    child.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{Path(tmp) / 'bench.db'}"
            db = Database(url)
            upgrade(db)
            now = datetime.now(UTC)
            seed_papers(db, papers, now, random.Random(work.seed))
            seed_engagement(db, papers, now, random.Random(work.seed))
            token, base_url, probes = await loop.run_in_executor(None, ours.recv)
            settings = Settings(
                telegram_token=token,
                telegram_api_base_url=base_url,
                digest_size=5,
                database_url=url,
            )
            throttle = Throttle(20, 60.0)
            router: Any = (
                EnginePerCommandRouter(url, settings, throttle)
                if naive
                else CommandRouter(
                    db, settings, throttle=throttle, digest=production_digest(settings)
                )
            )
            app = build_application(settings, router, concurrency=1 if naive else 64)
            if not naive:
                await router.warm_up()  # as the service's Telegram platform does on start
            await start_telegram(app)
            freeze_startup_objects()  # as the service does once its platforms are up
            try:
                ceiling = await round_trips(app.bot, probes)
                ours.send("go")
                await loop.run_in_executor(None, ours.recv)  # set-up done, measuring now
                cpu = time.process_time()
                result: Result = await loop.run_in_executor(None, ours.recv)
                result.bot_cpu_seconds = time.process_time() - cpu
                result.round_trips_per_second = ceiling
            finally:
                await stop_telegram(app)
                ours.send("stop")
            db.dispose()
    finally:
        child.join(timeout=30)
        if child.is_alive():
            child.kill()
    return result


def report(label: str, result: Result) -> None:
    """Print one run's figures."""
    every = result.all_latencies()
    print(
        f"{label}: {result.users} users, {result.commands} commands in {result.seconds:.1f} s → "
        f"{result.rate:.0f} commands/s; latency p50 {percentile(every, 50) * 1000:.1f} ms, "
        f"p99 {percentile(every, 99) * 1000:.1f} ms; failures {result.failures}, "
        f"extra messages {result.extra_messages}"
    )
    cpu_ms = result.bot_cpu_seconds / result.commands * 1000
    print(
        f"  bot process CPU: {cpu_ms:.1f} ms per command (≈ {1000 / cpu_ms:.0f} commands/s "
        "on one free core); ceiling: "
        f"{result.round_trips_per_second:.0f} plain sendMessage round trips/s to the fake "
        "server here (every command needs at least one)"
    )
    print(
        f"  fake server and users (child process) CPU: "
        f"{result.load_cpu_seconds / result.commands * 1000:.1f} ms per command"
    )
    for name, values in sorted(result.latencies.items()):
        print(
            f"  {name:<11} p50 {percentile(values, 50) * 1000:7.1f} ms   "
            f"p99 {percentile(values, 99) * 1000:7.1f} ms   ({len(values)})"
        )


def main() -> None:
    """Parse arguments, run the benchmark and its baseline, print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("users", nargs="?", type=int, default=1000)
    parser.add_argument(
        "--rate", type=float, default=250.0, help="commands/s the users send together (0: skip)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=32, help="users at a time at saturation (0: skip)"
    )
    parser.add_argument("--papers", type=int, default=400, help="fresh papers in the database")
    parser.add_argument(
        "--baseline-users", type=int, default=200, help="users for the naive run (0: skip)"
    )
    parser.add_argument(
        "--without-digest",
        action="store_true",
        help="leave /digest (ranking work, not chat handling) out of the mix",
    )
    args = parser.parse_args()
    digest = not args.without_digest
    logging.basicConfig(level=logging.ERROR)
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"{os.cpu_count()} CPUs, load average {load} before the run")
    failures = 0
    if args.rate > 0:
        at_rate = Workload(args.users, args.concurrency, rate=args.rate, digest=digest)
        paced = asyncio.run(run(at_rate, args.papers, naive=False))
        report(f"at {args.rate:.0f} commands/s offered by {args.users} users at once", paced)
        failures += paced.failures
    if args.concurrency <= 0:
        sys.exit(1 if failures else 0)
    saturation = Workload(args.users, args.concurrency, digest=digest)
    result = asyncio.run(run(saturation, args.papers, naive=False))
    report(f"at saturation ({args.concurrency} users at a time, no pauses)", result)
    failures += result.failures
    if args.baseline_users > 0:
        naive_work = Workload(args.baseline_users, args.concurrency, digest=digest)
        baseline = asyncio.run(run(naive_work, args.papers, naive=True))
        report("naive baseline (engine per command, one update at a time)", baseline)
        p99_ratio = percentile(baseline.all_latencies(), 99) / percentile(
            result.all_latencies(), 99
        )
        cpu_ratio = (baseline.bot_cpu_seconds / baseline.commands) / (
            result.bot_cpu_seconds / result.commands
        )
        print(
            f"ratio at saturation: {cpu_ratio:.1f}× less bot CPU per command, "
            f"{result.rate / baseline.rate:.1f}× the throughput, "
            f"{p99_ratio:.1f}× lower p99 latency (wall-clock figures swing with machine load)"
        )
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
