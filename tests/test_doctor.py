"""``trending-papers doctor``: real checks against the loopback chat fakes and mock sources."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
import typer
from rich.console import Console
from sqlalchemy import text
from typer.testing import CliRunner

from bot import cli_ops
from bot.config import Settings
from bot.doctor import (
    SOURCE_NAMES,
    Check,
    Status,
    diagnose,
    exit_code,
    mask,
    render,
    setting_variables,
)
from feeds.replay import recorded_transport
from storage.db import Database
from storage.migrate import upgrade
from tests.fakes.slack_api import FakeSlack
from tests.fakes.telegram_api import FakeTelegram

Handler = Callable[[httpx.Request], httpx.Response]


class NoSleep:
    """Records what the HTTP client would have waited; never waits."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        yield fake


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


@pytest.fixture
def configured(
    monkeypatch: pytest.MonkeyPatch,
    sqlite_db: Database,
    telegram: FakeTelegram,
    slack: FakeSlack,
) -> None:
    """A complete, correct configuration pointing at the fakes and a migrated database."""
    for name, value in {
        "TP_DATABASE_URL": sqlite_db.url,
        "TP_CONTACT_EMAIL": "ops@lab.example.org",
        "TP_TELEGRAM_TOKEN": telegram.token,
        "TP_TELEGRAM_API_BASE_URL": telegram.base_url,
        "TP_SLACK_BOT_TOKEN": slack.bot_token,
        "TP_SLACK_SIGNING_SECRET": "signing-secret-0123456789",
        "TP_SLACK_API_BASE_URL": slack.base_url,
    }.items():
        monkeypatch.setenv(name, value)


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {check.name: check for check in checks}


def rendered(checks: list[Check]) -> str:
    out = io.StringIO()
    render(checks, Console(file=out, width=200, color_system=None))
    return out.getvalue()


def answering(routes: dict[str, Handler]) -> httpx.MockTransport:
    """Per-host answers; hosts not listed get the recorded sample payloads."""
    recorded = recorded_transport()

    async def handle(request: httpx.Request) -> httpx.Response:
        handler = routes.get(request.url.host)
        if handler is not None:
            return handler(request)
        return await recorded.handle_async_request(request)

    return httpx.MockTransport(handle)


# --- everything works -----------------------------------------------------------------------


@pytest.mark.usefixtures("configured")
async def test_a_healthy_deployment_passes_every_check(
    telegram: FakeTelegram, slack: FakeSlack
) -> None:
    sleep = NoSleep()
    checks = await diagnose(source_transport=recorded_transport(), sleep=sleep)

    found = by_name(checks)
    assert {check.status for check in checks} == {Status.OK}, rendered(checks)
    assert "@trending_papers_bot" in found["telegram"].detail
    assert "Fake Lab" in found["slack"].detail
    assert found["migrations"].detail.startswith("schema at revision")
    assert "papers in today's cs.LG announcement feed" in found["arxiv"].detail
    assert set(SOURCE_NAMES) <= set(found)
    assert exit_code(checks) == 0
    assert telegram.calls_to("getMe") and slack.calls_to("auth.test")
    assert sleep.calls == []
    output = rendered(checks)
    assert "Everything needed works" in output and "What to fix" not in output


# --- configuration --------------------------------------------------------------------------


@pytest.fixture
def env_file(tmp_path: Path) -> Path:
    """A .env file with a typo, a variable set to nothing and a variable of someone else."""
    path = tmp_path / ".env"
    path.write_text("TP_DIGEST_SIZ=12\nTP_HUGGINGFACE_TOKEN=\nOTHER=1\n", encoding="utf-8")
    return path


@pytest.mark.usefixtures("configured")
async def test_typos_get_a_did_you_mean_and_unknown_names_a_warning(
    monkeypatch: pytest.MonkeyPatch, env_file: Path
) -> None:
    monkeypatch.setenv("TP_TELEGRAM_TOKNE", "123:abc")
    monkeypatch.setenv("TP_FAVOURITE_COLOUR", "blue")

    checks = by_name(await diagnose(network=False, env_file=env_file))

    assert checks["TP_TELEGRAM_TOKNE"].status is Status.FAIL
    assert "did you mean TP_TELEGRAM_TOKEN?" in checks["TP_TELEGRAM_TOKNE"].detail
    assert checks["TP_DIGEST_SIZ"].status is Status.FAIL
    assert "TP_DIGEST_SIZE" in (checks["TP_DIGEST_SIZ"].fix or "")
    assert ".env" in checks["TP_DIGEST_SIZ"].detail
    assert checks["TP_FAVOURITE_COLOUR"].status is Status.WARN
    assert checks["TP_HUGGINGFACE_TOKEN"].status is Status.WARN
    assert "empty" in checks["TP_HUGGINGFACE_TOKEN"].detail
    assert "OTHER" not in checks
    assert f"environment and {env_file}" in checks["configuration"].detail


async def test_invalid_settings_are_named_without_their_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TP_HTTP_TIMEOUT", "soon-secret-ish-value")
    monkeypatch.setenv("TP_DIGEST_SIZE", "many")

    checks = await diagnose(network=False)

    found = by_name(checks)
    assert found["configuration"].status is Status.FAIL
    assert "TP_HTTP_TIMEOUT" in found["configuration"].detail
    assert "TP_DIGEST_SIZE" in found["configuration"].detail
    assert found["database"].status is Status.SKIP
    assert found["arxiv"].status is Status.SKIP
    assert exit_code(checks) == 1
    assert "soon-secret-ish-value" not in rendered(checks)


async def test_settings_that_parse_but_cannot_work(
    monkeypatch: pytest.MonkeyPatch, sqlite_db: Database
) -> None:
    for name, value in {
        "TP_DATABASE_URL": sqlite_db.url,
        "TP_DEFAULT_TIMEZONE": "Mars/Olympus_Mons",
        "TP_DEFAULT_DIGEST_TIME": "25:99",
        "TP_TELEGRAM_TOKEN": "1:x",
        "TP_TELEGRAM_WEBHOOK_URL": "http://bot.lab.example/telegram",
        "TP_SLACK_BOT_TOKEN": "xoxb-1",
        "TP_SLACK_APP_TOKEN": "xoxb-not-an-app-token",
        "TP_REDDIT_CLIENT_ID": "abc",
        "TP_LOG_FORMAT": "yaml",
    }.items():
        monkeypatch.setenv(name, value)

    checks = by_name(await diagnose(network=False))

    for name in [
        "TP_DEFAULT_TIMEZONE",
        "TP_DEFAULT_DIGEST_TIME",
        "TP_TELEGRAM_WEBHOOK_URL",
        "TP_SLACK_APP_TOKEN",
        "TP_REDDIT_CLIENT_SECRET",
        "TP_LOG_FORMAT",
    ]:
        assert checks[name].status is Status.FAIL, name
        assert checks[name].fix, name
    assert checks["TP_TELEGRAM_WEBHOOK_SECRET"].status is Status.WARN
    assert checks["TP_CONTACT_EMAIL"].status is Status.WARN
    assert "TP_SLACK_SIGNING_SECRET" not in checks  # the app token is there (though wrong)


async def test_no_chat_platform_is_a_warning_not_a_failure(
    monkeypatch: pytest.MonkeyPatch, sqlite_db: Database
) -> None:
    monkeypatch.setenv("TP_DATABASE_URL", sqlite_db.url)
    monkeypatch.setenv("TP_CONTACT_EMAIL", "ops@lab.example.org")

    checks = await diagnose(network=False)

    assert by_name(checks)["chat platforms"].status is Status.WARN
    assert exit_code(checks) == 0


# --- database -------------------------------------------------------------------------------


async def test_a_missing_sqlite_file_is_not_created(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "nowhere" / "bot.db"
    monkeypatch.setenv("TP_DATABASE_URL", f"sqlite:///{path}")

    checks = by_name(await diagnose(network=False))

    assert checks["database"].status is Status.FAIL
    assert "db upgrade" in (checks["database"].fix or "")
    assert checks["migrations"].status is Status.SKIP
    assert not path.exists() and not path.parent.exists()


def _empty(db: Database) -> None:
    db.ping()


def _behind(db: Database) -> None:
    upgrade(db, "0001")


def _ahead(db: Database) -> None:
    upgrade(db)
    with db.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))


@pytest.mark.parametrize(
    ("prepare", "expected"),
    [
        (_empty, "the database is empty"),
        (_behind, "schema at revision 0001, this version needs"),
        (_ahead, "9999_future is newer than this version knows"),
    ],
    ids=["empty", "behind", "ahead"],
)
async def test_migration_state_is_explained(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    prepare: Callable[[Database], object],
    expected: str,
) -> None:
    db = Database(f"sqlite:///{tmp_path / 'bot.db'}")
    try:
        prepare(db)
    finally:
        db.dispose()
    monkeypatch.setenv("TP_DATABASE_URL", db.url)

    checks = by_name(await diagnose(network=False))

    assert checks["database"].status is Status.OK
    assert checks["migrations"].status is Status.FAIL
    assert expected in checks["migrations"].detail


async def test_an_unreachable_server_is_reported_without_its_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Port 1 on loopback: nothing listens there, so the connection is refused at once.
    monkeypatch.setenv("TP_DATABASE_URL", "postgresql://bot:pw-0f-the-db@127.0.0.1:1/papers")

    checks = await diagnose(network=False)

    found = by_name(checks)
    assert found["database"].status is Status.FAIL
    assert "does not answer" in found["database"].detail
    assert "pw-0f-the-db" not in rendered(checks)


# --- chat platforms -------------------------------------------------------------------------


@pytest.mark.usefixtures("configured")
async def test_rejected_chat_tokens(monkeypatch: pytest.MonkeyPatch, slack: FakeSlack) -> None:
    monkeypatch.setenv("TP_TELEGRAM_TOKEN", "999:wrong-telegram-token")
    slack.revoke_token(slack.bot_token)

    checks = await diagnose(source_transport=recorded_transport(), sleep=NoSleep())

    found = by_name(checks)
    assert found["telegram"].status is Status.FAIL
    assert "401" in found["telegram"].detail and "@BotFather" in (found["telegram"].fix or "")
    assert found["slack"].status is Status.FAIL
    assert "token_revoked" in found["slack"].detail
    output = rendered(checks)
    assert "wrong-telegram-token" not in output and slack.bot_token not in output
    assert exit_code(checks) == 1


@pytest.mark.usefixtures("configured")
async def test_a_wrong_bot_api_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TP_TELEGRAM_API_BASE_URL", "http://127.0.0.1:1/bot")

    found = by_name(await diagnose(source_transport=recorded_transport(), sleep=NoSleep()))

    assert found["telegram"].status is Status.FAIL
    assert "unreachable" in found["telegram"].detail


@pytest.mark.usefixtures("configured")
async def test_the_telegram_webhook(
    monkeypatch: pytest.MonkeyPatch, telegram: FakeTelegram
) -> None:
    wanted = "https://bot.lab.example/telegram"
    monkeypatch.setenv("TP_TELEGRAM_WEBHOOK_URL", wanted)
    monkeypatch.setenv("TP_TELEGRAM_WEBHOOK_SECRET", "hook-secret")

    before = by_name(await diagnose(network=True, source_transport=recorded_transport()))
    async with httpx.AsyncClient() as client:
        await client.post(f"{telegram.base_url}{telegram.token}/setWebhook", data={"url": wanted})
    after = by_name(await diagnose(network=True, source_transport=recorded_transport()))

    assert before["telegram webhook"].status is Status.WARN
    assert "nowhere (polling)" in before["telegram webhook"].detail
    assert after["telegram webhook"].status is Status.OK


# --- sources --------------------------------------------------------------------------------


def _status(code: int, **headers: str) -> Handler:
    return lambda request: httpx.Response(code, headers=headers, text="no")


def _refuse_connection(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


@pytest.mark.usefixtures("configured")
async def test_source_failures_are_told_apart() -> None:
    sleep = NoSleep()
    transport = answering(
        {
            "rss.arxiv.org": _status(503),
            "hn.algolia.com": _refuse_connection,
            "www.reddit.com": _status(403),
            "public.api.bsky.app": lambda request: httpx.Response(200, text="<html>"),
            "huggingface.co": _status(429, **{"Retry-After": "30"}),
            "api.semanticscholar.org": _status(429),
        }
    )

    checks = await diagnose(source_transport=transport, sleep=sleep)

    found = by_name(checks)
    assert (found["arxiv"].status, found["arxiv"].detail) == (Status.FAIL, "HTTP 503")
    assert found["hackernews"].status is Status.FAIL
    assert found["hackernews"].detail.startswith("unreachable")
    assert found["reddit"].status is Status.FAIL
    assert "TP_REDDIT_CLIENT_ID" in (found["reddit"].fix or "")
    assert found["bluesky"].status is Status.FAIL
    assert "unexpected answer" in found["bluesky"].detail
    assert found["huggingface"].status is Status.WARN
    assert found["semanticscholar"].status is Status.WARN
    assert "TP_SEMANTIC_SCHOLAR_API_KEY" in (found["semanticscholar"].fix or "")
    # The chat platforms are unaffected by the sources.
    assert found["telegram"].status is Status.OK and found["slack"].status is Status.OK
    assert sleep.calls == []
    assert exit_code(checks) == 1
    assert "What to fix" in rendered(checks)


@pytest.mark.usefixtures("configured")
async def test_configured_source_credentials_are_tried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TP_REDDIT_CLIENT_ID", "reddit-app")
    monkeypatch.setenv("TP_REDDIT_CLIENT_SECRET", "reddit-secret-value")
    monkeypatch.setenv("TP_BLUESKY_HANDLE", "nobody-here.bsky.social")
    monkeypatch.setenv("TP_BLUESKY_APP_PASSWORD", "bsky-app-password")
    monkeypatch.setenv("TP_SEMANTIC_SCHOLAR_API_KEY", "s2-key-value")
    seen: dict[str, httpx.Request] = {}

    def s2(request: httpx.Request) -> httpx.Response:
        seen["s2"] = request
        return httpx.Response(200, json=[None])

    found = by_name(await diagnose(source_transport=answering({"api.semanticscholar.org": s2})))

    assert found["reddit"].status is Status.OK
    assert "OAuth" in found["reddit"].detail
    assert found["bluesky"].status is Status.FAIL
    assert "nobody-here.bsky.social" in found["bluesky"].detail
    assert found["semanticscholar"].status is Status.OK
    assert seen["s2"].headers["x-api-key"] == "s2-key-value"


@pytest.mark.usefixtures("configured")
async def test_refused_reddit_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TP_REDDIT_CLIENT_ID", "reddit-app")
    monkeypatch.setenv("TP_REDDIT_CLIENT_SECRET", "reddit-secret-value")
    grant = {"www.reddit.com": lambda request: httpx.Response(200, json={"error": 401})}

    checks = await diagnose(source_transport=answering(grant))

    assert by_name(checks)["reddit"].status is Status.FAIL
    assert "reddit-secret-value" not in rendered(checks)


async def test_offline_makes_no_request(
    monkeypatch: pytest.MonkeyPatch, sqlite_db: Database
) -> None:
    monkeypatch.setenv("TP_DATABASE_URL", sqlite_db.url)
    monkeypatch.setenv("TP_TELEGRAM_TOKEN", "1:x")

    def forbidden(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"offline doctor sent {request.url}")

    checks = await diagnose(network=False, source_transport=httpx.MockTransport(forbidden))

    found = by_name(checks)
    assert found["telegram"].status is Status.SKIP
    assert all(found[name].status is Status.SKIP for name in SOURCE_NAMES)


# --- secrets --------------------------------------------------------------------------------


def test_mask_replaces_every_secret() -> None:
    check = Check("x", Status.FAIL, "token abc123 and abc123456", "use abc123456 again")

    masked = mask(check, ["abc123456", "abc123"])

    assert masked.detail == "token *** and ***"
    assert masked.fix == "use *** again"


async def test_no_secret_is_ever_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = {
        name: f"secret-{name.lower()}-value"
        for name, field in setting_variables().items()
        if "SecretStr" in str(Settings.model_fields[field].annotation)
    }
    assert "TP_TELEGRAM_TOKEN" in secrets and "TP_SLACK_SIGNING_SECRET" in secrets
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TP_REDDIT_CLIENT_ID", "reddit-app")
    monkeypatch.setenv("TP_BLUESKY_HANDLE", "someone.bsky.social")
    monkeypatch.setenv("TP_TELEGRAM_API_BASE_URL", "http://127.0.0.1:1/bot")
    monkeypatch.setenv("TP_SLACK_API_BASE_URL", "http://127.0.0.1:1/api/")
    monkeypatch.setenv("TP_DATABASE_URL", "postgresql://u:db-password-value@127.0.0.1:1/x")

    def echo(request: httpx.Request) -> httpx.Response:
        # A hostile source that repeats every header back, secrets included.
        return httpx.Response(500, text=str(dict(request.headers)))

    checks = await diagnose(source_transport=httpx.MockTransport(echo), sleep=NoSleep())

    output = rendered(checks)
    for value in [*secrets.values(), "db-password-value"]:
        assert value not in output


# --- command line ---------------------------------------------------------------------------


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(typer.Typer(), name="db")
    cli_ops.register(app)
    return app


def test_cli_doctor_offline(
    cli: typer.Typer, monkeypatch: pytest.MonkeyPatch, sqlite_db: Database
) -> None:
    monkeypatch.setenv("TP_DATABASE_URL", sqlite_db.url)
    monkeypatch.setenv("TP_CONTACT_EMAIL", "ops@lab.example.org")
    monkeypatch.setenv("TP_TELEGRAM_TOKEN", "1:x")

    result = CliRunner().invoke(cli, ["doctor", "--offline"])

    assert result.exit_code == 0, result.output
    assert "migrations" in result.output and "✓" in result.output


def test_cli_doctor_exits_1_and_says_what_to_fix(
    cli: typer.Typer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TP_DATABASE_URL", f"sqlite:///{tmp_path / 'missing.db'}")

    result = CliRunner().invoke(cli, ["doctor", "--offline"])

    assert result.exit_code == 1
    assert "What to fix" in result.output and "trending-papers db upgrade" in result.output
    assert "Traceback" not in result.output


def test_register_needs_a_db_group() -> None:
    with pytest.raises(ValueError, match="'db' command group"):
        cli_ops.register(typer.Typer())
    explicit = typer.Typer()
    cli_ops.register(typer.Typer(), db_app=explicit)
    assert [command.name for command in explicit.registered_commands] == ["copy"]
