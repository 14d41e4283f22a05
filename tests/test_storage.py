"""Storage on real SQLite and real PostgreSQL: schema, idempotent upserts, never-repeat, errors."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import event, inspect
from sqlalchemy.exc import OperationalError
from sqlmodel import SQLModel

from feeds.records import Paper as PaperRecord
from feeds.records import Signal
from storage import cursors, deliveries, engagement, feedback, outbox, papers, subscribers
from storage.db import Database, redact_url
from storage.deliveries import DigestAlreadyExists, DigestEntry
from storage.errors import StorageError
from storage.migrate import (
    current_revision,
    head_revision,
    include_name,
    is_up_to_date,
    upgrade,
)
from storage.models import Digest, InterestKind, OutboxMessage, OutboxStatus, Platform

NOW = datetime(2026, 11, 16, 12, 0, tzinfo=UTC)


def make_paper(arxiv_id: str = "2511.00001", version: int = 1, **changes: object) -> PaperRecord:
    base = PaperRecord(
        arxiv_id=arxiv_id,
        version=version,
        title=f"A paper {arxiv_id}",
        abstract="We study things & stuff with $x < y$.",
        authors=("Ada Lovelace", "Alan Turing"),
        categories=("cs.LG", "stat.ML"),
        primary_category="cs.LG",
        published=NOW - timedelta(days=1),
        updated=NOW - timedelta(days=1),
        announced=NOW - timedelta(hours=7),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_migrations_match_the_models(db: Database) -> None:
    assert is_up_to_date(db)
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"include_name": include_name})
        diff = compare_metadata(context, SQLModel.metadata)
    assert diff == []


def test_upgrade_twice_is_a_noop(db: Database) -> None:
    before, after = upgrade(db)
    assert before == after == head_revision(db)
    assert current_revision(db) == head_revision(db)


def test_sqlite_runs_in_wal_with_foreign_keys(sqlite_db: Database) -> None:
    with sqlite_db.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10000


def test_upsert_is_idempotent_and_versions_only_go_up(db: Database) -> None:
    first = papers.upsert_papers(db, [make_paper(), make_paper("hep-th/9901001")], now=NOW)
    assert (first.inserted, first.updated, first.unchanged) == (2, 0, 0)
    again = papers.upsert_papers(db, [make_paper(), make_paper("hep-th/9901001")], now=NOW)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 2)

    v2 = make_paper(version=2, title="A better title", updated=NOW)
    assert papers.upsert_papers(db, [v2], now=NOW).updated == 1
    assert papers.upsert_papers(db, [make_paper()], now=NOW).updated == 0  # v1 replayed late
    stored = papers.get_paper(db, "2511.00001")
    assert stored is not None
    assert (stored.version, stored.title) == (2, "A better title")
    assert stored.announced == NOW - timedelta(hours=7)  # first announcement kept
    assert stored.authors == ["Ada Lovelace", "Alan Turing"]
    assert papers.count_papers(db) == 2


def test_upsert_fills_an_unknown_announcement_date(db: Database) -> None:
    papers.upsert_papers(db, [make_paper(announced=None)], now=NOW)
    papers.upsert_papers(db, [make_paper()], now=NOW)
    stored = papers.get_paper(db, "2511.00001")
    assert stored is not None and stored.announced == NOW - timedelta(hours=7)


def test_an_older_version_fills_the_announcement_date_but_not_its_text(db: Database) -> None:
    papers.upsert_papers(db, [make_paper(version=3, title="Third", announced=None)], now=NOW)
    late = NOW + timedelta(days=1)
    result = papers.upsert_papers(db, [make_paper(version=1, title="First")], now=late)
    assert (result.inserted, result.updated, result.unchanged) == (0, 0, 1)
    stored = papers.get_paper(db, "2511.00001")
    assert stored is not None
    assert (stored.version, stored.title) == (3, "Third")
    assert stored.announced == NOW - timedelta(hours=7)
    assert stored.ingested_at == NOW


def test_a_page_of_unchanged_papers_writes_nothing(db: Database) -> None:
    page = [make_paper(f"2511.{n:05d}") for n in range(1, 1201)]  # more than one chunk
    first = papers.upsert_papers(db, page, now=NOW)
    assert (first.inserted, first.updated, first.unchanged) == (1200, 0, 0)
    later = NOW + timedelta(days=1)
    changed = [dataclasses.replace(page[5], version=2, title="Revised"), page[700]]
    again = papers.upsert_papers(db, page[:5] + changed + page[701:], now=later)
    assert (again.inserted, again.updated, again.unchanged) == (0, 1, 505)
    stored = papers.get_papers(db, [page[0].arxiv_id, page[5].arxiv_id, page[700].arxiv_id])
    assert stored[page[0].arxiv_id].ingested_at == NOW
    assert stored[page[700].arxiv_id].ingested_at == NOW
    assert (stored[page[5].arxiv_id].title, stored[page[5].arxiv_id].ingested_at) == (
        "Revised",
        later,
    )
    assert papers.count_papers(db) == 1200


def test_timestamps_bind_alike_whatever_their_zone(db: Database) -> None:
    # Bound datetimes are converted once per distinct value; equal instants must store alike
    # and more distinct values than the conversion cache holds must all round-trip.
    plus_two = timezone(timedelta(hours=2))
    page = [
        make_paper(
            f"2511.{n:05d}",
            published=(NOW - timedelta(minutes=n)).astimezone(plus_two if n % 2 else UTC),
            announced=None,
        )
        for n in range(1, 5001)
    ]
    papers.upsert_papers(db, page, now=NOW.astimezone(plus_two))
    stored = papers.get_papers(db, [p.arxiv_id for p in page])
    for paper in page:
        row = stored[paper.arxiv_id]
        assert row.published == paper.published
        assert row.published.tzinfo is not None and row.published.utcoffset() == timedelta(0)
        assert row.first_seen_at == NOW and row.announced is None


def test_same_id_twice_in_one_batch_keeps_the_newest(db: Database) -> None:
    result = papers.upsert_papers(db, [make_paper(version=3), make_paper(version=1)], now=NOW)
    assert result.inserted == 1
    assert papers.get_paper(db, "2511.00001").version == 3  # type: ignore[union-attr]


def test_recent_papers_fall_back_to_the_publication_date(db: Database) -> None:
    recent, old = NOW - timedelta(days=1), NOW - timedelta(days=10)
    papers.upsert_papers(
        db,
        [
            make_paper("2511.00001", announced=None, published=recent),
            make_paper("2511.00002", announced=None, published=old),
            make_paper("2511.00003", announced=old, published=recent),  # announced wins
            make_paper("2511.00004", announced=recent, published=old),
        ],
        now=NOW,
    )
    since = NOW - timedelta(days=3)
    fresh = [p.arxiv_id for p in papers.recent_papers(db, since)]
    assert fresh == ["2511.00001", "2511.00004"]
    assert [row[0] for row in papers.recent_fingerprint(db, since)] == fresh
    assert len(papers.recent_papers(db, NOW - timedelta(days=30), include_withdrawn=True)) == 4


def test_recent_papers_window_and_withdrawn(db: Database) -> None:
    papers.upsert_papers(
        db,
        [
            make_paper("2511.00001"),
            make_paper("2511.00002", announced=NOW - timedelta(days=10)),
            make_paper("2511.00003", withdrawn=True),
        ],
        now=NOW,
    )
    fresh = papers.recent_papers(db, NOW - timedelta(days=3))
    assert [p.arxiv_id for p in fresh] == ["2511.00001"]


def test_deliveries_never_repeat_a_paper(db: Database) -> None:
    papers.upsert_papers(db, [make_paper("2511.00001"), make_paper("2511.00002")], now=NOW)
    sub, created = subscribers.get_or_create(db, Platform.TELEGRAM, "42")
    assert created and sub.id is not None
    assert subscribers.get_or_create(db, Platform.TELEGRAM, "42")[1] is False

    entries = [DigestEntry("2511.00001", 1, 0.9, "why"), DigestEntry("2511.00002", 2, 0.5, "")]
    payload = {"items": [{"arxiv_id": e.arxiv_id} for e in entries]}
    first = deliveries.record_digest(db, sub.id, entries, payload=payload)
    assert len(first.entries) == 2 and first.outbox_id is not None
    second = deliveries.record_digest(db, sub.id, entries, payload=payload)
    assert second.entries == () and second.outbox_id is None
    assert deliveries.delivered_ids(db, [sub.id]) == {sub.id: {"2511.00001", "2511.00002"}}
    assert deliveries.delivery_count(db, sub.id) == 2


def test_a_digest_records_only_papers_not_delivered_before(db: Database) -> None:
    papers.upsert_papers(db, [make_paper(f"2511.0000{n}") for n in (1, 2, 3)], now=NOW)
    sub, _ = subscribers.get_or_create(db, Platform.TELEGRAM, "42")
    assert sub.id is not None
    deliveries.record_digest(db, sub.id, [DigestEntry("2511.00002", 1, 0.5)])
    entries = [DigestEntry(f"2511.0000{n}", n, 1.0 - n / 10, f"why {n}") for n in (1, 2, 3)]
    payload = {"heading": "Today", "items": [{"arxiv_id": e.arxiv_id} for e in entries]}
    recorded = deliveries.record_digest(db, sub.id, entries, payload=payload)
    assert [e.arxiv_id for e in recorded.entries] == ["2511.00001", "2511.00003"]
    assert recorded.outbox_id is not None
    with db.session() as session:
        digest = session.get(Digest, recorded.digest_id)
        message = session.get(OutboxMessage, recorded.outbox_id)
        assert digest is not None and digest.paper_count == 2
        assert message is not None and message.status == OutboxStatus.PENDING
        assert message.idempotency_key == f"digest:{recorded.digest_id}"
        assert [item["arxiv_id"] for item in message.payload["items"]] == [
            "2511.00001", "2511.00003"
        ]  # fmt: skip
    again = deliveries.record_digest(db, sub.id, entries[:1] * 2)  # nothing new, repeated
    assert again.entries == () and again.outbox_id is None
    with db.session() as session:
        empty = session.get(Digest, again.digest_id)
        assert empty is not None and empty.paper_count == 0


def test_one_scheduled_digest_per_local_date(db: Database) -> None:
    sub, _ = subscribers.get_or_create(db, Platform.SLACK, "C1")
    assert sub.id is not None
    day = date(2026, 11, 16)
    deliveries.record_digest(db, sub.id, [], scheduled_for=day)
    assert deliveries.has_scheduled_digest(db, sub.id, day)
    with pytest.raises(DigestAlreadyExists):
        deliveries.record_digest(db, sub.id, [], scheduled_for=day)
    deliveries.record_digest(db, sub.id, [], scheduled_for=day + timedelta(days=1))


def test_interests_profiles_and_cascade_delete(db: Database) -> None:
    sub, _ = subscribers.get_or_create(db, Platform.TELEGRAM, "7")
    assert sub.id is not None
    added = subscribers.add_interests(db, sub.id, InterestKind.KEYWORD, ["diffusion", "LLM", "llm"])
    assert added == ["diffusion", "LLM"]
    assert subscribers.add_interests(db, sub.id, InterestKind.KEYWORD, ["Diffusion"]) == []
    subscribers.add_interests(db, sub.id, InterestKind.AUTHOR, ["Yann LeCun"])
    assert subscribers.remove_interests(db, sub.id, InterestKind.KEYWORD, ["llm"]) == ["LLM"]
    profile = subscribers.profile(db, sub.id)
    assert profile.keywords == ["diffusion"] and profile.authors == ["Yann LeCun"]
    feedback.set_rating(db, sub.id, "2511.00001", 1)
    feedback.set_saved(db, sub.id, "2511.00002", True)
    assert feedback.ratings(db, [sub.id]) == {sub.id: {"2511.00001": 1, "2511.00002": 1}}
    assert feedback.saved_ids(db, sub.id) == ["2511.00002"]
    feedback.set_rating(db, sub.id, "2511.00003", 0)  # a row without a rating or bookmark
    wanted = ["2511.00001", "2511.00002", "2511.00003", "2511.00004", "2511.00001"]
    assert feedback.states(db, sub.id, wanted) == {
        "2511.00001": (1, False), "2511.00002": (0, True), "2511.00003": (0, False)
    }  # fmt: skip
    assert feedback.states(db, sub.id, []) == {}
    row = feedback.get(db, sub.id, "2511.00002")
    assert row is not None and (row.rating, row.saved, row.updated_at.tzinfo) == (0, True, UTC)

    subscribers.remove(db, sub.id)
    assert subscribers.get(db, sub.id) is None
    assert feedback.get(db, sub.id, "2511.00001") is None
    assert subscribers.profile(db, sub.id).is_empty


def test_create_returns_the_subscriber_a_racing_request_created(db: Database) -> None:
    first, created = subscribers.create(db, Platform.TELEGRAM, "11", timezone="Asia/Tokyo")
    assert created and first.id is not None
    assert (first.timezone, first.digest_size, first.announcements) == ("Asia/Tokyo", 10, True)
    assert first.created_at.tzinfo == UTC
    again, created = subscribers.create(db, Platform.TELEGRAM, "11", timezone="UTC")
    assert not created and again.id == first.id and again.timezone == "Asia/Tokyo"
    assert subscribers.find(db, Platform.TELEGRAM, "11") == again
    with pytest.raises(ValueError, match="unknown"):
        subscribers.create(db, Platform.TELEGRAM, "12", colour="blue")


def test_update_and_active(db: Database) -> None:
    sub, _ = subscribers.get_or_create(db, Platform.TELEGRAM, "9", timezone="Europe/Berlin")
    assert sub.id is not None and sub.timezone == "Europe/Berlin"
    subscribers.update(db, sub.id, paused=True)
    assert subscribers.active(db) == []
    with pytest.raises(ValueError, match="unknown"):
        subscribers.update(db, sub.id, chat_id="other")


def test_engagement_snapshots_are_a_time_series_and_idempotent(db: Database) -> None:
    def signal(value: float, at: datetime) -> Signal:
        return Signal("2511.00001", "hackernews", "points", value, at, url="https://hn/1")

    assert engagement.add_snapshots(db, [signal(10, NOW)]) == 1
    assert engagement.add_snapshots(db, [signal(10, NOW + timedelta(hours=1))]) == 0
    assert engagement.add_snapshots(db, [signal(25, NOW + timedelta(hours=2))]) == 1
    values = [s.value for s in engagement.snapshots_since(db, NOW - timedelta(days=1))]
    assert values == [10, 25]


def test_a_large_poll_commits_chunk_by_chunk_and_resumes_after_a_failure(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQLite has one write lock: a whole poll in one transaction would hold off every chat
    # command's write until the end.
    monkeypatch.setattr(engagement, "_CHUNK", 2)
    poll = [
        Signal(f"2511.0000{n}", "hackernews", "points", 10.0 * n, NOW, url=f"https://hn/{n}")
        for n in range(1, 7)
    ]
    commits: list[int] = []
    event.listen(db.engine, "commit", lambda connection: commits.append(1))
    real_record = engagement.rollup.record
    calls: list[int] = []

    def failing_second_chunk(*args: object, **kwargs: object) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise OperationalError("INSERT", {}, Exception("database is locked"))
        real_record(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(engagement.rollup, "record", failing_second_chunk)
    with pytest.raises(StorageError, match="2 written before"):
        engagement.add_snapshots(db, poll)
    assert len(engagement.snapshots_since(db, NOW - timedelta(days=1))) == 2  # chunk 1 kept
    monkeypatch.setattr(engagement.rollup, "record", real_record)
    commits.clear()
    assert engagement.add_snapshots(db, poll) == 4  # the rest; chunk 1 is skipped as known
    assert len(commits) == 3  # one transaction per chunk
    assert engagement.add_snapshots(db, poll) == 0


def test_cursors_track_health(db: Database) -> None:
    cursors.record_failure(db, "hackernews", "timeout", now=NOW)
    cursors.record_failure(db, "hackernews", "timeout", now=NOW)
    assert cursors.get(db, "hackernews").consecutive_failures == 2
    cursors.record_success(db, "hackernews", now=NOW, etag='"v1"')
    row = cursors.get(db, "hackernews")
    assert (row.consecutive_failures, row.etag, row.last_success_at) == (0, '"v1"', NOW)
    assert [c.source for c in cursors.all_cursors(db)] == ["hackernews"]


def test_outbox_retry_and_park(db: Database) -> None:
    papers.upsert_papers(db, [make_paper()], now=NOW)
    sub, _ = subscribers.get_or_create(db, Platform.TELEGRAM, "5")
    assert sub.id is not None
    recorded = deliveries.record_digest(
        db, sub.id, [DigestEntry("2511.00001", 1, 1.0)], payload={"items": []}
    )
    assert recorded.outbox_id is not None
    assert [m.id for m in outbox.pending(db)] == [recorded.outbox_id]
    assert (
        outbox.mark_retry(db, recorded.outbox_id, "502", timedelta(minutes=5), max_attempts=2)
        is False
    )
    assert outbox.pending(db) == []  # not due yet
    assert outbox.mark_retry(db, recorded.outbox_id, "502", timedelta(0), max_attempts=2) is True
    with db.session() as session:
        from storage.models import OutboxMessage

        row = session.get(OutboxMessage, recorded.outbox_id)
        assert row is not None and row.status == OutboxStatus.FAILED and row.attempts == 2


def test_storage_errors_are_wrapped_with_the_cause(tmp_path: object) -> None:
    db = Database("sqlite:///:memory:")  # never migrated: every table is missing
    with pytest.raises(StorageError) as caught:
        papers.count_papers(db)
    assert caught.value.__cause__ is not None
    assert "OperationalError" in type(caught.value.__cause__).__name__


def test_unreachable_postgres_is_a_storage_error() -> None:
    db = Database("postgresql://nobody:secret@127.0.0.1:1/none?connect_timeout=1")
    with pytest.raises(StorageError) as caught:
        db.ping()
    assert "secret" not in str(caught.value)
    assert "***" in redact_url(db.url)
    db.dispose()


def test_schema_has_the_expected_tables(db: Database) -> None:
    tables = set(inspect(db.engine).get_table_names())
    assert {"paper", "engagement_snapshot", "subscriber", "interest", "feedback", "digest",
            "delivery", "outbox", "source_cursor", "alembic_version"} <= tables  # fmt: skip
