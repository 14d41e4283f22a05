"""Digests: pick each subscriber's papers and write them, with their deliveries, to the outbox.

A digest only ever holds papers from the freshness window that the subscriber has never been
given; the deliveries are recorded in the same transaction as the outbox message, so a paper
is handed to a subscriber at most once, across restarts and concurrent builders.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from typing import Any

from bot.ranking import Candidate, PaperIndex, ProfileQuery, Ranked, score_all
from storage import deliveries, papers, subscribers
from storage.db import Database
from storage.deliveries import DigestEntry, RecordedDigest
from storage.models import Paper, Subscriber

AUTHORS_SHOWN = 3


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


def candidates(db: Database, now: datetime, freshness_days: int) -> list[Paper]:
    """Papers inside the freshness window."""
    return papers.recent_papers(db, now - timedelta(days=freshness_days))


def to_candidate(paper: Paper) -> Candidate:
    """The ranking view of a stored paper."""
    return Candidate(
        arxiv_id=paper.arxiv_id,
        title=paper.title,
        abstract=paper.abstract,
        authors=tuple(paper.authors),
        categories=tuple(paper.categories),
        announced=paper.announced or paper.published,
    )


def queries_for(db: Database, subs: Sequence[Subscriber]) -> list[ProfileQuery]:
    """Ranking queries (profile + never-repeat exclusions) for many subscribers at once."""
    ids = [s.id for s in subs if s.id is not None]
    profiles = subscribers.profiles(db, ids)
    delivered = deliveries.delivered_ids(db, ids)
    queries = []
    for sub in subs:
        assert sub.id is not None
        profile = profiles[sub.id]
        queries.append(
            ProfileQuery(
                subscriber_id=sub.id,
                keywords=tuple(profile.keywords),
                authors=tuple(profile.authors),
                categories=tuple(profile.categories),
                muted=tuple(profile.muted),
                categories_filter=sub.categories_mode == "filter",
                exclude=frozenset(delivered[sub.id]),
                trend_weight=sub.trend_weight,
            )
        )
    return queries


def rank_for(
    db: Database,
    subs: Sequence[Subscriber],
    now: datetime,
    *,
    freshness_days: int = 3,
    title_weight: int = 2,
    trend: Mapping[str, float] | None = None,
    trend_lines: Mapping[str, str] | None = None,
) -> dict[int, list[DigestItem]]:
    """Digest items for every subscriber in one ranking pass (each up to their digest size)."""
    fresh = candidates(db, now, freshness_days)
    index = PaperIndex.build([to_candidate(p) for p in fresh], title_weight=title_weight)
    by_id = {p.arxiv_id: p for p in fresh}
    size = max((s.digest_size for s in subs), default=0)
    ranked = score_all(index, queries_for(db, subs), trend, k=size)
    result: dict[int, list[DigestItem]] = {}
    for sub in subs:
        assert sub.id is not None
        chosen = ranked.get(sub.id, [])[: sub.digest_size]
        result[sub.id] = [_item(by_id[r.arxiv_id], r, trend_lines or {}) for r in chosen]
    return result


def _item(paper: Paper, ranked: Ranked, trend_lines: Mapping[str, str]) -> DigestItem:
    return DigestItem(
        arxiv_id=paper.arxiv_id,
        title=paper.title,
        authors=tuple(paper.authors),
        primary_category=paper.primary_category,
        url=f"https://arxiv.org/abs/{paper.arxiv_id}",
        why=ranked.why,
        trend_line=trend_lines.get(paper.arxiv_id, ""),
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
) -> list[DigestOutcome]:
    """Rank for all ``subs`` at once, then record each digest and its outbox message."""
    planned = rank_for(
        db,
        subs,
        now,
        freshness_days=freshness_days,
        title_weight=title_weight,
        trend=trend,
        trend_lines=trend_lines,
    )
    outcomes = []
    for sub in subs:
        assert sub.id is not None
        items = planned[sub.id]
        if not items:
            outcomes.append(DigestOutcome(sub.id, (), None))
            continue
        entries = [
            DigestEntry(item.arxiv_id, rank, item.score, item.why)
            for rank, item in enumerate(items, start=1)
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
