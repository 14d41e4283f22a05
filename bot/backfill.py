"""Backfill: harvest the arXiv archive through OAI-PMH, page by page, resumable after a kill.

Every page is stored (``upsert_papers``, idempotent) *before* its resumption token is saved in
``source_cursor`` (key ``arxiv:oai:<set>``), so a harvest killed at any moment resumes from the
last stored page and at worst fetches one page twice, which changes nothing. Politeness comes
from the shared HTTP client (one request per 3 s to arXiv hosts, ``503 Retry-After`` honoured);
when arXiv asks for a longer pause than the client will block for, it surfaces as
``RateLimited`` and the harvest sleeps that long (through the injected ``sleep``) and goes on.
Resumption tokens expire: on ``badResumptionToken`` the harvest restarts from ``from_date``
(with a log line), which is safe for the same reason a repeated page is.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import httpx

from feeds.arxiv import OaiError, fetch_oai_page
from feeds.http import Clock, FetchError, RateLimited, Sleep
from feeds.records import Paper
from storage import cursors
from storage.db import Database
from storage.papers import UpsertResult, upsert_papers
from storage.types import utcnow

log = logging.getLogger(__name__)

MAX_RESTARTS = 3
"""Expired-token restarts in one run before giving up (a token that keeps expiring is a bug)."""
MAX_RATE_LIMIT_WAITS = 10
"""Consecutive long ``Retry-After`` pauses before the harvest stops (and can be resumed)."""

_PHYSICS_ARCHIVES = frozenset(
    "astro-ph cond-mat gr-qc hep-ex hep-lat hep-ph hep-th math-ph nlin nucl-ex nucl-th "
    "physics quant-ph".split()
)
_CATEGORY = re.compile(r"^(?P<archive>[a-z][a-z-]*)(?:\.(?P<subject>[A-Za-z][A-Za-z-]*))?$")


def set_spec_for(category: str) -> str:
    """The OAI-PMH set of an arXiv category or archive.

    ``cs`` → ``cs``, ``cs.LG`` → ``cs:cs:LG``, ``hep-th`` → ``physics:hep-th``,
    ``cond-mat.stat-mech`` → ``physics:cond-mat:stat-mech``; a value with ``:`` is taken as a
    set spec already. ``ValueError`` for anything else.
    """
    value = category.strip()
    if ":" in value:
        if not re.fullmatch(r"[A-Za-z-]+(?::[A-Za-z-]+){1,2}", value):
            raise ValueError(f"{category!r} is not an OAI-PMH set spec")
        return value
    match = _CATEGORY.match(value)
    if match is None:
        raise ValueError(f"{category!r} is not an arXiv category (e.g. cs, cs.LG, hep-th)")
    archive, subject = match.group("archive"), match.group("subject")
    group = "physics" if archive in _PHYSICS_ARCHIVES else archive
    if subject:
        return f"{group}:{archive}:{subject}"
    return archive if group == archive else f"{group}:{archive}"


def cursor_key(set_spec: str | None) -> str:
    """The ``source_cursor`` key of one harvest: ``arxiv:oai:cs:cs:LG``, ``arxiv:oai:all``."""
    return f"arxiv:oai:{set_spec or 'all'}"


@dataclass(frozen=True)
class BackfillProgress:
    """Where a running harvest is, for a progress bar."""

    pages: int
    records: int
    """Records received in this run."""
    harvested: int
    """Records received by this harvest so far, across resumed runs."""
    stored: UpsertResult
    elapsed: float
    """Seconds since this run started."""
    total: int | None
    """The server's ``completeListSize``, when it sends one (arXiv stopped in 2025)."""
    fraction: float | None
    """Share of the harvest done: from ``total`` when known, else estimated from dates."""
    waiting: float = 0.0
    """Seconds the harvest is about to pause because arXiv asked it to."""

    @property
    def rate(self) -> float:
        """Records per second in this run."""
        return self.records / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left, when the fraction done is known well enough to extrapolate."""
        if self.fraction is None or self.fraction < 0.01 or self.elapsed <= 0:
            return None
        return max(0.0, self.elapsed * (1 - self.fraction) / self.fraction)


Progress = Callable[[BackfillProgress], None]


@dataclass
class BackfillReport:
    """What one backfill run did."""

    set_spec: str | None
    pages: int = 0
    records: int = 0
    skipped: int = 0
    """Records outside ``until`` (only ever when it is given)."""
    deleted: int = 0
    """Records arXiv marks as deleted (nothing to store)."""
    stored: UpsertResult = field(default_factory=UpsertResult)
    resumed: bool = False
    restarts: int = 0
    rate_limit_waits: int = 0
    complete: bool = False
    elapsed: float = 0.0


@dataclass
class _State:
    """What is saved next to the resumption token so a later run can continue."""

    from_date: str
    until: str | None
    harvested: int = 0
    started_at: str = ""

    def matches(self, from_date: date, until: date | None) -> bool:
        return self.from_date == from_date.isoformat() and self.until == (
            until.isoformat() if until else None
        )

    def dump(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)

    @classmethod
    def load(cls, raw: str | None) -> _State | None:
        if not raw:
            return None
        try:
            data = json.loads(raw)
            return cls(
                from_date=str(data["from_date"]),
                until=data.get("until"),
                harvested=int(data.get("harvested", 0)),
                started_at=str(data.get("started_at", "")),
            )
        except (ValueError, KeyError, TypeError):
            return None


async def backfill(
    db: Database,
    client: httpx.AsyncClient,
    *,
    from_date: date,
    until: date | None = None,
    set_spec: str | None = None,
    progress: Progress | None = None,
    sleep: Sleep = asyncio.sleep,
    clock: Clock = time.monotonic,
    max_pages: int | None = None,
) -> BackfillReport:
    """Harvest every record changed since ``from_date`` (optionally only ``set_spec``).

    Resumes from the stored token when the last run of the same harvest (same set, dates)
    was interrupted. ``until`` keeps only papers whose latest version is from that day or
    earlier. ``max_pages`` stops after that many pages (the harvest stays resumable).
    Fetch errors other than expired tokens and long rate limits are recorded in the cursor
    and raised; running the same backfill again resumes where it stopped.
    """
    if until is not None and until < from_date:
        raise ValueError(f"--until {until} is before --from {from_date}")
    key = cursor_key(set_spec)
    report = BackfillReport(set_spec=set_spec)
    started = clock()
    stored_cursor = cursors.get(db, key)
    saved = _State.load(stored_cursor.cursor)
    token: str | None = None
    state = _State(from_date.isoformat(), until.isoformat() if until else None)
    state.started_at = utcnow().isoformat(timespec="seconds")
    if stored_cursor.resumption_token and saved is not None and saved.matches(from_date, until):
        token = stored_cursor.resumption_token
        state = saved
        report.resumed = True
        log.info(
            "backfill resuming: source=%s from=%s records_so_far=%d",
            key, from_date, state.harvested,
        )  # fmt: skip
    elif stored_cursor.resumption_token:
        log.info("backfill: source=%s had another harvest in progress; starting afresh", key)
    end = until or utcnow().date()
    waits = 0
    newest_seen: date | None = None
    while True:
        try:
            batch = await fetch_oai_page(
                client, from_date=from_date, until=until, set_spec=set_spec, resumption_token=token
            )
        except RateLimited as exc:
            waits += 1
            report.rate_limit_waits += 1
            if waits > MAX_RATE_LIMIT_WAITS:
                cursors.record_failure(db, key, str(exc))
                raise
            log.warning(
                "backfill rate limited: source=%s pause=%.0fs (arXiv asked)", key, exc.retry_after
            )
            if progress is not None:
                progress(_progress(report, state, started, clock, None, exc.retry_after))
            await sleep(exc.retry_after)
            continue
        except OaiError as exc:
            if exc.code != "badResumptionToken" or token is None:
                cursors.record_failure(db, key, str(exc))
                raise
            report.restarts += 1
            if report.restarts > MAX_RESTARTS:
                cursors.record_failure(db, key, str(exc))
                raise
            log.warning(
                "backfill: resumption token expired; restarting the harvest from %s "
                "(source=%s, records_so_far=%d)",
                from_date, key, state.harvested,
            )  # fmt: skip
            token = None
            state = _State(from_date.isoformat(), state.until, 0, state.started_at)
            continue
        except FetchError as exc:
            cursors.record_failure(db, key, str(exc))
            log.warning("backfill stopped: source=%s error=%s (run again to resume)", key, exc)
            raise
        waits = 0
        kept = _within(batch.papers, until)
        report.skipped += len(batch.papers) - len(kept)
        report.deleted += len(batch.deleted_ids)
        report.stored = report.stored + upsert_papers(db, kept)
        report.pages += 1
        report.records += len(batch.papers)
        state.harvested += len(batch.papers)
        token = batch.page.resumption_token
        # Saved only after the page is stored: a kill in between repeats one harmless page.
        cursors.record_success(
            db, key, resumption_token=token, cursor=state.dump(), keep_validators=True
        )
        for paper in batch.papers:
            day = paper.updated.date()
            newest_seen = day if newest_seen is None or day > newest_seen else newest_seen
        fraction = _fraction(batch.page.total, state.harvested, from_date, end, newest_seen)
        if progress is not None:
            progress(_progress(report, state, started, clock, fraction, 0.0, batch.page.total))
        if token is None:
            report.complete = True
            break
        if max_pages is not None and report.pages >= max_pages:
            break
    report.elapsed = clock() - started
    log.info(
        "backfill %s: source=%s pages=%d records=%d inserted=%d updated=%d skipped=%d "
        "deleted=%d restarts=%d waits=%d",
        "complete" if report.complete else "paused", key, report.pages, report.records,
        report.stored.inserted, report.stored.updated, report.skipped, report.deleted,
        report.restarts, report.rate_limit_waits,
    )  # fmt: skip
    return report


def _within(papers: tuple[Paper, ...], until: date | None) -> list[Paper]:
    if until is None:
        return list(papers)
    return [p for p in papers if p.updated.astimezone(UTC).date() <= until]


def _fraction(
    total: int | None, harvested: int, start: date, end: date, newest: date | None
) -> float | None:
    """Share done: exact with a list size; else how far the newest record date has come.

    arXiv lists records roughly in datestamp order, so the latest version date seen so far
    estimates the position in the date range (a guess, hence only for the ETA).
    """
    if total:
        return min(1.0, harvested / total)
    if newest is None:
        return None
    span = (end - start).days
    if span <= 0:
        return None
    return min(1.0, max(0.0, (newest - start).days / span))


def _progress(
    report: BackfillReport,
    state: _State,
    started: float,
    clock: Clock,
    fraction: float | None,
    waiting: float,
    total: int | None = None,
) -> BackfillProgress:
    return BackfillProgress(
        pages=report.pages,
        records=report.records,
        harvested=state.harvested,
        stored=report.stored,
        elapsed=clock() - started,
        total=total,
        fraction=fraction,
        waiting=waiting,
    )


def parse_day(text: str) -> date:
    """``2024-01-01`` → a date; ``ValueError`` with a hint otherwise."""
    try:
        return datetime.strptime(text.strip(), "%Y-%m-%d").date()
    except ValueError:
        raise ValueError(f"{text!r} is not a date: use YYYY-MM-DD, e.g. 2024-01-01") from None
