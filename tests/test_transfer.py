"""Whole-database copy, export and import, on real SQLite and PostgreSQL databases."""

from __future__ import annotations

import gzip
import json
import stat
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
from sqlalchemy import func, select, text
from typer.testing import CliRunner

from bot import cli_ops
from feeds.records import Paper as PaperRecord
from feeds.records import Signal
from storage import cursors, deliveries, engagement, feedback, outbox, papers, subscribers
from storage.db import Database
from storage.deliveries import DigestEntry
from storage.errors import StorageError
from storage.migrate import head_revision, upgrade
from storage.models import SUBSCRIBERS, InterestKind, Platform
from storage.transfer import (
    EXPORT_FORMAT,
    TransferError,
    copy_database,
    export_database,
    import_database,
    model_tables,
    same_database,
)

NOW = datetime(2026, 11, 16, 12, 0, tzinfo=UTC)


def _paper(number: int) -> PaperRecord:
    return PaperRecord(
        arxiv_id=f"2611.{number:05d}",
        version=1 + number % 3,
        title=f"Paper {number}: diffusion & <transformers> ∑ 🚀",
        abstract="We study $x_i < y$ with attention; émigré résumé naïve.",
        authors=("Ada Lovelace", f"Author {number}"),
        categories=("cs.LG", "stat.ML") if number % 2 else ("cs.CL",),
        primary_category="cs.LG" if number % 2 else "cs.CL",
        published=NOW - timedelta(days=2, minutes=number),
        updated=NOW - timedelta(days=1, minutes=number),
        announced=NOW - timedelta(hours=7) if number % 4 else None,
        comment="12 pages" if number % 5 == 0 else None,
    )


def populate(db: Database, *, papers_count: int = 25) -> int:
    """Fill every kind of row; returns the id of the subscriber with a full profile."""
    papers.upsert_papers(db, [_paper(n) for n in range(1, papers_count + 1)], now=NOW)
    engagement.add_snapshots(
        db,
        [
            Signal(f"2611.{n:05d}", "hackernews", "points", float(n * 7), NOW, f"https://x/{n}")
            for n in range(1, 8)
        ],
    )
    ada, _ = subscribers.get_or_create(
        db, Platform.TELEGRAM, "1001", display_name="Ada", timezone="Europe/Berlin"
    )
    assert ada.id is not None
    subscribers.add_interests(db, ada.id, InterestKind.KEYWORD, ["diffusion", "attention"])
    subscribers.add_interests(db, ada.id, InterestKind.AUTHOR, ["Ada Lovelace"])
    feedback.set_rating(db, ada.id, "2611.00003", 1)
    feedback.set_rating(db, ada.id, "2611.00004", -1)
    feedback.set_saved(db, ada.id, "2611.00003", True)
    deliveries.record_digest(
        db,
        ada.id,
        [
            DigestEntry("2611.00001", 1, 0.9, "matches “diffusion”"),
            DigestEntry("2611.00002", 2, 0.5),
        ],
        scheduled_for=date(2026, 11, 16),
        payload={"papers": [{"arxiv_id": "2611.00001"}, {"arxiv_id": "2611.00002"}]},
    )
    other, _ = subscribers.get_or_create(db, Platform.SLACK, "C123", workspace_id="T1")
    assert other.id is not None
    outbox.enqueue(db, other.id, {"text": "hello"}, key="announce:1", now=NOW)
    cursors.record_success(db, "arxiv:rss:cs.LG", now=NOW, etag='"abc"')
    cursors.record_failure(db, "reddit", "HTTP 403", now=NOW)
    return ada.id


def dump(db: Database) -> dict[str, list[dict[str, Any]]]:
    """Every row of every model table, in primary-key order."""
    with db.engine.connect() as connection:
        return {
            table.name: [
                dict(row)
                for row in connection.execute(
                    select(table).order_by(*table.primary_key.columns)
                ).mappings()
            ]
            for table in model_tables()
        }


def search_index_size(db: Database) -> int:
    """Rows of the derived full-text index that the paper triggers maintain."""
    with db.engine.connect() as connection:
        return int(connection.execute(text("SELECT count(*) FROM paper_search")).scalar_one())


def assert_same_subscriber(db: Database, subscriber_id: int) -> None:
    profile = subscribers.profile(db, subscriber_id)
    assert sorted(profile.keywords) == ["attention", "diffusion"]
    assert profile.authors == ["Ada Lovelace"]
    assert feedback.ratings(db, [subscriber_id]) == {
        subscriber_id: {"2611.00003": 1, "2611.00004": -1}
    }
    assert feedback.saved_ids(db, subscriber_id) == ["2611.00003"]
    assert deliveries.delivered_ids(db, [subscriber_id]) == {
        subscriber_id: {"2611.00001", "2611.00002"}
    }


# --- copy ---------------------------------------------------------------------------------


@pytest.mark.postgres
def test_copy_sqlite_to_postgresql(sqlite_db: Database, pg_db: Database) -> None:
    ada = populate(sqlite_db)
    seen: list[str] = []
    report = copy_database(sqlite_db, pg_db.url, on_table=lambda count: seen.append(count.table))

    assert dump(pg_db) == dump(sqlite_db)
    assert {count.table: count.rows for count in report.tables}["paper"] == 25
    assert report.total_rows == sum(len(rows) for rows in dump(sqlite_db).values())
    assert seen == [table.name for table in model_tables()]
    assert report.revision == head_revision(pg_db)
    assert_same_subscriber(pg_db, ada)
    # The search index is derived: not copied, rebuilt by the target's triggers.
    assert "paper_search" in report.skipped
    assert search_index_size(pg_db) == 25


@pytest.mark.postgres
def test_sequences_continue_after_a_copy_to_postgresql(
    sqlite_db: Database, pg_db: Database
) -> None:
    populate(sqlite_db)
    copy_database(sqlite_db, pg_db.url)
    with pg_db.engine.connect() as connection:
        highest = connection.execute(select(func.max(SUBSCRIBERS.c.id))).scalar_one()

    newcomer, created = subscribers.get_or_create(pg_db, Platform.TELEGRAM, "2002")
    assert created and newcomer.id is not None and newcomer.id > highest
    assert outbox.enqueue(pg_db, newcomer.id, {"text": "hi"}, key="fresh") is not None


@pytest.mark.postgres
def test_copy_postgresql_to_sqlite(pg_db: Database, tmp_path: Path) -> None:
    ada = populate(pg_db)
    url = f"sqlite:///{tmp_path / 'moved' / 'copy.db'}"

    report = copy_database(pg_db, url)

    target = Database(url)
    try:
        assert dump(target) == dump(pg_db)
        assert_same_subscriber(target, ada)
        assert search_index_size(target) == 25
        newcomer, _ = subscribers.get_or_create(target, Platform.TELEGRAM, "2002")
        assert newcomer.id is not None and newcomer.id > ada
    finally:
        target.dispose()
    assert report.target.startswith("sqlite:///")


def test_copy_in_small_chunks_keeps_every_row(sqlite_db: Database, tmp_path: Path) -> None:
    populate(sqlite_db, papers_count=23)
    target = Database(f"sqlite:///{tmp_path / 'chunks.db'}")
    try:
        copy_database(sqlite_db, target.url, chunk_size=4)
        assert dump(target) == dump(sqlite_db)
    finally:
        target.dispose()


def test_copy_refuses_a_non_empty_target_unless_forced(sqlite_db: Database, tmp_path: Path) -> None:
    populate(sqlite_db)
    target = Database(f"sqlite:///{tmp_path / 'busy.db'}")
    try:
        copy_database(sqlite_db, target.url)
        subscribers.get_or_create(target, Platform.CONSOLE, "only-in-target")
        before = dump(target)

        with pytest.raises(TransferError, match=r"not empty: .*subscriber \(3 rows\).*--force"):
            copy_database(sqlite_db, target.url)
        assert dump(target) == before

        copy_database(sqlite_db, target.url, force=True)
        assert dump(target) == dump(sqlite_db)
        assert subscribers.find(target, Platform.CONSOLE, "only-in-target") is None
    finally:
        target.dispose()


def test_copy_refuses_the_same_database(sqlite_db: Database) -> None:
    with pytest.raises(TransferError, match="same database"):
        copy_database(sqlite_db, sqlite_db.url)


def test_copy_refuses_a_source_behind_the_code(tmp_path: Path) -> None:
    empty = Database(f"sqlite:///{tmp_path / 'never-migrated.db'}")
    try:
        with pytest.raises(TransferError, match=r"revision none.*db upgrade"):
            copy_database(empty, f"sqlite:///{tmp_path / 'target.db'}")
    finally:
        empty.dispose()
    assert not (tmp_path / "target.db").exists()


def test_a_failed_copy_leaves_the_target_empty(sqlite_db: Database, tmp_path: Path) -> None:
    populate(sqlite_db)
    # Rows the target cannot take: interests of a subscriber that does not exist, written
    # with the source's foreign-key checks off. The target checks them and refuses.
    with sqlite_db.engine.begin() as connection:
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        connection.exec_driver_sql("UPDATE interest SET subscriber_id = 999")
    target = Database(f"sqlite:///{tmp_path / 'target.db'}")
    try:
        with pytest.raises(TransferError, match="copying table interest failed"):
            copy_database(sqlite_db, target.url)
        assert all(rows == [] for rows in dump(target).values())
    finally:
        target.dispose()


def test_same_database() -> None:
    assert same_database("sqlite:///a/../b.db", "sqlite:///b.db")
    assert not same_database("sqlite:///a.db", "sqlite:///b.db")
    assert same_database("postgresql://u:one@h/db", "postgresql+psycopg://u:two@h/db")
    assert not same_database("postgresql://u@h/db", "postgresql://u@h/db?options=-csearch_path%3Dx")
    assert not same_database("postgresql://u@h/db", "sqlite:///db")


# --- export and import ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["backup.jsonl", "backup.jsonl.gz"])
def test_export_import_round_trip(db: Database, tmp_path: Path, name: str) -> None:
    ada = populate(db)
    path = tmp_path / name

    exported = export_database(db, path)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not list(tmp_path.glob("*.partial"))
    target = Database(f"sqlite:///{tmp_path / 'restored.db'}")
    try:
        imported = import_database(target, path)
        assert dump(target) == dump(db)
        assert_same_subscriber(target, ada)
        assert search_index_size(target) == 25
    finally:
        target.dispose()
    assert exported.tables == imported.tables
    assert exported.total_rows == imported.total_rows > 25


@pytest.mark.postgres
def test_import_into_postgresql_resets_sequences(
    sqlite_db: Database, pg_db: Database, tmp_path: Path
) -> None:
    ada = populate(sqlite_db)
    path = tmp_path / "backup.jsonl"
    export_database(sqlite_db, path)

    import_database(pg_db, path)

    assert dump(pg_db) == dump(sqlite_db)
    assert_same_subscriber(pg_db, ada)
    newcomer, created = subscribers.get_or_create(pg_db, Platform.SLACK, "C999")
    assert created and newcomer.id is not None and newcomer.id > ada


def _export_lines(db: Database, path: Path) -> list[str]:
    export_database(db, path)
    return path.read_text(encoding="utf-8").splitlines()


def test_export_format_has_a_header_rows_in_order_and_a_trailer(
    sqlite_db: Database, tmp_path: Path
) -> None:
    populate(sqlite_db)
    lines = [json.loads(line) for line in _export_lines(sqlite_db, tmp_path / "e.jsonl")]

    header, rows, trailer = lines[0], lines[1:-1], lines[-1]
    assert header["format"] == EXPORT_FORMAT
    assert header["revision"] == head_revision(sqlite_db)
    assert header["tables"] == [table.name for table in model_tables()]
    order = [header["tables"].index(row["table"]) for row in rows]
    assert order == sorted(order)
    assert trailer["end"] is True
    assert sum(trailer["counts"].values()) == len(rows)
    paper = next(row["row"] for row in rows if row["table"] == "paper")
    assert paper["published"].endswith("+00:00")
    assert paper["authors"] == ["Ada Lovelace", "Author 1"]


def _rename_paper_column(lines: list[str]) -> list[str]:
    first = next(n for n, line in enumerate(lines) if line.startswith('{"table": "paper"'))
    return [*lines[:first], lines[first].replace('"title"', '"headline"'), *lines[first + 1 :]]


def _rewrite(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda lines: lines[:-1], "truncated"),
        (lambda lines: lines[:-3] + lines[-1:], "declares"),
        (lambda lines: [lines[0], "{not json", *lines[1:]], r":2: not valid JSON"),
        (lambda lines: ["{}", *lines[1:]], "not a trending-papers export"),
        (lambda lines: [], "not a trending-papers export"),
        (
            lambda lines: [lines[0].replace('"revision": "', '"revision": "old-'), *lines[1:]],
            "schema revision old-",
        ),
        (
            lambda lines: [lines[0], '{"table": "nope", "row": {}}', *lines[1:]],
            "table 'nope' is not in this version's schema",
        ),
        (_rename_paper_column, r"unknown: \['headline'\], missing: \['title'\]"),
        (lambda lines: [*lines, lines[1]], "lines after the end"),
    ],
)
def test_import_refuses_a_damaged_file_and_writes_nothing(
    sqlite_db: Database, tmp_path: Path, mangle: Any, message: str
) -> None:
    populate(sqlite_db)
    path = tmp_path / "e.jsonl"
    _rewrite(path, mangle(_export_lines(sqlite_db, path)))
    target = Database(f"sqlite:///{tmp_path / 'restored.db'}")
    upgrade(target)
    try:
        with pytest.raises(TransferError, match=message):
            import_database(target, path)
        assert all(rows == [] for rows in dump(target).values())
    finally:
        target.dispose()


def test_import_refuses_a_non_empty_database_unless_forced(
    sqlite_db: Database, tmp_path: Path
) -> None:
    populate(sqlite_db)
    path = tmp_path / "e.jsonl.gz"
    export_database(sqlite_db, path)
    target = Database(f"sqlite:///{tmp_path / 'restored.db'}")
    upgrade(target)
    try:
        subscribers.get_or_create(target, Platform.CONSOLE, "local")
        with pytest.raises(TransferError, match="not empty"):
            import_database(target, path)
        import_database(target, path, force=True)
        assert dump(target) == dump(sqlite_db)
    finally:
        target.dispose()


def test_import_of_a_file_that_is_not_gzip(sqlite_db: Database, tmp_path: Path) -> None:
    path = tmp_path / "plain.jsonl.gz"
    path.write_text("not compressed\n", encoding="utf-8")
    with pytest.raises(TransferError, match="could not read"):
        import_database(sqlite_db, path)


def test_transfer_errors_are_storage_errors() -> None:
    assert issubclass(TransferError, StorageError)


# --- command line ---------------------------------------------------------------------------


@pytest.fixture
def cli() -> typer.Typer:
    """A fresh app with a ``db`` group, as ``bot.cli`` has, with these commands added."""
    app = typer.Typer()
    db_app = typer.Typer()
    app.add_typer(db_app, name="db")
    cli_ops.register(app)
    return app


def test_cli_db_copy(
    cli: typer.Typer, sqlite_db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    populate(sqlite_db)
    monkeypatch.setenv("TP_DATABASE_URL", sqlite_db.url)
    target = f"sqlite:///{tmp_path / 'new.db'}"

    result = CliRunner().invoke(cli, ["db", "copy", "--to", target])

    assert result.exit_code == 0, result.output
    assert "paper" in result.output and "25" in result.output
    assert "TP_DATABASE_URL" in result.output
    again = CliRunner().invoke(cli, ["db", "copy", "--to", target])
    assert again.exit_code == 1
    assert "--force" in again.output and "Traceback" not in again.output


@pytest.mark.postgres
def test_cli_db_copy_hides_the_password(
    cli: typer.Typer, sqlite_db: Database, pg_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    populate(sqlite_db)
    monkeypatch.setenv("TP_DATABASE_URL", sqlite_db.url)
    # The test server trusts local connections, so any password is accepted and never shown.
    url = pg_db.url.replace("postgresql+psycopg://postgres@", "postgresql://postgres:s3cr3t-pw@")

    result = CliRunner().invoke(cli, ["db", "copy", "--to", url])

    assert result.exit_code == 0, result.output
    assert "s3cr3t-pw" not in result.output
    assert "***" in result.output


def test_cli_export_and_import(
    cli: typer.Typer, sqlite_db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    populate(sqlite_db)
    path = tmp_path / "all.jsonl.gz"
    monkeypatch.setenv("TP_DATABASE_URL", sqlite_db.url)

    exported = CliRunner().invoke(cli, ["export", "--file", str(path)])
    assert exported.exit_code == 0, exported.output
    assert gzip.decompress(path.read_bytes()).startswith(b'{"format": "trending-papers-export"')
    refused = CliRunner().invoke(cli, ["export", "--file", str(path)])
    assert refused.exit_code == 1 and "--overwrite" in refused.output

    restored_url = f"sqlite:///{tmp_path / 'restored.db'}"
    monkeypatch.setenv("TP_DATABASE_URL", restored_url)
    imported = CliRunner().invoke(cli, ["import-db", "--file", str(path)])
    assert imported.exit_code == 0, imported.output
    restored = Database(restored_url)
    try:
        assert dump(restored) == dump(sqlite_db)
    finally:
        restored.dispose()

    missing = CliRunner().invoke(cli, ["import-db", "--file", str(tmp_path / "nope.jsonl")])
    assert missing.exit_code != 0 and "Traceback" not in missing.output
