"""Platform send limits as schedules, not blind sleeps.

A send needs a slot from its chat's meter and from the platform-wide timeline:

- each chat has a GCRA (generic cell rate algorithm) meter: it remembers the theoretical
  arrival time of the chat's next message, so a chat never gets more than its rate;
- the platform-wide limit is a timeline of slots one interval wide, each holding at most one
  message. A chat that must wait takes a later slot without holding up other chats, so a
  fan-out to many chats runs at the platform's full rate.

A 429 blocks that chat until the retry time and, for a while, makes every platform-wide
reservation take two slots (half the rate).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from storage.models import ChatKind, Platform

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class Rate:
    """``per_second`` messages a second with bursts of up to ``burst``."""

    per_second: float
    burst: int = 1

    @property
    def interval(self) -> float:
        """Seconds between two messages at the steady rate."""
        return 1.0 / self.per_second


class Meter:
    """One GCRA meter: ``earliest(t)`` is the first allowed slot at or after ``t``."""

    def __init__(self, rate: Rate) -> None:
        self.rate = rate
        self.tat = float("-inf")  # theoretical arrival time of the next message

    def earliest(self, at: float) -> float:
        """The first time at or after ``at`` when a message conforms."""
        tolerance = self.rate.interval * (self.rate.burst - 1)
        return max(at, self.tat - tolerance)

    def commit(self, at: float) -> None:
        """Record a message sent at ``at``."""
        self.tat = max(self.tat, at) + self.rate.interval

    def block_until(self, at: float) -> None:
        """Nothing may be sent before ``at`` (after a 429)."""
        self.tat = max(self.tat, at + self.rate.interval * (self.rate.burst - 1))


class Timeline:
    """Slots of ``1 / rate`` seconds, at most one message each; finds the next free slot fast."""

    def __init__(self, rate: Rate) -> None:
        self.interval = rate.interval
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


@dataclass(frozen=True)
class PlatformLimits:
    """A platform's documented limits."""

    overall: Rate
    private_chat: Rate
    group_chat: Rate


# Telegram: ~30 messages/s per bot overall, 1/s per chat, 20/min per group. The overall rate
# keeps a little headroom: a send that leaves late (a busy event loop) can land in the next
# second together with those that leave on time.
TELEGRAM_LIMITS = PlatformLimits(
    overall=Rate(28.0, 1), private_chat=Rate(1.0, 1), group_chat=Rate(20 / 60, 1)
)
# Slack: chat.postMessage about 1/s per channel; the workspace-wide limit is not published.
SLACK_LIMITS = PlatformLimits(
    overall=Rate(20.0, 5), private_chat=Rate(1.0, 1), group_chat=Rate(1.0, 1)
)
LIMITS = {Platform.TELEGRAM: TELEGRAM_LIMITS, Platform.SLACK: SLACK_LIMITS}


class ChatRateLimiter:
    """Hands out send slots for one platform: per chat and overall."""

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
        self._chats: OrderedDict[str, Meter] = OrderedDict()
        self._max_chats = max_chats
        self._slowdown_seconds = slowdown_seconds
        self._slow_until = float("-inf")
        self.waited = 0.0

    def _chat(self, chat_key: str, kind: ChatKind) -> Meter:
        meter = self._chats.get(chat_key)
        if meter is None:
            rate = self.limits.private_chat if kind == ChatKind.USER else self.limits.group_chat
            meter = self._chats[chat_key] = Meter(rate)
            if len(self._chats) > self._max_chats:
                self._chats.popitem(last=False)
        else:
            self._chats.move_to_end(chat_key)
        return meter

    def reserve(self, chat_key: str, kind: ChatKind) -> float:
        """Take the next slot for this chat; returns the seconds to wait before sending."""
        now = self._clock()
        self._overall.forget_before(now)
        chat = self._chat(chat_key, kind)
        slots = 2 if now < self._slow_until else 1
        slot = self._overall.take(chat.earliest(now), slots=slots)
        chat.commit(slot)
        return max(0.0, slot - now)

    async def acquire(self, chat_key: str, kind: ChatKind) -> None:
        """Wait for this chat's next slot."""
        wait = self.reserve(chat_key, kind)
        if wait > 0:
            self.waited += wait
            await self._sleep(wait)

    def back_off(self, chat_key: str, kind: ChatKind, seconds: float) -> None:
        """A 429 for this chat: block it for ``seconds`` and slow everything down for a while."""
        now = self._clock()
        self._chat(chat_key, kind).block_until(now + seconds)
        self._slow_until = now + max(self._slowdown_seconds, seconds)
