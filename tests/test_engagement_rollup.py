"""The engagement rollup: kept in step by add_snapshots, equal to a rebuild from the snapshots,
and read back as exactly the snapshots in force at the moments the trend formula looks at."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from alembic import command
from sqlalchemy import select

from bot.trend import TrendConfig, compute, evaluated_moments
from feeds.records import Paper, Signal
from storage.db import Database
from storage.engagement import add_snapshots
from storage.engagement_frames import SnapshotFrame, frame_as_of, snapshot_frame
from storage.epoch import from_us, hour_of, to_us
from storage.migrate import alembic_config, upgrade
from storage.models import HOURS, KINDS, MENTIONED, POSTS, SNAPSHOTS
from storage.papers import upsert_papers

NOW = datetime(2026, 11, 16, 12, 20, tzinfo=UTC)
"""Not on the hour: 24 h ago falls inside an hour bucket, not at its edge."""
DAY_AGO = NOW - timedelta(hours=24)


def signal(
    arxiv_id: str,
    value: float,
    at: datetime,
    *,
    url: str | None = "https://example.org/a",
    source: str = "hackernews",
    metric: str = "points",
    weight: float = 1.0,
) -> Signal:
    return Signal(arxiv_id, source, metric, value, at, url=url, weight=weight)


def rollup_state(db: Database) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    """The rollup with its numbers (paper, kind and post ids) replaced by what they name."""
    with db.engine.connect() as connection:
        papers = dict(connection.execute(select(MENTIONED.c.id, MENTIONED.c.arxiv_id)).all())
        kinds = {row.id: (row.source, row.metric) for row in connection.execute(select(KINDS))}
        posts = {
            row.id: (papers[row.paper_id], *kinds[row.kind_id], row.url)
            for row in connection.execute(select(POSTS))
        }
        post_rows = sorted(
            (posts[row.id], row.first_at_us, row.latest_at_us, row.latest_value, row.latest_weight)
            for row in connection.execute(select(POSTS))
        )
        hour_rows = sorted(
            (posts[row.post_id], row.hour, row.value, row.weight, row.observed_at_us,
             row.first_at_us)
            for row in connection.execute(select(HOURS))
        )  # fmt: skip
    # Every numbered paper and kind is used by some post.
    assert {post[0] for post in posts.values()} == set(papers.values())
    assert {post[1:3] for post in posts.values()} == set(kinds.values())
    return post_rows, hour_rows


def rebuild_rollup(db: Database) -> None:
    """Drop the rollup and let migration 0007 fill it again from the snapshots."""
    config = alembic_config(db)
    with db.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0006")
    upgrade(db)


def random_history(seed: int) -> list[Signal]:
    """Snapshots of a few papers over ten days, some after NOW, with repeated values, twin
    snapshots at one instant, several posts per paper and posts without a URL."""
    rng = random.Random(seed)
    history = []
    for paper in range(8):
        arxiv_id = f"2611.{paper:05d}"
        for source, metric in (("hackernews", "points"), ("bluesky", "likes"), ("reddit", "score")):
            for url in rng.sample(["https://example.org/x", "https://example.org/y", None], 2):
                at = NOW - timedelta(days=10)
                value = 0.0
                while at < NOW + timedelta(hours=3):
                    at += timedelta(
                        minutes=rng.choice([7, 30, 30, 55, 240, 700, 2000]),
                        seconds=rng.randrange(60),
                        microseconds=rng.randrange(10**6),
                    )
                    value = max(value + rng.choice([0, 0, 1, 3, 20, -2]), -1.0)
                    weight = rng.choice([1.0, 1.0, 0.5, 2.5])
                    history.append(
                        signal(
                            arxiv_id,
                            value,
                            at,
                            url=url,
                            source=source,
                            metric=metric,
                            weight=weight,
                        )
                    )
                    if rng.random() < 0.05:  # twin: same instant, another value
                        history.append(
                            signal(
                                arxiv_id,
                                value + 5,
                                at,
                                url=url,
                                source=source,
                                metric=metric,
                                weight=weight,
                            )
                        )
    return history  # fmt: skip


def write_shuffled(db: Database, history: list[Signal], seed: int) -> None:
    """Write in random order and random batch sizes, some snapshots twice."""
    rng = random.Random(seed)
    arrivals = history + rng.sample(history, len(history) // 10)
    rng.shuffle(arrivals)
    start = 0
    while start < len(arrivals):
        size = rng.choice([1, 3, 40, 700])
        add_snapshots(db, arrivals[start : start + size])
        start += size


@pytest.mark.parametrize("seed", [1, 2])
def test_rebuilding_from_snapshots_equals_the_incremental_rollup(db: Database, seed: int) -> None:
    write_shuffled(db, random_history(seed), seed)
    incremental = rollup_state(db)
    assert incremental[0] and len(incremental[1]) > len(incremental[0])
    rebuild_rollup(db)
    assert rollup_state(db) == incremental


def test_a_late_older_snapshot_keeps_the_newest_and_moves_the_first_back(db: Database) -> None:
    at = datetime(2026, 11, 16, 12, 40, tzinfo=UTC)
    add_snapshots(db, [signal("2611.00001", 10, at)])
    add_snapshots(db, [signal("2611.00001", 7, at - timedelta(minutes=30))])  # same hour
    add_snapshots(db, [signal("2611.00001", 3, at - timedelta(hours=5))])
    add_snapshots(db, [signal("2611.00001", 12, at)])  # same instant, written later: wins
    posts, hours = rollup_state(db)
    key = ("2611.00001", "hackernews", "points", "https://example.org/a")
    five_ago = to_us(at - timedelta(hours=5))
    assert posts == [(key, five_ago, to_us(at), 12.0, 1.0)]
    assert hours == [
        (key, hour_of(five_ago), 3.0, 1.0, five_ago, five_ago),
        (key, hour_of(to_us(at)), 12.0, 1.0, to_us(at), to_us(at - timedelta(minutes=30))),
    ]
    rebuild_rollup(db)
    assert rollup_state(db) == (posts, hours)


def in_force(frame: SnapshotFrame) -> set[tuple[str, str, float, float, float]]:
    """Frame rows as (paper, source, observed, value, weight)."""
    return {
        (frame.paper_ids[p], frame.sources[s], float(o), float(v), float(w))
        for p, s, o, v, w in zip(frame.paper, frame.source, frame.observed, frame.value,
                                 frame.weight, strict=True)
    }  # fmt: skip


def row(arxiv_id: str, at: datetime, value: float) -> tuple[str, str, float, float, float]:
    return (arxiv_id, "hackernews", at.timestamp(), value, 1.0)


def test_each_way_of_finding_the_value_24_hours_ago(db: Database) -> None:
    window = NOW - timedelta(days=7)
    cases = {
        # Changed in the hour of "24 h ago", before and after it: read from the snapshots.
        "2611.00001": [(DAY_AGO - timedelta(minutes=40), 1), (DAY_AGO - timedelta(minutes=15), 2),
                       (DAY_AGO - timedelta(minutes=5), 3), (DAY_AGO + timedelta(minutes=20), 4)],
        # Changed an hour before and an hour after: found among the hours near it.
        "2611.00002": [(DAY_AGO - timedelta(hours=2), 5), (DAY_AGO + timedelta(hours=1), 6)],
        # Quiet for ten hours before it: looked up on its own.
        "2611.00003": [(DAY_AGO - timedelta(hours=10), 7), (DAY_AGO + timedelta(hours=2), 8)],
        # First seen after it: nothing then.
        "2611.00004": [(DAY_AGO + timedelta(hours=1), 9)],
        # Last seen before the window, then again today: nothing in the window 24 h ago.
        "2611.00005": [(NOW - timedelta(days=8), 10), (NOW - timedelta(hours=1), 11)],
        # Unchanged since long before: the newest snapshot, at both moments.
        "2611.00006": [(NOW - timedelta(days=3), 12)],
        # A snapshot after now does not count at now.
        "2611.00007": [(NOW - timedelta(hours=30), 13), (NOW + timedelta(minutes=5), 14)],
        # Exactly at the moments: counted.
        "2611.00008": [(DAY_AGO, 15), (NOW, 16)],
    }  # fmt: skip
    for arxiv_id, points in cases.items():
        add_snapshots(db, [signal(arxiv_id, value, at) for at, value in points])
    frame = frame_as_of(db, window, [DAY_AGO, NOW])
    assert in_force(frame) == {
        row("2611.00001", DAY_AGO - timedelta(minutes=5), 3),
        row("2611.00001", DAY_AGO + timedelta(minutes=20), 4),
        row("2611.00002", DAY_AGO - timedelta(hours=2), 5),
        row("2611.00002", DAY_AGO + timedelta(hours=1), 6),
        row("2611.00003", DAY_AGO - timedelta(hours=10), 7),
        row("2611.00003", DAY_AGO + timedelta(hours=2), 8),
        row("2611.00004", DAY_AGO + timedelta(hours=1), 9),
        row("2611.00005", NOW - timedelta(hours=1), 11),
        row("2611.00006", NOW - timedelta(days=3), 12),
        row("2611.00007", NOW - timedelta(hours=30), 13),
        row("2611.00008", DAY_AGO, 15),
        row("2611.00008", NOW, 16),
    }
    assert frame.paper_ids == tuple(sorted(cases))
    assert len(frame) == 12  # one row per snapshot, however many moments it is in force at
    # The same, asked for some papers only.
    some = frame_as_of(db, window, [DAY_AGO, NOW], arxiv_ids=["2611.00001", "2611.00003"])
    assert in_force(some) == {r for r in in_force(frame) if r[0] in ("2611.00001", "2611.00003")}


def assert_same_trend(mine: SnapshotFrame, every: SnapshotFrame, now: datetime) -> None:
    """The formula gives the same result on both frames (ages held equal)."""
    config = TrendConfig()
    ages = np.linspace(1, 90, len(every.paper_ids))
    reference = compute(every, now, ages, config)
    by_id = dict(zip(every.paper_ids, ages, strict=True))
    result = compute(mine, now, np.array([by_id[i] for i in mine.paper_ids]), config)
    rows = [reference.row[arxiv_id] for arxiv_id in result.paper_ids]
    assert set(result.paper_ids) == set(reference.paper_ids)
    assert result.sources == tuple(s for s in result.sources if s in reference.sources)
    sources = [reference.sources.index(s) for s in result.sources]
    metrics = [reference.metrics.index(m) for m in result.metrics]
    np.testing.assert_allclose(result.score, reference.score[rows], rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        result.engagement, reference.engagement[rows][:, sources], rtol=1e-12, atol=1e-9
    )
    np.testing.assert_allclose(
        result.growth, reference.growth[rows][:, sources], rtol=1e-12, atol=1e-9
    )
    np.testing.assert_allclose(result.daily, reference.daily[rows], rtol=1e-12, atol=1e-9)
    np.testing.assert_array_equal(result.raw, reference.raw[rows][:, sources][:, :, metrics])
    assert [result.line(i) for i in result.paper_ids] == [
        reference.line(i) for i in result.paper_ids
    ]  # fmt: skip


@pytest.mark.parametrize("seed", [3, 4])
def test_the_snapshots_in_force_give_the_formula_over_every_snapshot(
    db: Database, seed: int
) -> None:
    write_shuffled(db, random_history(seed), seed)
    for now in (NOW, NOW - timedelta(hours=7, minutes=13), NOW + timedelta(days=2)):
        window = now - timedelta(days=7)
        every = snapshot_frame(db, window, now)
        assert_same_trend(frame_as_of(db, window, evaluated_moments(now)), every, now)
        some = [f"2611.{n:05d}" for n in (1, 4, 6)]
        chosen = frame_as_of(db, window, evaluated_moments(now), arxiv_ids=some)
        assert set(chosen.paper_ids) == set(some) & set(every.paper_ids)
        assert in_force(chosen) == {r for r in in_force(
            frame_as_of(db, window, evaluated_moments(now))) if r[0] in some}  # fmt: skip


def test_the_rollup_is_written_with_the_snapshots_or_not_at_all(db: Database) -> None:
    add_snapshots(db, [signal("2611.00001", 1, NOW)])
    with db.engine.connect() as connection:
        stored = connection.execute(select(SNAPSHOTS.c.id)).all()
    assert len(stored) == 1
    posts, hours = rollup_state(db)
    assert [p[0][0] for p in posts] == ["2611.00001"] and len(hours) == 1


def test_times_are_microseconds_since_the_epoch() -> None:
    moment = datetime(2026, 11, 16, 12, 0, 0, 999_999, tzinfo=UTC)
    assert to_us(moment) == 1_794_830_400_999_999
    assert from_us(to_us(moment)) == moment
    assert to_us(moment.replace(tzinfo=None)) == to_us(moment)
    assert hour_of(to_us(moment)) == hour_of(to_us(moment.replace(minute=59)))


def test_frames_read_the_same_times_as_python(db: Database) -> None:
    odd = NOW - timedelta(hours=3, microseconds=123_457)
    add_snapshots(db, [signal("2611.00001", 4, odd)])
    every = snapshot_frame(db, NOW - timedelta(days=1), NOW)
    rolled = frame_as_of(db, NOW - timedelta(days=1), [NOW])
    assert every.observed.tolist() == rolled.observed.tolist() == [odd.timestamp()]


def test_many_posts_one_paper(db: Database) -> None:
    # One paper, posts on three sources, two metrics each: one row per post and moment.
    add_snapshots(
        db,
        [signal("2611.00001", n, NOW - timedelta(hours=n), source=s, metric=m, url=s + m)
         for n, (s, m) in enumerate([(s, m) for s in ("hackernews", "reddit", "bluesky")
                                     for m in ("a", "b")], start=1)],
    )  # fmt: skip
    frame = frame_as_of(db, NOW - timedelta(days=7), [NOW])
    per_post: dict[int, int] = defaultdict(int)
    for post in frame.post.tolist():
        per_post[post] += 1
    assert len(per_post) == 6 and set(per_post.values()) == {1}
    assert frame.paper_ids == ("2611.00001",)


def paper(arxiv_id: str, *, published: datetime, announced: datetime | None) -> Paper:
    return Paper(
        arxiv_id=arxiv_id, version=1, title="T", abstract="A", authors=("Ada Lovelace",),
        categories=("cs.LG",), primary_category="cs.LG", published=published, updated=published,
        announced=announced,
    )  # fmt: skip


def test_frames_carry_when_stored_papers_were_announced(db: Database) -> None:
    announced = NOW - timedelta(days=2, microseconds=654_321)
    published = NOW - timedelta(days=3, seconds=7)
    upsert_papers(
        db,
        [
            paper("2611.00001", announced=announced, published=published),
            paper("2611.00002", announced=None, published=published),
        ],
    )
    add_snapshots(db, [signal(f"2611.0000{n}", n, NOW - timedelta(hours=n)) for n in (1, 2, 3)])
    frame = frame_as_of(db, NOW - timedelta(days=7), [DAY_AGO, NOW])
    assert frame.paper_ids == ("2611.00001", "2611.00002", "2611.00003")
    assert frame.announced is not None
    assert frame.announced[:2].tolist() == [announced.timestamp(), published.timestamp()]
    assert np.isnan(frame.announced[2])  # mentioned, not stored
    some = frame_as_of(db, NOW - timedelta(days=7), [NOW], arxiv_ids=["2611.00002", "2611.00003"])
    assert some.announced is not None
    assert some.announced[0] == published.timestamp() and np.isnan(some.announced[1])
