"""Platform send limits as schedules and counted windows, not blind sleeps.

Platforms state their limits as "at most N messages in any T seconds" (Telegram: 30 a second
per bot, 1 a second per chat, 20 a minute per group). Every platform call that sends a message
runs inside ``async with limiter.slot(chat, kind):`` and goes through two stages:

- **Pacing** spreads sends evenly, so a fan-out never arrives as a burst: each chat has a GCRA
  (generic cell rate algorithm, the exact form of a token bucket) meter that remembers when
  its next message may go, and the platform-wide limit is a timeline of slots ``T / N``
  seconds wide, each holding at most one message. A chat that must wait takes a later slot
  without holding up other chats, so a fan-out to many chats runs at the platform's rate.
- **Counting** makes the limit hold wherever the platform counts. The platform counts a
  message at some unknown moment between our request leaving and its answer arriving; a late
  event loop, a busy network stack or the server's own queue can bunch requests that left on
  schedule. So each limit is also a sliding window of N permits: a call holds one from just
  before its request until T seconds after its answer. At any moment, every call the
  platform counted in the last T seconds still holds its permit, so it has counted at most
  N, whatever the delays. The price is the answer's latency once per window: 30 a second
  with answers in 50 ms gives 30 / 1.05 ≈ 28.6 a second, still without any 429.

A 429 blocks that chat until the retry time and, for a while, makes every platform-wide
reservation take two slots (half the rate).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from storage.models import ChatKind, Platform

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

# A window's permit comes back this much after ``seconds`` have passed: two processes read the
# same monotonic clock, but the platform rounds its own arithmetic, and a permit freed an ulp
# early would be a 429. A millisecond a second costs 0.1 % of the rate.
CLOCK_GUARD_SECONDS = 1e-3


@dataclass(frozen=True)
class Limit:
    """At most ``count`` messages in any window of ``seconds``."""

    count: int
    seconds: float = 1.0

    @property
    def interval(self) -> float:
        """Seconds between two messages when they are spread evenly."""
        return self.seconds / self.count


class Meter:
    """One GCRA meter: ``earliest(t)`` is the first time at or after ``t`` a message may go."""

    def __init__(self, limit: Limit) -> None:
        self.interval = limit.interval
        self.tat = float("-inf")  # theoretical arrival time of the next message

    def earliest(self, at: float) -> float:
        """The first time at or after ``at`` when a message conforms."""
        return max(at, self.tat)

    def commit(self, at: float) -> None:
        """Record a message sent at ``at``."""
        self.tat = max(self.tat, at) + self.interval

    def block_until(self, at: float) -> None:
        """Nothing may be sent before ``at`` (after a 429)."""
        self.tat = max(self.tat, at)


class Timeline:
    """Slots of ``1 / rate`` seconds, at most one message each; finds the next free slot fast."""

    def __init__(self, limit: Limit) -> None:
        self.interval = limit.interval
        self._next_free: dict[int, int] = {}  # union-find over taken slots
        self._floor = 0

    def _find(self, slot: int) -> int:
        root = slot
        while root in self._next_free:
            root = self._next_free[root]
        while slot != root:  # path compression keeps later look-ups short
            self._next_free[slot], slot = root, self._next_free[slot]
        return root

    def take(self, at: float, *, slots: int = 1) -> float:
        """Reserve the first free slot at or after ``at`` (and ``slots - 1`` more after it)."""
        first = self._find(max(self._floor, math.ceil(at / self.interval - 1e-9)))
        self._next_free[first] = first + 1
        for _ in range(slots - 1):
            extra = self._find(first)
            self._next_free[extra] = extra + 1
        return first * self.interval

    def forget_before(self, at: float) -> None:
        """Drop bookkeeping for slots that are in the past."""
        floor = math.floor(at / self.interval)
        if floor - self._floor > 10_000:
            self._next_free = {k: v for k, v in self._next_free.items() if k >= floor}
            self._floor = floor


class SlidingWindow:
    """``count`` permits; a permit is held from before a call until ``seconds`` after its answer.

    However late the platform counts a call, it counts it while the call's permit is held, so
    no window of ``seconds`` on the platform's clock ever sees more than ``count`` calls.
    """

    def __init__(self, limit: Limit, clock: Clock, sleep: Sleep) -> None:
        self.limit = limit
        self._clock = clock
        self._sleep = sleep
        self._in_flight = 0
        self._free_at: deque[float] = deque()  # answered calls' permits come back then (sorted)
        self._answered: asyncio.Event | None = None
        # Waiters queue on a lock (first come, first served) and only the first one watches
        # the clock, so a freed permit wakes one task, not every waiting one.
        self._turn: asyncio.Lock | None = None
        self._queued = 0

    def _held(self, now: float) -> int:
        while self._free_at and self._free_at[0] <= now:
            self._free_at.popleft()
        return self._in_flight + len(self._free_at)

    async def acquire(self) -> float:
        """Wait for a permit; returns the seconds waited (on the limiter's clock)."""
        start = self._clock()
        if not self._queued and self._held(start) < self.limit.count:
            self._in_flight += 1
            return 0.0
        if self._turn is None:
            self._turn = asyncio.Lock()
        self._queued += 1
        try:
            async with self._turn:
                now = self._clock()
                while self._held(now) >= self.limit.count:
                    if self._free_at:
                        await self._sleep(self._free_at[0] - now)
                    else:  # every permit is held by a call still waiting for its answer
                        self._answered = asyncio.Event()
                        await self._answered.wait()
                    now = self._clock()
                self._in_flight += 1
        finally:
            self._queued -= 1
        return now - start

    def release(self) -> None:
        """The call holding a permit got its answer (or failed): count it ``seconds`` more."""
        self._in_flight -= 1
        # Answers are released in clock order, so the deque stays sorted.
        free_at = self._clock() + self.limit.seconds + CLOCK_GUARD_SECONDS
        self._free_at.append(max(free_at, self._free_at[-1]) if self._free_at else free_at)
        if self._answered is not None:
            self._answered.set()
            self._answered = None


class _Chat:
    """A chat's pacing meter and counted window."""

    def __init__(self, limit: Limit, clock: Clock, sleep: Sleep) -> None:
        self.meter = Meter(limit)
        self.window = SlidingWindow(limit, clock, sleep)


@dataclass(frozen=True)
class PlatformLimits:
    """A platform's documented limits."""

    overall: Limit
    private_chat: Limit
    group_chat: Limit


# Telegram: ~30 messages/s per bot overall, 1/s per chat, 20/min per group. No headroom below
# 30/s is needed: the counted window already keeps every second at 30 or fewer however the
# sends are delayed on the way (its cost, one answer latency a second, is the margin).
TELEGRAM_LIMITS = PlatformLimits(
    overall=Limit(30, 1.0), private_chat=Limit(1, 1.0), group_chat=Limit(20, 60.0)
)
# Slack: chat.postMessage about 1/s per channel; the workspace-wide limit is not published.
SLACK_LIMITS = PlatformLimits(
    overall=Limit(20, 1.0), private_chat=Limit(1, 1.0), group_chat=Limit(1, 1.0)
)
LIMITS = {Platform.TELEGRAM: TELEGRAM_LIMITS, Platform.SLACK: SLACK_LIMITS}


class ChatRateLimiter:
    """Hands out send slots for one platform: per chat and overall.

    ``clock`` and ``sleep`` are the limiter's notion of time; a benchmark that runs the
    platform's clock faster passes a scaled pair instead of scaling the limits.
    """

    def __init__(
        self,
        limits: PlatformLimits,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        max_chats: int = 100_000,
        slowdown_seconds: float = 30.0,
    ) -> None:
        self.limits = limits
        self._clock = clock
        self._sleep = sleep
        self._overall = Timeline(limits.overall)
        self._overall_window = SlidingWindow(limits.overall, clock, sleep)
        self._chats: OrderedDict[str, _Chat] = OrderedDict()
        self._max_chats = max_chats
        self._slowdown_seconds = slowdown_seconds
        self._slow_until = float("-inf")
        self.waited = 0.0

    def _chat(self, chat_key: str, kind: ChatKind) -> _Chat:
        chat = self._chats.get(chat_key)
        if chat is None:
            limit = self.limits.private_chat if kind == ChatKind.USER else self.limits.group_chat
            chat = self._chats[chat_key] = _Chat(limit, self._clock, self._sleep)
            if len(self._chats) > self._max_chats:
                # The least recently used chat: its last send is long past any window.
                self._chats.popitem(last=False)
        else:
            self._chats.move_to_end(chat_key)
        return chat

    def reserve(self, chat_key: str, kind: ChatKind) -> float:
        """Take the chat's next paced slot; returns the seconds to wait before sending."""
        now = self._clock()
        self._overall.forget_before(now)
        meter = self._chat(chat_key, kind).meter
        slots = 2 if now < self._slow_until else 1
        slot = self._overall.take(meter.earliest(now), slots=slots)
        meter.commit(slot)
        return max(0.0, slot - now)

    @asynccontextmanager
    async def slot(self, chat_key: str, kind: ChatKind) -> AsyncIterator[None]:
        """Wait for this chat's next slot, then count the call made inside until it is answered.

        Exactly one platform call that sends a message belongs inside the block.
        """
        chat = self._chat(chat_key, kind)
        self.waited += await chat.window.acquire()
        try:
            wait = self.reserve(chat_key, kind)
            if wait > 0:
                self.waited += wait
                await self._sleep(wait)
            self.waited += await self._overall_window.acquire()
            try:
                yield
            finally:
                self._overall_window.release()
        finally:
            chat.window.release()

    def back_off(self, chat_key: str, kind: ChatKind, seconds: float) -> None:
        """A 429 for this chat: block it for ``seconds`` and slow everything down for a while."""
        now = self._clock()
        self._chat(chat_key, kind).meter.block_until(now + seconds)
        self._slow_until = now + max(self._slowdown_seconds, seconds)
