"""Subscribers, their settings and their interests."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Row, bindparam, delete, insert, inspect, select
from sqlalchemy.exc import IntegrityError

from storage.db import Database
from storage.errors import StorageError
from storage.models import (
    INTERESTS,
    SUBSCRIBERS,
    ChatKind,
    Interest,
    InterestKind,
    Platform,
    Subscriber,
)

SETTABLE_FIELDS = frozenset(
    {
        "timezone", "digest_time", "digest_size", "digest_days", "weekly", "min_score",
        "trend_weight", "categories_mode", "bluesky_handle", "active", "paused", "display_name",
        "owner_user_id", "workspace_id", "kind", "announcements",
    }
)  # fmt: skip


@dataclass
class Profile:
    """A subscriber's explicit interests, grouped by kind."""

    keywords: list[str] = field(default_factory=list)
    authors: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    muted: list[str] = field(default_factory=list)

    @property
    def is_empty(self) -> bool:
        """True when the subscriber has said nothing about what they like."""
        return not (self.keywords or self.authors or self.categories)


# Statements built once: every command reads its subscriber, and building a statement costs
# more than running it on SQLite.
_BY_CHAT = select(SUBSCRIBERS).where(
    SUBSCRIBERS.c.platform == bindparam("platform"), SUBSCRIBERS.c.chat_id == bindparam("chat_id")
)
_INTERESTS_OF = (
    select(INTERESTS.c.subscriber_id, INTERESTS.c.kind, INTERESTS.c.value)
    .where(INTERESTS.c.subscriber_id.in_(bindparam("ids", expanding=True)))
    .order_by(INTERESTS.c.id)
)
_INSERT = insert(SUBSCRIBERS).returning(*SUBSCRIBERS.columns)
_VALUES_OF_KIND = select(INTERESTS.c.value).where(
    INTERESTS.c.subscriber_id == bindparam("subscriber_id"), INTERESTS.c.kind == bindparam("kind")
)


_MANAGER = inspect(Subscriber).class_manager


def _loaded(row: Row[Any]) -> Subscriber:
    """A ``Subscriber`` from a row of its table, built the way the ORM loads one.

    Calling the model (``Subscriber(**row)``) runs an attribute event per field, which cost
    more than the query itself; loading fills the instance's ``__dict__`` directly.
    """
    subscriber: Subscriber = _MANAGER.new_instance()
    subscriber.__dict__.update(row._mapping)
    return subscriber


def _new_row(platform: Platform, chat_id: str, kind: ChatKind, **defaults: Any) -> dict[str, Any]:
    """Every column of a new subscriber but its id: the model's defaults, then ``defaults``."""
    model = Subscriber(platform=platform, chat_id=chat_id, kind=kind, **defaults)
    return {c.name: getattr(model, c.name) for c in SUBSCRIBERS.columns if c.name != "id"}


def get_or_create(
    db: Database,
    platform: Platform,
    chat_id: str,
    *,
    kind: ChatKind = ChatKind.USER,
    **defaults: Any,
) -> tuple[Subscriber, bool]:
    """The subscriber for a chat, created with ``defaults`` when new; (subscriber, created)."""
    found = find(db, platform, chat_id)
    if found is not None:
        return found, False
    return create(db, platform, chat_id, kind=kind, **defaults)


def create(
    db: Database,
    platform: Platform,
    chat_id: str,
    *,
    kind: ChatKind = ChatKind.USER,
    **defaults: Any,
) -> tuple[Subscriber, bool]:
    """Subscribe a chat that had no subscriber a moment ago; (subscriber, created).

    When another request subscribed it in the meantime, that subscriber comes back with
    ``created`` False, as from ``get_or_create``.
    """
    unknown = set(defaults) - SETTABLE_FIELDS
    if unknown:
        raise ValueError(f"unknown subscriber fields: {sorted(unknown)}")
    try:
        with db.transaction() as connection:
            row = connection.execute(_INSERT, _new_row(platform, chat_id, kind, **defaults)).one()
            return _loaded(row), True
    except StorageError as exc:
        # Two first messages raced; the other one created it.
        if isinstance(exc.__cause__, IntegrityError):
            again = find(db, platform, chat_id)
            if again is not None:
                return again, False
        raise


def find(db: Database, platform: Platform, chat_id: str) -> Subscriber | None:
    """The subscriber for a chat, or None."""
    with db.transaction() as connection:
        row = connection.execute(_BY_CHAT, {"platform": platform, "chat_id": chat_id}).first()
    return _loaded(row) if row is not None else None


def get(db: Database, subscriber_id: int) -> Subscriber | None:
    """A subscriber by id."""
    with db.session() as session:
        return session.get(Subscriber, subscriber_id)


def update(db: Database, subscriber_id: int, **changes: Any) -> Subscriber:
    """Change settings of a subscriber; returns the updated row."""
    unknown = set(changes) - SETTABLE_FIELDS
    if unknown:
        raise ValueError(f"unknown subscriber fields: {sorted(unknown)}")
    with db.session() as session:
        subscriber = session.get(Subscriber, subscriber_id)
        if subscriber is None:
            raise StorageError(f"no subscriber {subscriber_id}")
        for name, value in changes.items():
            setattr(subscriber, name, value)
        session.add(subscriber)
        session.flush()
        session.refresh(subscriber)
        return subscriber


def remove(db: Database, subscriber_id: int) -> None:
    """Delete a subscriber and, by cascade, everything stored about them."""
    with db.session() as session:
        session.execute(delete(Subscriber).where(SUBSCRIBERS.c.id == subscriber_id))


def active(db: Database, platform: Platform | None = None) -> list[Subscriber]:
    """Subscribers that are active and not paused."""
    with db.session() as session:
        statement = select(Subscriber).where(
            SUBSCRIBERS.c.active.is_(True),
            SUBSCRIBERS.c.paused.is_(False),
        )
        if platform is not None:
            statement = statement.where(SUBSCRIBERS.c.platform == platform)
        return list(session.execute(statement.order_by(SUBSCRIBERS.c.id)).scalars())


def add_interests(
    db: Database, subscriber_id: int, kind: InterestKind, values: Iterable[str]
) -> list[str]:
    """Add interests; returns the values that were new (existing ones are left alone)."""
    unique: dict[str, str] = {}
    for value in values:
        if value.strip():
            unique.setdefault(value.strip().casefold(), value.strip())
    wanted = list(unique.values())
    with db.transaction() as connection:
        existing = {
            value.casefold()
            for value in connection.execute(
                _VALUES_OF_KIND, {"subscriber_id": subscriber_id, "kind": kind}
            ).scalars()
        }
        added = [value for value in wanted if value.casefold() not in existing]
        if added:
            connection.execute(
                insert(INTERESTS),
                [{"subscriber_id": subscriber_id, "kind": kind, "value": v} for v in added],
            )
        return added


def remove_interests(
    db: Database, subscriber_id: int, kind: InterestKind, values: Iterable[str]
) -> list[str]:
    """Remove interests (case-insensitively); returns the values that were removed."""
    targets = {v.strip().casefold() for v in values if v.strip()}
    with db.session() as session:
        rows = session.execute(
            select(Interest).where(
                INTERESTS.c.subscriber_id == subscriber_id,
                INTERESTS.c.kind == kind,
            )
        ).scalars()
        removed = []
        for row in rows:
            if row.value.casefold() in targets:
                removed.append(row.value)
                session.delete(row)
        return removed


def profiles(db: Database, subscriber_ids: Iterable[int]) -> dict[int, Profile]:
    """Interest profiles for many subscribers in one query."""
    ids = list(subscriber_ids)
    result: dict[int, Profile] = {sid: Profile() for sid in ids}
    if not ids:
        return result
    with db.transaction() as connection:
        rows = connection.execute(_INTERESTS_OF, {"ids": ids}).all()
    buckets = {
        InterestKind.KEYWORD: "keywords",
        InterestKind.AUTHOR: "authors",
        InterestKind.CATEGORY: "categories",
        InterestKind.MUTED: "muted",
    }
    for subscriber_id, kind, value in rows:
        getattr(result[subscriber_id], buckets[InterestKind(kind)]).append(value)
    return result


def profile(db: Database, subscriber_id: int) -> Profile:
    """One subscriber's interest profile."""
    return profiles(db, [subscriber_id])[subscriber_id]
