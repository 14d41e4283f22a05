"""``trending-papers doctor``: check a deployment and say what to fix.

It reads the configuration the way the bot does (environment and ``.env``), then checks the
database and its migrations, the chat platforms' tokens (Telegram ``getMe``, Slack
``auth.test``) and one cheap request to each source through the same HTTP client the bot
polls with. Every answer is a ``Check``: a name, a status, what was found and, when something
is wrong, what to do about it. Secrets never appear in a check: every configured secret is
masked in every line before it leaves this module.

The network is injectable (``source_transport``, ``chat_transport``), so tests run the real
checks against ``httpx.MockTransport`` or the loopback fakes of the chat APIs.
"""

from __future__ import annotations

import asyncio
import difflib
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import time
from enum import StrEnum
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy.engine import make_url

from bot.config import Settings
from feeds import arxiv, bluesky, hackernews, huggingface, reddit, semanticscholar
from feeds.http import (
    FetchError,
    HttpPolicy,
    MalformedPayload,
    RateLimited,
    Sleep,
    build_client,
    parse_json,
    raise_for_status,
)
from storage.db import Database, normalize_url, redact_url
from storage.errors import StorageError
from storage.migrate import current_revision, head_revision, is_up_to_date

PLACEHOLDER_EMAIL = "trending-papers@example.invalid"
NOT_SETTINGS = {"TP_TEST_POSTGRES_URL": "the PostgreSQL server of the test suite"}
"""``TP_`` variables that are not settings but have a known use, so they are no typo."""
S2_PROBE_ID = "ARXIV:1706.03762"
"""Any paper Semantic Scholar surely knows; the batch endpoint needs at least one id."""
BLUESKY_PROBE_ACTOR = "bsky.app"
CHAT_TIMEOUT = 10.0
SOURCE_TIMEOUT = 15.0


class Status(StrEnum):
    """How one check went."""

    OK = "ok"
    WARN = "warn"
    """Works, but something deserves attention; does not fail the doctor."""
    FAIL = "fail"
    SKIP = "skip"
    """Not configured or not reachable because an earlier check failed."""


SYMBOLS = {
    Status.OK: "[green]✓[/]",
    Status.WARN: "[yellow]![/]",
    Status.FAIL: "[red]✗[/]",
    Status.SKIP: "[dim]–[/]",
}


@dataclass(frozen=True)
class Check:
    """The outcome of one check: what was looked at, how it went, and what to do."""

    name: str
    status: Status
    detail: str
    fix: str | None = None


def exit_code(checks: Sequence[Check]) -> int:
    """1 when any check failed, else 0."""
    return 1 if any(check.status is Status.FAIL for check in checks) else 0


# --------------------------------------------------------------------------------------------
# Entry point


async def diagnose(
    *,
    env_file: Path | None = Path(".env"),
    network: bool = True,
    source_transport: httpx.AsyncBaseTransport | None = None,
    chat_transport: httpx.AsyncBaseTransport | None = None,
    sleep: Sleep = asyncio.sleep,
) -> list[Check]:
    """Run every check; ``network=False`` skips the chat platforms and the sources.

    The configuration is read as the bot reads it: the process environment, then
    ``env_file`` (``./.env`` by default; None for none).
    """
    settings, checks = configuration_checks(env_file)
    if settings is None:
        skipped = ["database", "telegram", "slack", *SOURCE_NAMES]
        checks += [Check(name, Status.SKIP, "configuration is invalid") for name in skipped]
        return checks
    secrets = secret_values(settings)
    checks += await asyncio.to_thread(database_checks, settings.database_url)
    if network:
        results = await asyncio.gather(
            telegram_check(settings, chat_transport),
            slack_check(settings, chat_transport),
            source_checks(settings, source_transport, sleep),
        )
        checks += [*results[0], *results[1], *results[2]]
    else:
        checks += [
            Check(name, Status.SKIP, "not checked (--offline)")
            for name in ["telegram", "slack", *SOURCE_NAMES]
        ]
    return [mask(check, secrets) for check in checks]


def render(checks: Sequence[Check], console: Console) -> None:
    """Print the checks as a table, then the list of fixes."""
    table = Table(show_header=True, header_style="bold", expand=False)
    table.add_column("check")
    table.add_column("", justify="center")
    table.add_column("detail", overflow="fold")
    # Details quote servers and user input: escaped, so a "[" is text, never markup.
    for check in checks:
        table.add_row(escape(check.name), SYMBOLS[check.status], escape(check.detail))
    console.print(table)
    fixes = [check for check in checks if check.fix and check.status in (Status.FAIL, Status.WARN)]
    if fixes:
        console.print("\n[bold]What to fix[/]")
        for number, check in enumerate(fixes, start=1):
            console.print(
                f"{number}. [bold]{escape(check.name)}[/]: {escape(check.fix or '')}",
                highlight=False,
            )
    failed = sum(check.status is Status.FAIL for check in checks)
    if failed:
        console.print(f"\n[red]{failed} check{'s' if failed > 1 else ''} failed.[/]")
    else:
        console.print("\n[green]Everything needed works.[/]")


# --------------------------------------------------------------------------------------------
# Configuration


def setting_variables() -> dict[str, str]:
    """``TP_`` variable name → settings field name, for every setting."""
    return {f"TP_{name.upper()}": name for name in Settings.model_fields}


def configuration_checks(env_file: Path | None) -> tuple[Settings | None, list[Check]]:
    """Parse the settings and look for mistakes; the settings are None when invalid."""
    file_values = _env_file_values(env_file)
    checks = _variable_checks(os.environ, file_values)
    try:
        settings = Settings(_env_file=env_file)  # type: ignore[call-arg]
    except ValidationError as exc:
        problems = "; ".join(
            f"TP_{'_'.join(str(part) for part in error['loc']).upper()}: {error['msg']}"
            for error in exc.errors()
        )
        return None, [
            Check(
                "configuration",
                Status.FAIL,
                problems,
                "correct these variables (deploy/env.example lists every one with its default)",
            ),
            *checks,
        ]
    where = f"environment and {env_file}" if file_values else "environment"
    checks.insert(0, Check("configuration", Status.OK, f"settings valid (read from the {where})"))
    checks += _setting_checks(settings)
    return settings, checks


def _env_file_values(env_file: Path | None) -> dict[str, str | None]:
    if env_file is None or not env_file.is_file():
        return {}
    from dotenv import dotenv_values

    return dict(dotenv_values(env_file))


def _variable_checks(
    environ: Mapping[str, str], file_values: Mapping[str, str | None]
) -> list[Check]:
    """Unknown ``TP_`` names (typos get a did-you-mean) and variables set to nothing."""
    known = setting_variables()
    checks: list[Check] = []
    seen: set[tuple[str, str]] = set()
    origins = [("environment", environ), (".env", file_values)]
    for origin, values in origins:
        for raw_name, value in values.items():
            name = raw_name.upper()
            if not name.startswith("TP_") or name in NOT_SETTINGS or (origin, name) in seen:
                continue
            seen.add((origin, name))
            if name not in known:
                checks.append(_unknown_variable(name, origin, known))
            elif value is not None and not value.strip():
                checks.append(
                    Check(
                        name,
                        Status.WARN,
                        f"set but empty in the {origin}: it counts as an empty value, not unset",
                        f"remove {name} from the {origin} or give it a value",
                    )
                )
    if not checks:
        checks.append(Check("variables", Status.OK, "every TP_ variable is a known setting"))
    return checks


def _unknown_variable(name: str, origin: str, known: Mapping[str, str]) -> Check:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.8)
    if close:
        return Check(
            name,
            Status.FAIL,
            f"not a setting (in the {origin}); did you mean {close[0]}?",
            f"rename {name} to {close[0]}",
        )
    return Check(
        name,
        Status.WARN,
        f"not a setting (in the {origin}), so it is ignored",
        f"remove {name} or check deploy/env.example for the right name",
    )


def _setting_checks(settings: Settings) -> list[Check]:
    """Settings that parse but cannot work, or work worse than they could."""
    checks: list[Check] = []

    def problem(name: str, status: Status, detail: str, fix: str) -> None:
        checks.append(Check(name, status, detail, fix))

    if settings.contact_email == PLACEHOLDER_EMAIL:
        problem(
            "TP_CONTACT_EMAIL",
            Status.WARN,
            "still the placeholder address; arXiv and Reddit ask for a real contact",
            "set TP_CONTACT_EMAIL to an address where source operators can reach you",
        )
    try:
        ZoneInfo(settings.default_timezone)
    except (ZoneInfoNotFoundError, ValueError):
        problem(
            "TP_DEFAULT_TIMEZONE",
            Status.FAIL,
            f"{settings.default_timezone!r} is not an IANA time zone",
            "use a name such as Europe/Berlin or America/New_York",
        )
    try:
        time.fromisoformat(settings.default_digest_time)
    except ValueError:
        problem(
            "TP_DEFAULT_DIGEST_TIME",
            Status.FAIL,
            f"{settings.default_digest_time!r} is not a time of day",
            "use HH:MM, e.g. 08:00",
        )
    if settings.log_format not in ("text", "json"):
        problem("TP_LOG_FORMAT", Status.FAIL, f"{settings.log_format!r}", "use text or json")
    if settings.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        problem(
            "TP_LOG_LEVEL", Status.FAIL, f"{settings.log_level!r}", "use DEBUG, INFO or WARNING"
        )
    if settings.telegram_token is None and settings.slack_bot_token is None:
        problem(
            "chat platforms",
            Status.WARN,
            "neither Telegram nor Slack is configured, so nobody can subscribe",
            "set TP_TELEGRAM_TOKEN (from @BotFather) or TP_SLACK_BOT_TOKEN",
        )
    webhook = settings.telegram_webhook_url
    if webhook is not None and not webhook.startswith("https://"):
        problem(
            "TP_TELEGRAM_WEBHOOK_URL",
            Status.FAIL,
            "Telegram delivers webhooks only to https:// URLs",
            "put the bot behind a TLS reverse proxy and give its https:// URL",
        )
    if webhook is not None and settings.telegram_webhook_secret is None:
        problem(
            "TP_TELEGRAM_WEBHOOK_SECRET",
            Status.WARN,
            "unset: anyone who learns the webhook URL can post updates to the bot",
            "set TP_TELEGRAM_WEBHOOK_SECRET to a long random string",
        )
    if settings.slack_bot_token is not None:
        checks += _slack_setting_checks(settings)
    for first, second in (
        ("reddit_client_id", "reddit_client_secret"),
        ("bluesky_handle", "bluesky_app_password"),
    ):
        if (getattr(settings, first) is None) != (getattr(settings, second) is None):
            missing = second if getattr(settings, first) is not None else first
            problem(
                f"TP_{missing.upper()}",
                Status.FAIL,
                f"TP_{first.upper()} and TP_{second.upper()} work only together",
                f"set TP_{missing.upper()} too, or unset both",
            )
    return checks


def _slack_setting_checks(settings: Settings) -> list[Check]:
    checks = []
    if settings.slack_signing_secret is None and settings.slack_app_token is None:
        checks.append(
            Check(
                "TP_SLACK_SIGNING_SECRET",
                Status.FAIL,
                "a Slack bot token needs a signing secret (HTTP mode) or an app token "
                "(Socket Mode)",
                "set TP_SLACK_SIGNING_SECRET, or TP_SLACK_APP_TOKEN for Socket Mode",
            )
        )
    app_token = settings.slack_app_token
    if app_token is not None and not app_token.get_secret_value().startswith("xapp-"):
        checks.append(
            Check(
                "TP_SLACK_APP_TOKEN",
                Status.FAIL,
                "not an app-level token (those start with xapp-)",
                "create one under Basic Information → App-Level Tokens (scope connections:write)",
            )
        )
    return checks


def secret_values(settings: Settings) -> list[str]:
    """Every configured secret, to be masked in whatever the doctor prints."""
    values = settings.secret_values()
    try:
        password = make_url(normalize_url(settings.database_url)).password
    except Exception:  # an unparseable URL is reported by the database check
        password = None
    if password:
        values.append(str(password))
    # Longest first, so a secret that contains another is masked whole.
    return sorted(set(values), key=len, reverse=True)


def mask(check: Check, secrets: Sequence[str]) -> Check:
    """The check with every secret in its text replaced by ***."""

    def clean(text: str | None) -> str | None:
        if text is None:
            return None
        for secret in secrets:
            text = text.replace(secret, "***")
        return text

    return replace(check, detail=clean(check.detail) or "", fix=clean(check.fix))


# --------------------------------------------------------------------------------------------
# Database


def database_checks(url: str) -> list[Check]:
    """Is the database there, does it answer, and is its schema at the code's revision?"""
    shown = redact_url(url)
    missing_file = _missing_sqlite_file(url)
    if missing_file is not None:
        return [
            Check(
                "database",
                Status.FAIL,
                f"no database file at {missing_file}",
                "run `trending-papers db upgrade` to create it (or fix TP_DATABASE_URL)",
            ),
            Check("migrations", Status.SKIP, "no database"),
        ]
    try:
        db = Database(url)
    except StorageError as exc:
        return [
            Check("database", Status.FAIL, str(exc), "fix TP_DATABASE_URL"),
            Check("migrations", Status.SKIP, "no database"),
        ]
    try:
        try:
            db.ping()
        except StorageError as exc:
            cause = _first_line(exc.__cause__) if exc.__cause__ else str(exc)
            return [
                Check(
                    "database",
                    Status.FAIL,
                    f"{shown} does not answer: {cause}",
                    "check TP_DATABASE_URL and that the database server is running",
                ),
                Check("migrations", Status.SKIP, "database unreachable"),
            ]
        return [Check("database", Status.OK, f"{db.dialect} at {shown}"), _migration_check(db)]
    finally:
        db.dispose()


def _missing_sqlite_file(url: str) -> str | None:
    """The path of a SQLite database file that does not exist (connecting would create it)."""
    try:
        parsed = make_url(normalize_url(url))
    except Exception:
        return None
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    path = Path(parsed.database or "").expanduser()
    return None if path.exists() else str(path)


def _migration_check(db: Database) -> Check:
    try:
        if is_up_to_date(db):
            return Check("migrations", Status.OK, f"schema at revision {current_revision(db)}")
        current, head = current_revision(db), head_revision(db)
        known = _known_revision(db, current)
    except StorageError as exc:
        return Check("migrations", Status.FAIL, str(exc), "run `trending-papers db upgrade`")
    if current is None:
        return Check(
            "migrations",
            Status.FAIL,
            "the database is empty (no schema yet)",
            "run `trending-papers db upgrade`",
        )
    if not known:
        return Check(
            "migrations",
            Status.FAIL,
            f"schema revision {current} is newer than this version knows (head {head})",
            "install the trending-papers version that migrated this database",
        )
    return Check(
        "migrations",
        Status.FAIL,
        f"schema at revision {current}, this version needs {head}",
        "run `trending-papers db upgrade` (back up the database first)",
    )


def _known_revision(db: Database, revision: str | None) -> bool:
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    from storage.migrate import alembic_config

    if revision is None:
        return True
    try:
        return ScriptDirectory.from_config(alembic_config(db)).get_revision(revision) is not None
    except CommandError:
        return False


# --------------------------------------------------------------------------------------------
# Chat platforms


async def telegram_check(
    settings: Settings, transport: httpx.AsyncBaseTransport | None = None
) -> list[Check]:
    """``getMe`` with the configured token, and the webhook when one is configured."""
    if settings.telegram_token is None:
        return [Check("telegram", Status.SKIP, "not configured (TP_TELEGRAM_TOKEN unset)")]
    base = settings.telegram_api_base_url
    token = settings.telegram_token.get_secret_value()
    async with httpx.AsyncClient(transport=transport, timeout=CHAT_TIMEOUT) as client:
        try:
            response = await client.get(f"{base}{token}/getMe")
        except httpx.HTTPError as exc:
            return [
                Check(
                    "telegram",
                    Status.FAIL,
                    f"Bot API at {base} unreachable: {type(exc).__name__}",
                    "check the network and TP_TELEGRAM_API_BASE_URL",
                )
            ]
        body = _json_or_none(response)
        if response.status_code == 401:
            return [
                Check(
                    "telegram",
                    Status.FAIL,
                    "the Bot API rejected the token (401 Unauthorized)",
                    "copy the bot token from @BotFather into TP_TELEGRAM_TOKEN",
                )
            ]
        if not (response.is_success and isinstance(body, dict) and body.get("ok")):
            description = body.get("description") if isinstance(body, dict) else None
            return [
                Check(
                    "telegram",
                    Status.FAIL,
                    f"getMe answered HTTP {response.status_code}"
                    + (f": {description}" if description else ""),
                    "check TP_TELEGRAM_API_BASE_URL (it ends in /bot) and TP_TELEGRAM_TOKEN",
                )
            ]
        me = body.get("result") or {}
        checks = [Check("telegram", Status.OK, f"bot @{me.get('username')} (id {me.get('id')})")]
        if settings.telegram_webhook_url:
            checks.append(await _webhook_check(client, base, token, settings.telegram_webhook_url))
    return checks


async def _webhook_check(client: httpx.AsyncClient, base: str, token: str, wanted: str) -> Check:
    try:
        response = await client.get(f"{base}{token}/getWebhookInfo")
        body = _json_or_none(response)
    except httpx.HTTPError as exc:
        return Check("telegram webhook", Status.FAIL, f"unreachable: {type(exc).__name__}")
    info = body.get("result") if isinstance(body, dict) else None
    if not isinstance(info, dict):
        return Check("telegram webhook", Status.FAIL, f"HTTP {response.status_code}")
    registered = info.get("url") or ""
    if registered != wanted:
        return Check(
            "telegram webhook",
            Status.WARN,
            f"Telegram sends updates to {registered or 'nowhere (polling)'}, not {wanted}",
            "start the bot in webhook mode: it registers TP_TELEGRAM_WEBHOOK_URL",
        )
    if info.get("last_error_message"):
        return Check(
            "telegram webhook",
            Status.WARN,
            f"registered; Telegram's last delivery error: {info['last_error_message']}",
            "check that the reverse proxy forwards the webhook URL to the bot",
        )
    pending = info.get("pending_update_count", 0)
    return Check("telegram webhook", Status.OK, f"registered, {pending} updates pending")


async def slack_check(
    settings: Settings, transport: httpx.AsyncBaseTransport | None = None
) -> list[Check]:
    """``auth.test`` with the configured bot token."""
    if settings.slack_bot_token is None:
        return [Check("slack", Status.SKIP, "not configured (TP_SLACK_BOT_TOKEN unset)")]
    base = settings.slack_api_base_url
    url = (base if base.endswith("/") else base + "/") + "auth.test"
    headers = {"Authorization": f"Bearer {settings.slack_bot_token.get_secret_value()}"}
    async with httpx.AsyncClient(transport=transport, timeout=CHAT_TIMEOUT) as client:
        try:
            response = await client.post(url, headers=headers)
        except httpx.HTTPError as exc:
            return [
                Check(
                    "slack",
                    Status.FAIL,
                    f"Slack API at {base} unreachable: {type(exc).__name__}",
                    "check the network and TP_SLACK_API_BASE_URL",
                )
            ]
    body = _json_or_none(response)
    if response.status_code == 429:
        return [Check("slack", Status.WARN, "rate limited by Slack; try again in a minute")]
    if not isinstance(body, dict):
        return [Check("slack", Status.FAIL, f"auth.test answered HTTP {response.status_code}")]
    if not body.get("ok"):
        return [
            Check(
                "slack",
                Status.FAIL,
                f"Slack refused the bot token: {body.get('error', 'unknown error')}",
                "copy the Bot User OAuth Token (xoxb-…) from the app's OAuth page "
                "into TP_SLACK_BOT_TOKEN",
            )
        ]
    return [Check("slack", Status.OK, f"workspace {body.get('team')} as @{body.get('user')}")]


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


# --------------------------------------------------------------------------------------------
# Sources

SOURCE_NAMES = ("arxiv", "hackernews", "reddit", "bluesky", "huggingface", "semanticscholar")
Probe = Callable[[httpx.AsyncClient, Settings], Awaitable[str]]


async def source_checks(
    settings: Settings,
    transport: httpx.AsyncBaseTransport | None = None,
    sleep: Sleep = asyncio.sleep,
) -> list[Check]:
    """One cheap request per source, concurrently, through the bot's own HTTP client."""
    policy = HttpPolicy(
        user_agent=settings.user_agent,
        read_timeout=min(settings.http_timeout, SOURCE_TIMEOUT),
        # One try each: the doctor reports what it sees rather than waiting out a backoff.
        max_retries=0,
        max_bytes=settings.http_max_bytes,
    )
    probes: dict[str, Probe] = {
        "arxiv": _probe_arxiv,
        "hackernews": _probe_hackernews,
        "reddit": _probe_reddit,
        "bluesky": _probe_bluesky,
        "huggingface": _probe_huggingface,
        "semanticscholar": _probe_semanticscholar,
    }
    async with build_client(policy, transport=transport, sleep=sleep) as client:
        results = await asyncio.gather(
            *(_run_probe(name, probe, client, settings) for name, probe in probes.items())
        )
    return list(results)


async def _run_probe(
    name: str, probe: Probe, client: httpx.AsyncClient, settings: Settings
) -> Check:
    try:
        return Check(name, Status.OK, await probe(client, settings))
    except _Skipped as skipped:
        return Check(name, Status.SKIP, str(skipped))
    except _Broken as broken:
        return Check(name, Status.FAIL, str(broken), broken.fix)
    except RateLimited as exc:
        return Check(
            name,
            Status.WARN,
            f"reachable but rate limited (HTTP {exc.status})",
            RATE_LIMIT_FIXES.get(name, "nothing to do unless it persists; the bot backs off"),
        )
    except MalformedPayload as exc:
        return Check(
            name,
            Status.FAIL,
            f"unexpected answer: {exc.reason}",
            "the source may have changed its API; check for a trending-papers update",
        )
    except FetchError as exc:
        return _fetch_failure(name, exc)
    except (httpx.HTTPError, ValueError) as exc:
        return Check(name, Status.FAIL, f"{type(exc).__name__}: {exc}")


RATE_LIMIT_FIXES = {
    "semanticscholar": "anonymous callers share one busy pool: set TP_SEMANTIC_SCHOLAR_API_KEY",
    "reddit": "set TP_REDDIT_CLIENT_ID and TP_REDDIT_CLIENT_SECRET for a larger request budget",
}


def _fetch_failure(name: str, exc: FetchError) -> Check:
    if exc.status is None:
        return Check(
            name,
            Status.FAIL,
            f"unreachable: {exc.reason}",
            "check the network, DNS and any proxy between this machine and the internet",
        )
    fixes = {
        "reddit": "Reddit often refuses anonymous requests from servers: register a script app "
        "(reddit.com/prefs/apps) and set TP_REDDIT_CLIENT_ID and TP_REDDIT_CLIENT_SECRET",
        "semanticscholar": "check TP_SEMANTIC_SCHOLAR_API_KEY",
        "huggingface": "check TP_HUGGINGFACE_TOKEN",
    }
    if exc.status in (401, 403):
        return Check(name, Status.FAIL, f"refused (HTTP {exc.status})", fixes.get(name))
    return Check(
        name,
        Status.FAIL,
        f"HTTP {exc.status}",
        "the service may be down; the bot retries it on every poll",
    )


class _Skipped(Exception):
    """A source that the configuration turns off."""


class _Broken(Exception):
    """A source that answers, but says the configuration is wrong."""

    def __init__(self, detail: str, fix: str) -> None:
        super().__init__(detail)
        self.fix = fix


async def _probe_arxiv(client: httpx.AsyncClient, settings: Settings) -> str:
    if not settings.arxiv_categories:
        raise _Skipped("no categories configured (TP_ARXIV_CATEGORIES)")
    category = settings.arxiv_categories[0]
    result = await arxiv.fetch_announcements(client, category)
    return f"{len(result.batch.papers)} papers in today's {category} announcement feed"


async def _probe_hackernews(client: httpx.AsyncClient, settings: Settings) -> str:
    response = await client.get(
        hackernews.SEARCH_BY_DATE_URL,
        params={"query": "arxiv.org", "tags": "story", "hitsPerPage": 1},
    )
    raise_for_status(response)
    body = parse_json(response.content, hackernews.SEARCH_BY_DATE_URL)
    if not isinstance(body, dict) or not isinstance(body.get("hits"), list):
        raise MalformedPayload("no hits list in the search answer")
    return "Algolia search answers"


async def _probe_reddit(client: httpx.AsyncClient, settings: Settings) -> str:
    headers = {"User-Agent": settings.user_agent}
    if settings.reddit_client_id and settings.reddit_client_secret:
        response = await client.post(
            reddit.OAUTH_GRANT_URL,
            data={"grant_type": "client_credentials"},
            auth=(settings.reddit_client_id, settings.reddit_client_secret.get_secret_value()),
            headers=headers,
        )
        raise_for_status(response)
        body = parse_json(response.content, reddit.OAUTH_GRANT_URL)
        if not isinstance(body, dict) or not body.get("access_token"):
            error = body.get("error") if isinstance(body, dict) else None
            raise _Broken(
                f"Reddit refused the app credentials (error {error})",
                "check TP_REDDIT_CLIENT_ID and TP_REDDIT_CLIENT_SECRET (a script app's id and "
                "secret from reddit.com/prefs/apps)",
            )
        return "OAuth app credentials accepted"
    if not settings.reddit_subreddits:
        raise _Skipped("no subreddits configured (TP_REDDIT_SUBREDDITS)")
    subreddit = settings.reddit_subreddits[0]
    url = reddit.PUBLIC_LISTING_URL.format(subreddit=subreddit)
    response = await client.get(url, params={"limit": 1, "raw_json": 1}, headers=headers)
    raise_for_status(response)
    parse_json(response.content, url)
    return f"r/{subreddit} readable without login"


async def _probe_bluesky(client: httpx.AsyncClient, settings: Settings) -> str:
    actor = settings.bluesky_handle or BLUESKY_PROBE_ACTOR
    url = f"{bluesky.PUBLIC_APPVIEW_URL}/xrpc/app.bsky.actor.getProfiles"
    response = await client.get(url, params={"actors": actor})
    raise_for_status(response)
    body = parse_json(response.content, url)
    profiles = body.get("profiles") if isinstance(body, dict) else None
    if not isinstance(profiles, list):
        raise MalformedPayload("no profiles list in the answer", url)
    if settings.bluesky_handle is None:
        return "public API answers; post search is off without TP_BLUESKY_HANDLE"
    if not profiles:
        raise _Broken(
            f"no Bluesky account {actor}", "check TP_BLUESKY_HANDLE (e.g. name.bsky.social)"
        )
    return f"public API answers; account {actor} exists"


async def _probe_huggingface(client: httpx.AsyncClient, settings: Settings) -> str:
    headers = {}
    if settings.huggingface_token is not None:
        headers["Authorization"] = f"Bearer {settings.huggingface_token.get_secret_value()}"
    response = await client.get(huggingface.DAILY_PAPERS_URL, params={"limit": 1}, headers=headers)
    raise_for_status(response)
    if not isinstance(parse_json(response.content, huggingface.DAILY_PAPERS_URL), list):
        raise MalformedPayload("daily papers answer is not a list")
    return "daily papers answer"


async def _probe_semanticscholar(client: httpx.AsyncClient, settings: Settings) -> str:
    headers = {}
    key = settings.semantic_scholar_api_key
    if key is not None:
        headers["x-api-key"] = key.get_secret_value()
    response = await client.post(
        semanticscholar.PAPER_BATCH_URL,
        params={"fields": semanticscholar.FIELDS},
        json={"ids": [S2_PROBE_ID]},
        headers=headers,
    )
    raise_for_status(response)
    if not isinstance(parse_json(response.content, semanticscholar.PAPER_BATCH_URL), list):
        raise MalformedPayload("batch answer is not a list")
    return "paper batch answers" + (" (with API key)" if key else " (anonymous)")


def _first_line(exc: BaseException) -> str:
    detail = str(getattr(exc, "orig", None) or exc).strip()
    return detail.splitlines()[0] if detail else type(exc).__name__
