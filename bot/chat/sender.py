"""What the delivery worker needs from a chat platform: send one rendered outbox message.

Adapters translate their platform's failures into these errors, so ``bot/delivery.py`` can
decide between retrying, backing a chat off and deactivating a subscriber without knowing
any platform.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Any, Protocol

from storage.models import Platform, Subscriber

Pace = Callable[[], AbstractAsyncContextManager[object]]
"""Gives the slot for one platform call: ``async with pace(): <send one message>``."""


def unpaced() -> AbstractAsyncContextManager[object]:
    """No limits: the default when a sender is used outside the delivery worker."""
    return nullcontext()


class DeliveryError(Exception):
    """Sending failed; subclasses say what to do about it."""


class PermanentDeliveryError(DeliveryError):
    """The chat is gone for us (blocked, kicked, archived, token revoked): deactivate it."""


class RetryLater(DeliveryError):
    """The platform asked us to wait (429 / RetryAfter); retry this chat after ``seconds``."""

    def __init__(self, seconds: float, message: str = "rate limited") -> None:
        super().__init__(f"{message}; retry after {seconds:g} s")
        self.seconds = seconds


class TransientDeliveryError(DeliveryError):
    """A network error or a 5xx: retry with backoff."""


class ChatSender(Protocol):
    """One platform's sending side."""

    platform: Platform

    async def send(
        self, subscriber: Subscriber, payload: dict[str, Any], *, key: str, pace: Pace = unpaced
    ) -> str:
        """Send a rendered outbox payload to the subscriber's chat; return the message id.

        ``key`` is the outbox row's idempotency key; adapters that can attach it to the
        message (or check for it) use it to avoid a duplicate after an unclear failure.
        Every platform call that posts a message runs inside ``async with pace():``, so a
        payload that goes out as several messages takes one rate-limit slot per message.
        Raises one of the ``DeliveryError`` subclasses on failure.
        """
