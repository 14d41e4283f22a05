"""Ingest: poll arXiv announcement feeds and store what is new, remembering where we left off."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import httpx

from feeds.arxiv import fetch_announcements, merge_papers
from feeds.http import FetchError
from feeds.records import Paper
from storage import cursors
from storage.db import Database
from storage.papers import UpsertResult, upsert_papers
from storage.types import utcnow

log = logging.getLogger(__name__)


@dataclass
class IngestReport:
    """What one ingest round did."""

    fetched: int = 0
    stored: UpsertResult = field(default_factory=UpsertResult)
    not_modified: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def cursor_name(category: str) -> str:
    """The source-cursor key of one announcement feed."""
    return f"arxiv:rss:{category}"


async def ingest_announcements(
    db: Database,
    client: httpx.AsyncClient,
    categories: Sequence[str],
    *,
    now: datetime | None = None,
) -> IngestReport:
    """Fetch each category's feed (conditional GET), store all papers in one transaction.

    A failing feed is logged and recorded in its cursor; the others still ingest. Validators
    (ETag/Last-Modified) are saved only after the papers are stored, so a crash between the
    two re-fetches the feed instead of losing it behind a 304.
    """
    now = now or utcnow()
    report = IngestReport()
    papers: list[Paper] = []
    validators: dict[str, tuple[str | None, str | None]] = {}
    for category in dict.fromkeys(categories):
        source = cursor_name(category)
        cursor = cursors.get(db, source)
        try:
            result = await fetch_announcements(
                client, category, etag=cursor.etag, last_modified=cursor.last_modified
            )
        except (FetchError, ValueError) as exc:
            log.warning("arXiv feed failed: source=%s error=%s", source, exc)
            cursors.record_failure(db, source, str(exc), now=now)
            report.failed[category] = str(exc)
            continue
        if result.not_modified:
            report.not_modified.append(category)
        validators[category] = (result.etag, result.last_modified)
        papers.extend(result.batch.papers)
    merged = merge_papers(papers)
    report.fetched = len(merged)
    report.stored = upsert_papers(db, merged, now=now)
    for category, (etag, last_modified) in validators.items():
        cursors.record_success(
            db, cursor_name(category), now=now, etag=etag, last_modified=last_modified
        )
    log.info(
        "arXiv ingest: fetched=%d inserted=%d updated=%d unchanged=%d not_modified=%s failed=%s",
        report.fetched,
        report.stored.inserted,
        report.stored.updated,
        report.stored.unchanged,
        ",".join(report.not_modified) or "-",
        ",".join(report.failed) or "-",
    )
    return report
