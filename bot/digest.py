"""Digests: pick each subscriber's papers and write them, with their deliveries, to the outbox.

A digest only ever holds papers from the freshness window that the subscriber has never been
given (nor rated: they have seen those); the deliveries are recorded in the same transaction
as the outbox message, so a paper is handed to a subscriber at most once, across restarts and
concurrent builders.

Ranking input is loaded for all subscribers at once: explicit profiles, delivered ids,
👍/👎/🔖 ratings with the rated papers' text (for Rocchio and "similar to …"), and stored
learned models (trained in batch by ``bot.learning``; never at digest time).
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from functools import cached_property
from typing import Any

from bot.circle import circle_counts, circle_line
from bot.learning import as_linear_model
from bot.ranking import (
    DEFAULT_WEIGHTS,
    FEATURE_SPACE,
    Candidate,
    PaperIndex,
    ProfileQuery,
    Ranked,
    RankResult,
    Weights,
    rank,
)
from bot.warm import need_load
from storage import deliveries, feedback, learned, papers, subscribers
from storage.db import Database
from storage.deliveries import DigestEntry, RecordedDigest
from storage.errors import StorageError
from storage.models import Paper, Subscriber

log = logging.getLogger(__name__)

AUTHORS_SHOWN = 3
_ID_CHUNK = 900
_CIRCLE_NOTE = "you follow posted this"


@dataclass(frozen=True)
class DigestItem:
    """One paper as a digest shows it, on any platform."""

    arxiv_id: str
    title: str
    authors: tuple[str, ...]
    primary_category: str
    url: str
    why: str
    trend_line: str = ""
    score: float = 0.0

    @property
    def short_authors(self) -> str:
        """Authors, shortened to the first three and "et al."."""
        if len(self.authors) <= AUTHORS_SHOWN:
            return ", ".join(self.authors)
        return ", ".join(self.authors[:AUTHORS_SHOWN]) + " et al."


@dataclass(frozen=True)
class DigestOutcome:
    """What building one subscriber's digest produced."""

    subscriber_id: int
    items: tuple[DigestItem, ...]
    recorded: RecordedDigest | None
    """None when there was nothing new to send."""


@dataclass
class Plan:
    """One ranking pass over many subscribers: the result plus what it was computed from."""

    result: RankResult
    papers: dict[str, Paper]
    subscribers: list[Subscriber]

    def ranked(self, subscriber_id: int) -> list[Ranked]:
        """A subscriber's ranked papers with their score parts, best first."""
        size = self.sizes[subscriber_id]
        return self.result.items(self.result.row_of(subscriber_id))[:size]

    @cached_property
    def sizes(self) -> dict[int, int]:
        """Digest size of each planned subscriber."""
        return {s.id: s.digest_size for s in self.subscribers if s.id is not None}


@dataclass
class FreshPapers:
    """One database's last loaded candidates, the fingerprint they match, their indexes."""

    fingerprint: papers.Fingerprint
    papers: tuple[Paper, ...]
    indexes: dict[int, PaperIndex] = field(default_factory=dict)
    """By title weight."""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @cached_property
    def by_id(self) -> dict[str, Paper]:
        """The papers by arXiv id."""
        return {p.arxiv_id: p for p in self.papers}

    def index(self, title_weight: int) -> PaperIndex:
        """The papers' index, built by the first caller; the others wait for it, not build it."""
        found = self.indexes.get(title_weight)
        if found is not None:
            return found
        need_load("the ranking index of the fresh papers")
        with self.lock:
            found = self.indexes.get(title_weight)
            if found is None:
                found = self.indexes[title_weight] = index_for(self.papers, title_weight)
            return found


_FRESH_LOCK = threading.Lock()
_LOAD_LOCK = threading.Lock()
_FRESH: weakref.WeakKeyDictionary[Database, FreshPapers] = weakref.WeakKeyDictionary()


def _cached_fresh(db: Database, fingerprint: papers.Fingerprint) -> FreshPapers | None:
    with _FRESH_LOCK:
        cached = _FRESH.get(db)
    return cached if cached is not None and cached.fingerprint == fingerprint else None


def fresh_papers(db: Database, now: datetime, freshness_days: int) -> FreshPapers:
    """The candidates of ``db`` at ``now``, loaded again only when the window's rows changed.

    Every ``/digest`` and every scheduler tick asks for the same fresh papers until the next
    announcement; reading their fingerprint costs a small part of loading them (their text and
    JSON columns). The fingerprint is read again after a load, and the load is kept only when
    nothing was written in between, so a kept entry always matches its fingerprint. One caller
    loads at a time: the ones arriving meanwhile (a burst of ``/digest`` after a restart or an
    announcement) wait and take its result instead of loading and indexing the same papers
    again. The papers are shared between callers: nothing may change them. Hand them to
    :func:`build_and_record` along with trend scores computed for them, so the window is read
    once for both.
    """
    since = now - timedelta(days=freshness_days)
    fingerprint = papers.recent_fingerprint(db, since)
    cached = _cached_fresh(db, fingerprint)
    if cached is not None:
        return cached
    need_load("the fresh papers")
    with _LOAD_LOCK:
        cached = _cached_fresh(db, fingerprint)
        if cached is not None:
            return cached
        loaded = FreshPapers(fingerprint, tuple(papers.recent_papers(db, since)))
        if papers.recent_fingerprint(db, since) == fingerprint:
            with _FRESH_LOCK:
                _FRESH[db] = loaded
        return loaded


def candidates(db: Database, now: datetime, freshness_days: int) -> list[Paper]:
    """Papers inside the freshness window (shared with other callers: read them only)."""
    return list(fresh_papers(db, now, freshness_days).papers)


def to_candidate(paper: Paper) -> Candidate:
    """The ranking view of a stored paper."""
    return Candidate(
        arxiv_id=paper.arxiv_id,
        title=paper.title,
        abstract=paper.abstract,
        authors=tuple(paper.authors),
        categories=tuple(paper.categories),
        announced=paper.announced or paper.published,
        version=paper.version,
    )


def _load_papers(db: Database, ids: Sequence[str]) -> dict[str, Paper]:
    found: dict[str, Paper] = {}
    for start in range(0, len(ids), _ID_CHUNK):
        found.update(papers.get_papers(db, list(ids[start : start + _ID_CHUNK])))
    return found


def queries_for(
    db: Database,
    subs: Sequence[Subscriber],
    index: PaperIndex | None = None,
) -> tuple[list[ProfileQuery], dict[str, Paper]]:
    """Ranking queries for many subscribers at once, and the rated papers they refer to.

    Exclusions are cut down to ids the ``index`` knows (delivered lists only grow).
    """
    ids = [s.id for s in subs if s.id is not None]
    profiles = subscribers.profiles(db, ids)
    delivered = deliveries.delivered_ids(db, ids)
    ratings = feedback.ratings(db, ids)
    models = learned.load_models(db, ids, space=FEATURE_SPACE)
    rated = _load_papers(db, sorted({x for r in ratings.values() for x in r}))
    known = index.position if index is not None else None
    queries = []
    for sub in subs:
        if sub.id is None:
            continue
        profile = profiles[sub.id]
        given = ratings[sub.id]
        exclude = delivered[sub.id] if known is None else delivered[sub.id] & known.keys()
        stored = models.get(sub.id)
        queries.append(
            ProfileQuery(
                subscriber_id=sub.id,
                keywords=tuple(profile.keywords),
                authors=tuple(profile.authors),
                categories=tuple(profile.categories),
                muted=tuple(profile.muted),
                categories_filter=sub.categories_mode == "filter",
                exclude=frozenset(exclude),
                trend_weight=sub.trend_weight,
                liked=tuple(x for x, v in given.items() if v > 0),
                disliked=tuple(x for x, v in given.items() if v < 0),
                model=as_linear_model(stored) if stored is not None else None,
            )
        )
    return queries, rated


_INDEX_LOCK = threading.Lock()
_LAST_INDEX: tuple[tuple[object, ...], PaperIndex] | None = None


def index_for(fresh: Sequence[Paper], title_weight: int) -> PaperIndex:
    """The candidates' index, rebuilt only when the candidate set changed.

    Every ``/digest`` and every tick ranks against the same fresh papers until the next
    announcement, and building the index (tokenising every abstract) is most of a digest's
    CPU; the index is never modified after it is built, so one copy serves every caller.
    """
    global _LAST_INDEX
    key = (title_weight, *((p.arxiv_id, p.version, p.announced) for p in fresh))
    with _INDEX_LOCK:
        if _LAST_INDEX is not None and _LAST_INDEX[0] == key:
            return _LAST_INDEX[1]
    index = PaperIndex.build([to_candidate(p) for p in fresh], title_weight=title_weight)
    with _INDEX_LOCK:
        _LAST_INDEX = (key, index)
    return index


def plan(
    db: Database,
    subs: Sequence[Subscriber],
    now: datetime,
    *,
    freshness_days: int = 3,
    title_weight: int = 2,
    trend: Mapping[str, float] | None = None,
    weights: Weights = DEFAULT_WEIGHTS,
    fresh: FreshPapers | None = None,
) -> Plan:
    """Rank the fresh papers (``fresh``, else read now) for every subscriber in ``subs``."""
    loaded = fresh if fresh is not None else fresh_papers(db, now, freshness_days)
    index = loaded.index(title_weight)
    queries, rated = queries_for(db, subs, index)
    rated_set = index.rated_set(to_candidate(p) for p in rated.values())
    size = max((s.digest_size for s in subs), default=0)
    result = rank(index, queries, trend, rated=rated_set, k=size, weights=weights)
    return Plan(result, dict(loaded.by_id), [s for s in subs if s.id is not None])


def rank_for(
    db: Database,
    subs: Sequence[Subscriber],
    now: datetime,
    *,
    freshness_days: int = 3,
    title_weight: int = 2,
    trend: Mapping[str, float] | None = None,
    trend_lines: Mapping[str, str] | None = None,
    weights: Weights = DEFAULT_WEIGHTS,
    circle: bool = True,
    fresh: FreshPapers | None = None,
) -> dict[int, list[DigestItem]]:
    """Digest items for every subscriber in one ranking pass (each up to their digest size).

    A subscriber's ``min_score`` withholds the digest when no paper reaches it. With
    ``circle``, subscribers with a linked Bluesky account get "N people you follow posted
    this" on the papers their circle shared.
    """
    planned = plan(
        db, subs, now, freshness_days=freshness_days, title_weight=title_weight, trend=trend,
        weights=weights, fresh=fresh,
    )  # fmt: skip
    lines = trend_lines or {}
    result: dict[int, list[DigestItem]] = {}
    for sub in planned.subscribers:
        assert sub.id is not None
        chosen = planned.ranked(sub.id)
        if sub.min_score is not None and not any(r.score >= sub.min_score for r in chosen):
            chosen = []
        notes = _circle_notes(db, sub, [r.arxiv_id for r in chosen]) if circle and chosen else {}
        result[sub.id] = [
            _item(
                planned.papers[r.arxiv_id],
                r,
                _line(lines.get(r.arxiv_id, ""), notes.get(r.arxiv_id)),
            )
            for r in chosen
        ]
    return result


def _circle_notes(db: Database, sub: Subscriber, ids: list[str]) -> dict[str, str]:
    """Circle notes for one subscriber's chosen papers; a failure only loses the notes."""
    if not sub.bluesky_handle or sub.id is None:
        return {}
    try:
        counts = circle_counts(db, sub.id, ids, handle=sub.bluesky_handle)
    except StorageError:
        log.exception("circle signals unavailable", extra={"subscriber_id": sub.id})
        return {}
    return {arxiv_id: circle_line(count) for arxiv_id, count in counts.items() if count > 0}


def _line(trend_line: str, circle_note: str | None) -> str:
    if not circle_note or _CIRCLE_NOTE in trend_line:
        return trend_line
    return f"{trend_line} · 👥 {circle_note}" if trend_line else f"👥 {circle_note}"


def _item(paper: Paper, ranked: Ranked, trend_line: str) -> DigestItem:
    return DigestItem(
        arxiv_id=paper.arxiv_id,
        title=paper.title,
        authors=tuple(paper.authors),
        primary_category=paper.primary_category,
        url=f"https://arxiv.org/abs/{paper.arxiv_id}",
        why=ranked.why,
        trend_line=trend_line,
        score=round(ranked.score, 4),
    )


def payload(items: Sequence[DigestItem], *, heading: str) -> dict[str, Any]:
    """The platform-neutral JSON that the outbox stores and every chat adapter renders."""
    return {"kind": "digest", "heading": heading, "items": [asdict(item) for item in items]}


def items_from_payload(data: Mapping[str, Any]) -> list[DigestItem]:
    """Digest items back from an outbox payload."""
    return [
        DigestItem(**{**item, "authors": tuple(item.get("authors", ()))})
        for item in data.get("items", [])
    ]


def build_and_record(
    db: Database,
    subs: Sequence[Subscriber],
    now: datetime,
    *,
    scheduled_for: Mapping[int, date] | None = None,
    freshness_days: int = 3,
    title_weight: int = 2,
    trend: Mapping[str, float] | None = None,
    trend_lines: Mapping[str, str] | None = None,
    weights: Weights = DEFAULT_WEIGHTS,
    circle: bool = True,
    fresh: FreshPapers | None = None,
) -> list[DigestOutcome]:
    """Rank for all ``subs`` at once, then record each digest and its outbox message.

    ``fresh`` is the freshness window as :func:`fresh_papers` read it (read again if None).
    """
    planned = rank_for(
        db,
        subs,
        now,
        freshness_days=freshness_days,
        title_weight=title_weight,
        trend=trend,
        trend_lines=trend_lines,
        weights=weights,
        circle=circle,
        fresh=fresh,
    )
    outcomes = []
    for sub in subs:
        assert sub.id is not None
        items = planned[sub.id]
        if not items:
            outcomes.append(DigestOutcome(sub.id, (), None))
            continue
        entries = [
            DigestEntry(item.arxiv_id, position, item.score, item.why)
            for position, item in enumerate(items, start=1)
        ]
        heading = f"Your papers for {now.date().isoformat()}"
        recorded = deliveries.record_digest(
            db,
            sub.id,
            entries,
            scheduled_for=(scheduled_for or {}).get(sub.id),
            payload=payload(items, heading=heading),
        )
        kept = {entry.arxiv_id for entry in recorded.entries}
        outcomes.append(
            DigestOutcome(sub.id, tuple(i for i in items if i.arxiv_id in kept), recorded)
        )
    return outcomes
