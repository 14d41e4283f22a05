"""When things happen: digests at each subscriber's local time, polls, training, pruning.

Subscriber schedules live in the subscribers table, not one APScheduler job each: a
once-a-minute tick asks "whose local digest time has come today, without a digest for that
local date yet?" and builds all of those digests in one ranking pass. The unique
(subscriber, local date) constraint on digests makes this exactly once per local day, across
DST changes, restarts and several replicas; a digest missed while the service was down is
built on the next tick unless it is staler than the configured limit.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot.digest import build_and_record, fresh_papers
from bot.trend_cache import TrendProvider
from storage import deliveries, subscribers
from storage.db import Database
from storage.deliveries import DigestAlreadyExists
from storage.models import Subscriber

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DueDigest:
    """A subscriber whose digest for ``local_date`` is due since ``due_at`` (UTC)."""

    subscriber: Subscriber
    local_date: date
    due_at: datetime


@dataclass
class TickReport:
    """What one digest tick did."""

    built: int = 0
    empty: int = 0
    stale: int = 0
    raced: int = 0
    papers: int = 0
    subscriber_ids: list[int] = field(default_factory=list)


def zone_of(name: str) -> ZoneInfo:
    """The subscriber's time zone; UTC for a name this system does not know."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def parse_hhmm(value: str) -> time:
    """``"08:30"`` → 08:30; falls back to 08:00 for a malformed stored value."""
    try:
        hours, minutes = (int(part) for part in value.split(":", 1))
        return time(hours, minutes)
    except ValueError:
        return time(8, 0)


def due_today(subscriber: Subscriber, now: datetime) -> tuple[date, datetime] | None:
    """(local date, due instant in UTC) when today's digest time has passed, else None.

    The due instant comes from the local wall-clock time, so a digest at 02:30 on a
    spring-forward day (a time that does not exist) is due once the clock has jumped past it,
    and on a fall-back day at the first 02:30; the one-digest-per-local-date rule stops the
    second.
    """
    zone = zone_of(subscriber.timezone)
    local_now = now.astimezone(zone)
    local_date = local_now.date()
    days = subscriber.digest_days or "0123456"
    if subscriber.weekly:
        days = days[:1]
    if str(local_date.weekday()) not in days:
        return None
    due_at = datetime.combine(local_date, parse_hhmm(subscriber.digest_time), tzinfo=zone)
    due_utc = due_at.astimezone(UTC)
    if now < due_utc:
        return None
    return local_date, due_utc


def find_due(
    db: Database, now: datetime, *, staleness: timedelta
) -> tuple[list[DueDigest], list[DueDigest]]:
    """Subscribers due now (no digest for their local date yet), and those too stale to send."""
    candidates = []
    for subscriber in subscribers.active(db):
        found = due_today(subscriber, now)
        if found is not None:
            candidates.append(DueDigest(subscriber, *found))
    if not candidates:
        return [], []
    built = deliveries.scheduled_digests(
        db, [(c.subscriber.id, c.local_date) for c in candidates if c.subscriber.id is not None]
    )
    due: list[DueDigest] = []
    stale: list[DueDigest] = []
    for candidate in candidates:
        if (candidate.subscriber.id, candidate.local_date) in built:
            continue
        (stale if now - candidate.due_at > staleness else due).append(candidate)
    return due, stale


def digest_tick(
    db: Database,
    now: datetime,
    *,
    staleness: timedelta = timedelta(hours=6),
    freshness_days: int = 3,
    title_weight: int = 2,
    trend_provider: TrendProvider | None = None,
) -> TickReport:
    """Build and enqueue every digest that is due; mark stale and empty ones as handled."""
    report = TickReport()
    due, stale = find_due(db, now, staleness=staleness)
    for item in stale:
        assert item.subscriber.id is not None
        log.warning(
            "skipping stale digest: subscriber=%s local_date=%s due_at=%s (over %s late)",
            item.subscriber.id, item.local_date, item.due_at.isoformat(), staleness,
        )  # fmt: skip
        if _record_empty(db, item):
            report.stale += 1
    groups: dict[int, list[DueDigest]] = defaultdict(list)
    for item in due:
        groups[7 if item.subscriber.weekly else freshness_days].append(item)
    for window, items in groups.items():
        _build_group(db, items, now, window, title_weight, trend_provider, report)
    return report


def _build_group(
    db: Database,
    items: list[DueDigest],
    now: datetime,
    freshness_days: int,
    title_weight: int,
    trend_provider: TrendProvider | None,
    report: TickReport,
) -> None:
    trend: Mapping[str, float] = {}
    lines: Mapping[str, str] = {}
    fresh = fresh_papers(db, now, freshness_days)
    if trend_provider is not None:
        ids = [p.arxiv_id for p in fresh.papers]
        try:
            trend, lines = trend_provider(db, ids, now)
        except Exception:
            log.exception("trend scores unavailable; ranking by relevance alone")
    try:
        outcomes = build_and_record(
            db,
            [item.subscriber for item in items],
            now,
            scheduled_for={
                item.subscriber.id: item.local_date for item in items if item.subscriber.id
            },
            freshness_days=freshness_days,
            title_weight=title_weight,
            trend=trend,
            trend_lines=lines,
            fresh=fresh,
        )
    except DigestAlreadyExists:
        # Another replica built some of these at the same moment: go one by one.
        if len(items) == 1:
            report.raced += 1
            return
        for item in items:
            _build_group(db, [item], now, freshness_days, title_weight, trend_provider, report)
        return
    by_id = {item.subscriber.id: item for item in items}
    for outcome in outcomes:
        if outcome.recorded is None:
            if _record_empty(db, by_id[outcome.subscriber_id]):
                report.empty += 1
            continue
        report.built += 1
        report.papers += len(outcome.items)
        report.subscriber_ids.append(outcome.subscriber_id)


def _record_empty(db: Database, item: DueDigest) -> bool:
    """Mark the local date as handled so the tick does not look at it again."""
    assert item.subscriber.id is not None
    try:
        deliveries.record_digest(db, item.subscriber.id, [], scheduled_for=item.local_date)
    except DigestAlreadyExists:
        return False
    return True


@dataclass(frozen=True)
class Jobs:
    """The callables the service schedules; each must catch and log its own errors."""

    digest_tick: Callable[[], object]
    poll_arxiv: Callable[[], object]
    poll_engagement_recent: Callable[[], object]
    poll_engagement_older: Callable[[], object]
    refresh_circles: Callable[[], object] | None = None
    retrain: Callable[[], object] | None = None
    prune: Callable[[], object] | None = None


def build_scheduler(jobs: Jobs, *, misfire_grace_seconds: int = 300) -> AsyncIOScheduler:
    """An AsyncIOScheduler with every fixed job; it runs on the caller's event loop.

    arXiv announces once per weekday evening (US Eastern, Sunday to Thursday, around
    20:00), so the feed is polled in the hour after that and only every six hours otherwise.
    """
    scheduler = AsyncIOScheduler(
        timezone=UTC,
        job_defaults={
            "coalesce": True,
            "max_instances": 1,
            "misfire_grace_time": misfire_grace_seconds,
        },
    )
    eastern = ZoneInfo("America/New_York")
    scheduler.add_job(jobs.digest_tick, IntervalTrigger(minutes=1), id="digest_tick")
    scheduler.add_job(
        jobs.poll_arxiv,
        CronTrigger(day_of_week="sun,mon,tue,wed,thu", hour=20, minute="15,45", timezone=eastern),
        id="poll_arxiv_announcement",
    )
    scheduler.add_job(jobs.poll_arxiv, IntervalTrigger(hours=6), id="poll_arxiv_backstop")
    scheduler.add_job(jobs.poll_engagement_recent, IntervalTrigger(minutes=30), id="poll_recent")
    scheduler.add_job(jobs.poll_engagement_older, IntervalTrigger(hours=6), id="poll_older")
    for job, name, hour in (
        (jobs.refresh_circles, "refresh_circles", 3),
        (jobs.retrain, "retrain", 4),
        (jobs.prune, "prune", 5),
    ):
        if job is not None:
            scheduler.add_job(job, CronTrigger(hour=hour, minute=17, timezone=UTC), id=name)
    return scheduler
