"""Papers: idempotent bulk upsert (a new version updates, never duplicates) and lookups."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache

from sqlalchemy import String, and_, bindparam, case, func, or_, select, type_coerce
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql import Executable

from feeds.records import Paper as PaperRecord
from storage.db import Database
from storage.errors import StorageError
from storage.models import PAPERS, Paper
from storage.types import UTCDateTime, utcnow

_CHUNK = 500
_UPDATED_ON_NEW_VERSION = (
    "version", "title", "abstract", "authors", "categories", "primary_category", "updated",
    "comment", "journal_ref", "doi", "withdrawn", "ingested_at",
)  # fmt: skip


@dataclass(frozen=True)
class UpsertResult:
    """What an ingest changed."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0

    def __add__(self, other: UpsertResult) -> UpsertResult:
        return UpsertResult(
            self.inserted + other.inserted,
            self.updated + other.updated,
            self.unchanged + other.unchanged,
        )


def _row(paper: PaperRecord, now: datetime) -> dict[str, object]:
    return {
        "arxiv_id": paper.arxiv_id,
        "version": paper.version,
        "title": paper.title,
        "abstract": paper.abstract,
        "authors": list(paper.authors),
        "categories": list(paper.categories),
        "primary_category": paper.primary_category,
        "published": paper.published,
        "updated": paper.updated,
        "announced": paper.announced,
        "comment": paper.comment,
        "journal_ref": paper.journal_ref,
        "doi": paper.doi,
        "withdrawn": paper.withdrawn,
        "first_seen_at": now,
        "ingested_at": now,
    }


def _latest_per_id(papers: Iterable[PaperRecord]) -> list[PaperRecord]:
    latest: dict[str, PaperRecord] = {}
    for paper in papers:
        seen = latest.get(paper.arxiv_id)
        if seen is None or paper.version > seen.version:
            latest[paper.arxiv_id] = paper
    return list(latest.values())


def upsert_papers(
    db: Database, papers: Iterable[PaperRecord], *, now: datetime | None = None
) -> UpsertResult:
    """Insert new papers and update those whose version went up, all in one transaction.

    Ingesting the same payload twice changes nothing; an older version never overwrites a
    newer one; an announcement date fills in one that was unknown.

    This is the bulk path of every ingest (announcements, OAI-PMH backfill, engagement
    look-ups). Papers that would change nothing are not sent at all, and each chunk of the
    rest goes to the database as one multi-row statement: the search index triggers of
    migration 0002 then add the chunk to SQLite's full-text index in one go, where one
    statement per paper made FTS5 write and merge an index segment per paper.
    """
    now = now or utcnow()
    records = _latest_per_id(papers)
    if not records:
        return UpsertResult()
    table = PAPERS
    result = UpsertResult()
    try:
        with db.engine.begin() as connection:
            dialect = connection.dialect
            statement = _upsert_statement(dialect.name, dialect.insert_executemany_returning)
            for start in range(0, len(records), _CHUNK):
                chunk = records[start : start + _CHUNK]
                known: dict[str, tuple[int, bool]] = {
                    arxiv_id: (version, announced_unknown)
                    for arxiv_id, version, announced_unknown in connection.execute(
                        select(
                            table.c.arxiv_id, table.c.version, table.c.announced.is_(None)
                        ).where(table.c.arxiv_id.in_([p.arxiv_id for p in chunk]))
                    )
                }
                inserted = updated = 0
                changed: list[PaperRecord] = []
                for paper in chunk:
                    stored = known.get(paper.arxiv_id)
                    if stored is None:
                        inserted += 1
                    elif paper.version > stored[0]:
                        updated += 1
                    elif not (stored[1] and paper.announced is not None):
                        continue  # the statement's WHERE would leave this row as it is
                    changed.append(paper)
                if changed:
                    connection.execute(statement, [_row(p, now) for p in changed]).close()
                result = result + UpsertResult(inserted, updated, len(chunk) - inserted - updated)
    except SQLAlchemyError as exc:
        raise StorageError(f"could not store {len(records)} papers") from exc
    return result


@cache
def _upsert_statement(dialect_name: str, multi_row: bool) -> Executable:
    """INSERT … ON CONFLICT that only overwrites a row with a higher version (see above)."""
    table = PAPERS
    insert = postgresql.insert if dialect_name == "postgresql" else sqlite.insert
    statement = insert(table)
    excluded = statement.excluded
    # An announcement date can reach a row through an older version: it fills in the date
    # but must not bring that version's text back.
    not_older = excluded.version >= table.c.version
    statement = statement.on_conflict_do_update(
        index_elements=["arxiv_id"],
        set_={
            **{
                name: case((not_older, excluded[name]), else_=table.c[name])
                for name in _UPDATED_ON_NEW_VERSION
            },
            # Keep the first announcement date; fill it in when only now known.
            "announced": func.coalesce(table.c.announced, excluded.announced),
        },
        where=or_(
            excluded.version > table.c.version,
            table.c.announced.is_(None) & excluded.announced.is_not(None),
        ),
    )
    if multi_row:
        # With RETURNING, SQLAlchemy sends a list of rows as multi-row INSERTs
        # ("insertmanyvalues") instead of one statement per row.
        return statement.returning(table.c.arxiv_id)
    return statement


def get_paper(db: Database, arxiv_id: str) -> Paper | None:
    """One paper by its versionless id."""
    with db.session() as session:
        return session.get(Paper, arxiv_id)


def get_papers(db: Database, arxiv_ids: Sequence[str]) -> dict[str, Paper]:
    """Papers by id (missing ids are simply absent from the result)."""
    if not arxiv_ids:
        return {}
    with db.session() as session:
        rows = session.execute(select(Paper).where(PAPERS.c.arxiv_id.in_(list(arxiv_ids))))
        return {paper.arxiv_id: paper for (paper,) in rows}


_WHEN = func.coalesce(PAPERS.c.announced, PAPERS.c.published)
_SINCE = bindparam("since", type_=UTCDateTime())
# ``coalesce(announced, published) >= since``, spelled so that the indexes on both columns
# serve it: the paper table keeps every paper ever ingested, the window holds a few days.
_IN_WINDOW = or_(
    PAPERS.c.announced >= _SINCE,
    and_(PAPERS.c.announced.is_(None), PAPERS.c.published >= _SINCE),
)
_RECENT = select(Paper).where(_IN_WINDOW).order_by(_WHEN.desc(), PAPERS.c.arxiv_id)
_RECENT_FINGERPRINT = (
    select(
        PAPERS.c.arxiv_id,
        PAPERS.c.version,
        type_coerce(PAPERS.c.announced, String),
        type_coerce(PAPERS.c.ingested_at, String),
    )
    .where(_IN_WINDOW, PAPERS.c.withdrawn.is_(False))
    .order_by(_WHEN.desc(), PAPERS.c.arxiv_id)
)


def recent_papers(db: Database, since: datetime, *, include_withdrawn: bool = False) -> list[Paper]:
    """Papers announced (or, when never announced, published) since ``since``, newest first."""
    statement = _RECENT if include_withdrawn else _RECENT.where(PAPERS.c.withdrawn.is_(False))
    with db.session() as session:
        rows = session.execute(statement, {"since": since})
        return [paper for (paper,) in rows]


Fingerprint = Sequence[Sequence[object]]


def recent_fingerprint(db: Database, since: datetime) -> Fingerprint:
    """What identifies the rows ``recent_papers(db, since)`` returns, in the same order.

    One (id, version, announced, ingested_at) row per paper, read without any paper text,
    so it costs a small fraction of loading the papers. Every write to a paper (a new version,
    a filled-in announcement date) sets its ``ingested_at``, so equal fingerprints mean the
    same papers with the same content. Dates come back as the database stores them (no
    conversion: they are only compared).
    """
    try:
        with db.engine.connect() as connection:
            result = connection.execute(_RECENT_FINGERPRINT, {"since": since})
            # Plain DBAPI tuples: comparing them costs a tenth of comparing Row objects.
            return result.cursor.fetchall()
    except SQLAlchemyError as exc:
        raise StorageError("could not read the recent papers") from exc


def count_papers(db: Database) -> int:
    """How many papers are stored."""
    with db.session() as session:
        return int(session.execute(select(func.count()).select_from(Paper)).scalar_one())
