"""Counts for operators: subscribers by platform and state, messages sent since a moment."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import case, func, select

from storage.db import Database
from storage.models import OUTBOX, SUBSCRIBERS, OutboxStatus, Platform


@dataclass
class SubscriberCounts:
    """Subscribers of one platform: receiving digests, paused, and unreachable (inactive)."""

    active: int = 0
    paused: int = 0
    inactive: int = 0
    announcements_off: int = 0

    @property
    def total(self) -> int:
        """Every stored chat of the platform."""
        return self.active + self.paused + self.inactive


@dataclass
class MessageCounts:
    """Outbox messages: digests and other messages sent since a moment, and the backlog."""

    digests_sent: int = 0
    other_sent: int = 0
    pending: int = 0
    failed: int = 0
    by_platform: dict[Platform, int] = field(default_factory=dict)
    """Digests sent per platform in the same period."""


def subscriber_counts(db: Database) -> dict[Platform, SubscriberCounts]:
    """Subscriber counts per platform (platforms without subscribers are left out)."""
    state = case(
        (SUBSCRIBERS.c.active.is_(False), "inactive"),
        (SUBSCRIBERS.c.paused.is_(True), "paused"),
        else_="active",
    )
    statement = select(
        SUBSCRIBERS.c.platform,
        state.label("state"),
        SUBSCRIBERS.c.announcements,
        func.count(),
    ).group_by(SUBSCRIBERS.c.platform, state, SUBSCRIBERS.c.announcements)
    counts: dict[Platform, SubscriberCounts] = {}
    with db.session() as session:
        for platform, state_name, announcements, number in session.execute(statement):
            entry = counts.setdefault(Platform(platform), SubscriberCounts())
            setattr(entry, state_name, getattr(entry, state_name) + number)
            if not announcements:
                entry.announcements_off += number
    return counts


def message_counts(db: Database, since: datetime) -> MessageCounts:
    """Messages sent since ``since`` (digests apart from the rest) and the current backlog."""
    counts = MessageCounts()
    sent = (
        select(
            SUBSCRIBERS.c.platform,
            OUTBOX.c.digest_id.is_not(None).label("is_digest"),
            func.count(),
        )
        .join(SUBSCRIBERS, SUBSCRIBERS.c.id == OUTBOX.c.subscriber_id)
        .where(OUTBOX.c.status == OutboxStatus.SENT.value, OUTBOX.c.sent_at >= since)
        .group_by(SUBSCRIBERS.c.platform, OUTBOX.c.digest_id.is_not(None))
    )
    backlog = (
        select(OUTBOX.c.status, func.count())
        .where(OUTBOX.c.status.in_([OutboxStatus.PENDING.value, OutboxStatus.SENDING.value,
                                    OutboxStatus.FAILED.value]))
        .group_by(OUTBOX.c.status)
    )  # fmt: skip
    with db.session() as session:
        for platform, is_digest, number in session.execute(sent):
            if is_digest:
                counts.digests_sent += number
                key = Platform(platform)
                counts.by_platform[key] = counts.by_platform.get(key, 0) + number
            else:
                counts.other_sent += number
        for status, number in session.execute(backlog):
            if status == OutboxStatus.FAILED.value:
                counts.failed += number
            else:
                counts.pending += number
    return counts
