"""The trend score: how much attention a paper is getting, in [0, 1], and the line that says why.

For paper ``p`` and source ``s`` (Hacker News, Reddit, Bluesky, Hugging Face, Semantic
Scholar), each post's *latest* snapshot at time ``t`` counts once::

    E_s(p, t)   = Σ_posts  w_post · Σ_metrics max(value, 0)        (w_post: Bluesky reach, else 1)
    P_s         = max(90th percentile of log1p(E_s(q, now)) over papers q with E_s(q, now) > 0
                      among all snapshots of the last ``window`` days,  log1p(scale_floor))
    level_s(p)  = log1p(E_s(p, now)) / P_s
    growth_s(p) = log1p(max(E_s(p, now) − E_s(p, now − 24 h), 0)) / P_s
    x(p)        = Σ_s W_s · (0.5 ** (age_h(p) / H) · level_s(p)  +  V · growth_s(p))
    trend(p)    = 1 − exp(−x(p))

``W_s`` are the source weights, ``H`` the half-life in hours, ``V`` the velocity weight, and
``age_h`` the hours since the paper was announced (published, if never announced; the first
mention, if the paper is not stored yet). A post first seen in the last 24 h counts as growth.

The formula only ever looks at each post's newest snapshot at a few points in time, so scores
are computed from those snapshots alone: ``storage.engagement_frames.frame_as_of`` reads them
from the rollup that ``add_snapshots`` keeps (one row per post, plus the hourly rows near
24 h ago), and ``compute`` evaluates the formula with numpy over them, no Python loop over
papers. The trend line shows the same (unweighted) totals with a sparkline of daily growth;
its four earlier points are read only for the papers whose line is shown (``lines_for``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from bot.circle import circle_counts as circle_counts
from bot.trend_cache import TrendProvider
from storage import papers as paper_store
from storage.db import Database
from storage.engagement_frames import (
    SnapshotFrame,
    announcements_us,
    first_mentions_us,
    frame_as_of,
)
from storage.epoch import SECOND_US
from storage.models import Paper

DEFAULT_WEIGHTS: Mapping[str, float] = {
    "hackernews": 1.0,
    "reddit": 0.8,
    "bluesky": 1.0,
    "huggingface": 1.0,
    "semanticscholar": 0.5,
}
"""Source weights ``W_s``; a source not listed counts with ``UNLISTED_WEIGHT``."""
UNLISTED_WEIGHT = 1.0
DEFAULT_HALF_LIFE_HOURS = 36.0
DEFAULT_VELOCITY_WEIGHT = 0.5
DEFAULT_WINDOW = timedelta(days=7)
DEFAULT_SCALE_FLOOR = 10.0
"""A source's scale never drops below ``log1p(10)``: a handful of likes on a quiet day is not
worth as much as the 90th percentile of a busy one."""
VELOCITY_SPAN = timedelta(hours=24)
SPARK_DAYS = 4
SPARK_CHARS = "▁▂▃▄▅▆▇█"
HOT = 0.8
"""Trend lines of papers scoring at least this start with 🔥 (about twice a source's 90th
percentile, or strong on two sources at once)."""

SOURCE_LABELS: Mapping[str, str] = {
    "hackernews": "HN",
    "reddit": "Reddit",
    "bluesky": "Bluesky",
    "huggingface": "HF",
    "semanticscholar": "S2",
}
SOURCE_ORDER = tuple(SOURCE_LABELS)
HEADLINE_METRICS: Mapping[str, tuple[tuple[str, str], ...]] = {
    "hackernews": (("points", "pts"), ("comments", "comments")),
    "reddit": (("score", ""), ("comments", "comments")),
    "bluesky": (("reposts", "reposts"), ("likes", "likes"), ("replies", "replies")),
    "huggingface": (("upvotes", "▲"), ("comments", "comments")),
    "semanticscholar": (("citations", "citations"), ("influential_citations", "influential")),
}
"""What the trend line shows per source: the first of these metrics with a positive total."""
SINGULAR_UNITS: Mapping[str, str] = {
    "pts": "pt",
    "comments": "comment",
    "reposts": "repost",
    "likes": "like",
    "replies": "reply",
    "citations": "citation",
}


@dataclass(frozen=True)
class TrendConfig:
    """The knobs of the formula (see the module docstring)."""

    weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    half_life_hours: float = DEFAULT_HALF_LIFE_HOURS
    velocity_weight: float = DEFAULT_VELOCITY_WEIGHT
    window: timedelta = DEFAULT_WINDOW
    scale_floor: float = DEFAULT_SCALE_FLOOR

    @classmethod
    def from_settings(cls, settings: Any) -> TrendConfig:
        """Read ``trend_*`` settings; any that a ``Settings`` version lacks keeps its default."""
        weights = dict(DEFAULT_WEIGHTS)
        weights.update(getattr(settings, "trend_weights", None) or {})
        return cls(
            weights=weights,
            half_life_hours=float(
                getattr(settings, "trend_half_life_hours", DEFAULT_HALF_LIFE_HOURS)
            ),
            velocity_weight=float(
                getattr(settings, "trend_velocity_weight", DEFAULT_VELOCITY_WEIGHT)
            ),
            window=timedelta(
                days=float(getattr(settings, "trend_window_days", DEFAULT_WINDOW.days))
            ),
            scale_floor=float(getattr(settings, "trend_scale_floor", DEFAULT_SCALE_FLOOR)),
        )


@dataclass(frozen=True)
class TrendingPaper:
    """One paper of the global trending list."""

    arxiv_id: str
    title: str
    authors: tuple[str, ...]
    primary_category: str
    score: float
    line: str
    counts: dict[str, float]
    """Unweighted totals by ``"source.metric"`` (e.g. ``"hackernews.points"``)."""


@dataclass(frozen=True)
class TrendTable:
    """Every paper of the window, scored at once; rows follow ``paper_ids``."""

    paper_ids: tuple[str, ...]
    sources: tuple[str, ...]
    metrics: tuple[str, ...]
    score: np.ndarray
    """(papers,) trend in [0, 1]."""
    engagement: np.ndarray
    """(papers, sources) reach-weighted totals ``E_s(p, now)``."""
    growth: np.ndarray
    """(papers, sources) ``max(E_s(p, now) − E_s(p, now − 24 h), 0)``."""
    scale: np.ndarray
    """(sources,) ``P_s``."""
    raw: np.ndarray
    """(papers, sources, metrics) unweighted totals of the latest values."""
    daily: np.ndarray
    """(papers, SPARK_DAYS) growth of total reach-weighted engagement per day, oldest first;
    NaN for papers whose sparkline was not computed (see ``table``'s ``lines_for``)."""
    row: dict[str, int] = field(default_factory=dict)

    @classmethod
    def empty(cls) -> TrendTable:
        """No snapshots in the window."""
        zeros = np.zeros(0)
        return cls((), (), (), zeros, zeros.reshape(0, 0), zeros.reshape(0, 0), zeros,
                   zeros.reshape(0, 0, 0), zeros.reshape(0, SPARK_DAYS))  # fmt: skip

    def scores(self, arxiv_ids: Iterable[str]) -> dict[str, float]:
        """Trend of each id (0.0 for papers nobody talked about)."""
        return {
            arxiv_id: float(self.score[row]) if (row := self.row.get(arxiv_id)) is not None else 0.0
            for arxiv_id in arxiv_ids
        }

    def counts(self, arxiv_id: str) -> dict[str, float]:
        """Unweighted totals of one paper by ``"source.metric"``, zeros left out."""
        row = self.row.get(arxiv_id)
        if row is None:
            return {}
        return {
            f"{source}.{metric}": float(self.raw[row, s, m])
            for s, source in enumerate(self.sources)
            for m, metric in enumerate(self.metrics)
            if self.raw[row, s, m] > 0
        }

    def line(self, arxiv_id: str) -> str:
        """The paper's trend line, or "" when nobody talked about it."""
        row = self.row.get(arxiv_id)
        if row is None:
            return ""
        if np.isnan(self.daily[row]).any():
            raise ValueError(f"no sparkline was computed for {arxiv_id}: pass it in lines_for")
        return format_line(self.counts(arxiv_id), self.daily[row], float(self.score[row]))


def compute(
    frame: SnapshotFrame,
    now: datetime,
    ages_hours: np.ndarray,
    config: TrendConfig | None = None,
    *,
    sparkline: bool = True,
) -> TrendTable:
    """Score every paper of ``frame``; ``ages_hours[i]`` is the age of ``frame.paper_ids[i]``.

    ``frame`` may hold every snapshot, or only each post's newest one at the moments that are
    evaluated (``evaluated_moments``): the result is the same. Without ``sparkline`` only now
    and 24 h ago are evaluated, and ``daily`` is NaN.

    Pure numpy, no sort and no loop over papers: each row is the latest value of its series
    from its own time until the series' next row, so only the few moments that matter (now,
    24 h ago, the sparkline's day boundaries) are evaluated: ``maximum.at`` finds each
    series' newest row before each moment, and two ``bincount`` calls over a difference
    array sum those rows per paper, source and moment.
    """
    config = config or TrendConfig()
    n_papers, n_sources, n_metrics = len(frame.paper_ids), len(frame.sources), len(frame.metrics)
    if not len(frame):
        return TrendTable.empty()
    # Every point in time the formula needs: the sparkline's day boundaries, 24 h ago, now.
    # Each is rounded to seconds once, from the exact datetime, as the snapshot times are: a
    # snapshot taken at a moment compares equal to it.
    moments = np.unique([moment.timestamp() for moment in evaluated_moments(now, sparkline)])
    at_now = len(moments) - 1
    at_before = int(np.searchsorted(moments, (now - VELOCITY_SPAN).timestamp()))
    days = [(now - timedelta(days=d)).timestamp() for d in range(SPARK_DAYS, -1, -1)]
    at_days = np.searchsorted(moments, days)

    # Bucket b of a row = how many moments precede it: it is a candidate for "latest value"
    # at moments b, b+1, … For each (series, bucket) only the newest row matters, and it
    # counts until the next bucket in which its series has a row. Found with two unbuffered
    # maximum.at passes, no sort; n_moments is the bucket of rows after ``now``.
    n_moments = len(moments)
    width = n_moments + 1
    n_groups = (int(frame.post.max()) + 1) * width
    # Half the memory traffic with 32-bit group numbers whenever they fit (they nearly always do).
    group: npt.NDArray[np.signedinteger[Any]] = (
        frame.post.astype(np.int32) * np.int32(width) if n_groups < 2**31 else frame.post * width
    )
    for moment in moments:  # a few comparisons beat a binary search per row
        group += frame.observed > moment
    newest = np.full(n_groups, -np.inf)
    np.maximum.at(newest, group, frame.observed)
    candidates = np.flatnonzero(frame.observed == newest[group])
    del newest
    pick = np.full(n_groups, -1, dtype=np.int64)
    np.maximum.at(pick, group[candidates], candidates)  # same instant twice: the later row
    del group, candidates
    picked = pick.reshape(-1, width)
    present = picked >= 0
    # For every bucket, the next bucket to its right where the series has a row.
    position = np.where(present, np.arange(width), n_moments)
    suffix_min = np.minimum.accumulate(position[:, ::-1], axis=1)[:, ::-1]
    following = np.full_like(position, n_moments)
    following[:, :-1] = np.minimum(suffix_min[:, 1:], n_moments)
    live = present
    live[:, n_moments] = False
    rows = picked[live]
    first = np.broadcast_to(np.arange(width), picked.shape)[live]
    stop = following[live]
    del pick, picked, present, position, suffix_min, following, live

    value = np.maximum(frame.value[rows], 0.0)
    weighted = value * frame.weight[rows]
    cell = frame.paper[rows] * n_sources + frame.source[rows]
    # Add each row's value over its range of moments with a difference array: +v at its first
    # moment, −v after its last, then a running sum along the moments.
    steps = np.bincount(cell * width + first, weighted, minlength=n_papers * n_sources * width)
    steps -= np.bincount(cell * width + stop, weighted, minlength=n_papers * n_sources * width)
    over_time = np.cumsum(steps.reshape(n_papers, n_sources, width), axis=2)
    engagement = _settled(over_time[:, :, at_now], over_time[:, :, at_now])
    growth = _settled(engagement - over_time[:, :, at_before], engagement)
    current = stop == n_moments
    raw = np.bincount(
        cell[current] * n_metrics + frame.metric[rows[current]],
        value[current],
        minlength=n_papers * n_sources * n_metrics,
    ).reshape(n_papers, n_sources, n_metrics)

    level = np.log1p(engagement)
    scale = np.full(n_sources, math.log1p(config.scale_floor))
    for s in range(n_sources):  # a handful of sources, not papers
        active = level[:, s][level[:, s] > 0]
        if active.size:
            scale[s] = max(float(np.percentile(active, 90)), scale[s])
    scale[scale <= 0] = 1.0  # no floor and nothing posted: any positive scale gives zeros
    weights = np.array([config.weights.get(name, UNLISTED_WEIGHT) for name in frame.sources])
    decay = np.power(0.5, np.maximum(ages_hours, 0.0) / config.half_life_hours)
    per_source = decay[:, None] * level / scale + config.velocity_weight * np.log1p(growth) / scale
    score = 1.0 - np.exp(-(per_source @ weights))

    # Sparkline: total engagement at each day boundary, then its day-over-day growth.
    if sparkline:
        cumulative = over_time[:, :, at_days].sum(axis=1)
        daily = _settled(np.diff(cumulative, axis=1), cumulative[:, 1:])
    else:
        daily = np.full((n_papers, SPARK_DAYS), np.nan)

    return TrendTable(
        paper_ids=frame.paper_ids,
        sources=frame.sources,
        metrics=frame.metrics,
        score=score,
        engagement=engagement,
        growth=growth,
        scale=scale,
        raw=raw,
        daily=daily,
        row={arxiv_id: i for i, arxiv_id in enumerate(frame.paper_ids)},
    )


def _settled(amounts: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Clip at zero, and zero out rounding residue that running sums leave behind (a count
    that did not change must not show as a sliver of growth)."""
    return np.where(amounts > 1e-9 * (1.0 + np.abs(scale)), amounts, 0.0)


def evaluated_moments(now: datetime, sparkline: bool = True) -> list[datetime]:
    """The points in time the formula reads: now and 24 h ago, and with ``sparkline`` the
    day boundaries of the last ``SPARK_DAYS`` days."""
    moments = [now - VELOCITY_SPAN, now]
    if sparkline:
        moments += [now - timedelta(days=day) for day in range(1, SPARK_DAYS + 1)]
    return moments


def paper_ages(db: Database, frame: SnapshotFrame, since: datetime, now: datetime) -> np.ndarray:
    """Hours since each paper of ``frame`` was announced; for a paper not stored, since its
    first mention in ``[since, now]``."""
    born = frame.announced
    if born is None:
        known = announcements_us(db, since)
        born = np.array([known.get(i, np.nan) for i in frame.paper_ids], dtype=np.float64)
        born /= SECOND_US
    missing = np.flatnonzero(np.isnan(born))
    if missing.size:
        first = first_mentions_us(db, [frame.paper_ids[i] for i in missing], since, now)
        born = born.copy()
        born[missing] = [first[frame.paper_ids[i]] / SECOND_US for i in missing.tolist()]
    return np.asarray((now.timestamp() - born) / 3600.0)


def table(
    db: Database,
    now: datetime,
    config: TrendConfig | None = None,
    *,
    lines_for: Iterable[str] = (),
) -> TrendTable:
    """Score every paper mentioned in the window ending at ``now``; sparklines (and so trend
    lines) only for the papers in ``lines_for``."""
    config = config or TrendConfig()
    since = now - config.window
    frame = frame_as_of(db, since, evaluated_moments(now, sparkline=False))
    if not len(frame):
        return TrendTable.empty()
    ages = paper_ages(db, frame, since, now)
    scored = compute(frame, now, ages, config, sparkline=False)
    return with_lines(db, scored, lines_for, now, config)


def with_lines(
    db: Database,
    scored: TrendTable,
    arxiv_ids: Iterable[str],
    now: datetime,
    config: TrendConfig | None = None,
) -> TrendTable:
    """``scored`` with the sparklines of ``arxiv_ids`` (those it scored) filled in."""
    config = config or TrendConfig()
    wanted = [arxiv_id for arxiv_id in dict.fromkeys(arxiv_ids) if arxiv_id in scored.row]
    wanted = [arxiv_id for arxiv_id in wanted if np.isnan(scored.daily[scored.row[arxiv_id]]).any()]
    if not wanted:
        return scored
    frame = frame_as_of(db, now - config.window, evaluated_moments(now), arxiv_ids=wanted)
    # A sparkline depends on the paper's own snapshots only (not on ages or other papers).
    detail = compute(frame, now, np.zeros(len(frame.paper_ids)), config)
    daily = scored.daily.copy()
    daily[[scored.row[arxiv_id] for arxiv_id in detail.paper_ids]] = detail.daily
    return dataclasses.replace(scored, daily=daily)


def trend_scores(
    db: Database,
    arxiv_ids: Iterable[str],
    now: datetime,
    weights: Mapping[str, float] | None = None,
    half_life_hours: float = DEFAULT_HALF_LIFE_HOURS,
    *,
    config: TrendConfig | None = None,
) -> dict[str, float]:
    """Trend in [0, 1] of each id (0.0 when nobody talked about it); see the module docstring."""
    if config is None:
        config = TrendConfig(
            weights={**DEFAULT_WEIGHTS, **(weights or {})}, half_life_hours=half_life_hours
        )
    return table(db, now, config).scores(arxiv_ids)


def trend_lines(
    db: Database, arxiv_ids: Iterable[str], now: datetime, *, config: TrendConfig | None = None
) -> dict[str, str]:
    """The trend line of each id that anyone talked about (others are left out)."""
    ids = list(arxiv_ids)
    scored = table(db, now, config, lines_for=ids)
    lines = {arxiv_id: scored.line(arxiv_id) for arxiv_id in ids}
    return {arxiv_id: line for arxiv_id, line in lines.items() if line}


def scores_and_lines(
    db: Database, arxiv_ids: Iterable[str], now: datetime, *, config: TrendConfig | None = None
) -> tuple[dict[str, float], dict[str, str]]:
    """Scores and lines from one computation: the scheduler's ``TrendProvider``."""
    ids = list(arxiv_ids)
    scored = table(db, now, config, lines_for=ids)
    lines = {arxiv_id: scored.line(arxiv_id) for arxiv_id in ids}
    return scored.scores(ids), {arxiv_id: line for arxiv_id, line in lines.items() if line}


def provider_for(settings: Any) -> TrendProvider:
    """The trend provider the service ranks digests with: :func:`scores_and_lines` configured
    by ``settings``' ``trend_*`` values."""
    return functools.partial(scores_and_lines, config=TrendConfig.from_settings(settings))


def trending(
    db: Database,
    now: datetime,
    *,
    category: str | None = None,
    since: timedelta = timedelta(days=3),
    limit: int = 10,
    config: TrendConfig | None = None,
) -> list[TrendingPaper]:
    """The most talked-about stored papers announced since ``now - since``, best first.

    ``category`` keeps papers listed in that arXiv category (primary or cross-list).
    """
    config = config or TrendConfig()
    scored = table(db, now, config)
    if not scored.paper_ids or limit <= 0:
        return []
    earliest = now - since
    ranked = np.argsort(-scored.score, kind="stable")
    chosen: list[Paper] = []
    batch = max(limit * 4, 50)
    for start in range(0, len(ranked), batch):
        ids = [scored.paper_ids[i] for i in ranked[start : start + batch] if scored.score[i] > 0]
        stored = paper_store.get_papers(db, ids)
        for arxiv_id in ids:
            paper = stored.get(arxiv_id)
            if paper is None or paper.withdrawn:
                continue
            if (paper.announced or paper.published) < earliest:
                continue
            if category and category not in paper.categories:
                continue
            chosen.append(paper)
            if len(chosen) == limit:
                break
        if len(chosen) == limit:
            break
    scored = with_lines(db, scored, [paper.arxiv_id for paper in chosen], now, config)
    return [
        TrendingPaper(
            arxiv_id=paper.arxiv_id,
            title=paper.title,
            authors=tuple(paper.authors),
            primary_category=paper.primary_category,
            score=float(scored.score[scored.row[paper.arxiv_id]]),
            line=scored.line(paper.arxiv_id),
            counts=scored.counts(paper.arxiv_id),
        )
        for paper in chosen
    ]


def sparkline(values: Sequence[float] | np.ndarray) -> str:
    """Bars for ``values`` scaled to their maximum: zero is ▁, anything positive at least ▂."""
    numbers = np.maximum(np.asarray(values, dtype=np.float64), 0.0)
    top = float(numbers.max()) if numbers.size else 0.0
    if top <= 0:
        return ""
    levels = np.where(numbers > 0, 1 + np.rint(numbers / top * (len(SPARK_CHARS) - 2)), 0)
    return "".join(SPARK_CHARS[int(level)] for level in levels)


def format_count(value: float) -> str:
    """312 → "312", 1520 → "1.5k", 2_300_000 → "2.3M"."""
    if value >= 1_000_000:
        return f"{value / 1_000_000:.1f}M".replace(".0M", "M")
    if value >= 10_000:
        return f"{value / 1000:.0f}k"
    if value >= 1000:
        return f"{value / 1000:.1f}k".replace(".0k", "k")
    return f"{value:.0f}"


def format_line(
    counts: Mapping[str, float], daily: Sequence[float] | np.ndarray, score: float
) -> str:
    """The trend line from unweighted totals, e.g. "🔥 HN 312 pts · Reddit 88 · HF 88 ▲ ▁▂▅█"."""
    sources = list(dict.fromkeys(key.split(".", 1)[0] for key in counts))
    ordered = [s for s in SOURCE_ORDER if s in sources] + [
        s for s in sources if s not in SOURCE_LABELS
    ]
    parts = []
    for source in ordered:
        metrics = HEADLINE_METRICS.get(source) or tuple(
            (key.split(".", 1)[1], key.split(".", 1)[1])
            for key in counts
            if key.startswith(source + ".")
        )
        for metric, unit in metrics:
            total = counts.get(f"{source}.{metric}", 0.0)
            if total > 0:
                label = SOURCE_LABELS.get(source, source)
                shown = format_count(total)
                unit = SINGULAR_UNITS.get(unit, unit) if shown == "1" else unit
                parts.append(f"{label} {shown}{' ' + unit if unit else ''}")
                break
    if not parts:
        return ""
    spark = sparkline(daily)
    prefix = "🔥 " if score >= HOT else ""
    return prefix + " · ".join(parts) + (f" {spark}" if spark else "")
