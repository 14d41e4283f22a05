"""👍 / 👎 ratings and 🔖 bookmarks."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import bindparam, select
from sqlmodel import Session

from storage.db import Database
from storage.models import FEEDBACK, Feedback
from storage.types import utcnow

# Built once: the chat commands read feedback on every search result and settings page.
_ONE = select(FEEDBACK).where(
    FEEDBACK.c.subscriber_id == bindparam("subscriber_id"),
    FEEDBACK.c.arxiv_id == bindparam("arxiv_id"),
)
_STATES = select(FEEDBACK.c.arxiv_id, FEEDBACK.c.rating, FEEDBACK.c.saved).where(
    FEEDBACK.c.subscriber_id == bindparam("subscriber_id"),
    FEEDBACK.c.arxiv_id.in_(bindparam("ids", expanding=True)),
)
_SAVED = (
    select(FEEDBACK.c.arxiv_id)
    .where(FEEDBACK.c.subscriber_id == bindparam("subscriber_id"), FEEDBACK.c.saved.is_(True))
    .order_by(FEEDBACK.c.updated_at.desc())
)
_RATINGS = select(
    FEEDBACK.c.subscriber_id, FEEDBACK.c.arxiv_id, FEEDBACK.c.rating, FEEDBACK.c.saved
).where(FEEDBACK.c.subscriber_id.in_(bindparam("ids", expanding=True)))


_ONE_ROW = select(Feedback).where(
    FEEDBACK.c.subscriber_id == bindparam("subscriber_id"),
    FEEDBACK.c.arxiv_id == bindparam("arxiv_id"),
)


def _row(session: Session, subscriber_id: int, arxiv_id: str) -> Feedback:
    found = session.execute(
        _ONE_ROW, {"subscriber_id": subscriber_id, "arxiv_id": arxiv_id}
    ).scalar_one_or_none()
    return found or Feedback(subscriber_id=subscriber_id, arxiv_id=arxiv_id)


def set_rating(db: Database, subscriber_id: int, arxiv_id: str, rating: int) -> Feedback:
    """Set 👍 (1), 👎 (-1) or clear (0) a rating; returns the stored row."""
    if rating not in (-1, 0, 1):
        raise ValueError("rating must be -1, 0 or 1")
    with db.session() as session:
        row = _row(session, subscriber_id, arxiv_id)
        row.rating = rating
        row.updated_at = utcnow()
        session.add(row)
        session.flush()
        return row


def set_saved(db: Database, subscriber_id: int, arxiv_id: str, saved: bool) -> Feedback:
    """Bookmark or un-bookmark a paper."""
    with db.session() as session:
        row = _row(session, subscriber_id, arxiv_id)
        row.saved = saved
        row.updated_at = utcnow()
        session.add(row)
        session.flush()
        return row


def get(db: Database, subscriber_id: int, arxiv_id: str) -> Feedback | None:
    """The feedback a subscriber gave one paper, if any."""
    with db.transaction() as connection:
        row = connection.execute(
            _ONE, {"subscriber_id": subscriber_id, "arxiv_id": arxiv_id}
        ).first()
    return Feedback(**row._mapping) if row is not None else None


def states(
    db: Database, subscriber_id: int, arxiv_ids: Iterable[str]
) -> dict[str, tuple[int, bool]]:
    """(rating, saved) of the given papers that the subscriber rated or saved, in one query."""
    ids = list(dict.fromkeys(arxiv_ids))
    if not ids:
        return {}
    with db.transaction() as connection:
        rows = connection.execute(_STATES, {"subscriber_id": subscriber_id, "ids": ids}).all()
    return {arxiv_id: (rating, saved) for arxiv_id, rating, saved in rows}


def saved_ids(db: Database, subscriber_id: int) -> list[str]:
    """Bookmarked paper ids, most recent first."""
    with db.transaction() as connection:
        return list(connection.execute(_SAVED, {"subscriber_id": subscriber_id}).scalars())


def ratings(db: Database, subscriber_ids: Iterable[int]) -> dict[int, dict[str, int]]:
    """Non-zero ratings per subscriber (a bookmark counts as a 👍 for learning)."""
    ids = list(subscriber_ids)
    result: dict[int, dict[str, int]] = {sid: {} for sid in ids}
    if not ids:
        return result
    with db.transaction() as connection:
        rows = connection.execute(_RATINGS, {"ids": ids}).all()
    for subscriber_id, arxiv_id, rating, saved in rows:
        value = rating or (1 if saved else 0)
        if value:
            result[subscriber_id][arxiv_id] = value
    return result
