"""The outbox worker: limits, retries, deactivation, crash safety, several replicas."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.chat.sender import (
    Pace,
    PermanentDeliveryError,
    RetryLater,
    TransientDeliveryError,
    unpaced,
)
from bot.delivery import DeliveryPolicy, DeliveryWorker
from bot.ratelimit import (
    CLOCK_GUARD_SECONDS,
    TELEGRAM_LIMITS,
    ChatRateLimiter,
    Limit,
    PlatformLimits,
    SlidingWindow,
)
from storage import outbox, subscribers
from storage.db import Database
from storage.models import ChatKind, OutboxStatus, Platform, Subscriber
from tests.fakes.telegram_api import FloodGate, FloodLimits

NOW = datetime(2026, 11, 16, 8, 0, tzinfo=UTC)


class FakeClock:
    """Wall clock and monotonic clock that move only when told to (or when slept on)."""

    def __init__(self) -> None:
        self.wall = NOW
        self.mono = 0.0
        self.slept = 0.0

    def now(self) -> datetime:
        return self.wall + timedelta(seconds=self.mono)

    def monotonic(self) -> float:
        return self.mono

    async def sleep(self, seconds: float) -> None:
        self.slept += seconds
        self.mono += seconds

    def advance(self, seconds: float) -> None:
        self.mono += seconds


class ScriptedSender:
    """A ChatSender that records sends and fails on cue; a payload goes out as ``parts`` posts."""

    platform = Platform.TELEGRAM

    def __init__(self, clock: FakeClock | None = None, *, parts: int = 1) -> None:
        self.sent: list[tuple[str, str]] = []
        self.posted_at: list[float] = []
        self.failures: dict[str, list[Exception]] = {}
        self._clock = clock
        self._parts = parts

    async def send(
        self, subscriber: Subscriber, payload: dict[str, Any], *, key: str, pace: Pace = unpaced
    ) -> str:
        queue = self.failures.get(subscriber.chat_id)
        if queue:
            async with pace():
                raise queue.pop(0)
        for _ in range(self._parts):
            async with pace():
                self.posted_at.append(self._clock.mono if self._clock else 0.0)
        self.sent.append((subscriber.chat_id, key))
        return f"m{len(self.sent)}"


def enqueue_digests(db: Database, count: int, *, kind: ChatKind = ChatKind.USER) -> list[int]:
    ids = []
    for n in range(count):
        sub, _ = subscribers.get_or_create(db, Platform.TELEGRAM, f"chat{n}", kind=kind)
        assert sub.id is not None
        outbox.enqueue(db, sub.id, {"kind": "digest", "items": []}, key=f"digest:{n}", now=NOW)
        ids.append(sub.id)
    return ids


def worker(db: Database, sender: ScriptedSender, clock: FakeClock, **policy: Any) -> DeliveryWorker:
    limiter = ChatRateLimiter(TELEGRAM_LIMITS, clock=clock.monotonic, sleep=clock.sleep)
    return DeliveryWorker(
        db,
        {Platform.TELEGRAM: sender},
        policy=DeliveryPolicy(**policy),
        limiters={Platform.TELEGRAM: limiter},
        now=clock.now,
        monotonic=clock.monotonic,
    )


async def test_sends_everything_once_within_the_overall_limit(db: Database) -> None:
    clock, sender = FakeClock(), ScriptedSender()
    enqueue_digests(db, 90)
    report = await worker(db, sender, clock).run_once()
    assert report.sent == 90
    assert len(set(sender.sent)) == 90
    # 90 messages at 30/s need about 3 s of the schedule; no blind sleeping beyond that.
    assert 2.9 < clock.slept < 3.1
    assert (await worker(db, sender, clock).run_once()).claimed == 0
    assert outbox.counts(db) == {"sent": 90}


def test_per_chat_and_group_limits() -> None:
    clock = FakeClock()
    limiter = ChatRateLimiter(TELEGRAM_LIMITS, clock=clock.monotonic, sleep=clock.sleep)
    waits = [limiter.reserve("dm", ChatKind.USER) for _ in range(3)]
    assert waits == pytest.approx([0.0, 1.0, 2.0])
    group = [limiter.reserve("group", ChatKind.GROUP) for _ in range(3)]
    assert group == pytest.approx([1 / 30, 3.0, 6.0], abs=0.05)  # 20 a minute; dm never blocks it
    burst = ChatRateLimiter(
        PlatformLimits(Limit(10), Limit(100), Limit(100)), clock=clock.monotonic
    )
    slots = [burst.reserve(f"c{i}", ChatKind.USER) for i in range(10)]
    assert slots == pytest.approx([i / 10 for i in range(10)])
    burst.back_off("c0", ChatKind.USER, 5)
    assert burst.reserve("c0", ChatKind.USER) == pytest.approx(5.0, abs=0.2)
    after = [burst.reserve(f"d{i}", ChatKind.USER) for i in range(3)]
    assert after[2] - after[1] == pytest.approx(0.2)  # halved rate while backing off


async def test_each_part_of_a_long_digest_takes_its_own_slot(db: Database) -> None:
    clock = FakeClock()
    sender = ScriptedSender(clock, parts=3)  # a digest over 4096 characters: three posts
    enqueue_digests(db, 1)
    report = await worker(db, sender, clock).run_once()
    assert report.sent == 1 and len(sender.posted_at) == 3
    gaps = [later - earlier for earlier, later in itertools.pairwise(sender.posted_at)]
    assert min(gaps) >= 1.0  # one a second in a private chat, part after part


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock jumps to the next timer instead of waiting for it."""

    def __init__(self) -> None:
        self.now = 0.0
        super().__init__(_JumpingSelector(self))

    def time(self) -> float:
        return self.now


class _JumpingSelector(selectors.DefaultSelector):
    def __init__(self, loop: VirtualTimeLoop) -> None:
        super().__init__()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if not ready:
            if timeout is None:
                raise RuntimeError("nothing will ever happen: every task waits on another")
            self._loop.now += timeout
        return ready


def test_a_window_permit_comes_back_a_window_after_the_answer_first_come_first_served() -> None:
    loop = VirtualTimeLoop()
    window = SlidingWindow(Limit(2, 1.0), loop.time, asyncio.sleep)
    started: list[tuple[int, float]] = []

    async def call(number: int) -> None:
        await window.acquire()
        started.append((number, loop.time()))
        await asyncio.sleep(0.1)  # the answer takes 0.1 s
        window.release()

    async def five_calls() -> None:
        await asyncio.gather(*(call(number) for number in range(5)))

    try:
        loop.run_until_complete(five_calls())
    finally:
        loop.close()
    assert [number for number, _ in started] == [0, 1, 2, 3, 4]
    guard = CLOCK_GUARD_SECONDS
    assert [at for _, at in started] == pytest.approx(
        [0.0, 0.0, 1.1 + guard, 1.1 + guard, 2.2 + 2 * guard]
    )


def simulate_fan_out(chats: list[int], seed: int, *, counted: bool) -> tuple[int, float]:
    """Send one message per entry of ``chats`` (positive: private, negative: group) through
    the limiter to Telegram's flood gate, each counted at a random moment between leaving and
    its answer, with now and then a stall that holds one back for up to 0.3 s while later ones
    overtake it. 40 sends run at a time, like the worker's default.

    ``counted=False`` paces only (reserve and sleep, no counted windows): what the limiter did
    before. Returns the 429s and the seconds the fan-out took.
    """
    rng = random.Random(seed)
    loop = VirtualTimeLoop()
    gate = FloodGate(FloodLimits(), clock=loop.time, time_scale=1.0)
    limiter = ChatRateLimiter(TELEGRAM_LIMITS, clock=loop.time)
    refused = 0

    async def call(chat_id: int) -> None:
        nonlocal refused
        stall = rng.random() < 0.05
        await asyncio.sleep(rng.uniform(0.1, 0.3) if stall else rng.expovariate(1 / 0.004))
        if gate.admit(chat_id, chat_id > 0) is not None:
            refused += 1
        await asyncio.sleep(rng.expovariate(1 / 0.004))

    async def send(chat_id: int) -> None:
        kind = ChatKind.USER if chat_id > 0 else ChatKind.GROUP
        if counted:
            async with limiter.slot(str(chat_id), kind):
                await call(chat_id)
        else:
            await asyncio.sleep(limiter.reserve(str(chat_id), kind))
            await call(chat_id)

    async def fan_out() -> float:
        worker_gate = asyncio.Semaphore(40)

        async def one(chat_id: int) -> None:
            async with worker_gate:
                await send(chat_id)

        await asyncio.gather(*(one(chat) for chat in chats))
        return loop.time()

    try:
        elapsed = loop.run_until_complete(fan_out())
    finally:
        loop.close()
    return refused, elapsed


@pytest.mark.parametrize("seed", range(3))
def test_counted_windows_keep_every_second_within_the_limit_however_late_it_counts(
    seed: int,
) -> None:
    chats = [chat for chat in range(1, 301) for _ in range(2)]
    chats += [-group for group in range(1, 5) for _ in range(30)]
    random.Random(seed).shuffle(chats)
    assert simulate_fan_out(chats, seed, counted=True)[0] == 0
    assert simulate_fan_out(chats, seed, counted=False)[0] > 0  # the same delays break pacing


def test_counted_windows_cost_about_one_answer_latency_a_second() -> None:
    refused, elapsed = simulate_fan_out(list(range(1, 1501)), 7, counted=True)
    assert refused == 0
    # 1,500 chats at 30/s is 50 s; answers take ~8 ms plus the stalls, ~2 % of each second.
    assert 50 < elapsed < 50 * 1.05


async def test_429_backs_off_the_chat_and_does_not_count_as_an_attempt(db: Database) -> None:
    clock, sender = FakeClock(), ScriptedSender()
    enqueue_digests(db, 2)
    sender.failures["chat0"] = [RetryLater(20)]
    report = await worker(db, sender, clock).run_once()
    assert (report.sent, report.rate_limited) == (1, 1)
    row = outbox.messages(db, status=OutboxStatus.PENDING)[0]
    assert row.attempts == 0 and "retry after 20" in (row.last_error or "")
    assert row.next_attempt_at >= clock.now() + timedelta(seconds=19)
    clock.advance(21)
    assert (await worker(db, sender, clock).run_once()).sent == 1
    assert Counter(chat for chat, _ in sender.sent) == {"chat0": 1, "chat1": 1}


async def test_blocked_chat_deactivates_only_that_subscriber(db: Database) -> None:
    clock, sender = FakeClock(), ScriptedSender()
    ids = enqueue_digests(db, 3)
    sender.failures["chat1"] = [PermanentDeliveryError("Forbidden: bot was blocked by the user")]
    report = await worker(db, sender, clock).run_once()
    assert report.sent == 2 and report.deactivated == [ids[1]]
    assert subscribers.get(db, ids[1]).active is False  # type: ignore[union-attr]
    failed = outbox.messages(db, status=OutboxStatus.FAILED)
    assert len(failed) == 1 and "blocked" in (failed[0].last_error or "")


async def test_transient_errors_retry_with_backoff_then_park(db: Database) -> None:
    clock, sender = FakeClock(), ScriptedSender()
    enqueue_digests(db, 1)
    sender.failures["chat0"] = [TransientDeliveryError("502")] * 3
    delivery = worker(db, sender, clock, max_attempts=3)
    delays = []
    for _ in range(3):
        await delivery.run_once()
        rows = outbox.messages(db)
        if rows[0].status == OutboxStatus.PENDING:
            delays.append((rows[0].next_attempt_at - clock.now()).total_seconds())
            clock.advance(delays[-1] + 1)
    assert delays == pytest.approx([30, 60], abs=1.5)
    assert outbox.messages(db)[0].status == OutboxStatus.FAILED
    assert outbox.requeue_failed(db, now=clock.now()) == 1
    await delivery.run_once()
    assert outbox.counts(db) == {"sent": 1}


async def test_crash_between_claim_and_send_loses_nothing(db: Database) -> None:
    clock, sender = FakeClock(), ScriptedSender()
    enqueue_digests(db, 5)
    claimed = outbox.claim_due(db, now=clock.now(), limit=5, lease=timedelta(minutes=5))
    assert len(claimed) == 5  # ...and the process dies here, before sending anything
    assert (await worker(db, sender, clock).run_once()).claimed == 0  # leased, not yet due
    clock.advance(301)
    assert (await worker(db, sender, clock).run_once()).sent == 5
    assert len(sender.sent) == 5


async def test_crash_between_send_and_commit_is_the_only_duplicate_window(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock, sender = FakeClock(), ScriptedSender()
    enqueue_digests(db, 4)
    real_mark_sent = outbox.mark_sent
    calls = {"n": 0}

    def dying_mark_sent(*args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise asyncio.CancelledError  # the process is killed right after the 3rd send
        real_mark_sent(*args, **kwargs)

    monkeypatch.setattr(outbox, "mark_sent", dying_mark_sent)
    with pytest.raises(asyncio.CancelledError):
        await worker(db, sender, clock, concurrency=1).run_once()
    monkeypatch.setattr(outbox, "mark_sent", real_mark_sent)
    clock.advance(301)
    await worker(db, sender, clock).run_once()
    per_chat = Counter(chat for chat, _ in sender.sent)
    assert set(per_chat) == {"chat0", "chat1", "chat2", "chat3"}  # everyone got it
    assert sorted(per_chat.values()) == [1, 1, 1, 2]  # exactly the one in the window twice


async def test_stop_releases_unstarted_messages(db: Database) -> None:
    clock, sender = FakeClock(), ScriptedSender()
    enqueue_digests(db, 3)
    delivery = worker(db, sender, clock, concurrency=1)
    original = sender.send

    async def send_then_stop(
        subscriber: Subscriber, payload: dict[str, Any], *, key: str, pace: Pace = unpaced
    ) -> str:
        delivery.stop()
        return await original(subscriber, payload, key=key, pace=pace)

    sender.send = send_then_stop  # type: ignore[method-assign]
    report = await delivery.run_once()
    assert report.sent == 1
    assert outbox.counts(db) == {"sent": 1, "pending": 2}  # released, due now, not leased


async def test_inactive_subscriber_messages_are_parked(db: Database) -> None:
    clock, sender = FakeClock(), ScriptedSender()
    ids = enqueue_digests(db, 1)
    subscribers.update(db, ids[0], active=False)
    report = await worker(db, sender, clock).run_once()
    assert report.failed == 1 and sender.sent == []


@pytest.mark.postgres
def test_two_replicas_never_claim_the_same_row(pg_db: Database) -> None:
    enqueue_digests(pg_db, 200)
    results: list[list[int]] = []
    barrier = threading.Barrier(4)

    def claim() -> None:
        barrier.wait()
        mine = []
        while batch := outbox.claim_due(pg_db, limit=7, now=NOW):
            mine += [m.id for m in batch]
        results.append(mine)

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [i for ids in results for i in ids]
    assert len(everything) == len(set(everything)) == 200


WORKER_SCRIPT = """
import asyncio, json, os, sys
from datetime import timedelta
from bot.delivery import DeliveryPolicy, DeliveryWorker
from bot.ratelimit import ChatRateLimiter, Limit, PlatformLimits
from storage.db import Database
from storage.models import Platform

log_path = sys.argv[2]

class FileSender:
    platform = Platform.TELEGRAM
    async def send(self, subscriber, payload, *, key, pace):
        async with pace():
            with open(log_path, "a") as log:
                log.write(json.dumps({"chat": subscriber.chat_id, "pid": os.getpid()}) + "\\n")
                log.flush()
                os.fsync(log.fileno())
            await asyncio.sleep(0.002)
        return "x"

async def main():
    fast = PlatformLimits(Limit(2000), Limit(100), Limit(100))
    worker = DeliveryWorker(
        Database(sys.argv[1]),
        {Platform.TELEGRAM: FileSender()},
        policy=DeliveryPolicy(batch_size=20, concurrency=4, lease=timedelta(seconds=1)),
        limiters={Platform.TELEGRAM: ChatRateLimiter(fast)},
    )
    await worker.run_forever(idle_seconds=0.05)

asyncio.run(main())
"""


def test_killed_worker_process_resumes_without_losing_anyone(
    sqlite_db: Database, tmp_path: Path
) -> None:
    """Kill -9 a real worker process mid fan-out; a new one finishes the job."""
    enqueue_digests(sqlite_db, 300)
    script = tmp_path / "worker.py"
    script.write_text(WORKER_SCRIPT)
    sent_log = tmp_path / "sent.jsonl"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, str(script), sqlite_db.url, str(sent_log)], env=env
        )

    first = start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if sent_log.exists() and len(sent_log.read_text().splitlines()) >= 60:
            break
        time.sleep(0.01)
    first.send_signal(signal.SIGKILL)
    first.wait()
    before_restart = len(sent_log.read_text().splitlines())
    assert before_restart < 300, "the kill came too late to test anything"

    time.sleep(1.1)  # let the dead worker's leases run out
    second = start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and outbox.counts(sqlite_db).get("sent", 0) < 300:
            time.sleep(0.05)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=10)
    lines = [json.loads(line) for line in sent_log.read_text().splitlines()]
    per_chat = Counter(line["chat"] for line in lines)
    assert len(per_chat) == 300  # every due subscriber received the digest
    duplicates = sum(count - 1 for count in per_chat.values())
    # Only messages in flight at the kill (sent, not yet recorded) can repeat: at most the
    # worker's concurrency.
    assert duplicates <= 4, per_chat.most_common(5)
    assert outbox.counts(sqlite_db) == {"sent": 300}
