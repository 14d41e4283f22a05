"""The outbox: rendered messages waiting to be sent, claimed, sent or parked as failed.

A worker *claims* due rows by flipping them to ``sending`` with a lease (``next_attempt_at`` in
the future) in one statement; on PostgreSQL the row selection uses ``FOR UPDATE SKIP LOCKED``
so several replicas never claim the same row. A worker that dies mid-send leaves its rows in
``sending``; when the lease runs out they are due again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, func, or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from storage.db import Database
from storage.errors import StorageError
from storage.models import OUTBOX, SUBSCRIBERS, ChatKind, OutboxMessage, OutboxStatus, Platform
from storage.types import utcnow


@dataclass(frozen=True)
class ClaimedMessage:
    """An outbox row claimed for sending, with what the sender needs about its chat."""

    id: int
    subscriber_id: int
    platform: Platform
    chat_id: str
    chat_kind: ChatKind
    workspace_id: str | None
    subscriber_active: bool
    payload: dict[str, Any]
    idempotency_key: str
    attempts: int


def enqueue(
    db: Database,
    subscriber_id: int,
    payload: dict[str, Any],
    *,
    key: str,
    now: datetime | None = None,
) -> int | None:
    """Add a message (e.g. an announcement); None when ``key`` was already enqueued."""
    with db.session() as session:
        existing = session.execute(
            select(OUTBOX.c.id).where(OUTBOX.c.idempotency_key == key)
        ).scalar_one_or_none()
        if existing is not None:
            return None
        message = OutboxMessage(
            subscriber_id=subscriber_id,
            idempotency_key=key,
            payload=payload,
            next_attempt_at=now or utcnow(),
        )
        session.add(message)
        session.flush()
        return message.id


def claim_due(
    db: Database,
    *,
    now: datetime | None = None,
    limit: int = 100,
    lease: timedelta = timedelta(minutes=5),
    platforms: Iterable[Platform] | None = None,
) -> list[ClaimedMessage]:
    """Claim up to ``limit`` due messages (oldest first) for this worker."""
    now = now or utcnow()
    due = or_(
        OUTBOX.c.status == OutboxStatus.PENDING.value,
        OUTBOX.c.status == OutboxStatus.SENDING.value,  # a dead worker's expired lease
    )
    candidates = select(OUTBOX.c.id).where(and_(due, OUTBOX.c.next_attempt_at <= now))
    if platforms is not None:
        wanted = [p.value for p in platforms]
        candidates = candidates.where(
            OUTBOX.c.subscriber_id.in_(
                select(SUBSCRIBERS.c.id).where(SUBSCRIBERS.c.platform.in_(wanted))
            )
        )
    candidates = candidates.order_by(OUTBOX.c.id).limit(limit)
    if db.dialect == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True)
    statement = (
        update(OUTBOX)
        .where(OUTBOX.c.id.in_(candidates.scalar_subquery()))
        .values(status=OutboxStatus.SENDING.value, next_attempt_at=now + lease)
        .returning(
            OUTBOX.c.id,
            OUTBOX.c.subscriber_id,
            OUTBOX.c.payload,
            OUTBOX.c.idempotency_key,
            OUTBOX.c.attempts,
        )
    )
    try:
        with db.engine.begin() as connection:
            rows = connection.execute(statement).all()
            if not rows:
                return []
            chats = {
                row.id: row
                for row in connection.execute(
                    select(
                        SUBSCRIBERS.c.id,
                        SUBSCRIBERS.c.platform,
                        SUBSCRIBERS.c.chat_id,
                        SUBSCRIBERS.c.kind,
                        SUBSCRIBERS.c.workspace_id,
                        SUBSCRIBERS.c.active,
                    ).where(SUBSCRIBERS.c.id.in_({r.subscriber_id for r in rows}))
                )
            }
    except SQLAlchemyError as exc:
        raise StorageError("could not claim outbox messages") from exc
    claimed = []
    for row in sorted(rows, key=lambda r: r.id):
        chat = chats[row.subscriber_id]
        claimed.append(
            ClaimedMessage(
                id=row.id,
                subscriber_id=row.subscriber_id,
                platform=Platform(chat.platform),
                chat_id=chat.chat_id,
                chat_kind=ChatKind(chat.kind),
                workspace_id=chat.workspace_id,
                subscriber_active=bool(chat.active),
                payload=row.payload,
                idempotency_key=row.idempotency_key,
                attempts=row.attempts,
            )
        )
    return claimed


def _set(db: Database, message_id: int, **values: Any) -> None:
    try:
        with db.engine.begin() as connection:
            connection.execute(update(OUTBOX).where(OUTBOX.c.id == message_id).values(**values))
    except SQLAlchemyError as exc:
        raise StorageError(f"could not update outbox message {message_id}") from exc


def mark_sent(
    db: Database,
    message_id: int,
    platform_message_id: str | None = None,
    *,
    now: datetime | None = None,
) -> None:
    """Record that a message reached the chat (its own short transaction, right after sending)."""
    _set(
        db,
        message_id,
        status=OutboxStatus.SENT.value,
        platform_message_id=platform_message_id,
        sent_at=now or utcnow(),
        attempts=OUTBOX.c.attempts + 1,
        last_error=None,
    )


_TAKE_FOR_REPLY = (
    update(OUTBOX)
    .where(
        OUTBOX.c.id == bindparam("message_id"),
        OUTBOX.c.status == OutboxStatus.PENDING.value,
    )
    .values(
        status=OutboxStatus.SENT.value,
        platform_message_id=bindparam("platform_message_id"),
        sent_at=bindparam("sent_at"),
        attempts=OUTBOX.c.attempts + 1,
    )
)
"""Built once: every ``/digest`` takes its message back."""


def take_for_reply(
    db: Database,
    message_id: int,
    platform_message_id: str | None = None,
    *,
    now: datetime | None = None,
) -> bool:
    """Mark a still-pending message sent because a reply delivers it; False if a worker got it.

    Used by ``/digest``: the digest is written to the outbox like a scheduled one (so its
    deliveries are recorded), then taken back for the command's reply, atomically, so the
    worker can never send it as well.
    """
    try:
        with db.engine.begin() as connection:
            result = connection.execute(
                _TAKE_FOR_REPLY,
                {
                    "message_id": message_id,
                    "platform_message_id": platform_message_id,
                    "sent_at": now or utcnow(),
                },
            )
            return int(result.rowcount) == 1
    except SQLAlchemyError as exc:
        raise StorageError(f"could not take outbox message {message_id}") from exc


def reschedule(
    db: Database, message_id: int, at: datetime, *, error: str, count_attempt: bool = True
) -> None:
    """Put a claimed message back to pending, due at ``at``."""
    values: dict[str, Any] = {
        "status": OutboxStatus.PENDING.value,
        "next_attempt_at": at,
        "last_error": error[:2000],
    }
    if count_attempt:
        values["attempts"] = OUTBOX.c.attempts + 1
    _set(db, message_id, **values)


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
    _set(
        db,
        message_id,
        status=OutboxStatus.FAILED.value,
        last_error=error[:2000],
        attempts=OUTBOX.c.attempts + 1,
        next_attempt_at=now or utcnow(),
    )


def pending(
    db: Database, *, subscriber_id: int | None = None, limit: int = 100
) -> list[OutboxMessage]:
    """Messages due now (pending and past their next attempt), oldest first."""
    with db.session() as session:
        statement = select(OutboxMessage).where(
            OUTBOX.c.status == OutboxStatus.PENDING.value,
            OUTBOX.c.next_attempt_at <= utcnow(),
        )
        if subscriber_id is not None:
            statement = statement.where(OUTBOX.c.subscriber_id == subscriber_id)
        statement = statement.order_by(OUTBOX.c.id).limit(limit)
        return list(session.execute(statement).scalars())


def messages(
    db: Database, *, status: OutboxStatus | None = None, limit: int = 50
) -> list[OutboxMessage]:
    """Outbox rows, newest first, optionally of one status (for ``trending-papers outbox``)."""
    with db.session() as session:
        statement = select(OutboxMessage)
        if status is not None:
            statement = statement.where(OUTBOX.c.status == status.value)
        return list(session.execute(statement.order_by(OUTBOX.c.id.desc()).limit(limit)).scalars())


def counts(db: Database) -> dict[str, int]:
    """Number of outbox rows per status."""
    with db.session() as session:
        rows = session.execute(
            select(OUTBOX.c.status, func.count()).group_by(OUTBOX.c.status)
        ).all()
    return {str(status): int(count) for status, count in rows}


def requeue_failed(db: Database, *, now: datetime | None = None) -> int:
    """Give every failed message another chance; returns how many were requeued."""
    try:
        with db.engine.begin() as connection:
            result = connection.execute(
                update(OUTBOX)
                .where(OUTBOX.c.status == OutboxStatus.FAILED.value)
                .values(
                    status=OutboxStatus.PENDING.value, attempts=0, next_attempt_at=now or utcnow()
                )
            )
            return int(result.rowcount)
    except SQLAlchemyError as exc:
        raise StorageError("could not requeue failed messages") from exc
