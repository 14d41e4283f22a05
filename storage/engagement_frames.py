"""Engagement snapshots as numpy columns, for the trend score, and the paper dates it needs.

Two readers return the same ``SnapshotFrame``:

* ``snapshot_frame``: every snapshot observed in a window, from ``engagement_snapshot``
  (one row per snapshot: millions at scale, and about 5 µs each through the driver);
* ``frame_as_of``: for every post, only the snapshots *in force* at a few moments (its newest
  one observed in ``[since, moment]``), from the rollup (``storage.engagement_rollup``).

Anything evaluated at those moments (the trend formula takes the newest snapshot of each post
at each of its points in time) comes out the same from both. A post unchanged since a moment
had its newest snapshot in force then. For one that changed after it, the snapshot then is
the newest hourly row at or before it: ``frame_as_of`` reads, for the earliest moment, those
posts together with their hourly rows of the few hours before it (``NEAR_HOURS``) in one
query, and the other posts in a second; a post quiet in those hours is looked up on its own.
Only an hour that holds snapshots both before and after a moment is ambiguous in the rollup:
those few posts are read from the snapshots themselves. Rows cross the driver as integers
and floats only (ids, microseconds since the epoch, values), about 1.5 µs each.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import ColumnElement, Connection, Select, and_, func, select
from sqlalchemy.exc import SQLAlchemyError

from storage.db import Database
from storage.dbapi import fetch_plain
from storage.epoch import (
    HOUR_US,
    SECOND_US,
    bulk_us,
    from_us,
    hour_of,
    sql_bulk_us,
    sql_us,
    to_us,
)
from storage.errors import StorageError
from storage.models import HOURS, KINDS, MENTIONED, PAPERS, POSTS, SNAPSHOTS

NEAR_HOURS = 3
"""For an earlier moment, the bulk read covers the hour of the moment and this many before it;
posts that changed after the moment but have no snapshot in those hours are looked up one by
one. It only trades one cost for the other: results never depend on it. Pollers revisit
recent posts every 30 minutes and older ones every few hours, so most posts are in range."""
_ID_CHUNK = 900
"""Ids per IN list: under SQLite's historical 999-parameter limit."""
_NUMBER_ROWS = 20_000
"""Rows fetched and converted to numpy at a time."""
_SEPARATOR = "\x1f"
"""ASCII unit separator: joins the parts of a series key (never part of an id, name or URL)."""


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
    announced: np.ndarray | None = None
    """Per paper: when it was announced (published, if never), Unix seconds, NaN if it is not
    stored. ``frame_as_of`` reads it along with the paper ids; None when not read."""

    def __len__(self) -> int:
        return int(self.value.shape[0])

    @classmethod
    def empty(cls) -> SnapshotFrame:
        """No rows."""
        none = np.zeros(0, dtype=np.int64)
        nothing = np.zeros(0, dtype=np.float64)
        return cls((), (), (), none, none, none, none, nothing, nothing, nothing)


def _codes(values: Sequence[str]) -> tuple[tuple[str, ...], np.ndarray]:
    """Factorise strings: (distinct values in first-seen order, int64 code per value)."""
    index: dict[str, int] = {}
    codes = np.fromiter(
        (index.setdefault(value, len(index)) for value in values), dtype=np.int64, count=len(values)
    )
    return tuple(index), codes


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
    micros = sql_us(table.c.observed_at, db.dialect)
    statement = select(series, table.c.value, table.c.weight, micros).where(
        table.c.observed_at >= since, table.c.observed_at <= until
    )
    index: dict[str, int] = {}
    posts: list[np.ndarray] = []
    numbers: list[np.ndarray] = []
    try:
        with db.engine.connect() as connection:
            for chunk in fetch_plain(connection, statement):
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
        return SnapshotFrame.empty()
    post = np.concatenate(posts)
    value, weight, micros_taken = np.concatenate(numbers).T
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
        # Microseconds below 2**53 are exact as floats; the division rounds once, as
        # datetime.timestamp() does.
        observed=micros_taken / SECOND_US,
    )


# --- from the rollup -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Posts:
    """Rows of ``engagement_post`` as columns, with their papers and kinds."""

    row_id: np.ndarray
    paper: np.ndarray
    """Index into ``paper_ids``."""
    kind: np.ndarray
    """Index into ``kinds``."""
    paper_ids: tuple[str, ...]
    announced_us: np.ndarray
    """Per paper: announcement (or publication) in µs, NaN for papers not stored."""
    kinds: tuple[tuple[str, str], ...]
    """(source, metric) pairs."""
    latest_us: np.ndarray
    value: np.ndarray
    weight: np.ndarray
    lookup: np.ndarray
    """Position of each ``engagement_post.id`` in these columns, -1 for ids not read."""

    def __len__(self) -> int:
        return int(self.row_id.shape[0])

    def positions(self, row_ids: np.ndarray) -> np.ndarray:
        """Where each of ``row_ids`` is in these columns, -1 for ids not read."""
        inside = (row_ids >= 0) & (row_ids < self.lookup.size)
        return np.where(inside, self.lookup[np.where(inside, row_ids, 0)], -1)


@dataclass
class _InForce:
    """Per post: the snapshot in force at one moment (``at_us`` -1: none)."""

    at_us: np.ndarray
    value: np.ndarray
    weight: np.ndarray

    def set(self, where: np.ndarray, at_us: Any, value: Any, weight: Any) -> None:
        self.at_us[where], self.value[where], self.weight[where] = at_us, value, weight


def frame_as_of(
    db: Database,
    since: datetime,
    moments: Iterable[datetime],
    arxiv_ids: Sequence[str] | None = None,
) -> SnapshotFrame:
    """For every post (of ``arxiv_ids``, or of any paper), the snapshot in force at each of
    ``moments``: its newest one observed in ``[since, moment]``. Posts with none at any moment
    are left out, so are papers without such posts; ``paper_ids`` are sorted. A snapshot in
    force at several moments is one row."""
    since_us = to_us(since)
    points = sorted({to_us(moment) for moment in moments})
    if not points:
        return SnapshotFrame.empty()
    try:
        with db.snapshot() as connection:
            if arxiv_ids is None:
                posts, near = _read_all_posts(connection, since_us, points[0])
            else:
                posts, near = _read_posts_of(connection, since_us, arxiv_ids), None
            found = [
                _in_force(
                    connection,
                    posts,
                    since_us,
                    point,
                    near if k == 0 else None,
                    some_posts=arxiv_ids is not None,
                )
                for k, point in enumerate(points)
            ]
    except SQLAlchemyError as exc:
        raise StorageError("could not read the engagement rollup") from exc
    return _as_frame(posts, found)


@dataclass(frozen=True)
class _Near:
    """Hourly rows near a moment, of posts that changed after it (``position`` in the posts)."""

    position: np.ndarray
    at_us: np.ndarray
    value: np.ndarray
    weight: np.ndarray


_KIND_SPAN = 1 << 20
"""Paper and kind numbers cross the driver as one integer, paper × span + kind: each value
read costs a Python object, a tenth of a microsecond, 600,000 times at scale. There are a
handful of kinds, and with papers numbered below 2**33 the integer stays exact in a float64."""
_POST_COLUMNS = (
    POSTS.c.id,
    POSTS.c.paper_id * _KIND_SPAN + POSTS.c.kind_id,
    POSTS.c.latest_at_us,
    POSTS.c.latest_value,
    POSTS.c.latest_weight,
)
_NEAR_COLUMNS = (HOURS.c.observed_at_us, HOURS.c.value, HOURS.c.weight)


def _near(point: int) -> ColumnElement[bool]:
    """Hourly rows of the hour of ``point`` and the ``NEAR_HOURS`` before it, except those
    wholly after it (what remains after it straddles it)."""
    hour = hour_of(point)
    return and_(
        HOURS.c.hour >= hour - NEAR_HOURS,
        HOURS.c.hour <= hour,
        (HOURS.c.observed_at_us <= point) | (HOURS.c.first_at_us <= point),
    )


def _read_all_posts(connection: Connection, since_us: int, point: int) -> tuple[_Posts, _Near]:
    """Every post with a snapshot since ``since_us`` (the others have none in the window),
    with the hourly rows near ``point`` of those that changed after it.

    Most posts of a busy window changed since the earliest moment, so those come in one
    query together with their hourly rows; the others in a second one.
    """
    recent = POSTS.c.latest_at_us >= since_us
    changed = POSTS.c.latest_at_us > point
    joined = (
        select(*_POST_COLUMNS, *_NEAR_COLUMNS)
        .select_from(HOURS.join(POSTS, POSTS.c.id == HOURS.c.post_id))
        .where(_near(point), recent, changed)
    )
    with_rows = _numbers(connection, joined)
    post_rows = with_rows[:, : len(_POST_COLUMNS)]
    blocks = [post_rows[_first_of_each(post_rows[:, 0].astype(np.int64))]]
    blocks.append(_numbers(connection, select(*_POST_COLUMNS).where(recent, ~changed)))
    count = connection.execute(select(func.count()).where(recent, changed)).scalar_one()
    if count > len(blocks[0]):  # changed, but quiet near the point
        others = _numbers(connection, select(*_POST_COLUMNS).where(recent, changed))
        blocks.append(others[~np.isin(others[:, 0], blocks[0][:, 0])])
    mentioned = MENTIONED.c.id.in_(select(POSTS.c.paper_id).where(recent))
    named = [
        row
        for chunk in fetch_plain(connection, _papers(connection).where(mentioned))
        for row in chunk
    ]
    posts = _as_posts(connection, np.concatenate(blocks), named)
    near = _Near(
        position=posts.positions(with_rows[:, 0].astype(np.int64)),
        at_us=with_rows[:, len(_POST_COLUMNS)].astype(np.int64),
        value=with_rows[:, len(_POST_COLUMNS) + 1],
        weight=with_rows[:, len(_POST_COLUMNS) + 2],
    )
    return posts, near


def _read_posts_of(connection: Connection, since_us: int, arxiv_ids: Sequence[str]) -> _Posts:
    """The posts about these papers with a snapshot since ``since_us``."""
    statement = select(*_POST_COLUMNS).where(POSTS.c.latest_at_us >= since_us)
    blocks: list[np.ndarray] = []
    named: list[tuple[Any, ...]] = []
    for some in _id_chunks(arxiv_ids):
        chosen = _papers(connection).where(MENTIONED.c.arxiv_id.in_(some))
        found = [row for chunk in fetch_plain(connection, chosen) for row in chunk]
        named.extend(found)
        if found:
            of_papers = POSTS.c.paper_id.in_([paper_id for paper_id, *_ in found])
            blocks.append(_numbers(connection, statement.where(of_papers)))
    block = np.concatenate(blocks) if blocks else np.zeros((0, len(_POST_COLUMNS)))
    return _as_posts(connection, block, named)


def _papers(connection: Connection) -> Select[Any]:
    """Numbered papers: number, arxiv id, and when the stored ones were announced (or
    published), for ``bulk_us``; to read with ``fetch_plain``."""
    announced = func.coalesce(PAPERS.c.announced, PAPERS.c.published)
    when = sql_bulk_us(announced, connection.dialect.name)
    return select(MENTIONED.c.id, MENTIONED.c.arxiv_id, when).select_from(
        MENTIONED.outerjoin(PAPERS, PAPERS.c.arxiv_id == MENTIONED.c.arxiv_id)
    )


def _numbers(connection: Connection, statement: Select[Any]) -> np.ndarray:
    """The rows of ``statement`` (all numbers) as one float64 block; ids and microseconds are
    exact in it (below 2**53)."""
    width = len(statement.selected_columns)
    # Converted a cache-sized chunk at a time, while its tuples are still warm.
    blocks = [
        np.array(chunk, dtype=np.float64)
        for chunk in fetch_plain(connection, statement, size=_NUMBER_ROWS)
    ]
    return np.concatenate(blocks) if blocks else np.zeros((0, width))


def _first_of_each(row_ids: np.ndarray) -> np.ndarray:
    """Index of the first occurrence of each distinct id (in order of first occurrence)."""
    if not row_ids.size:
        return np.zeros(0, dtype=np.int64)
    first = np.full(int(row_ids.max()) + 1, row_ids.size, dtype=np.int64)
    np.minimum.at(first, row_ids, np.arange(row_ids.size))
    return np.sort(first[first < row_ids.size])


def _as_posts(connection: Connection, block: np.ndarray, named: list[tuple[Any, ...]]) -> _Posts:
    """Post rows (``_POST_COLUMNS``) and their papers (``_papers``) as ``_Posts``."""
    kinds = {
        row_id: (source, metric) for row_id, source, metric in connection.execute(select(KINDS))
    }
    if kinds and max(kinds) >= _KIND_SPAN:
        raise StorageError(f"engagement kinds are numbered up to {max(kinds)}, past {_KIND_SPAN}")
    if not len(block):
        none = np.zeros(0, dtype=np.int64)
        nothing = np.zeros(0, dtype=np.float64)
        return _Posts(none, none, none, (), nothing, (), none, nothing, nothing, none)
    row_id, paper_and_kind = block[:, 0].astype(np.int64), block[:, 1].astype(np.int64)
    paper_number, kind_number = np.divmod(paper_and_kind, _KIND_SPAN)
    # Papers sorted by arxiv id, kinds by number: codes are positions in those orders.
    named = sorted(named, key=lambda paper: paper[1])
    kind_ids = sorted(kinds)
    lookup = np.full(int(row_id.max()) + 1, -1, dtype=np.int64)
    lookup[row_id] = np.arange(row_id.size)
    return _Posts(
        row_id=row_id,
        paper=_positions([paper_id for paper_id, *_ in named], paper_number),
        kind=_positions(kind_ids, kind_number),
        paper_ids=tuple(arxiv_id for _, arxiv_id, _ in named),
        announced_us=bulk_us([when for *_, when in named], connection.dialect.name),
        kinds=tuple(kinds[kind_id] for kind_id in kind_ids),
        latest_us=block[:, 2].astype(np.int64),
        value=block[:, 3].copy(),
        weight=block[:, 4].copy(),
        lookup=lookup,
    )


def _positions(ordered_ids: Sequence[int], numbers: np.ndarray) -> np.ndarray:
    """For each of ``numbers``, its position in ``ordered_ids``."""
    ids = np.asarray(ordered_ids, dtype=np.int64)
    table = np.full(int(max(ids.max(), numbers.max())) + 1, -1, dtype=np.int64)
    table[ids] = np.arange(ids.size)
    return table[numbers]


def _in_force(
    connection: Connection,
    posts: _Posts,
    since_us: int,
    point: int,
    near: _Near | None,
    *,
    some_posts: bool,
) -> _InForce:
    """Each post's snapshot in force at ``point``, if it was observed since ``since_us``;
    ``near``: the hourly rows near the point, if already read; ``some_posts``: ``posts`` are
    the posts of a few papers, not all."""
    settled = posts.latest_us <= point
    found = _InForce(
        at_us=np.where(settled, posts.latest_us, -1),
        value=posts.value.copy(),
        weight=posts.weight.copy(),
    )
    # Changed after the point: the value then, if any, is in an earlier row.
    pending = np.flatnonzero(~settled)
    if pending.size:
        if near is None:
            by_post = some_posts or pending.size * 4 < len(posts)
            near = _read_near(connection, posts, pending, point, by_post=by_post)
        _resolve(connection, posts, pending, point, near, found)
    found.at_us[found.at_us < since_us] = -1
    return found


def _read_near(
    connection: Connection, posts: _Posts, pending: np.ndarray, point: int, *, by_post: bool
) -> _Near:
    """The hourly rows near ``point`` of the ``pending`` posts (``by_post``), or of all."""
    statement = select(HOURS.c.post_id, *_NEAR_COLUMNS).where(_near(point))
    if by_post:
        rows = [
            tuple(row)
            for chunk in _chunks(posts.row_id[pending])
            for row in connection.execute(statement.where(HOURS.c.post_id.in_(chunk)))
        ]
    else:
        rows = [row for chunk in fetch_plain(connection, statement) for row in chunk]
    block = np.array(rows, dtype=np.float64).reshape(-1, 4)
    return _Near(
        position=posts.positions(block[:, 0].astype(np.int64)),
        at_us=block[:, 1].astype(np.int64),
        value=block[:, 2],
        weight=block[:, 3],
    )


def _resolve(
    connection: Connection,
    posts: _Posts,
    pending: np.ndarray,
    point: int,
    near: _Near,
    found: _InForce,
) -> None:
    """Fill in ``pending`` posts from the hourly rows ``near`` the point, the hourly rows
    before those, or (for an hour with snapshots on both sides of ``point``) the snapshots."""
    wanted = np.zeros(len(posts), dtype=bool)
    wanted[pending] = True
    mine = near.position >= 0
    mine[mine] = wanted[near.position[mine]]
    position, at_us = near.position[mine], near.at_us[mine]
    value, weight = near.value[mine], near.weight[mine]
    ambiguous = np.zeros(len(posts), dtype=bool)
    ambiguous[position[at_us > point]] = True
    best = np.full(len(posts), -1, dtype=np.int64)
    before = at_us <= point
    np.maximum.at(best, position[before], at_us[before])
    newest = before & (at_us == best[position])
    found.set(position[newest], at_us[newest], value[newest], weight[newest])
    quiet = pending[(best[pending] < 0) & ~ambiguous[pending]]
    if quiet.size:
        _resolve_older(connection, posts, quiet, hour_of(point) - NEAR_HOURS, found)
    unclear = np.flatnonzero(ambiguous)
    if unclear.size:
        _resolve_from_snapshots(connection, posts, unclear, point, found)


def _resolve_older(
    connection: Connection, posts: _Posts, quiet: np.ndarray, below_hour: int, found: _InForce
) -> None:
    """The newest hourly row before ``below_hour`` of each quiet post: all of that hour lies
    before the point, so its newest snapshot is the one in force."""
    older = HOURS.alias("older")
    last_hour = (
        select(func.max(older.c.hour))
        .where(older.c.post_id == HOURS.c.post_id, older.c.hour < below_hour)
        .scalar_subquery()
    )
    statement = select(
        HOURS.c.post_id, HOURS.c.observed_at_us, HOURS.c.value, HOURS.c.weight
    ).where(HOURS.c.hour == last_hour)
    for chunk in _chunks(posts.row_id[quiet]):
        rows = list(connection.execute(statement.where(HOURS.c.post_id.in_(chunk))))
        if rows:
            row_id, at_us, value, weight = _columns(rows)
            found.set(posts.positions(row_id.astype(np.int64)), at_us, value, weight)


def _resolve_from_snapshots(
    connection: Connection, posts: _Posts, unclear: np.ndarray, point: int, found: _InForce
) -> None:
    """The newest snapshot at or before ``point`` within its hour, read from the snapshots."""
    snapshot = SNAPSHOTS
    joined = (
        POSTS.join(MENTIONED, MENTIONED.c.id == POSTS.c.paper_id)
        .join(KINDS, KINDS.c.id == POSTS.c.kind_id)
        .join(
            snapshot,
            (snapshot.c.arxiv_id == MENTIONED.c.arxiv_id)
            & (snapshot.c.source == KINDS.c.source)
            & (snapshot.c.metric == KINDS.c.metric)
            & (func.coalesce(snapshot.c.url, "") == POSTS.c.url),
        )
    )
    statement = (
        select(
            POSTS.c.id,
            sql_us(snapshot.c.observed_at, connection.dialect.name),
            snapshot.c.id,
            snapshot.c.value,
            snapshot.c.weight,
        )
        .select_from(joined)
        .where(
            snapshot.c.observed_at >= from_us(hour_of(point) * HOUR_US),
            snapshot.c.observed_at <= from_us(point),
        )
    )
    newest: dict[int, tuple[int, int, float, float]] = {}
    for chunk in _chunks(posts.row_id[unclear]):
        for row_id, at_us, snapshot_id, value, weight in connection.execute(
            statement.where(POSTS.c.id.in_(chunk))
        ):
            # Two snapshots at the same instant: the later-written one, as everywhere else.
            if row_id not in newest or (at_us, snapshot_id) > newest[row_id][:2]:
                newest[row_id] = (at_us, snapshot_id, float(value), float(weight))
    if newest:
        row_ids = np.fromiter(newest, dtype=np.int64, count=len(newest))
        picked = list(newest.values())
        found.set(
            posts.positions(row_ids),
            [p[0] for p in picked],
            [p[2] for p in picked],
            [p[3] for p in picked],
        )


def _columns(rows: Sequence[Sequence[Any]]) -> list[np.ndarray]:
    return [np.array(column) for column in zip(*rows, strict=True)]


def _chunks(row_ids: np.ndarray) -> Iterator[list[int]]:
    for start in range(0, len(row_ids), _ID_CHUNK):
        yield row_ids[start : start + _ID_CHUNK].tolist()


def _renumbered(codes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The codes in use among ``range(size)``, ascending, and each code's rank among them
    (``np.unique(codes, return_inverse=True)`` without a sort)."""
    used = np.flatnonzero(np.bincount(codes, minlength=size))
    rank = np.zeros(size, dtype=np.int64)
    rank[used] = np.arange(used.size)
    return used, rank[codes]


def _as_frame(posts: _Posts, found: Sequence[_InForce]) -> SnapshotFrame:
    """The snapshots in force at any moment, one row each, as a ``SnapshotFrame``."""
    if not len(posts) or not found:
        return SnapshotFrame.empty()
    # Moments ascend, so a post's snapshot in force only ever gets newer: a snapshot still in
    # force at the next moment is left for that moment's row.
    parts = []
    for k, current in enumerate(found):
        keep = current.at_us >= 0
        if k + 1 < len(found):
            keep &= current.at_us != found[k + 1].at_us
        where = np.flatnonzero(keep)
        parts.append((where, current.at_us[where], current.value[where], current.weight[where]))
    post = np.concatenate([part[0] for part in parts])
    if not post.size:
        return SnapshotFrame.empty()
    present = np.zeros(len(posts), dtype=bool)
    present[post] = True
    used_papers, paper_code = _renumbered(posts.paper[present], len(posts.paper_ids))
    used_kinds, kind_code = _renumbered(posts.kind[present], len(posts.kinds))
    kinds = [posts.kinds[k] for k in used_kinds.tolist()]
    source_names, kind_source = _codes([source for source, _ in kinds])
    metric_names, kind_metric = _codes([metric for _, metric in kinds])
    dense = np.full(len(posts), -1, dtype=np.int64)
    dense[present] = np.arange(int(present.sum()))
    rows = dense[post]
    return SnapshotFrame(
        paper_ids=tuple(posts.paper_ids[p] for p in used_papers.tolist()),
        announced=posts.announced_us[used_papers] / SECOND_US,
        sources=source_names,
        metrics=metric_names,
        paper=paper_code[rows],
        source=kind_source[kind_code[rows]],
        metric=kind_metric[kind_code[rows]],
        post=rows,
        value=np.concatenate([part[2] for part in parts]),
        weight=np.concatenate([part[3] for part in parts]),
        observed=np.concatenate([part[1] for part in parts]) / SECOND_US,
    )


# --- paper dates -----------------------------------------------------------------------------


def announcements_us(db: Database, since: datetime) -> dict[str, int]:
    """When each stored paper with a post seen since ``since`` was announced (or published,
    if never announced), in µs: one query, however many papers."""
    when = sql_us(func.coalesce(PAPERS.c.announced, PAPERS.c.published), db.dialect)
    recent = select(POSTS.c.paper_id).where(POSTS.c.latest_at_us >= to_us(since))
    mentioned = select(MENTIONED.c.arxiv_id).where(MENTIONED.c.id.in_(recent))
    statement = select(PAPERS.c.arxiv_id, when).where(PAPERS.c.arxiv_id.in_(mentioned))
    found: dict[str, int] = {}
    try:
        with db.engine.connect() as connection:
            for chunk in fetch_plain(connection, statement):
                found.update(chunk)
    except SQLAlchemyError as exc:
        raise StorageError("could not read paper dates") from exc
    return found


def first_mentions_us(
    db: Database, arxiv_ids: Sequence[str], since: datetime, until: datetime
) -> dict[str, int]:
    """When each paper's earliest snapshot in ``[since, until]`` was taken, in µs."""
    earliest = sql_us(func.min(SNAPSHOTS.c.observed_at), db.dialect)
    found: dict[str, int] = {}
    try:
        with db.engine.connect() as connection:
            for chunk in _id_chunks(arxiv_ids):
                statement = (
                    select(SNAPSHOTS.c.arxiv_id, earliest)
                    .where(
                        SNAPSHOTS.c.arxiv_id.in_(chunk),
                        SNAPSHOTS.c.observed_at >= since,
                        SNAPSHOTS.c.observed_at <= until,
                    )
                    .group_by(SNAPSHOTS.c.arxiv_id)
                )
                found.update(
                    (arxiv_id, int(micros)) for arxiv_id, micros in connection.execute(statement)
                )
    except SQLAlchemyError as exc:
        raise StorageError("could not read first mentions") from exc
    return found


def _id_chunks(arxiv_ids: Sequence[str]) -> Iterator[list[str]]:
    ids = list(dict.fromkeys(arxiv_ids))
    for start in range(0, len(ids), _ID_CHUNK):
        yield ids[start : start + _ID_CHUNK]
