"""CLI commands for engagement: ``trending``, ``sources`` and ``engagement`` (poll once).

``register(app)`` adds them to the ``trending-papers`` command line.
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime, timedelta
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bot import logs
from bot.circle import is_circle_key
from bot.config import Settings
from bot.engagement import ALL_SOURCES, ARXIV_LOOKUP
from storage.db import Database, redact_url
from storage.errors import StorageError
from storage.models import SourceCursor
from storage.types import utcnow

console = Console()
errors = Console(stderr=True)

_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([hdw]?)\s*", re.IGNORECASE)
_UNIT_HOURS = {"h": 1.0, "d": 24.0, "w": 24.0 * 7, "": 24.0}
MAX_SINCE = timedelta(days=90)


def parse_since(text: str) -> timedelta:
    """``"3d"``, ``"36h"``, ``"1w"`` or a plain number of days; ``ValueError`` with a hint."""
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError(f"cannot read {text!r} as a duration: use e.g. 3d, 36h or 1w")
    amount = float(match.group(1)) * _UNIT_HOURS[match.group(2).lower()]
    span = timedelta(hours=amount)
    if span <= timedelta(0) or span > MAX_SINCE:
        raise ValueError(f"{text!r} is out of range: give something between 1h and 90d")
    return span


def _settings() -> Settings:
    settings = Settings()
    logs.configure(settings.log_level, settings.log_format)
    return settings


def _fail(message: str) -> typer.Exit:
    errors.print(f"[red]error:[/] {escape(message)}")
    return typer.Exit(code=1)


def _when(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "never"
    age = now - moment
    if age < timedelta(minutes=1):
        return "just now"
    if age < timedelta(hours=1):
        return f"{int(age.total_seconds() // 60)} min ago"
    if age < timedelta(days=2):
        return f"{age.total_seconds() / 3600:.0f} h ago"
    return moment.strftime("%Y-%m-%d %H:%M")


def health_state(cursor: SourceCursor) -> str:
    """``ok``, ``failing (N in a row)`` or ``never polled``."""
    if cursor.last_poll_at is None and cursor.last_success_at is None:
        return "never polled"
    if cursor.consecutive_failures:
        return f"failing ({cursor.consecutive_failures} in a row)"
    return "ok"


def register(app: typer.Typer) -> None:
    """Add ``trending``, ``sources`` and ``engagement`` to ``app``."""
    app.command("trending")(trending_command)
    app.command("sources")(sources_command)
    app.command("engagement")(engagement_command)


def trending_command(
    since: Annotated[str, typer.Option(help="Papers announced this recently: 3d, 36h, 1w")] = "3d",
    category: Annotated[
        str | None, typer.Option("--category", "-c", help="Only this arXiv category, e.g. cs.LG")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=200, help="Papers to list")] = 20,
) -> None:
    """The papers people are talking about, with their engagement per source."""
    from bot.trend import TrendConfig, trending

    try:
        span = parse_since(since)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    settings = _settings()
    db = Database(settings.database_url)
    now = utcnow()
    try:
        papers = trending(
            db,
            now,
            category=category,
            since=span,
            limit=limit,
            config=TrendConfig.from_settings(settings),
        )
    except StorageError as exc:
        raise _fail(f"{exc} (database: {redact_url(settings.database_url)})") from exc
    finally:
        db.dispose()
    scope = f" in {category}" if category else ""
    if not papers:
        console.print(
            f"No paper announced in the last {since}{scope} has engagement yet. "
            "Poll the sources with `trending-papers engagement`."
        )
        return
    console.print(f"[bold]Trending{escape(scope)}, announced in the last {escape(since)}[/]\n")
    for rank, paper in enumerate(papers, start=1):
        console.print(f"[bold]{rank:>2}. {escape(paper.title)}[/]  [dim]{paper.score:.2f}[/]")
        authors = ", ".join(paper.authors[:3]) + (" et al." if len(paper.authors) > 3 else "")
        console.print(f"    {escape(authors)} · [cyan]{escape(paper.primary_category)}[/]")
        console.print(f"    {escape(paper.line)}")
        console.print(f"    [blue]https://arxiv.org/abs/{paper.arxiv_id}[/]")


def sources_command() -> None:
    """Health of every source: last success, last error, failures in a row."""
    from storage import cursors

    settings = _settings()
    db = Database(settings.database_url)
    try:
        rows = [c for c in cursors.all_cursors(db) if not is_circle_key(c.source)]
    except StorageError as exc:
        raise _fail(f"{exc} (database: {redact_url(settings.database_url)})") from exc
    finally:
        db.dispose()
    now = utcnow()
    seen = {row.source for row in rows}
    rows += [SourceCursor(source=name) for name in ALL_SOURCES if name not in seen]
    table = Table("source", "state", "last success", "last error")
    for row in sorted(rows, key=lambda c: (c.source.startswith("arxiv"), c.source)):
        state = health_state(row)
        style = "green" if state == "ok" else "red" if state.startswith("failing") else "dim"
        error = ""
        if row.last_error and row.consecutive_failures:
            error = f"{_when(row.last_error_at, now)}: {row.last_error[:90]}"
        table.add_row(
            escape(row.source),
            f"[{style}]{state}[/]",
            _when(row.last_success_at, now),
            escape(error),
        )
    console.print(table)
    console.print(
        f"[dim]{ARXIV_LOOKUP} fetches papers mentioned before the announcement feed listed them.[/]"
    )


def engagement_command() -> None:
    """Poll every configured engagement source once and store what it reports."""
    from bot.engagement import build_sources, poll_engagement
    from feeds.http import HttpPolicy, build_client
    from storage.migrate import upgrade

    settings = _settings()
    db = Database(settings.database_url)
    policy = HttpPolicy(
        user_agent=settings.user_agent,
        read_timeout=settings.http_timeout,
        max_retries=settings.http_max_retries,
        max_bytes=settings.http_max_bytes,
    )

    async def _run() -> None:
        async with build_client(policy) as client:
            report = await poll_engagement(
                db, client, build_sources(settings, client, db), utcnow()
            )
        for outcome in report.outcomes:
            mark = "[green]ok[/]" if outcome.error is None else "[red]failed[/]"
            detail = f": {escape(outcome.error)}" if outcome.error else ""
            console.print(
                f"{outcome.source}: {mark}, {outcome.signals} signals about "
                f"{outcome.mentioned} papers, {outcome.stored} new snapshots{detail}"
            )
        if report.linked:
            console.print(f"{report.linked} papers mentioned before their announcement fetched.")

    try:
        upgrade(db)
        asyncio.run(_run())
    except StorageError as exc:
        raise _fail(f"{exc} (database: {redact_url(settings.database_url)})") from exc
    finally:
        db.dispose()
