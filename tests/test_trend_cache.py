"""Trend scores shared by the digests of a few minutes, recomputed when anything changes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from bot.trend_cache import TrendCache, TrendResult
from bot.warm import NotWarm, warm_only
from feeds.records import Signal
from storage.db import Database
from storage.engagement import add_snapshots, latest_snapshot_id

NOW = datetime(2026, 11, 16, 12, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class CountingProvider:
    """Scores every id by how many snapshots exist, counting its own calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, db: Database, ids: Sequence[str], now: datetime) -> TrendResult:
        self.calls += 1
        version = float(latest_snapshot_id(db))
        return {arxiv_id: version for arxiv_id in ids}, {}


def hn(arxiv_id: str, points: float) -> Signal:
    return Signal(arxiv_id, "hackernews", "points", points, NOW, url=f"https://hn/{arxiv_id}")


def test_latest_snapshot_id_grows_with_every_write(db: Database) -> None:
    assert latest_snapshot_id(db) == 0
    add_snapshots(db, [hn("2611.00001", 10), hn("2611.00002", 3)])
    first = latest_snapshot_id(db)
    assert first > 0
    add_snapshots(db, [hn("2611.00001", 10)])  # the same value again is not a new snapshot
    assert latest_snapshot_id(db) == first
    add_snapshots(db, [hn("2611.00001", 12)])
    assert latest_snapshot_id(db) > first


def test_one_computation_serves_until_engagement_papers_or_time_change(db: Database) -> None:
    provider, clock = CountingProvider(), Clock()
    cache = TrendCache(provider, max_age=300, clock=clock)
    ids = ["2611.00001", "2611.00002"]
    scores, _ = cache(db, ids, NOW)
    assert cache(db, list(ids), NOW) == (scores, {}) and provider.calls == 1

    add_snapshots(db, [hn("2611.00001", 40)])  # new engagement
    scores, _ = cache(db, ids, NOW)
    assert provider.calls == 2 and scores["2611.00001"] == latest_snapshot_id(db)

    cache(db, [*ids, "2611.00003"], NOW)  # a new fresh paper
    assert provider.calls == 3
    clock.now += 299
    cache(db, [*ids, "2611.00003"], NOW)
    assert provider.calls == 3
    clock.now += 1  # time moves the scores, slowly: recomputed after max_age
    cache(db, [*ids, "2611.00003"], NOW)
    assert provider.calls == 4


def test_warm_only_refuses_to_compute_but_reuses(db: Database) -> None:
    provider = CountingProvider()
    cache = TrendCache(provider)
    with warm_only(), pytest.raises(NotWarm, match="trend scores"):
        cache(db, ["2611.00001"], NOW)
    assert provider.calls == 0
    cache(db, ["2611.00001"], NOW)
    with warm_only():
        assert cache(db, ["2611.00001"], NOW) == ({"2611.00001": 0.0}, {})
    assert provider.calls == 1


def test_a_failure_is_not_kept(db: Database) -> None:
    attempts: list[int] = []

    def flaky(database: Database, ids: Sequence[str], now: datetime) -> TrendResult:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("engagement table locked")
        return {}, {}

    cache = TrendCache(flaky)
    with pytest.raises(RuntimeError):
        cache(db, ["2611.00001"], NOW)
    assert cache(db, ["2611.00001"], NOW) == ({}, {}) and len(attempts) == 2
