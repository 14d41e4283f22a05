"""Trend scores for many papers from SQLite: the vectorised formula against a per-paper loop.

Usage: python bench/trend.py [--papers 100000] [--sources 6] [--snapshots 30] [--sample 2000]

Builds a SQLite database (excluded from the timings) holding ``papers`` papers, each with one
post on each of ``sources`` sources and ``snapshots`` snapshots of one metric per post, taken
every 4 hours up to "now" in poll order, as a poller would write them: papers × sources ×
snapshots rows (18 million by default). Then it times, separately:

* load: ``storage.engagement.snapshot_frame``: the one query that reads every row of the
  trend window and turns it into numpy columns;
* ages: ``bot.trend.paper_ages``: announcement dates of the papers;
* score: ``bot.trend.compute``: the whole formula (latest value per post at six points in
  time, p90 scaling, decay, velocity, squash, sparkline data) for every paper at once;
* loop: the same formula as a plain Python loop over each paper's rows, run on a random
  ``sample`` of papers and extrapolated linearly to all of them (it is given the per-source
  scales computed by the vectorised pass, which makes the loop slightly faster than a real
  one); its scores are checked against the vectorised ones.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from bot.trend import SPARK_DAYS, VELOCITY_SPAN, TrendConfig, TrendTable, compute, paper_ages
from storage.db import Database
from storage.engagement import SnapshotFrame, snapshot_frame
from storage.migrate import upgrade

NOW = datetime(2026, 11, 16, 12, 0, tzinfo=UTC)
SOURCES = ("hackernews", "reddit", "bluesky", "huggingface", "semanticscholar", "mastodon")
METRIC = {"hackernews": "points", "reddit": "score", "bluesky": "likes", "mastodon": "boosts",
          "huggingface": "upvotes", "semanticscholar": "citations"}  # fmt: skip
INTERVAL = timedelta(hours=4)


def build(db: Database, papers: int, sources: int, snapshots: int, seed: int = 7) -> int:
    """Fill the database with one executemany per table inside one transaction."""
    rng = np.random.default_rng(seed)
    ids = [f"26{(n // 90000) % 12 + 1:02d}.{n % 90000 + 10000:05d}" for n in range(papers)]
    announced = [NOW - timedelta(hours=float(h)) for h in rng.uniform(1, 24 * 6, papers)]
    popularity = rng.lognormal(2.0, 1.5, size=(papers, sources))
    growth = rng.uniform(0.2, 1.0, size=(papers, sources))
    names = SOURCES[:sources]
    raw = db.engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("BEGIN")
        cursor.executemany(
            "INSERT INTO paper (arxiv_id, version, title, abstract, authors, categories, "
            "primary_category, published, updated, announced, withdrawn, first_seen_at, "
            "ingested_at) VALUES (?, 1, ?, '', '[]', '[\"cs.LG\"]', 'cs.LG', ?, ?, ?, 0, ?, ?)",
            (
                (arxiv_id, f"Paper {n}", *(_sql_time(announced[n]),) * 5)
                for n, arxiv_id in enumerate(ids)
            ),
        )
        # Indexes are built after the bulk insert: far faster than maintaining them per row.
        cursor.execute("DROP INDEX ix_engagement_paper_time")
        cursor.execute("DROP INDEX ix_engagement_source_time")

        def rows() -> object:
            # Poll order: every post's k-th snapshot, then the (k+1)-th, as a poller writes.
            for k in range(snapshots):
                moment = _sql_time(NOW - INTERVAL * (snapshots - 1 - k))
                share = (k + 1) / snapshots
                for n, arxiv_id in enumerate(ids):
                    for s, source in enumerate(names):
                        value = float(int(popularity[n, s] * share ** growth[n, s] * 10))
                        url = f"https://example.org/{source}/{n}"
                        yield (arxiv_id, source, METRIC[source], value, moment, url, None, 1.0)

        cursor.executemany(
            "INSERT INTO engagement_snapshot (arxiv_id, source, metric, value, observed_at, "
            "url, actor, weight) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            rows(),  # type: ignore[arg-type]
        )
        cursor.execute(
            "CREATE INDEX ix_engagement_paper_time ON engagement_snapshot (arxiv_id, observed_at)"
        )
        cursor.execute(
            "CREATE INDEX ix_engagement_source_time ON engagement_snapshot (source, observed_at)"
        )
        raw.commit()
    finally:
        raw.close()
    return papers * sources * snapshots


def _sql_time(moment: datetime) -> str:
    # The text form storage.types.UTCDateTime writes on SQLite.
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def loop_scores(
    frame: SnapshotFrame,
    chosen: list[int],
    ages: np.ndarray,
    scale: np.ndarray,
    config: TrendConfig,
) -> tuple[dict[int, float], float, float]:
    """The formula one paper at a time, over that paper's rows, in plain Python.

    Returns the scores and the wall-clock and CPU seconds the loop took; grouping the rows
    by paper beforehand is not counted, which favours the loop.
    """
    by_paper: dict[int, list[int]] = defaultdict(list)
    wanted = set(chosen)
    for row, paper in enumerate(frame.paper.tolist()):
        if paper in wanted:
            by_paper[paper].append(row)
    start, start_cpu = time.perf_counter(), time.process_time()
    now_s = NOW.timestamp()
    before_s = now_s - VELOCITY_SPAN.total_seconds()
    weights = [config.weights.get(name, 1.0) for name in frame.sources]
    scores: dict[int, float] = {}
    for paper in chosen:
        latest: dict[int, tuple[float, int]] = {}
        earlier: dict[int, tuple[float, int]] = {}
        for row in by_paper[paper]:
            observed, post = float(frame.observed[row]), int(frame.post[row])
            if observed <= now_s and (post not in latest or observed >= latest[post][0]):
                latest[post] = (observed, row)
            if observed <= before_s and (post not in earlier or observed >= earlier[post][0]):
                earlier[post] = (observed, row)
        now_total = [0.0] * len(frame.sources)
        then_total = [0.0] * len(frame.sources)
        for totals, picked in ((now_total, latest), (then_total, earlier)):
            for _, row in picked.values():
                value = max(float(frame.value[row]), 0.0) * float(frame.weight[row])
                totals[int(frame.source[row])] += value
        decay = 0.5 ** (max(float(ages[paper]), 0.0) / config.half_life_hours)
        x = 0.0
        for s, weight in enumerate(weights):
            level = math.log1p(now_total[s]) / scale[s]
            velocity = math.log1p(max(now_total[s] - then_total[s], 0.0)) / scale[s]
            x += weight * (decay * level + config.velocity_weight * velocity)
        scores[paper] = 1.0 - math.exp(-x)
    return scores, time.perf_counter() - start, time.process_time() - start_cpu


def main(argv: list[str] | None = None) -> int:
    """Build, time and print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--papers", type=int, default=100_000)
    parser.add_argument("--sources", type=int, default=6, choices=range(1, len(SOURCES) + 1))
    parser.add_argument("--snapshots", type=int, default=30)
    parser.add_argument("--sample", type=int, default=2000)
    args = parser.parse_args(argv)
    config = TrendConfig()
    with tempfile.TemporaryDirectory() as folder:
        db = Database(f"sqlite:///{Path(folder) / 'bench.db'}")
        upgrade(db)
        start = time.perf_counter()
        rows = build(db, args.papers, args.sources, args.snapshots)
        built = time.perf_counter() - start
        print(
            f"built {rows:,} snapshot rows ({args.papers:,} papers × {args.sources} sources × "
            f"{args.snapshots} snapshots, one metric each) in {built:.1f} s (not counted)"
        )

        start = time.perf_counter()
        frame = snapshot_frame(db, NOW - config.window, NOW)
        loaded = time.perf_counter() - start
        start = time.perf_counter()
        ages = paper_ages(db, frame, NOW)
        aged = time.perf_counter() - start
        db.dispose()
    scored, cpu, table = _timed(lambda: compute(frame, NOW, ages, config))
    again, again_cpu, _ = _timed(lambda: compute(frame, NOW, ages, config))

    sample = random.Random(1).sample(range(len(frame.paper_ids)), min(args.sample, args.papers))
    looped, loop_time, loop_cpu = loop_scores(frame, sample, ages, table.scale, config)
    worst = max(abs(looped[p] - float(table.score[p])) for p in sample)
    scale_up = len(frame.paper_ids) / len(sample)
    loop_all, loop_all_cpu = loop_time * scale_up, loop_cpu * scale_up
    print(f"load   (one query → numpy columns): {loaded:7.2f} s  ({len(frame):,} rows)")
    print(f"ages   (announcement dates):        {aged:7.2f} s")
    papers = len(frame.paper_ids)
    print(f"score  (vectorised formula):        {scored:7.2f} s  (CPU {cpu:.2f} s) for "
          f"{papers:,} papers with {SPARK_DAYS}-day sparklines; target < 2 s")  # fmt: skip
    print(f"score  again (memory already faulted in): {again:.2f} s  (CPU {again_cpu:.2f} s)")
    print(f"loop   (per-paper Python):          {loop_all:7.2f} s  (CPU {loop_all_cpu:.2f} s) "
          f"extrapolated ×{scale_up:.0f} from {len(sample):,} papers; scores only")  # fmt: skip
    print(f"ratio  loop / vectorised score:     {loop_all / scored:7.1f}×  "
          f"(CPU {loop_all_cpu / cpu:.1f}×)")  # fmt: skip
    print(f"largest score difference loop vs vectorised on the sample: {worst:.2e}")
    print(f"host load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    return 0 if worst < 1e-9 else 1


def _timed(work: Callable[[], TrendTable]) -> tuple[float, float, TrendTable]:
    """Wall-clock and CPU seconds of ``work`` (CPU time is steadier on a busy machine)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    return time.perf_counter() - wall, time.process_time() - cpu, result


if __name__ == "__main__":
    sys.exit(main())
