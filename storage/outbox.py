"""The outbox: rendered messages waiting to be sent, claimed, sent or parked as failed."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select

from storage.db import Database
from storage.errors import StorageError
from storage.models import OUTBOX, OutboxMessage, OutboxStatus
from storage.types import utcnow


def pending(
    db: Database, *, subscriber_id: int | None = None, limit: int = 100
) -> list[OutboxMessage]:
    """Messages due now (pending and past their next attempt), oldest first."""
    with db.session() as session:
        statement = select(OutboxMessage).where(
            OUTBOX.c.status == OutboxStatus.PENDING,
            OUTBOX.c.next_attempt_at <= utcnow(),
        )
        if subscriber_id is not None:
            statement = statement.where(OUTBOX.c.subscriber_id == subscriber_id)
        statement = statement.order_by(OUTBOX.c.id).limit(limit)
        return list(session.execute(statement).scalars())


def mark_sent(db: Database, message_id: int, platform_message_id: str | None = None) -> None:
    """Record that a message reached the chat."""
    with db.session() as session:
        message = session.get(OutboxMessage, message_id)
        if message is None:
            raise StorageError(f"no outbox message {message_id}")
        message.status = OutboxStatus.SENT
        message.platform_message_id = platform_message_id
        message.sent_at = utcnow()
        message.attempts += 1


def mark_retry(
    db: Database, message_id: int, error: str, delay: timedelta, *, max_attempts: int
) -> bool:
    """Schedule another attempt, or park as failed after ``max_attempts``; True if parked."""
    with db.session() as session:
        message = session.get(OutboxMessage, message_id)
        if message is None:
            raise StorageError(f"no outbox message {message_id}")
        message.attempts += 1
        message.last_error = error[:2000]
        if message.attempts >= max_attempts:
            message.status = OutboxStatus.FAILED
            return True
        message.status = OutboxStatus.PENDING
        message.next_attempt_at = utcnow() + delay
        return False


def mark_failed(db: Database, message_id: int, error: str, *, now: datetime | None = None) -> None:
    """Park a message as failed for good (e.g. the chat blocked the bot)."""
    with db.session() as session:
        message = session.get(OutboxMessage, message_id)
        if message is None:
            raise StorageError(f"no outbox message {message_id}")
        message.status = OutboxStatus.FAILED
        message.last_error = error[:2000]
        message.attempts += 1
        message.next_attempt_at = now or utcnow()
