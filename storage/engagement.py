"""Engagement snapshots: an append-only time series per paper, source and metric."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import ColumnElement, Connection, Float, Select, func, select
from sqlalchemy.exc import SQLAlchemyError

from feeds.records import Signal
from storage.db import Database
from storage.errors import StorageError
from storage.models import PAPERS, SNAPSHOTS, EngagementSnapshot

_CHUNK = 500
_ID_CHUNK = 900
"""Ids per IN list: under SQLite's historical 999-parameter limit."""


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


# --- aggregations for the trend score --------------------------------------------------------


@dataclass(frozen=True)
class SnapshotFrame:
    """Snapshot rows as parallel numpy columns, strings factorised into integer codes.

    ``paper[i]`` indexes ``paper_ids``, ``source[i]`` indexes ``sources``, ``metric[i]``
    indexes ``metrics``; ``post[i]`` numbers the distinct (paper, source, metric, url)
    series a row belongs to. ``observed`` is Unix seconds.
    """

    paper_ids: tuple[str, ...]
    sources: tuple[str, ...]
    metrics: tuple[str, ...]
    paper: np.ndarray
    source: np.ndarray
    metric: np.ndarray
    post: np.ndarray
    value: np.ndarray
    weight: np.ndarray
    observed: np.ndarray

    def __len__(self) -> int:
        return int(self.value.shape[0])


def _epoch(db: Database) -> ColumnElement[float]:
    """``observed_at`` as Unix seconds, computed by the database (parsing in Python is slow)."""
    column = SNAPSHOTS.c.observed_at
    if db.dialect == "postgresql":
        return func.extract("epoch", column).cast(Float)
    # SQLite keeps UTC datetimes as ISO text; julianday() reads them in C.
    return (func.julianday(column) - 2440587.5) * 86400.0


def _codes(values: Sequence[str]) -> tuple[tuple[str, ...], np.ndarray]:
    """Factorise strings: (distinct values in first-seen order, int64 code per value)."""
    index: dict[str, int] = {}
    codes = np.fromiter(
        (index.setdefault(value, len(index)) for value in values), dtype=np.int64, count=len(values)
    )
    return tuple(index), codes


_SEPARATOR = "\x1f"
"""ASCII unit separator: joins the parts of a series key (never part of an id, name or URL)."""


_FETCH_ROWS = 250_000
"""Rows converted to numpy at a time: bounds memory to one chunk of Python tuples."""


def _fetch_plain(connection: Connection, statement: Select[Any]) -> Iterator[list[tuple[Any, ...]]]:
    """Run ``statement`` on the DBAPI cursor and yield plain tuples, a chunk at a time.

    For the millions of rows of a trend window, SQLAlchemy's ``Row`` objects cost as much
    as the driver itself; parameters still go through each type's bind processor.
    """
    dialect = connection.dialect
    compiled = statement.compile(dialect=dialect)
    params: dict[str, Any] = {}
    for name, value in compiled.construct_params().items():
        processor = compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
        params[name] = processor(value) if processor else value
    arguments: Any = params
    if compiled.positiontup is not None:
        arguments = tuple(params[name] for name in compiled.positiontup)
    cursor = connection.connection.cursor()
    try:
        cursor.execute(str(compiled), arguments)
        while chunk := cursor.fetchmany(_FETCH_ROWS):
            yield list(chunk)
    finally:
        cursor.close()


def snapshot_frame(db: Database, since: datetime, until: datetime) -> SnapshotFrame:
    """Every snapshot observed in ``[since, until]``, fetched in one query, as columns."""
    table = SNAPSHOTS
    # One string per row names its series (paper, source, metric, url): a single
    # factorisation instead of four, and paper/source/metric come from the distinct keys.
    series = (
        table.c.arxiv_id
        + _SEPARATOR
        + table.c.source
        + _SEPARATOR
        + table.c.metric
        + _SEPARATOR
        + func.coalesce(table.c.url, "")
    )
    statement = select(series, table.c.value, table.c.weight, _epoch(db)).where(
        table.c.observed_at >= since, table.c.observed_at <= until
    )
    index: dict[str, int] = {}
    posts: list[np.ndarray] = []
    numbers: list[np.ndarray] = []
    try:
        with db.engine.connect() as connection:
            for chunk in _fetch_plain(connection, statement):
                block = np.array(chunk, dtype=object)
                keys = block[:, 0].tolist()
                posts.append(
                    np.fromiter(
                        (index.setdefault(key, len(index)) for key in keys),
                        dtype=np.int64,
                        count=len(keys),
                    )
                )
                numbers.append(block[:, 1:].astype(np.float64))
    except SQLAlchemyError as exc:
        raise StorageError("could not read engagement snapshots") from exc
    if not posts:
        empty_int = np.zeros(0, dtype=np.int64)
        empty = np.zeros(0, dtype=np.float64)
        return SnapshotFrame(
            (), (), (), empty_int, empty_int, empty_int, empty_int, empty, empty, empty
        )
    post = np.concatenate(posts)
    value, weight, observed = np.concatenate(numbers).T
    parts = [key.split(_SEPARATOR, 3) for key in index]
    paper_ids, post_paper = _codes([part[0] for part in parts])
    source_names, post_source = _codes([part[1] for part in parts])
    metric_names, post_metric = _codes([part[2] for part in parts])
    return SnapshotFrame(
        paper_ids=paper_ids,
        sources=source_names,
        metrics=metric_names,
        paper=post_paper[post],
        source=post_source[post],
        metric=post_metric[post],
        post=post,
        value=np.ascontiguousarray(value),
        weight=np.ascontiguousarray(weight),
        observed=np.ascontiguousarray(observed),
    )


def paper_times(db: Database, arxiv_ids: Sequence[str]) -> dict[str, datetime]:
    """When each stored paper was announced (or published, if never announced)."""
    when = func.coalesce(PAPERS.c.announced, PAPERS.c.published)
    found: dict[str, datetime] = {}
    ids = list(dict.fromkeys(arxiv_ids))
    try:
        with db.engine.connect() as connection:
            for start in range(0, len(ids), _ID_CHUNK):
                chunk = ids[start : start + _ID_CHUNK]
                statement = select(PAPERS.c.arxiv_id, when).where(PAPERS.c.arxiv_id.in_(chunk))
                found.update(
                    (arxiv_id, moment) for arxiv_id, moment in connection.execute(statement)
                )
    except SQLAlchemyError as exc:
        raise StorageError("could not read paper dates") from exc
    return {arxiv_id: _aware(moment) for arxiv_id, moment in found.items() if moment is not None}


def actors_by_paper(
    db: Database, arxiv_ids: Sequence[str], source: str
) -> dict[str, frozenset[str]]:
    """Who posted about each paper on ``source`` (accounts with a known actor only)."""
    result: dict[str, set[str]] = {}
    ids = list(dict.fromkeys(arxiv_ids))
    try:
        with db.engine.connect() as connection:
            for start in range(0, len(ids), _ID_CHUNK):
                chunk = ids[start : start + _ID_CHUNK]
                statement = (
                    select(SNAPSHOTS.c.arxiv_id, SNAPSHOTS.c.actor)
                    .where(
                        SNAPSHOTS.c.arxiv_id.in_(chunk),
                        SNAPSHOTS.c.source == source,
                        SNAPSHOTS.c.actor.is_not(None),
                    )
                    .distinct()
                )
                for arxiv_id, actor in connection.execute(statement):
                    result.setdefault(arxiv_id, set()).add(actor)
    except SQLAlchemyError as exc:
        raise StorageError(f"could not read {source} posters") from exc
    return {arxiv_id: frozenset(actors) for arxiv_id, actors in result.items()}


def known_paper_ids(db: Database, arxiv_ids: Iterable[str]) -> set[str]:
    """The subset of ``arxiv_ids`` that is stored in the papers table."""
    ids = list(dict.fromkeys(arxiv_ids))
    known: set[str] = set()
    try:
        with db.engine.connect() as connection:
            for start in range(0, len(ids), _ID_CHUNK):
                chunk = ids[start : start + _ID_CHUNK]
                rows = connection.execute(
                    select(PAPERS.c.arxiv_id).where(PAPERS.c.arxiv_id.in_(chunk))
                )
                known.update(arxiv_id for (arxiv_id,) in rows)
    except SQLAlchemyError as exc:
        raise StorageError("could not look up papers") from exc
    return known


def unlinked_paper_ids(db: Database, since: datetime) -> list[str]:
    """Papers mentioned in snapshots since ``since`` but not stored yet, oldest mention first."""
    mentioned = (
        select(SNAPSHOTS.c.arxiv_id, func.min(SNAPSHOTS.c.observed_at).label("first"))
        .where(SNAPSHOTS.c.observed_at >= since)
        .group_by(SNAPSHOTS.c.arxiv_id)
        .subquery()
    )
    statement = (
        select(mentioned.c.arxiv_id)
        .outerjoin(PAPERS, PAPERS.c.arxiv_id == mentioned.c.arxiv_id)
        .where(PAPERS.c.arxiv_id.is_(None))
        .order_by(mentioned.c.first, mentioned.c.arxiv_id)
    )
    try:
        with db.engine.connect() as connection:
            return [arxiv_id for (arxiv_id,) in connection.execute(statement)]
    except SQLAlchemyError as exc:
        raise StorageError("could not find unlinked papers") from exc


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def citation_candidates(
    db: Database, now: datetime, *, min_age: timedelta, max_age: timedelta, limit: int
) -> list[str]:
    """Recent papers old enough to have citations: announced within ``max_age`` of ``now``
    but first published at least ``min_age`` before it, newest announcement first."""
    when = func.coalesce(PAPERS.c.announced, PAPERS.c.published)
    statement = (
        select(PAPERS.c.arxiv_id)
        .where(
            when >= now - max_age,
            PAPERS.c.published <= now - min_age,
            PAPERS.c.withdrawn.is_(False),
        )
        .order_by(when.desc(), PAPERS.c.arxiv_id)
        .limit(limit)
    )
    try:
        with db.engine.connect() as connection:
            return [arxiv_id for (arxiv_id,) in connection.execute(statement)]
    except SQLAlchemyError as exc:
        raise StorageError("could not list papers for citation counts") from exc
