"""The ``trending-papers`` command line."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from platformdirs import user_data_dir
from rich.console import Console

from bot import logs
from bot.config import Settings
from storage.db import Database, redact_url
from storage.errors import StorageError

app = typer.Typer(
    help="trending-papers: the new arXiv papers that matter to you, in Telegram, Slack or here.",
    no_args_is_help=True,
    add_completion=False,
)
db_app = typer.Typer(help="Database schema: create, upgrade, inspect.", no_args_is_help=True)
app.add_typer(db_app, name="db")

# Soft wrap: long titles wrap where the terminal wraps them, not at a guessed width.
console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)


def _settings() -> Settings:
    settings = Settings()
    logs.configure(settings.log_level, settings.log_format, settings.secret_values())
    return settings


def _fail(message: str) -> typer.Exit:
    errors.print(f"[red]error:[/] {message}")
    return typer.Exit(code=1)


def default_demo_database() -> str:
    """The demo's own SQLite file, kept apart from a real deployment's database."""
    return f"sqlite:///{Path(user_data_dir('trending-papers', appauthor=False)) / 'demo.db'}"


@app.command()
def demo(
    interests: Annotated[
        str | None,
        typer.Option(help='Comma-separated interests, e.g. "graph neural networks, protein"'),
    ] = None,
    size: Annotated[int, typer.Option(min=1, max=50, help="Papers in the digest")] = 10,
    database: Annotated[
        str | None, typer.Option(help="Database URL (default: a demo SQLite file)")
    ] = None,
    reset: Annotated[bool, typer.Option(help="Start from an empty demo database")] = False,
    verbose: Annotated[bool, typer.Option(help="Show the pipeline's log lines")] = False,
) -> None:
    """Run the whole pipeline offline on bundled recorded feeds and print a digest."""
    from bot.demo import run_demo

    settings = _settings()
    if not verbose:
        logs.configure("WARNING", settings.log_format, settings.secret_values())
    url = database or default_demo_database()
    if reset and url.startswith("sqlite:///"):
        for suffix in ("", "-wal", "-shm"):
            Path(url.removeprefix("sqlite:///") + suffix).unlink(missing_ok=True)
    chosen = tuple(i.strip() for i in interests.split(",") if i.strip()) if interests else None
    db = Database(url)
    try:
        result = asyncio.run(run_demo(db, console, interests=chosen, size=size))
    except StorageError as exc:
        raise _fail(f"{exc} (database: {redact_url(url)})") from exc
    finally:
        db.dispose()
    console.print(
        f"[dim]Demo database: {redact_url(url)} · {result.papers_sent} papers sent · "
        f"log level {settings.log_level}[/]"
    )


@app.command()
def run() -> None:
    """Run the bot: chat adapters, scheduler, delivery, /healthz and /metrics (Ctrl-C stops)."""
    import signal

    from bot.platforms import configured_platforms
    from bot.service import Service, missing_chat_message
    from bot.trend import provider_for

    settings = _settings()
    db = Database(settings.database_url)
    trend = provider_for(settings)
    platforms = configured_platforms(settings, db, trend)
    if not platforms:
        db.dispose()
        raise _fail(missing_chat_message())
    service = Service(settings, platforms, db=db, trend_provider=trend)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await service.run(stop)

    try:
        asyncio.run(main())
    except StorageError as exc:
        raise _fail(f"{exc} (database: {redact_url(settings.database_url)})") from exc


@app.command()
def ingest(
    category: Annotated[
        list[str] | None, typer.Option("--category", "-c", help="arXiv category (repeatable)")
    ] = None,
) -> None:
    """Poll the arXiv announcement feeds once and store the new papers."""
    from bot.ingest import ingest_announcements
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
            report = await ingest_announcements(db, client, category or settings.arxiv_categories)
        console.print(
            f"{report.fetched} papers fetched: {report.stored.inserted} new, "
            f"{report.stored.updated} updated, {report.stored.unchanged} unchanged"
            + (f"; failed: {', '.join(report.failed)}" if report.failed else "")
        )

    try:
        upgrade(db)
        asyncio.run(_run())
    except StorageError as exc:
        raise _fail(str(exc)) from exc
    finally:
        db.dispose()


@app.command("outbox")
def outbox_command(
    status: Annotated[
        str | None, typer.Option(help="Only rows with this status: pending, sending, sent, failed")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Rows to show")] = 20,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Give every failed message another chance")
    ] = False,
) -> None:
    """Show the outbox: counts per status and the latest rows with their errors."""
    from rich.table import Table

    from storage import outbox
    from storage.models import OutboxStatus

    settings = _settings()
    try:
        wanted = OutboxStatus(status) if status else None
    except ValueError:
        raise _fail(f"unknown status {status!r}: use pending, sending, sent or failed") from None
    db = Database(settings.database_url)
    try:
        if retry_failed:
            console.print(f"{outbox.requeue_failed(db)} failed messages queued again.")
        counts = outbox.counts(db)
        rows = outbox.messages(db, status=wanted, limit=limit)
    except StorageError as exc:
        raise _fail(str(exc)) from exc
    finally:
        db.dispose()
    summary = ", ".join(
        f"{name} {counts.get(name, 0)}" for name in ("pending", "sending", "sent", "failed")
    )
    console.print(f"Outbox: {summary}")
    table = Table("id", "subscriber", "status", "attempts", "next attempt", "error")
    for row in rows:
        table.add_row(
            str(row.id), str(row.subscriber_id), str(row.status), str(row.attempts),
            row.next_attempt_at.strftime("%Y-%m-%d %H:%M"), (row.last_error or "")[:60],
        )  # fmt: skip
    console.print(table)


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision")] = "head",
) -> None:
    """Create the schema or migrate it to the newest revision (a no-op when current)."""
    from storage.migrate import upgrade

    settings = _settings()
    db = Database(settings.database_url)
    try:
        before, after = upgrade(db, revision)
    except StorageError as exc:
        raise _fail(f"{exc} (database: {redact_url(settings.database_url)})") from exc
    finally:
        db.dispose()
    if before == after:
        console.print(f"Database already at revision {after}: nothing to do.")
    else:
        console.print(f"Database migrated from {before or 'empty'} to {after}.")


@db_app.command("status")
def db_status() -> None:
    """Show the database URL (password hidden) and its schema revision."""
    from storage.migrate import current_revision, head_revision

    settings = _settings()
    db = Database(settings.database_url)
    try:
        current, head = current_revision(db), head_revision(db)
    except StorageError as exc:
        raise _fail(str(exc)) from exc
    finally:
        db.dispose()
    state = "up to date" if current == head else "needs `trending-papers db upgrade`"
    console.print(f"{redact_url(settings.database_url)}: revision {current or 'none'} ({state})")


def _register_feature_commands() -> None:
    """Commands that live with their features, listed after the core ones in ``--help``."""
    from bot import cli_chat, cli_ops, cli_rank, cli_search, cli_trend

    cli_chat.register(app)
    cli_search.register(app)
    cli_trend.register(app)
    cli_rank.register(app)
    cli_ops.register(app, db_app=db_app)


_register_feature_commands()


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
