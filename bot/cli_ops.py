"""Operations commands: ``doctor``, ``db copy``, and whole-database ``export`` / ``import-db``.

``register(app)`` adds them to the ``trending-papers`` app; ``db copy`` joins the app's
existing ``db`` group (pass ``db_app`` to name another group). The module does not import
``bot.cli``, so the CLI can import it without a cycle.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from bot import logs
from bot.config import Settings
from storage.db import Database, redact_url
from storage.errors import StorageError
from storage.transfer import DEFAULT_CHUNK_SIZE, CopyReport, TableCount

console = Console()
errors = Console(stderr=True)


def register(app: typer.Typer, *, db_app: typer.Typer | None = None) -> None:
    """Add ``doctor``, ``export`` and ``import-db`` to ``app`` and ``copy`` to its db group."""
    group = db_app if db_app is not None else _group(app, "db")
    app.command("doctor")(doctor)
    app.command("export")(export)
    app.command("import-db")(import_db)
    group.command("copy")(db_copy)


def _group(app: typer.Typer, name: str) -> typer.Typer:
    for info in app.registered_groups:
        if info.name == name and info.typer_instance is not None:
            return info.typer_instance
    raise ValueError(f"the app has no {name!r} command group to add to")


def _settings() -> Settings:
    try:
        settings = Settings()
    except ValidationError as exc:
        names = ", ".join(
            "TP_" + "_".join(str(part) for part in error["loc"]).upper() for error in exc.errors()
        )
        raise _fail(f"invalid configuration ({names}); `trending-papers doctor` explains") from None
    logs.configure(settings.log_level, settings.log_format, settings.secret_values())
    return settings


@contextmanager
def _database(url: str) -> Iterator[Database]:
    try:
        db = Database(url)
    except StorageError as exc:
        raise _fail(_explain(exc)) from exc
    try:
        yield db
    except StorageError as exc:
        raise _fail(_explain(exc)) from exc
    finally:
        db.dispose()


def _fail(message: str) -> typer.Exit:
    errors.print(f"[red]error:[/] {escape(message)}", highlight=False)
    return typer.Exit(code=1)


def _explain(exc: StorageError) -> str:
    """The error and, when it adds something, the first line of its cause."""
    cause = exc.__cause__
    detail = str(getattr(cause, "orig", None) or cause or "").strip()
    first = detail.splitlines()[0] if detail else ""
    return f"{exc} ({first})" if first and first not in str(exc) else str(exc)


def _progress(count: TableCount) -> None:
    rows = "row" if count.rows == 1 else "rows"
    console.print(f"  [green]✓[/] {count.table}: {count.rows} {rows}", highlight=False)


def _summary(report: CopyReport, verb: str) -> None:
    console.print(
        f"{escape(verb)} {report.total_rows} rows in {len(report.tables)} tables "
        f"(schema revision {report.revision}); row counts checked.",
        highlight=False,
    )
    if report.skipped:
        console.print(
            "[dim]Left out, not part of the data (the search index is rebuilt from the papers): "
            f"{', '.join(report.skipped)}[/]",
            highlight=False,
        )


def doctor(
    offline: Annotated[
        bool, typer.Option("--offline", help="Skip the chat platforms and the sources")
    ] = False,
) -> None:
    """Check configuration, database, chat tokens and sources, and say what to fix."""
    from bot.doctor import diagnose, exit_code, render, secret_values

    try:
        secrets = secret_values(Settings())
    except ValidationError:
        secrets = []  # the configuration check explains what is wrong
    # Library chatter would break up the table; the doctor reports every problem itself.
    logs.configure("WARNING", "text", secrets)
    checks = asyncio.run(diagnose(network=not offline))
    render(checks, console)
    raise typer.Exit(code=exit_code(checks))


def db_copy(
    to: Annotated[
        str,
        typer.Option(
            "--to", help="Target database URL, e.g. postgresql://user:password@host/dbname"
        ),
    ],
    force: Annotated[
        bool, typer.Option("--force", help="Replace whatever the target database holds")
    ] = False,
    chunk_size: Annotated[
        int, typer.Option(min=1, max=100_000, help="Rows per batch")
    ] = DEFAULT_CHUNK_SIZE,
) -> None:
    """Copy the whole database (TP_DATABASE_URL) to another one, e.g. SQLite to PostgreSQL."""
    from storage.transfer import copy_database

    settings = _settings()
    with _database(settings.database_url) as source:
        console.print(f"Copying {redact_url(source.url)} → {redact_url(to)}", markup=False)
        report = copy_database(source, to, force=force, chunk_size=chunk_size, on_table=_progress)
    _summary(report, "Copied")
    console.print(
        f"To switch over, stop the bot, set [bold]TP_DATABASE_URL={escape(redact_url(to))}[/] "
        "(with the real password) and start it again.",
        highlight=False,
    )


def export(
    file: Annotated[
        Path, typer.Option("--file", "-f", help="File to write (.jsonl, or .jsonl.gz to compress)")
    ],
    overwrite: Annotated[bool, typer.Option(help="Replace an existing file")] = False,
) -> None:
    """Write the whole database to a JSON Lines file (a backup that any backend can import)."""
    from storage.transfer import export_database

    if file.exists() and not overwrite:
        raise _fail(f"{file} exists; pass --overwrite to replace it")
    settings = _settings()
    with _database(settings.database_url) as db:
        report = export_database(db, file, on_table=_progress)
    _summary(report, f"Exported to {file}:")
    console.print(
        f"The file holds every subscriber's data; it is readable only by you. "
        f"Restore it with `trending-papers import-db --file {file}`.",
        markup=False,
        highlight=False,
    )


def import_db(
    file: Annotated[
        Path,
        typer.Option(
            "--file", "-f", exists=True, dir_okay=False, readable=True, help="Export to load"
        ),
    ],
    force: Annotated[
        bool, typer.Option("--force", help="Replace whatever the database holds")
    ] = False,
) -> None:
    """Load a file written by `trending-papers export` into the database (TP_DATABASE_URL)."""
    from storage.transfer import import_database

    settings = _settings()
    with _database(settings.database_url) as db:
        report = import_database(db, file, force=force, on_table=_progress)
    _summary(report, f"Imported from {file}:")
