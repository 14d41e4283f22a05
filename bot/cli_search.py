"""CLI commands for the archive: ``search`` (the same search as /search) and ``backfill``.

``register(app)`` adds them to the ``trending-papers`` command line.
"""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Annotated

import typer
from rich.console import Console, RenderableType
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
)
from rich.text import Text

from bot import logs
from bot.backfill import BackfillProgress, BackfillReport, backfill, parse_day, set_spec_for
from bot.config import Settings
from feeds.http import FetchError, HttpPolicy, build_client
from storage.db import Database, redact_url
from storage.errors import StorageError
from storage.search import SearchHit, SearchPage, search

console = Console()
errors = Console(stderr=True)

MAX_AUTHORS_SHOWN = 4


def _settings() -> Settings:
    settings = Settings()
    logs.configure(settings.log_level, settings.log_format, settings.secret_values())
    return settings


def _fail(message: str) -> typer.Exit:
    errors.print(f"[red]error:[/] {escape(message)}")
    return typer.Exit(code=1)


# ---------------------------------------------------------------------------------------------
# search


def render_page(page: SearchPage, query: str, per_page: int) -> list[Text]:
    """The lines of a result page for a terminal, highlights in bold yellow."""
    lines: list[Text] = []
    if page.hits:
        first = (page.page - 1) * per_page + 1
        header = Text(f"🔎 {query}: {page.total} result{'s' if page.total != 1 else ''}")
        if page.pages > 1:
            header.append(f" · page {page.page}/{page.pages}")
        header.stylize("bold")
        lines.append(header)
        if page.message:
            lines.append(Text(page.message, style="dim"))
        for offset, hit in enumerate(page.hits):
            lines.extend(_hit_lines(first + offset, hit))
    else:
        lines.append(Text(page.message or "No results.", style="yellow"))
    if page.suggestion:
        lines.append(Text(f"Try: trending-papers search {_shell_quote(page.suggestion)}"))
    return lines


def _hit_lines(number: int, hit: SearchHit) -> list[Text]:
    authors = ", ".join(hit.authors[:MAX_AUTHORS_SHOWN])
    if len(hit.authors) > MAX_AUTHORS_SHOWN:
        authors += " et al."
    title = Text(f"\n{number:>2}. ", style="bold")
    title.append(hit.title, style="bold")
    meta = Text(f"    {authors} · {hit.primary_category} · {hit.published:%Y-%m-%d}", style="dim")
    snippet = Text("    ")
    for piece, highlighted in hit.snippet:
        snippet.append(piece, style="bold yellow" if highlighted else None)
    link = Text(f"    https://arxiv.org/abs/{hit.arxiv_id}", style="cyan")
    return [title, meta, snippet, link]


def _shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def search_command(
    query: Annotated[str, typer.Argument(help='What to look for, e.g. "diffusion author:ho"')],
    page: Annotated[int, typer.Option(min=1, help="Result page")] = 1,
    per_page: Annotated[int, typer.Option(min=1, max=50, help="Results per page")] = 5,
) -> None:
    """Search every stored paper (words, "phrases", -exclude, author:, cat:, since:, sort:)."""
    from storage.migrate import upgrade

    settings = _settings()
    db = Database(settings.database_url)
    try:
        upgrade(db)
        result = search(db, query, page=page, per_page=per_page)
    except StorageError as exc:
        raise _fail(f"{exc} (database: {redact_url(settings.database_url)})") from exc
    finally:
        db.dispose()
    for line in render_page(result, query, per_page):
        console.print(line)


# ---------------------------------------------------------------------------------------------
# backfill


class _RateColumn(ProgressColumn):
    """Records so far, records per second and, when it can be estimated, the time left."""

    def render(self, task: Task) -> Text:
        snapshot: BackfillProgress | None = task.fields.get("snapshot")
        if snapshot is None:
            return Text("starting…", style="dim")
        parts = [f"{snapshot.harvested:,} records", f"{snapshot.rate:,.1f}/s"]
        if snapshot.waiting:
            parts.append(f"arXiv asked for a {snapshot.waiting:.0f} s pause")
        elif snapshot.eta is not None:
            estimated = "" if snapshot.total else "~"
            parts.append(f"ETA {estimated}{_duration(snapshot.eta)}")
        else:
            parts.append("ETA unknown")
        return Text(" · ".join(parts))


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def backfill_command(
    from_: Annotated[
        str, typer.Option("--from", help="Harvest records changed since this day (YYYY-MM-DD)")
    ],
    category: Annotated[
        str | None,
        typer.Option(
            "--category", "-c", help="Only this archive or category: cs, cs.LG, hep-th, math.AG"
        ),
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Only papers last revised on or before this day")
    ] = None,
    max_pages: Annotated[
        int | None, typer.Option(min=1, help="Stop after this many pages (resumable)")
    ] = None,
) -> None:
    """Harvest the arXiv archive through OAI-PMH; resumes where a stopped run left off."""
    from storage.migrate import upgrade

    settings = _settings()
    try:
        from_date = parse_day(from_)
        until_date = parse_day(until) if until else None
        set_spec = set_spec_for(category) if category else None
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    if from_date > date.today():
        raise _fail(f"--from {from_date} is in the future")
    if until_date is not None and until_date < from_date:
        raise _fail(f"--until {until_date} is before --from {from_date}")
    db = Database(settings.database_url)
    policy = HttpPolicy(
        user_agent=settings.user_agent,
        read_timeout=settings.http_timeout,
        max_retries=settings.http_max_retries,
        max_bytes=settings.http_max_bytes,
    )
    what = f"arXiv {set_spec or 'all'} since {from_date}"

    async def _run(bar: Progress) -> BackfillReport:
        task = bar.add_task(what, total=None, snapshot=None)

        def show(snapshot: BackfillProgress) -> None:
            done = None if snapshot.fraction is None else round(snapshot.fraction * 1000)
            bar.update(task, total=1000 if done is not None else None, completed=done or 0,
                       snapshot=snapshot)  # fmt: skip

        async with build_client(policy) as client:
            return await backfill(
                db, client, from_date=from_date, until=until_date, set_spec=set_spec,
                progress=show, max_pages=max_pages,
            )  # fmt: skip

    try:
        upgrade(db)
        with Progress(
            SpinnerColumn(), TextColumn("{task.description}"), _BarOrNothing(), _RateColumn(),
            console=console, transient=False,
        ) as bar:  # fmt: skip
            report = asyncio.run(_run(bar))
    except KeyboardInterrupt:
        errors.print("Interrupted. Run the same command again to resume from the last page.")
        raise typer.Exit(code=130) from None
    except (FetchError, ValueError) as exc:
        raise _fail(f"harvest stopped: {exc}. Run the same command again to resume.") from exc
    except StorageError as exc:
        raise _fail(f"{exc} (database: {redact_url(settings.database_url)})") from exc
    finally:
        db.dispose()
    state = "complete" if report.complete else "paused (run again to continue)"
    console.print(
        f"Backfill {state}: {report.records:,} records in {report.pages} pages, "
        f"{report.stored.inserted:,} new, {report.stored.updated:,} updated, "
        f"{report.stored.unchanged:,} unchanged"
        + (f", {report.skipped:,} after --until" if report.skipped else "")
        + (f", {report.restarts} restart(s) after an expired token" if report.restarts else "")
        + f" · {_duration(report.elapsed)}"
    )


class _BarOrNothing(ProgressColumn):
    """A bar while the share done is known; nothing while it is not."""

    def __init__(self) -> None:
        super().__init__()
        self._bar = BarColumn(bar_width=30)

    def render(self, task: Task) -> RenderableType:
        if task.total is None:
            return Text("")
        return self._bar.render(task)


def register(app: typer.Typer) -> None:
    """Add ``search`` and ``backfill`` to the command line."""
    app.command("search")(search_command)
    app.command("backfill")(backfill_command)
