"""Digests, the papers they deliver (at most once per subscriber, ever) and their outbox rows."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from storage.db import Database
from storage.errors import StorageError
from storage.models import DELIVERIES, DIGESTS, OUTBOX, Delivery, Digest, OutboxStatus
from storage.types import utcnow


@dataclass(frozen=True)
class DigestEntry:
    """One paper chosen for a digest."""

    arxiv_id: str
    rank: int
    score: float
    why: str = ""


@dataclass(frozen=True)
class RecordedDigest:
    """A stored digest, the entries actually recorded, and its outbox message id."""

    digest_id: int
    entries: tuple[DigestEntry, ...]
    outbox_id: int | None


class DigestAlreadyExists(StorageError):
    """A scheduled digest for that subscriber and local date was already built."""


_DELIVERED = select(DELIVERIES.c.subscriber_id, DELIVERIES.c.arxiv_id).where(
    DELIVERIES.c.subscriber_id.in_(bindparam("ids", expanding=True))
)
"""Built once: ``/digest`` reads it on every call."""


def delivered_ids(db: Database, subscriber_ids: Iterable[int]) -> dict[int, set[str]]:
    """Every paper id ever delivered to each of the given subscribers."""
    ids = list(subscriber_ids)
    result: dict[int, set[str]] = {sid: set() for sid in ids}
    if not ids:
        return result
    with db.transaction() as connection:
        rows = connection.execute(_DELIVERED, {"ids": ids}).all()
    for subscriber_id, arxiv_id in rows:
        result[subscriber_id].add(arxiv_id)
    return result


_NEW_DIGEST = insert(DIGESTS).returning(DIGESTS.c.id)
_NEW_DELIVERIES = {
    name: dialect.insert(DELIVERIES)
    .on_conflict_do_nothing(index_elements=["subscriber_id", "arxiv_id"])
    .returning(DELIVERIES.c.arxiv_id)
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}
_PAPER_COUNT = (
    update(DIGESTS)
    .where(DIGESTS.c.id == bindparam("digest_id"))
    .values(paper_count=bindparam("count"))
)
_NEW_MESSAGE = insert(OUTBOX).returning(OUTBOX.c.id)


def record_digest(
    db: Database,
    subscriber_id: int,
    entries: Sequence[DigestEntry],
    *,
    scheduled_for: date | None = None,
    payload: dict[str, Any] | None = None,
) -> RecordedDigest:
    """Store a digest, its deliveries and its outbox message in one transaction.

    A paper already delivered to the subscriber is dropped from the digest (never sent twice,
    even when two digests are built concurrently). Raises ``DigestAlreadyExists`` when a
    scheduled digest for ``scheduled_for`` exists.
    """
    created_at = utcnow()
    try:
        # Core statements built once, in one transaction: this runs for every digest and
        # every /digest, and the ORM's unit of work cost more than the statements.
        with db.engine.begin() as connection:
            digest_id = connection.execute(
                _NEW_DIGEST,
                {
                    "subscriber_id": subscriber_id,
                    "scheduled_for": scheduled_for,
                    "created_at": created_at,
                    "paper_count": len(entries),
                },
            ).scalar_one()
            recorded: list[DigestEntry] = []
            if entries:
                # One executemany for every entry (SQLAlchemy batches it into one INSERT); a
                # paper delivered before is skipped by the unique (subscriber, paper)
                # constraint and comes back in no RETURNING row.
                rows = [
                    {
                        "subscriber_id": subscriber_id,
                        "digest_id": digest_id,
                        "arxiv_id": entry.arxiv_id,
                        "rank": entry.rank,
                        "score": entry.score,
                        "why": entry.why,
                        "created_at": created_at,
                    }
                    for entry in entries
                ]
                statement = _NEW_DELIVERIES[db.dialect]
                inserted = set(connection.execute(statement, rows).scalars())
                for entry in entries:
                    if entry.arxiv_id in inserted:
                        inserted.discard(entry.arxiv_id)  # a repeated entry counts once
                        recorded.append(entry)
            if len(recorded) != len(entries):
                connection.execute(_PAPER_COUNT, {"digest_id": digest_id, "count": len(recorded)})
            outbox_id = None
            if recorded and payload is not None:
                kept = {entry.arxiv_id for entry in recorded}
                outbox_id = connection.execute(
                    _NEW_MESSAGE,
                    {
                        "subscriber_id": subscriber_id,
                        "digest_id": digest_id,
                        "idempotency_key": f"digest:{digest_id}",
                        "payload": _only_kept(payload, kept),
                        "status": OutboxStatus.PENDING,
                        "attempts": 0,
                        "next_attempt_at": created_at,
                        "created_at": created_at,
                    },
                ).scalar_one()
            return RecordedDigest(digest_id, tuple(recorded), outbox_id)
    except IntegrityError as exc:
        if scheduled_for is not None:
            raise DigestAlreadyExists(
                f"digest for subscriber {subscriber_id} on {scheduled_for} exists"
            ) from exc
        raise StorageError(f"could not record a digest for subscriber {subscriber_id}") from exc
    except SQLAlchemyError as exc:
        raise StorageError(f"could not record a digest for subscriber {subscriber_id}") from exc


def _only_kept(payload: dict[str, Any], kept: set[str]) -> dict[str, Any]:
    items = payload.get("items")
    if not isinstance(items, list):
        return payload
    return {**payload, "items": [item for item in items if item.get("arxiv_id") in kept]}


def has_scheduled_digest(db: Database, subscriber_id: int, local_date: date) -> bool:
    """True when the scheduled digest for that local date was already built."""
    with db.session() as session:
        count = session.execute(
            select(func.count())
            .select_from(Digest)
            .where(DIGESTS.c.subscriber_id == subscriber_id, DIGESTS.c.scheduled_for == local_date)
        ).scalar_one()
    return bool(count)


def delivery_count(db: Database, subscriber_id: int) -> int:
    """How many papers a subscriber has been given in total."""
    with db.session() as session:
        return int(
            session.execute(
                select(func.count())
                .select_from(Delivery)
                .where(DELIVERIES.c.subscriber_id == subscriber_id)
            ).scalar_one()
        )


def scheduled_digests(db: Database, wanted: Iterable[tuple[int, date]]) -> set[tuple[int, date]]:
    """Which of the (subscriber, local date) pairs already have their scheduled digest."""
    pairs = list(wanted)
    if not pairs:
        return set()
    found: set[tuple[int, date]] = set()
    dates = sorted({day for _, day in pairs})
    with db.session() as session:
        for start in range(0, len(pairs), 500):
            ids = [sid for sid, _ in pairs[start : start + 500]]
            rows = session.execute(
                select(DIGESTS.c.subscriber_id, DIGESTS.c.scheduled_for).where(
                    DIGESTS.c.subscriber_id.in_(ids), DIGESTS.c.scheduled_for.in_(dates)
                )
            ).all()
            found.update((sid, day) for sid, day in rows)
    return found & set(pairs)
