"""Where each source left off (ETag, Last-Modified, tokens) and how healthy it is."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from storage.db import Database
from storage.models import CURSORS, SourceCursor
from storage.types import utcnow


def get(db: Database, source: str) -> SourceCursor:
    """The cursor of ``source`` (a fresh, unsaved one if it never ran)."""
    with db.session() as session:
        return session.get(SourceCursor, source) or SourceCursor(source=source)


def all_cursors(db: Database) -> list[SourceCursor]:
    """Every source's cursor and health, by name."""
    with db.session() as session:
        return list(session.execute(select(SourceCursor).order_by(CURSORS.c.source)).scalars())


def record_success(
    db: Database,
    source: str,
    *,
    now: datetime | None = None,
    etag: str | None = None,
    last_modified: str | None = None,
    resumption_token: str | None = None,
    cursor: str | None = None,
    keep_validators: bool = False,
) -> None:
    """Note a successful poll and where to continue from."""
    now = now or utcnow()
    with db.session() as session:
        row = session.get(SourceCursor, source) or SourceCursor(source=source)
        row.last_poll_at = now
        row.last_success_at = now
        row.consecutive_failures = 0
        if not keep_validators:
            row.etag = etag
            row.last_modified = last_modified
        row.resumption_token = resumption_token
        row.cursor = cursor
        session.add(row)


def record_failure(db: Database, source: str, error: str, *, now: datetime | None = None) -> None:
    """Note a failed poll; the cursor is left where it was so the next poll resumes."""
    now = now or utcnow()
    with db.session() as session:
        row = session.get(SourceCursor, source) or SourceCursor(source=source)
        row.last_poll_at = now
        row.last_error = error[:2000]
        row.last_error_at = now
        row.consecutive_failures += 1
        session.add(row)
