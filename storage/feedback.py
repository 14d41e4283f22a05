"""👍 / 👎 ratings and 🔖 bookmarks."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlmodel import Session

from storage.db import Database
from storage.models import FEEDBACK, Feedback
from storage.types import utcnow


def _row(session: Session, subscriber_id: int, arxiv_id: str) -> Feedback:
    found = session.execute(
        select(Feedback).where(
            FEEDBACK.c.subscriber_id == subscriber_id,
            FEEDBACK.c.arxiv_id == arxiv_id,
        )
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
    with db.session() as session:
        return session.execute(
            select(Feedback).where(
                FEEDBACK.c.subscriber_id == subscriber_id,
                FEEDBACK.c.arxiv_id == arxiv_id,
            )
        ).scalar_one_or_none()


def saved_ids(db: Database, subscriber_id: int) -> list[str]:
    """Bookmarked paper ids, most recent first."""
    with db.session() as session:
        return list(
            session.execute(
                select(FEEDBACK.c.arxiv_id)
                .where(FEEDBACK.c.subscriber_id == subscriber_id, FEEDBACK.c.saved.is_(True))
                .order_by(FEEDBACK.c.updated_at.desc())
            ).scalars()
        )


def ratings(db: Database, subscriber_ids: Iterable[int]) -> dict[int, dict[str, int]]:
    """Non-zero ratings per subscriber (a bookmark counts as a 👍 for learning)."""
    ids = list(subscriber_ids)
    result: dict[int, dict[str, int]] = {sid: {} for sid in ids}
    if not ids:
        return result
    with db.session() as session:
        rows = session.execute(
            select(
                FEEDBACK.c.subscriber_id, FEEDBACK.c.arxiv_id, FEEDBACK.c.rating, FEEDBACK.c.saved
            ).where(FEEDBACK.c.subscriber_id.in_(ids))
        ).all()
    for subscriber_id, arxiv_id, rating, saved in rows:
        value = rating or (1 if saved else 0)
        if value:
            result[subscriber_id][arxiv_id] = value
    return result
