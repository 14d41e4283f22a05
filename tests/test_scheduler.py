"""The digest tick: local time zones, DST both ways, catch-up, staleness, days, exactly once."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta

import pytest

from bot.scheduler import Jobs, build_scheduler, digest_tick, due_today, find_due
from feeds.records import Paper as PaperRecord
from storage import deliveries, outbox, papers, subscribers
from storage.db import Database
from storage.models import InterestKind, Platform, Subscriber


def seed_papers(db: Database, now: datetime, count: int = 30) -> None:
    records = [
        PaperRecord(
            arxiv_id=f"2611.{i:05d}",
            version=1,
            title=f"Diffusion models for topic {i}",
            abstract="We study diffusion models and their sampling.",
            authors=("A. Author",),
            categories=("cs.LG",),
            primary_category="cs.LG",
            published=now - timedelta(hours=10),
            updated=now - timedelta(hours=10),
            announced=now - timedelta(hours=10),
        )
        for i in range(count)
    ]
    papers.upsert_papers(db, records, now=now)


def subscriber(db: Database, chat: str, **settings: object) -> Subscriber:
    sub, _ = subscribers.get_or_create(db, Platform.TELEGRAM, chat, digest_size=2, **settings)
    assert sub.id is not None
    subscribers.add_interests(db, sub.id, InterestKind.KEYWORD, ["diffusion"])
    return sub


def minutes(start: datetime, end: datetime) -> list[datetime]:
    steps = int((end - start).total_seconds() // 60)
    return [start + timedelta(minutes=m) for m in range(steps + 1)]


def test_due_in_the_subscribers_own_time_zone() -> None:
    sub = Subscriber(platform=Platform.TELEGRAM, chat_id="1", timezone="Europe/Berlin",
                     digest_time="08:00")  # fmt: skip
    assert due_today(sub, datetime(2026, 11, 16, 6, 59, tzinfo=UTC)) is None
    local_date, due_at = due_today(sub, datetime(2026, 11, 16, 7, 0, tzinfo=UTC))  # type: ignore[misc]
    assert local_date == date(2026, 11, 16)
    assert due_at == datetime(2026, 11, 16, 7, 0, tzinfo=UTC)
    tokyo = Subscriber(platform=Platform.TELEGRAM, chat_id="2", timezone="Asia/Tokyo",
                       digest_time="07:30")  # fmt: skip
    # 23:00 UTC on the 16th is already 08:00 on the 17th in Tokyo.
    assert due_today(tokyo, datetime(2026, 11, 16, 23, 0, tzinfo=UTC))[0] == date(2026, 11, 17)  # type: ignore[index]


@pytest.mark.parametrize(
    ("day", "start", "end"),
    [
        # Spring forward in New York: 02:00 → 03:00 local on 8 March 2026; 02:30 never happens.
        (
            date(2026, 3, 8),
            datetime(2026, 3, 8, 5, 0, tzinfo=UTC),
            datetime(2026, 3, 8, 9, 0, tzinfo=UTC),
        ),
        # Fall back: 02:00 → 01:00 local on 1 November 2026; 01:30 happens twice.
        (
            date(2026, 11, 1),
            datetime(2026, 11, 1, 4, 0, tzinfo=UTC),
            datetime(2026, 11, 1, 8, 0, tzinfo=UTC),
        ),
    ],
)
def test_dst_days_give_exactly_one_digest(
    db: Database, day: date, start: datetime, end: datetime
) -> None:
    seed_papers(db, start)
    spring = subscriber(db, "spring", timezone="America/New_York", digest_time="02:30")
    fall = subscriber(db, "fall", timezone="America/New_York", digest_time="01:30")
    built: list[int] = []
    for now in minutes(start, end):
        built += digest_tick(db, now).subscriber_ids
    assert sorted(built) == sorted([spring.id, fall.id])
    assert deliveries.scheduled_digests(db, [(spring.id, day), (fall.id, day)]) == {  # type: ignore[list-item]
        (spring.id, day),
        (fall.id, day),
    }


def test_catch_up_after_downtime_then_staleness(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    now = datetime(2026, 11, 16, 12, 0, tzinfo=UTC)
    seed_papers(db, now)
    late = subscriber(db, "late", timezone="UTC", digest_time="10:00")  # 2 h ago
    very_late = subscriber(db, "very-late", timezone="UTC", digest_time="01:00")  # 11 h ago
    caplog.set_level(logging.WARNING)
    report = digest_tick(db, now, staleness=timedelta(hours=6))
    assert report.subscriber_ids == [late.id]
    assert report.stale == 1
    assert f"subscriber={very_late.id}" in caplog.text and "stale" in caplog.text
    again = digest_tick(db, now + timedelta(minutes=1), staleness=timedelta(hours=6))
    assert (again.built, again.stale) == (0, 0)  # handled once, not every minute
    assert [m.subscriber_id for m in outbox.pending(db)] == [late.id]


def test_days_of_week_weekly_and_paused(db: Database) -> None:
    saturday = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    seed_papers(db, saturday)
    weekdays = subscriber(db, "weekdays", digest_time="09:00", digest_days="01234")
    every_day = subscriber(db, "daily", digest_time="09:00")
    weekly_monday = subscriber(db, "weekly", digest_time="09:00", digest_days="0", weekly=True)
    paused = subscriber(db, "paused", digest_time="09:00", paused=True)
    due, _ = find_due(db, saturday, staleness=timedelta(hours=6))
    assert [d.subscriber.id for d in due] == [every_day.id]
    monday = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    due, _ = find_due(db, monday, staleness=timedelta(hours=6))
    assert {d.subscriber.id for d in due} == {weekdays.id, every_day.id, weekly_monday.id}
    assert paused.id not in {d.subscriber.id for d in due}


def test_nothing_new_is_recorded_once_and_sends_nothing(db: Database) -> None:
    now = datetime(2026, 11, 16, 12, 0, tzinfo=UTC)
    sub = subscriber(db, "empty", digest_time="09:00")  # no papers at all
    report = digest_tick(db, now)
    assert (report.built, report.empty) == (0, 1)
    assert digest_tick(db, now + timedelta(minutes=1)).empty == 0
    assert outbox.pending(db, subscriber_id=sub.id) == []


def test_never_repeats_across_days(db: Database) -> None:
    now = datetime(2026, 11, 16, 12, 0, tzinfo=UTC)
    seed_papers(db, now, count=3)
    sub = subscriber(db, "repeat", digest_time="09:00")
    assert digest_tick(db, now).papers == 2
    tomorrow = digest_tick(db, now + timedelta(days=1))
    assert tomorrow.papers == 1  # only the one paper not sent yesterday
    assert deliveries.delivery_count(db, sub.id) == 3  # type: ignore[arg-type]


def test_trend_provider_failure_does_not_stop_digests(db: Database) -> None:
    now = datetime(2026, 11, 16, 12, 0, tzinfo=UTC)
    seed_papers(db, now)
    subscriber(db, "trend", digest_time="09:00")

    def broken(*_: object) -> tuple[dict[str, float], dict[str, str]]:
        raise RuntimeError("trend store down")

    assert digest_tick(db, now, trend_provider=broken).built == 1


async def test_scheduler_has_every_job_with_coalescing() -> None:
    calls: list[str] = []
    jobs = Jobs(
        digest_tick=lambda: calls.append("tick"),
        poll_arxiv=lambda: calls.append("arxiv"),
        poll_engagement_recent=lambda: calls.append("recent"),
        poll_engagement_older=lambda: calls.append("older"),
        refresh_circles=lambda: calls.append("circles"),
        retrain=lambda: calls.append("retrain"),
        prune=lambda: calls.append("prune"),
    )
    scheduler = build_scheduler(jobs)
    ids = {job.id for job in scheduler.get_jobs()}
    assert ids == {"digest_tick", "poll_arxiv_announcement", "poll_arxiv_backstop", "poll_recent",
                   "poll_older", "refresh_circles", "retrain", "prune"}  # fmt: skip
    scheduler.start(paused=True)
    try:
        for job in scheduler.get_jobs():
            assert job.coalesce is True and job.misfire_grace_time == 300
    finally:
        scheduler.shutdown(wait=False)
