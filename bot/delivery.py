"""The delivery worker: drains the outbox through each platform's sender within its limits.

Per claimed message: send it, each platform message it turns into in its own rate-limit slot
(per chat and platform-wide, handed to the sender as ``pace``), and record the result in its
own short transaction straight away, so the window in which a message is sent but not yet
recorded is as small as it can be. Failures are sorted by what they mean:

- ``RetryLater`` (429): the chat is backed off and the platform slowed; the message is due
  again after the wait, and that attempt does not count against it.
- ``PermanentDeliveryError`` (blocked, kicked, archived, token revoked): the subscriber is
  deactivated and the message parked as failed with the reason.
- anything else: retried with exponential backoff until ``max_attempts``, then parked.

A worker killed mid-send leaves its claimed rows leased; they become due again when the
lease runs out. On a clean stop, rows it claimed but never started are released at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bot.chat.sender import ChatSender, PermanentDeliveryError, RetryLater
from bot.metrics import MESSAGES_FAILED, MESSAGES_SENT, RATE_LIMITED
from bot.ratelimit import LIMITS, ChatRateLimiter
from storage import outbox, subscribers
from storage.db import Database
from storage.errors import StorageError
from storage.models import Platform, Subscriber
from storage.outbox import ClaimedMessage
from storage.types import utcnow

log = logging.getLogger(__name__)


@dataclass
class DeliveryReport:
    """What one pass over the outbox did."""

    claimed: int = 0
    sent: int = 0
    retried: int = 0
    rate_limited: int = 0
    failed: int = 0
    deactivated: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class DeliveryPolicy:
    """Retry and batching rules."""

    batch_size: int = 200
    concurrency: int = 40
    max_attempts: int = 8
    backoff_base: timedelta = timedelta(seconds=30)
    backoff_cap: timedelta = timedelta(hours=2)
    lease: timedelta = timedelta(minutes=5)


class DeliveryWorker:
    """Claims due outbox rows and sends them; safe to run in several replicas."""

    def __init__(
        self,
        db: Database,
        senders: Mapping[Platform, ChatSender],
        *,
        policy: DeliveryPolicy | None = None,
        limiters: Mapping[Platform, ChatRateLimiter] | None = None,
        now: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.senders = dict(senders)
        self.policy = policy or DeliveryPolicy()
        self.limiters = dict(limiters or {})
        for platform in self.senders:
            self.limiters.setdefault(platform, ChatRateLimiter(LIMITS[platform], clock=monotonic))
        self._now = now
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """Finish the messages in flight, claim no more."""
        self._stopping.set()

    async def run_once(self) -> DeliveryReport:
        """Claim one batch of due messages and send them all."""
        report = DeliveryReport()
        if not self.senders or self._stopping.is_set():
            return report
        claimed = outbox.claim_due(
            self.db,
            now=self._now(),
            limit=self.policy.batch_size,
            lease=self.policy.lease,
            platforms=self.senders,
        )
        report.claimed = len(claimed)
        gate = asyncio.Semaphore(self.policy.concurrency)

        async def deliver(message: ClaimedMessage) -> None:
            async with gate:
                if self._stopping.is_set():
                    outbox.reschedule(self.db, message.id, self._now(), error="released on stop",
                                      count_attempt=False)  # fmt: skip
                    return
                await self._deliver(message, report)

        await asyncio.gather(*(deliver(message) for message in claimed))
        return report

    async def run_forever(self, *, idle_seconds: float = 2.0) -> None:
        """Drain the outbox until ``stop()``; sleeps briefly when there is nothing to send."""
        while not self._stopping.is_set():
            try:
                report = await self.run_once()
            except StorageError:
                log.exception("delivery pass failed; retrying shortly")
                report = DeliveryReport()
            if report.claimed == 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=idle_seconds)

    async def _deliver(self, message: ClaimedMessage, report: DeliveryReport) -> None:
        context = {"subscriber": message.subscriber_id, "outbox": message.id,
                   "platform": message.platform.value}  # fmt: skip
        if not message.subscriber_active:
            outbox.mark_failed(self.db, message.id, "subscriber inactive")
            report.failed += 1
            return
        sender = self.senders[message.platform]
        limiter = self.limiters[message.platform]
        chat_key = f"{message.workspace_id or ''}:{message.chat_id}"

        def pace() -> contextlib.AbstractAsyncContextManager[None]:
            return limiter.slot(chat_key, message.chat_kind)

        try:
            message_id = await sender.send(
                _subscriber_view(message), message.payload, key=message.idempotency_key, pace=pace
            )
        except RetryLater as exc:
            limiter.back_off(chat_key, message.chat_kind, exc.seconds)
            outbox.reschedule(
                self.db,
                message.id,
                self._now() + timedelta(seconds=exc.seconds),
                error=str(exc),
                count_attempt=False,
            )
            report.rate_limited += 1
            RATE_LIMITED.labels(message.platform.value).inc()
            log.warning("rate limited, backing off: %s", exc, extra=context)
            return
        except PermanentDeliveryError as exc:
            outbox.mark_failed(self.db, message.id, f"permanent: {exc}")
            subscribers.update(self.db, message.subscriber_id, active=False)
            report.failed += 1
            report.deactivated.append(message.subscriber_id)
            MESSAGES_FAILED.labels(message.platform.value, "permanent").inc()
            log.warning("subscriber deactivated: %s", exc, extra=context)
            return
        except Exception as exc:  # network, 5xx, a bug in a renderer: never lose the message
            attempts = message.attempts + 1
            if attempts >= self.policy.max_attempts:
                outbox.mark_failed(self.db, message.id, f"gave up after {attempts} attempts: {exc}")
                report.failed += 1
                MESSAGES_FAILED.labels(message.platform.value, "gave_up").inc()
                log.error("delivery failed for good: %s", exc, extra=context)
            else:
                delay = min(self.policy.backoff_cap, self.policy.backoff_base * 2 ** (attempts - 1))
                outbox.reschedule(self.db, message.id, self._now() + delay, error=str(exc))
                report.retried += 1
                MESSAGES_FAILED.labels(message.platform.value, "transient").inc()
                log.warning("delivery failed, retrying in %s: %s", delay, exc, extra=context)
            return
        outbox.mark_sent(self.db, message.id, message_id, now=self._now())
        report.sent += 1
        MESSAGES_SENT.labels(message.platform.value).inc()
        log.info("delivered", extra=context)


def _subscriber_view(message: ClaimedMessage) -> Subscriber:
    """The subscriber fields a sender needs, without another database round trip."""
    return Subscriber(
        id=message.subscriber_id,
        platform=message.platform,
        chat_id=message.chat_id,
        kind=message.chat_kind,
        workspace_id=message.workspace_id,
    )
