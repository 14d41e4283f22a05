"""Trend scores for many papers from SQLite, end to end, against a per-paper Python loop.

Usage: python bench/trend.py [--papers 100000] [--sources 6] [--snapshots 30] [--sample 2000]
                             [--build poller|bulk] [--lines 1000] [--repeat 3] [--verify-raw]
                             [--database FILE]

Builds a SQLite database (excluded from the timings, but reported) holding ``papers`` papers,
each with one post on each of ``sources`` sources and ``snapshots`` snapshots of one metric per
post, taken every 4 hours up to "now": papers × sources × snapshots rows (18 million by
default). Every snapshot differs from the post's previous one (a poller stores only changes).

* ``--build poller`` (default): through the real write path, as the engagement poller writes:
  one ``storage.engagement.add_snapshots`` call per source per polling round, each call
  appending the round's snapshots and upserting the rollup in its transaction.
* ``--build bulk``: the snapshots go in with one ``executemany`` at schema revision 0006, then
  the upgrade to 0007 builds the rollup with the migration's backfill SQL.

Then it times, each the best of ``--repeat`` runs:

* load: ``storage.engagement_frames.frame_as_of`` for now and 24 h ago: from the rollup, the
  snapshot in force at each of the two moments for every post (what the score reads);
* ages: ``bot.trend.paper_ages``: hours since each paper's announcement (the dates come
  with the paper ids in load; only papers not stored yet need a query here);
* score: ``bot.trend.compute``: latest value per post at both moments, p90 scaling, decay,
  velocity, squash, for every paper at once;
* end to end: ``bot.trend.table(db, now)``, the call the bot makes: load + ages + score;
* lines: sparklines (four more moments) for the ``--lines`` best-scored papers, as a digest
  or ``/trending`` asks for them (``bot.trend.with_lines``);
* loop: the same formula as a plain Python loop over each paper's rows of the same frame, run
  on a random ``sample`` of papers and extrapolated linearly to all of them (it is given the
  per-source scales computed by the vectorised pass, which favours the loop); its scores are
  checked against the vectorised ones.

``--verify-raw`` also reads every snapshot of the window from ``engagement_snapshot`` (the
former way, minutes at the default size) and checks the scores computed from it are the same.
``--database FILE`` keeps the database in FILE, or reuses FILE if it exists (to time again
without building again: the default build takes about 35 minutes on a busy 2-core machine).
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
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import numpy as np

from bot.trend import (
    VELOCITY_SPAN,
    TrendConfig,
    compute,
    evaluated_moments,
    paper_ages,
    table,
    with_lines,
)
from feeds.records import Signal
from storage.db import Database
from storage.engagement import add_snapshots
from storage.engagement_frames import SnapshotFrame, frame_as_of, snapshot_frame
from storage.migrate import upgrade

NOW = datetime(2026, 11, 16, 12, 0, tzinfo=UTC)
SOURCES = ("hackernews", "reddit", "bluesky", "huggingface", "semanticscholar", "mastodon")
METRIC = {"hackernews": "points", "reddit": "score", "bluesky": "likes", "mastodon": "boosts",
          "huggingface": "upvotes", "semanticscholar": "citations"}  # fmt: skip
INTERVAL = timedelta(hours=4)
ROLLUP_REVISION = "0007"
T = TypeVar("T")


class History:
    """The synthetic papers and their snapshots, generated the same way for both builds."""

    def __init__(self, papers: int, sources: int, snapshots: int, seed: int = 7) -> None:
        rng = np.random.default_rng(seed)
        self.ids = [f"26{(n // 90000) % 12 + 1:02d}.{n % 90000 + 10000:05d}" for n in range(papers)]
        self.announced = [NOW - timedelta(hours=float(h)) for h in rng.uniform(1, 24 * 6, papers)]
        self.popularity = rng.lognormal(2.0, 1.5, size=(papers, sources))
        self.growth = rng.uniform(0.2, 1.0, size=(papers, sources))
        self.sources = SOURCES[:sources]
        self.snapshots = snapshots

    def moment(self, k: int) -> datetime:
        """When polling round ``k`` (0 = oldest) took its snapshots."""
        return NOW - INTERVAL * (self.snapshots - 1 - k)

    def values(self, k: int, s: int) -> list[float]:
        """Every paper's value on source ``s`` in round ``k``: growing, never repeated."""
        share = (k + 1) / self.snapshots
        grown = self.popularity[:, s] * share ** self.growth[:, s] * 10
        return (np.floor(grown) + k).tolist()

    def url(self, n: int, source: str) -> str:
        """The post of paper ``n`` on ``source``."""
        return f"https://example.org/{source}/{n}"

    @property
    def rows(self) -> int:
        """Snapshots in total."""
        return len(self.ids) * len(self.sources) * self.snapshots


def build_through_poller(db: Database, history: History) -> dict[str, float]:
    """Every snapshot through ``add_snapshots``, one call per source per polling round."""
    upgrade(db)
    start = time.perf_counter()
    _insert_papers(db, history)
    seconds = {"papers": time.perf_counter() - start}
    start = time.perf_counter()
    written = 0
    for k in range(history.snapshots):
        moment = history.moment(k)
        for s, source in enumerate(history.sources):
            signals = [
                Signal(arxiv_id, source, METRIC[source], value, moment, url=history.url(n, source))
                for n, (arxiv_id, value) in enumerate(
                    zip(history.ids, history.values(k, s), strict=True)
                )
            ]
            written += add_snapshots(db, signals)
        if k in (0, history.snapshots // 2):
            elapsed = time.perf_counter() - start
            done = f"{k + 1}/{history.snapshots}"
            print(f"  … round {done}: {written:,} snapshots in {elapsed:.0f} s", flush=True)
    assert written == history.rows, f"{written} of {history.rows} snapshots written"
    seconds["snapshots and rollup (add_snapshots)"] = time.perf_counter() - start
    return seconds


def build_in_bulk(db: Database, history: History) -> dict[str, float]:
    """Snapshots by ``executemany`` at revision 0006; the 0007 upgrade backfills the rollup."""
    upgrade(db, "0006")
    start = time.perf_counter()
    _insert_papers(db, history)
    seconds = {"papers": time.perf_counter() - start}
    start = time.perf_counter()
    raw = db.engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("BEGIN")
        # Indexes are built after the bulk insert: far faster than maintaining them per row.
        cursor.execute("DROP INDEX ix_engagement_paper_time")
        cursor.execute("DROP INDEX ix_engagement_source_time")
        cursor.executemany(
            "INSERT INTO engagement_snapshot (arxiv_id, source, metric, value, observed_at, "
            "url, actor, weight) VALUES (?, ?, ?, ?, ?, ?, NULL, 1.0)",
            _bulk_rows(history),
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
    seconds["snapshots (executemany)"] = time.perf_counter() - start
    start = time.perf_counter()
    upgrade(db, ROLLUP_REVISION)
    seconds["rollup (migration 0007 backfill)"] = time.perf_counter() - start
    upgrade(db)
    return seconds


def _bulk_rows(history: History) -> Iterator[tuple[object, ...]]:
    # Poll order: every post's k-th snapshot, then the (k+1)-th, as a poller writes.
    for k in range(history.snapshots):
        moment = _sql_time(history.moment(k))
        for s, source in enumerate(history.sources):
            values = history.values(k, s)
            for n, arxiv_id in enumerate(history.ids):
                url = history.url(n, source)
                yield (arxiv_id, source, METRIC[source], values[n], moment, url)


def _insert_papers(db: Database, history: History) -> None:
    raw = db.engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.executemany(
            "INSERT INTO paper (arxiv_id, version, title, abstract, authors, categories, "
            "primary_category, published, updated, announced, withdrawn, first_seen_at, "
            "ingested_at) VALUES (?, 1, ?, '', '[]', '[\"cs.LG\"]', 'cs.LG', ?, ?, ?, 0, ?, ?)",
            (
                (arxiv_id, f"Paper {n}", *(_sql_time(history.announced[n]),) * 5)
                for n, arxiv_id in enumerate(history.ids)
            ),
        )
        raw.commit()
    finally:
        raw.close()


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


def best_of(repeat: int, work: Callable[[], T]) -> tuple[float, float, T]:
    """The fastest of ``repeat`` runs of ``work``: wall-clock and CPU seconds, and its result.

    CPU time is reported too: it is steadier than wall-clock time on a busy machine."""
    best: tuple[float, float, T] | None = None
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        result = work()
        timing = (time.perf_counter() - wall, time.process_time() - cpu, result)
        if best is None or timing[0] < best[0]:
            best = timing
    assert best is not None
    return best


def main(argv: list[str] | None = None) -> int:
    """Build, time and print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--papers", type=int, default=100_000)
    parser.add_argument("--sources", type=int, default=6, choices=range(1, len(SOURCES) + 1))
    parser.add_argument("--snapshots", type=int, default=30)
    parser.add_argument("--sample", type=int, default=2000)
    parser.add_argument("--build", choices=("poller", "bulk"), default="poller")
    parser.add_argument("--lines", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--verify-raw", action="store_true")
    parser.add_argument("--database", type=Path, help="SQLite file: built if missing, else reused")
    args = parser.parse_args(argv)
    config = TrendConfig()
    since = NOW - config.window
    history = History(args.papers, args.sources, args.snapshots)
    with tempfile.TemporaryDirectory() as folder:
        path = args.database or Path(folder) / "bench.db"
        reuse = path.exists()
        db = Database(f"sqlite:///{path}")
        if reuse:
            stored = _snapshot_count(db)
            print(f"reusing {path} ({stored:,} snapshot rows, built earlier: build not timed)")
            if stored != history.rows:
                print(f"  expected {history.rows:,} rows for these sizes")
                return 2
        else:
            builder = build_through_poller if args.build == "poller" else build_in_bulk
            built = builder(db, history)
            print(
                f"built {history.rows:,} snapshot rows ({args.papers:,} papers × {args.sources} "
                f"sources × {args.snapshots} snapshots, one metric each) with --build "
                f"{args.build}, not counted below:"
            )
            for step, seconds in built.items():
                print(f"  {step}: {seconds:.1f} s")
        size = sum(f.stat().st_size for f in path.parent.glob(path.name + "*"))
        print(f"  database: {size / 2**30:.2f} GiB")

        moments = evaluated_moments(NOW, sparkline=False)
        loaded, load_cpu, frame = best_of(args.repeat, lambda: frame_as_of(db, since, moments))
        aged, age_cpu, ages = best_of(args.repeat, lambda: paper_ages(db, frame, since, NOW))
        scored, score_cpu, scores = best_of(
            args.repeat, lambda: compute(frame, NOW, ages, config, sparkline=False)
        )
        whole, whole_cpu, tabled = best_of(args.repeat, lambda: table(db, NOW, config))
        assert tabled.paper_ids == frame.paper_ids
        assert np.array_equal(tabled.score, scores.score)
        top = [frame.paper_ids[i] for i in np.argsort(-scores.score)[: args.lines]]
        lined, lines_cpu, _ = best_of(args.repeat, lambda: with_lines(db, tabled, top, NOW, config))
        raw_check = _verify_raw(db, since, scores.score, frame, config) if args.verify_raw else ""
        db.dispose()

    papers = len(frame.paper_ids)
    sample = random.Random(1).sample(range(papers), min(args.sample, papers))
    looped, loop_time, loop_cpu = loop_scores(frame, sample, ages, scores.scale, config)
    worst = max(abs(looped[p] - float(scores.score[p])) for p in sample)
    scale_up = papers / len(sample)
    loop_all, loop_all_cpu = loop_time * scale_up, loop_cpu * scale_up

    print(f"timings, best of {args.repeat}:")
    print(f"load   (rollup → snapshots in force now and 24 h ago): {loaded:6.2f} s  "
          f"(CPU {load_cpu:.2f} s; {len(frame):,} rows for {papers:,} papers)")  # fmt: skip
    print(f"ages   (announcement dates):                           {aged:6.2f} s  "
          f"(CPU {age_cpu:.2f} s)")  # fmt: skip
    print(f"score  (vectorised formula, all papers):               {scored:6.2f} s  "
          f"(CPU {score_cpu:.2f} s)")  # fmt: skip
    print(f"END TO END bot.trend.table (load + ages + score):     {whole:6.2f} s  "
          f"(CPU {whole_cpu:.2f} s) for {papers:,} papers; target < 2 s")  # fmt: skip
    print(f"lines  (sparklines of the {len(top):,} best papers):          {lined:6.2f} s  "
          f"(CPU {lines_cpu:.2f} s), not part of the scores")  # fmt: skip
    print(f"loop   (per-paper Python, same rows):                  {loop_all:6.2f} s  "
          f"(CPU {loop_all_cpu:.2f} s) extrapolated ×{scale_up:.0f} "
          f"from {len(sample):,} papers")  # fmt: skip
    print(f"ratio  loop / vectorised score:           {loop_all / scored:7.1f}×  "
          f"(CPU {loop_all_cpu / score_cpu:.1f}×)")  # fmt: skip
    print(f"ratio  (load + ages + loop) / end to end: {(loaded + aged + loop_all) / whole:7.1f}×")
    print(f"largest score difference loop vs vectorised on the sample: {worst:.2e}")
    if raw_check:
        print(raw_check)
    print(f"host load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    return 0 if worst < 1e-9 else 1


def _snapshot_count(db: Database) -> int:
    with db.engine.connect() as connection:
        return int(
            connection.exec_driver_sql("SELECT max(id) FROM engagement_snapshot").scalar() or 0
        )


def _verify_raw(
    db: Database, since: datetime, score: np.ndarray, frame: SnapshotFrame, config: TrendConfig
) -> str:
    """Score from every snapshot of the window (the former read path) and compare."""
    start = time.perf_counter()
    everything = snapshot_frame(db, since, NOW)
    loaded = time.perf_counter() - start
    ages = paper_ages(db, everything, since, NOW)
    reference = compute(everything, NOW, ages, config)
    rows = [reference.row[arxiv_id] for arxiv_id in frame.paper_ids]
    worst = float(np.max(np.abs(reference.score[rows] - score))) if rows else 0.0
    same = set(reference.paper_ids) == set(frame.paper_ids)
    return (
        f"raw check: all {len(everything):,} snapshots read in {loaded:.1f} s; same papers: "
        f"{same}; largest score difference rollup vs raw: {worst:.2e}"
    )


if __name__ == "__main__":
    sys.exit(main())
