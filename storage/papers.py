"""Papers: idempotent bulk upsert (a new version updates, never duplicates) and lookups."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from feeds.records import Paper as PaperRecord
from storage.db import Database
from storage.errors import StorageError
from storage.models import PAPERS, Paper
from storage.types import utcnow

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
    """
    now = now or utcnow()
    records = _latest_per_id(papers)
    if not records:
        return UpsertResult()
    insert = postgresql.insert if db.dialect == "postgresql" else sqlite.insert
    table = PAPERS
    result = UpsertResult()
    try:
        with db.engine.begin() as connection:
            for start in range(0, len(records), _CHUNK):
                chunk = records[start : start + _CHUNK]
                known = dict(
                    connection.execute(
                        select(table.c.arxiv_id, table.c.version).where(
                            table.c.arxiv_id.in_([p.arxiv_id for p in chunk])
                        )
                    ).all()
                )
                inserted = sum(1 for p in chunk if p.arxiv_id not in known)
                updated = sum(
                    1 for p in chunk if p.arxiv_id in known and p.version > known[p.arxiv_id]
                )
                statement = insert(table)
                excluded = statement.excluded
                statement = statement.on_conflict_do_update(
                    index_elements=["arxiv_id"],
                    set_={
                        **{name: excluded[name] for name in _UPDATED_ON_NEW_VERSION},
                        # Keep the first announcement date; fill it in when only now known.
                        "announced": func.coalesce(table.c.announced, excluded.announced),
                    },
                    where=or_(
                        excluded.version > table.c.version,
                        table.c.announced.is_(None) & excluded.announced.is_not(None),
                    ),
                )
                connection.execute(statement, [_row(p, now) for p in chunk])
                result = result + UpsertResult(inserted, updated, len(chunk) - inserted - updated)
    except SQLAlchemyError as exc:
        raise StorageError(f"could not store {len(records)} papers") from exc
    return result


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


def recent_papers(db: Database, since: datetime, *, include_withdrawn: bool = False) -> list[Paper]:
    """Papers announced (or, when never announced, published) since ``since``, newest first."""
    when = func.coalesce(PAPERS.c.announced, PAPERS.c.published)
    with db.session() as session:
        statement = select(Paper).where(when >= since)
        if not include_withdrawn:
            statement = statement.where(PAPERS.c.withdrawn.is_(False))
        rows = session.execute(statement.order_by(when.desc(), PAPERS.c.arxiv_id))
        return [paper for (paper,) in rows]


def count_papers(db: Database) -> int:
    """How many papers are stored."""
    with db.session() as session:
        return int(session.execute(select(func.count()).select_from(Paper)).scalar_one())
