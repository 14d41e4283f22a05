"""The walking skeleton end to end: recorded feeds → arXiv adapter → storage → ranking → console."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from rich.console import Console
from typer.testing import CliRunner

from bot.cli import app
from bot.demo import DEMO_NOW, run_demo
from bot.ingest import cursor_name, ingest_announcements
from feeds.http import HttpPolicy, build_client
from feeds.replay import recorded_transport
from storage import cursors, papers
from storage.db import Database


def console() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, width=200, color_system=None), buffer


async def test_demo_prints_a_digest_then_never_repeats(db: Database) -> None:
    out, text = console()
    first = await run_demo(db, out, size=8)
    printed = text.getvalue()
    assert first.ingest.fetched >= 60
    assert first.papers_sent == 8 and first.delivered == 1
    assert printed.count("https://arxiv.org/abs/") == 8
    assert printed.count("why:") == 8

    out, text = console()
    second = await run_demo(db, out, size=8)
    assert second.ingest.stored.inserted == 0  # conditional GET / idempotent upsert
    assert "8 papers went to this subscriber in earlier runs" in text.getvalue()

    for _ in range(20):
        out, text = console()
        result = await run_demo(db, out, size=8)
        if result.papers_sent == 0:
            break
    assert "Nothing new to send" in text.getvalue()


async def test_demo_interests_can_be_changed(sqlite_db: Database) -> None:
    out, text = console()
    result = await run_demo(sqlite_db, out, interests=("graph neural networks",), size=5)
    assert result.papers_sent >= 1
    assert "graph neural networks" in text.getvalue()


def _client(handler: object) -> httpx.AsyncClient:
    return build_client(
        HttpPolicy(host_intervals={}, max_retries=0), transport=httpx.MockTransport(handler)
    )  # type: ignore[arg-type]


async def test_one_failing_feed_does_not_stop_the_others(sqlite_db: Database) -> None:
    replay = recorded_transport()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("cs.CV"):
            return httpx.Response(500, text="boom")
        if request.url.path.endswith("cs.CL"):
            return httpx.Response(200, content=b"<rss><channel><item><title>cut")
        return replay.handle_request(request)

    now = datetime(2026, 11, 16, 12, tzinfo=UTC)
    async with _client(handler) as client:
        report = await ingest_announcements(sqlite_db, client, ["cs.LG", "cs.CV", "cs.CL"], now=now)
    assert set(report.failed) == {"cs.CV", "cs.CL"}
    assert report.stored.inserted > 0
    assert cursors.get(sqlite_db, cursor_name("cs.CV")).consecutive_failures == 1
    assert "malformed" in (cursors.get(sqlite_db, cursor_name("cs.CL")).last_error or "").lower()
    assert cursors.get(sqlite_db, cursor_name("cs.LG")).last_success_at == now


async def test_malformed_payload_writes_nothing(sqlite_db: Database) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        good = recorded_transport().handle_request(request)
        return httpx.Response(200, content=good.content[: len(good.content) // 2])

    async with _client(handler) as client:
        report = await ingest_announcements(sqlite_db, client, ["cs.LG"])
    assert report.failed and papers.count_papers(sqlite_db) == 0


async def test_second_poll_uses_conditional_get(sqlite_db: Database) -> None:
    seen: list[httpx.Request] = []
    replay = recorded_transport()

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return replay.handle_request(request)

    async with _client(handler) as client:
        await ingest_announcements(sqlite_db, client, ["cs.LG"])
        report = await ingest_announcements(sqlite_db, client, ["cs.LG"])
    assert "If-None-Match" in seen[1].headers
    assert report.not_modified == ["cs.LG"]


def test_cli_lists_commands_and_upgrades_idempotently(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TP_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    runner = CliRunner()
    help_text = runner.invoke(app, ["--help"]).output
    for command in ("demo", "ingest", "db"):
        assert command in help_text
    first = runner.invoke(app, ["db", "upgrade"])
    assert first.exit_code == 0 and "migrated from empty" in first.output
    second = runner.invoke(app, ["db", "upgrade"])
    assert second.exit_code == 0 and "nothing to do" in second.output
    status = runner.invoke(app, ["db", "status"])
    assert "up to date" in status.output


def test_cli_demo_runs_offline(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["demo", "--database", f"sqlite:///{tmp_path / 'demo.db'}", "--size", "5"]
    )
    assert result.exit_code == 0, result.output
    assert result.output.count("https://arxiv.org/abs/") == 5


def test_cli_reports_a_bad_database_url_without_a_traceback(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--database", "postgresql://u:pw@127.0.0.1:1/x"])
    assert result.exit_code == 1
    assert "error:" in result.output and "pw@" not in result.output
    assert "Traceback" not in result.output


def test_demo_clock_is_inside_the_bundled_feeds() -> None:
    assert DEMO_NOW.weekday() == 0  # a Monday announcement


def test_cli_outbox_shows_counts_and_rejects_bad_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TP_DATABASE_URL", f"sqlite:///{tmp_path / 'o.db'}")
    runner = CliRunner()
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    shown = runner.invoke(app, ["outbox"])
    assert shown.exit_code == 0 and "pending 0" in shown.output
    bad = runner.invoke(app, ["outbox", "--status", "lost"])
    assert bad.exit_code == 1 and "unknown status" in bad.output
    assert runner.invoke(app, ["outbox", "--retry-failed"]).exit_code == 0
