"""CLI commands for ranking: ``rank`` (explain a subscriber's ranking), ``import`` and ``train``.

``register(app)`` adds them to the ``trending-papers`` command line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bot import logs
from bot.config import Settings
from feeds.arxiv import parse_announcements, parse_api_feed
from feeds.http import FetchError, MalformedPayload
from feeds.ids import split_version
from feeds.records import Paper as PaperRecord
from storage.db import Database, redact_url
from storage.errors import StorageError
from storage.types import utcnow

console = Console()
errors = Console(stderr=True)

MAX_IMPORT_BYTES = 200_000_000
MAX_DAYS = 36_500
_PARTS = ("keyword", "author", "category", "rocchio", "liked_author", "learned")


def _settings() -> Settings:
    settings = Settings()
    logs.configure(settings.log_level, settings.log_format)
    return settings


def _fail(message: str) -> typer.Exit:
    errors.print(f"[red]error:[/] {escape(message)}")
    return typer.Exit(code=1)


def _parse_when(text: str | None) -> datetime:
    """``--now``: an ISO date or datetime (UTC when no zone is given); the clock if unset."""
    if not text:
        return utcnow()
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        message = f"cannot read {text!r} as a date: use e.g. 2026-11-16 or 2026-11-16T08:00"
        raise ValueError(message) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# --- import ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportProblem:
    """A record of an import file that could not be used."""

    line: int
    reason: str


def _strings(value: Any, *, split: str | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        parts = value.split(split) if split else value.split()
        return tuple(p.strip() for p in parts if p.strip())
    if isinstance(value, list):
        return tuple(str(v).strip() for v in value if str(v).strip())
    raise ValueError("must be a list or a string")


def _date(value: Any, field: str) -> datetime:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{field} must be an ISO date such as 2026-11-16")
    text = value.strip()
    moment = (
        datetime.combine(datetime.fromisoformat(text).date(), time(0))
        if len(text) == 10
        else datetime.fromisoformat(text.replace("Z", "+00:00"))
    )
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def paper_from_json(record: Any, now: datetime) -> PaperRecord:
    """A paper from one JSONL record; ``ValueError`` says what is wrong with it.

    Fields: ``id`` (with or without version) and ``title`` are required; ``abstract``,
    ``authors`` (list, or one string separated by commas), ``categories`` (list or
    space-separated), ``primary_category``, ``published``/``updated``/``announced`` (ISO
    dates), ``version``, ``doi``, ``journal_ref`` and ``comment`` are optional.
    """
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    raw_id = record.get("id") or record.get("arxiv_id")
    if not isinstance(raw_id, str):
        raise ValueError("missing id")
    arxiv_id, id_version = split_version(raw_id)
    title = " ".join(str(record.get("title") or "").split())
    if not title:
        raise ValueError("missing title")
    version = record.get("version", id_version or 1)
    if not isinstance(version, int) or version < 1:
        raise ValueError("version must be a positive integer")
    categories = _strings(record.get("categories"), split=None)
    primary = record.get("primary_category") or (categories[0] if categories else "")
    if not isinstance(primary, str):
        raise ValueError("primary_category must be a string")
    if primary and primary not in categories:
        categories = (primary, *categories)
    published = _date(record["published"], "published") if record.get("published") else now
    updated = _date(record["updated"], "updated") if record.get("updated") else published
    announced = _date(record["announced"], "announced") if record.get("announced") else None

    def optional(name: str) -> str | None:
        value = record.get(name)
        return str(value) if value not in (None, "") else None

    return PaperRecord(
        arxiv_id=arxiv_id,
        version=version,
        title=title,
        abstract=" ".join(str(record.get("abstract") or "").split()),
        authors=_strings(record.get("authors"), split=","),
        categories=categories,
        primary_category=primary or "unknown",
        published=published,
        updated=updated,
        comment=optional("comment"),
        journal_ref=optional("journal_ref"),
        doi=optional("doi"),
        announced=announced,
    )


def read_jsonl(text: str, now: datetime) -> tuple[list[PaperRecord], list[ImportProblem]]:
    """Papers from JSON Lines; bad lines are reported, never fatal."""
    found: list[PaperRecord] = []
    problems: list[ImportProblem] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            found.append(paper_from_json(json.loads(line), now))
        except json.JSONDecodeError as exc:
            problems.append(ImportProblem(number, f"not valid JSON ({exc.msg})"))
        except (ValueError, TypeError) as exc:
            problems.append(ImportProblem(number, str(exc)))
    return found, problems


def read_atom(raw: bytes, url: str) -> list[PaperRecord]:
    """Papers from an arXiv API response (Atom), or an announcement RSS/Atom feed."""
    try:
        return list(parse_api_feed(raw, url=url).papers)
    except MalformedPayload as exc:
        if "not an arXiv API Atom feed" not in str(exc):
            raise
        return list(parse_announcements(raw, url=url).papers)


def read_papers(path: Path, now: datetime) -> tuple[list[PaperRecord], list[ImportProblem]]:
    """Papers from ``path`` by its extension: ``.jsonl``/``.json`` or ``.atom``/``.xml``."""
    size = path.stat().st_size
    if size > MAX_IMPORT_BYTES:
        raise ValueError(f"{path} is {size:,} bytes; the limit is {MAX_IMPORT_BYTES:,}")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        return read_jsonl(path.read_text(encoding="utf-8"), now)
    if suffix in (".atom", ".xml"):
        return read_atom(path.read_bytes(), path.as_uri()), []
    raise ValueError(f"don't know how to read {path.name}: use .atom/.xml (arXiv API) or .jsonl")


# --- commands --------------------------------------------------------------------------------


def _score_cell(value: float) -> str:
    return f"{value:.3f}" if value else "·"


def register(app: typer.Typer) -> None:
    """Add ``rank``, ``import`` and ``train`` to ``app``."""

    @app.command("rank")
    def rank_command(
        subscriber: Annotated[int, typer.Option("--subscriber", "-s", help="Subscriber id")],
        explain: Annotated[
            bool, typer.Option("--explain", help="Show every part of each paper's score")
        ] = False,
        days: Annotated[
            int | None,
            typer.Option(min=1, max=MAX_DAYS, help="Freshness window (default TP_FRESHNESS_DAYS)"),
        ] = None,
        size: Annotated[
            int | None, typer.Option(min=1, max=200, help="Papers (default: the digest size)")
        ] = None,
        now: Annotated[
            str | None, typer.Option(help="Rank as of this date or time (ISO, UTC)")
        ] = None,
        trend: Annotated[
            bool, typer.Option("--trend/--no-trend", help="Blend in the trend score")
        ] = True,
    ) -> None:
        """Rank the fresh papers for one subscriber, as their next digest would (sends nothing)."""
        from bot.digest import plan
        from storage import subscribers
        from storage.migrate import is_up_to_date

        settings = _settings()
        try:
            moment = _parse_when(now)
        except ValueError as exc:
            raise _fail(str(exc)) from None
        window = days or settings.freshness_days
        db = Database(settings.database_url)
        try:
            if not is_up_to_date(db):
                raise _fail("the database schema is not current: run `trending-papers db upgrade`")
            sub = subscribers.get(db, subscriber)
            if sub is None:
                raise _fail(f"no subscriber with id {subscriber}")
            if size is not None:
                sub = sub.model_copy(update={"digest_size": size})
            scores, lines = _trend(db, moment, window) if trend else ({}, {})
            planned = plan(
                db, [sub], moment, freshness_days=window, title_weight=settings.title_weight,
                trend=scores,
            )  # fmt: skip
        except StorageError as exc:
            raise _fail(f"{exc} (database: {redact_url(settings.database_url)})") from exc
        finally:
            db.dispose()
        ranked = planned.ranked(subscriber)
        label = sub.display_name or f"{sub.platform} {sub.chat_id}"
        console.print(
            f"Ranking for subscriber {subscriber} ({escape(label)}) as of "
            f"{moment:%Y-%m-%d %H:%M} UTC: {len(planned.papers)} papers from the last {window} "
            f"days, {len(ranked)} shown"
        )
        if not ranked:
            console.print("Nothing to rank: no fresh paper matches, or all were delivered already.")
            return
        if explain:
            table = Table("#", "paper", "score", "relevance", "trend", *_PARTS, "title")
            for number, item in enumerate(ranked, start=1):
                parts = dict(item.parts)
                table.add_row(
                    str(number), item.arxiv_id, f"{item.score:.3f}", f"{item.relevance:.3f}",
                    _score_cell(item.trend), *(_score_cell(parts.get(p, 0.0)) for p in _PARTS),
                    escape(planned.papers[item.arxiv_id].title[:60]),
                )  # fmt: skip
            console.print(table)
            console.print(
                "score = relevance^a × (1 + b × trend_weight × trend); relevance = keyword + "
                "author + category + rocchio + liked_author + weight × learned. The order is "
                "by score, re-ranked for diversity (MMR) so one sub-topic does not take every slot."
            )
        for number, item in enumerate(ranked, start=1):
            paper = planned.papers[item.arxiv_id]
            console.print(f"{number:>2}. {escape(paper.title)}  [dim]{paper.arxiv_id}[/]")
            console.print(f"    why: {escape(item.why)}")
            if item.arxiv_id in lines:
                console.print(f"    {escape(lines[item.arxiv_id])}")

    @app.command("import")
    def import_command(
        file: Annotated[
            Path,
            typer.Option(
                "--file", "-f", exists=True, dir_okay=False, readable=True,
                help="papers.atom / .xml (arXiv API response) or papers.jsonl",
            ),
        ],
    ) -> None:  # fmt: skip
        """Store papers from a file, so any set of papers can be ranked."""
        from storage.migrate import upgrade
        from storage.papers import upsert_papers

        settings = _settings()
        try:
            found, problems = read_papers(file, utcnow())
        except (ValueError, UnicodeDecodeError, FetchError) as exc:
            raise _fail(f"could not read {file}: {exc}") from None
        for problem in problems[:20]:
            errors.print(f"[yellow]line {problem.line}:[/] {escape(problem.reason)}")
        if len(problems) > 20:
            errors.print(f"[yellow]… and {len(problems) - 20} more problems[/]")
        if not found:
            raise _fail(f"no usable papers in {file}")
        db = Database(settings.database_url)
        try:
            upgrade(db)
            stored = upsert_papers(db, found)
        except StorageError as exc:
            raise _fail(f"{exc} (database: {redact_url(settings.database_url)})") from exc
        finally:
            db.dispose()
        console.print(
            f"{len(found)} papers read from {file.name}: {stored.inserted} new, "
            f"{stored.updated} updated, {stored.unchanged} unchanged"
            + (f"; {len(problems)} records skipped" if problems else "")
        )
        oldest = min(p.announced or p.published for p in found)
        age = (utcnow() - oldest).days + 1
        if age > settings.freshness_days:
            console.print(
                f"[dim]Some are older than the {settings.freshness_days}-day freshness window: "
                f"rank them with `trending-papers rank --subscriber ID --days {age}`.[/]"
            )

    @app.command("train")
    def train_command(
        now: Annotated[
            str | None, typer.Option(help="Train as of this date or time (ISO, UTC)")
        ] = None,
    ) -> None:
        """Train the learned ranking model of every subscriber with enough ratings."""
        from bot.learning import MIN_NEGATIVES, MIN_POSITIVES, train_all
        from storage.migrate import upgrade

        settings = _settings()
        try:
            moment = _parse_when(now)
        except ValueError as exc:
            raise _fail(str(exc)) from None
        db = Database(settings.database_url)
        try:
            upgrade(db)
            report = train_all(db, moment, title_weight=settings.title_weight)
        except StorageError as exc:
            raise _fail(f"{exc} (database: {redact_url(settings.database_url)})") from exc
        finally:
            db.dispose()
        console.print(
            f"Trained {report.trained} models ({report.eligible} subscribers with at least "
            f"{MIN_POSITIVES} 👍 and {MIN_NEGATIVES} 👎) in {report.seconds:.1f} s; "
            f"{report.removed} stale models removed"
            + (f"; {len(report.failed)} failed (see the log)" if report.failed else "")
        )


def _trend(db: Database, now: datetime, days: int) -> tuple[dict[str, float], dict[str, str]]:
    """Trend scores and lines of the candidates; relevance alone when trend is unavailable."""
    from bot.digest import candidates
    from bot.trend import scores_and_lines

    try:
        ids = [p.arxiv_id for p in candidates(db, now, days)]
        scores, lines = scores_and_lines(db, ids, now)
        return dict(scores), dict(lines)
    except Exception as exc:  # a broken trend must not stop the ranking from being shown
        errors.print(
            f"[yellow]trend unavailable ({escape(str(exc))}); ranking by relevance alone[/]"
        )
        return {}, {}
