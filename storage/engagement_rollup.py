"""The engagement rollup: each post's newest snapshot, and its newest snapshot per hour.

A *post* is one series of ``engagement_snapshot`` rows: the same paper, source, metric and
URL. ``engagement_post`` holds each post's newest snapshot and when its oldest was taken;
``engagement_hour`` holds, for every hour (hours since the epoch) in which a post has
snapshots, the hour's newest one and when the hour's oldest was taken. Papers and (source,
metric) kinds are numbered in ``engagement_paper`` and ``engagement_kind``, so the rollup
is all integers and floats; times are microseconds since the epoch (``storage.epoch``).

All four tables are derived from the snapshots: migration 0007 fills them with SQL, and
``record`` folds in every batch that ``storage.engagement.add_snapshots`` writes, with
upserts whose CASE guards keep the newest snapshot whatever order snapshots arrive in (a
late, older one only moves the "oldest" times back). So the rollup never depends on write
order, and rebuilding it from the snapshots gives the same rows. Snapshots taken at the same
microsecond go to the one written last, as the backfill's ``ORDER BY … id DESC`` does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Connection, Table, case, select
from sqlalchemy.dialects import postgresql, sqlite

from storage.dbapi import execute_plain_many
from storage.epoch import hour_of, to_us
from storage.models import HOURS, KINDS, MENTIONED, POSTS

PostKey = tuple[str, str, str, str]
"""(arxiv_id, source, metric, url or "")."""
K = TypeVar("K")


def post_key(arxiv_id: str, source: str, metric: str, url: str | None) -> PostKey:
    """The key of the post a snapshot belongs to."""
    return (arxiv_id, source, metric, url or "")


@dataclass
class _Span:
    """The newest snapshot of a group and when its oldest was taken."""

    value: float
    weight: float
    at_us: int
    first_us: int

    def add(self, value: float, weight: float, at_us: int) -> None:
        # ">=": of two snapshots at the same instant, the later-written one wins.
        if at_us >= self.at_us:
            self.value, self.weight, self.at_us = value, weight, at_us
        self.first_us = min(self.first_us, at_us)


@dataclass(frozen=True)
class StoredPost:
    """A post's rows in the rollup and its newest value."""

    row_id: int
    paper_id: int
    kind_id: int
    value: float


def stored_posts(connection: Connection, keys: Iterable[PostKey]) -> dict[PostKey, StoredPost]:
    """The rows and newest value of each of these posts that is stored."""
    wanted = set(keys)
    if not wanted:
        return {}
    statement = (
        select(
            POSTS.c.id,
            POSTS.c.paper_id,
            POSTS.c.kind_id,
            MENTIONED.c.arxiv_id,
            KINDS.c.source,
            KINDS.c.metric,
            POSTS.c.url,
            POSTS.c.latest_value,
        )
        .select_from(
            POSTS.join(MENTIONED, MENTIONED.c.id == POSTS.c.paper_id).join(
                KINDS, KINDS.c.id == POSTS.c.kind_id
            )
        )
        .where(
            MENTIONED.c.arxiv_id.in_(sorted({key[0] for key in wanted})),
            KINDS.c.source.in_(sorted({key[1] for key in wanted})),
        )
    )
    found = {}
    for row_id, paper_id, kind_id, arxiv_id, source, metric, url, value in connection.execute(
        statement
    ):
        key = (arxiv_id, source, metric, url)
        if key in wanted:
            found[key] = StoredPost(row_id, paper_id, kind_id, value)
    return found


def record(
    connection: Connection, rows: Iterable[Mapping[str, Any]], known: Mapping[PostKey, StoredPost]
) -> None:
    """Fold snapshot rows just inserted into ``engagement_snapshot`` (in insertion order)
    into the rollup, in the caller's transaction; ``known`` holds the posts already stored
    (``stored_posts``), the others are created."""
    posts: dict[PostKey, _Span] = {}
    hours: dict[tuple[PostKey, int], _Span] = {}
    for row in rows:
        key = post_key(row["arxiv_id"], row["source"], row["metric"], row["url"])
        value, weight, at_us = float(row["value"]), float(row["weight"]), to_us(row["observed_at"])
        _fold(posts, key, value, weight, at_us)
        _fold(hours, (key, hour_of(at_us)), value, weight, at_us)
    if not posts:
        return
    fresh = [key for key in posts if key not in known]
    papers = _numbers(connection, MENTIONED, ("arxiv_id",), {(key[0],) for key in fresh})
    kinds = _numbers(connection, KINDS, ("source", "metric"), {key[1:3] for key in fresh})
    numbered = {key: (post.paper_id, post.kind_id) for key, post in known.items()}
    numbered.update({key: (papers[(key[0],)], kinds[key[1:3]]) for key in fresh})
    ids = {key: post.row_id for key, post in known.items()}
    _upsert_posts(connection, {key: span for key, span in posts.items() if key in ids}, numbered)
    created = _upsert_posts(connection, {key: posts[key] for key in fresh}, numbered, new=True)
    by_numbers = {(*numbered[key], key[3]): key for key in fresh}
    ids.update({by_numbers[(paper, kind, url)]: row_id for row_id, paper, kind, url in created})
    _upsert(
        connection,
        HOURS,
        [
            {
                "hour": hour,
                "post_id": ids[key],
                "value": span.value,
                "weight": span.weight,
                "observed_at_us": span.at_us,
                "first_at_us": span.first_us,
            }
            for (key, hour), span in hours.items()
        ],
        conflict=("hour", "post_id"),
        newest_at="observed_at_us",
        newest=("value", "weight"),
    )


def _numbers(
    connection: Connection, table: Table, columns: tuple[str, ...], values: set[tuple[str, ...]]
) -> dict[tuple[str, ...], int]:
    """The ids of these rows of a numbering table (papers, kinds), adding those missing."""
    if not values:
        return {}
    rows = [dict(zip(columns, value, strict=True)) for value in sorted(values)]
    insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
    execute_plain_many(
        connection, insert(table).on_conflict_do_nothing(index_elements=list(columns)), rows
    )
    key_columns = [table.c[name] for name in columns]
    statement = select(table.c.id, *key_columns).where(
        key_columns[0].in_(sorted({value[0] for value in values}))
    )
    found = {tuple(found_key): row_id for row_id, *found_key in connection.execute(statement)}
    return {value: found[value] for value in values}


def _fold(spans: dict[K, _Span], key: K, value: float, weight: float, at_us: int) -> None:
    span = spans.get(key)
    if span is None:
        spans[key] = _Span(value, weight, at_us, at_us)
    else:
        span.add(value, weight, at_us)


def _upsert_posts(
    connection: Connection,
    posts: Mapping[PostKey, _Span],
    numbered: Mapping[PostKey, tuple[int, int]],
    *,
    new: bool = False,
) -> list[Any]:
    """Upsert these posts' newest snapshots; for ``new`` posts, return (id, paper_id, kind_id,
    url) of their rows."""
    if not posts:
        return []
    return _upsert(
        connection,
        POSTS,
        [
            {
                "paper_id": numbered[key][0],
                "kind_id": numbered[key][1],
                "url": key[3],
                "first_at_us": span.first_us,
                "latest_at_us": span.at_us,
                "latest_value": span.value,
                "latest_weight": span.weight,
            }
            for key, span in posts.items()
        ],
        conflict=("paper_id", "kind_id", "url"),
        newest_at="latest_at_us",
        newest=("latest_value", "latest_weight"),
        returning=new,
    )


def _upsert(
    connection: Connection,
    table: Table,
    rows: list[dict[str, Any]],
    *,
    conflict: tuple[str, ...],
    newest_at: str,
    newest: tuple[str, ...],
    returning: bool = False,
) -> list[Any]:
    """Insert ``rows`` (at most one per conflict key); on conflict keep whichever snapshot is
    newer, and the earlier of the two "first" times."""
    insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
    statement = insert(table)
    incoming = statement.excluded
    newer = incoming[newest_at] >= table.c[newest_at]
    updates: dict[str, Any] = {
        name: case((newer, incoming[name]), else_=table.c[name]) for name in (*newest, newest_at)
    }
    updates["first_at_us"] = case(
        (incoming.first_at_us < table.c.first_at_us, incoming.first_at_us),
        else_=table.c.first_at_us,
    )
    upsert = statement.on_conflict_do_update(index_elements=list(conflict), set_=updates)
    if not returning:
        execute_plain_many(connection, upsert, rows)
        return []
    keys = (table.c.id, table.c.paper_id, table.c.kind_id, table.c.url)
    return list(connection.execute(upsert.returning(*keys), rows))
