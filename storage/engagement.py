"""Engagement snapshots: an append-only time series per paper, source and metric."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from feeds.records import Signal
from storage.db import Database
from storage.errors import StorageError
from storage.models import SNAPSHOTS, EngagementSnapshot

_CHUNK = 500


def _key(arxiv_id: str, source: str, metric: str, url: str | None) -> tuple[str, str, str, str]:
    return (arxiv_id, source, metric, url or "")


def add_snapshots(db: Database, signals: Iterable[Signal]) -> int:
    """Append snapshots; a value identical to the latest one for the same post is skipped.

    That makes re-polling idempotent while still recording every change over time.
    Returns the number of rows written.
    """
    batch = list(signals)
    if not batch:
        return 0
    table = SNAPSHOTS
    written = 0
    try:
        with db.engine.begin() as connection:
            for start in range(0, len(batch), _CHUNK):
                chunk = batch[start : start + _CHUNK]
                ids = sorted({s.arxiv_id for s in chunk})
                latest_time = (
                    select(
                        table.c.arxiv_id,
                        table.c.source,
                        table.c.metric,
                        func.coalesce(table.c.url, "").label("url"),
                        func.max(table.c.observed_at).label("observed_at"),
                    )
                    .where(table.c.arxiv_id.in_(ids))
                    .group_by(table.c.arxiv_id, table.c.source, table.c.metric, table.c.url)
                    .subquery()
                )
                rows = connection.execute(
                    select(
                        table.c.arxiv_id, table.c.source, table.c.metric, table.c.url, table.c.value
                    ).join(
                        latest_time,
                        (table.c.arxiv_id == latest_time.c.arxiv_id)
                        & (table.c.source == latest_time.c.source)
                        & (table.c.metric == latest_time.c.metric)
                        & (func.coalesce(table.c.url, "") == latest_time.c.url)
                        & (table.c.observed_at == latest_time.c.observed_at),
                    )
                ).all()
                latest = {_key(a, s, m, u): v for a, s, m, u, v in rows}
                fresh = []
                for signal in chunk:
                    key = _key(signal.arxiv_id, signal.source, signal.metric, signal.url)
                    if latest.get(key) == signal.value:
                        continue
                    latest[key] = signal.value
                    fresh.append(
                        {
                            "arxiv_id": signal.arxiv_id,
                            "source": signal.source,
                            "metric": signal.metric,
                            "value": float(signal.value),
                            "observed_at": signal.observed_at,
                            "url": signal.url,
                            "actor": signal.actor,
                            "weight": signal.weight,
                        }
                    )
                if fresh:
                    connection.execute(table.insert(), fresh)
                    written += len(fresh)
    except SQLAlchemyError as exc:
        raise StorageError(f"could not store {len(batch)} engagement signals") from exc
    return written


def snapshots_since(
    db: Database, since: datetime, arxiv_ids: Sequence[str] | None = None
) -> list[EngagementSnapshot]:
    """Snapshots observed since ``since`` (optionally for some papers), oldest first."""
    with db.session() as session:
        statement = select(EngagementSnapshot).where(SNAPSHOTS.c.observed_at >= since)
        if arxiv_ids is not None:
            statement = statement.where(SNAPSHOTS.c.arxiv_id.in_(list(arxiv_ids)))
        return list(session.execute(statement.order_by(SNAPSHOTS.c.observed_at)).scalars())
