"""Multi-workspace Slack: the OAuth install flow end to end, and the stores in our database."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
import sqlalchemy as sa
from pydantic import SecretStr
from slack_sdk.oauth.installation_store.models.installation import Installation
from starlette.applications import Starlette

from bot.chat.sender import PermanentDeliveryError
from bot.chat.slack import (
    EVENTS_PATH,
    INSTALL_PATH,
    NOT_INSTALLED,
    REDIRECT_PATH,
    SlackRuntime,
    SlackSender,
    assemble,
    authorize_url_for,
    chat_key,
    slack_platform,
    slack_routes,
)
from bot.chat.slack_store import METADATA, SLACK_TABLES, SlackInstallationStore, SlackStateStore
from bot.config import Settings
from storage import subscribers
from storage.db import Database
from storage.models import Platform
from tests.fakes.slack_api import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, FakeSlack
from tests.test_slack import SECRET, digest_payload, router_for, seed, settle, sign

SECOND_TEAM, INSTALLER = "T0SECOND01", "U0INSTALL1"
COOKIE = "slack-app-oauth-state"


class OAuthSettings(Settings):
    """``Settings`` with the OAuth fields this feature adds (until ``bot.config`` has them)."""

    slack_client_id: str | None = None
    slack_client_secret: SecretStr | None = None
    slack_redirect_uri: str | None = None


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as server:
        yield server


def oauth_settings(fake: FakeSlack, **extra: Any) -> OAuthSettings:
    return OAuthSettings(
        slack_client_id=DEFAULT_CLIENT_ID,
        slack_client_secret=DEFAULT_CLIENT_SECRET,  # type: ignore[arg-type]
        slack_signing_secret=SECRET,  # type: ignore[arg-type]
        slack_api_base_url=fake.base_url,
        **extra,
    )


class Site:
    """The app's HTTP routes in OAuth mode, as a browser and Slack see them."""

    def __init__(self, fake: FakeSlack, runtime: SlackRuntime, http: httpx.AsyncClient) -> None:
        self.fake = fake
        self.runtime = runtime
        self.http = http

    async def install(self) -> str:
        """Open /slack/install; returns the state the authorize link carries."""
        page = await self.http.get(INSTALL_PATH)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        [href] = re.findall(r'href="([^"]+/oauth/v2/authorize[^"]+)"', page.text)
        query = parse_qs(urlsplit(href.replace("&amp;", "&")).query)
        assert query["client_id"] == [DEFAULT_CLIENT_ID]
        assert "chat:write" in query["scope"][0].split(",")
        assert href.startswith(authorize_url_for(self.fake.base_url))
        [state] = query["state"]
        assert f"{COOKIE}={state}" in page.headers["set-cookie"]
        return state

    async def redirect(self, code: str, state: str, *, cookie: str | None = None) -> httpx.Response:
        """Slack sends the installer back with ``code`` and ``state``."""
        self.http.cookies.clear()
        query = urlencode({"code": code, "state": state})
        headers = {"Cookie": f"{COOKIE}={state if cookie is None else cookie}"}
        return await self.http.get(f"{REDIRECT_PATH}?{query}", headers=headers)

    async def slash(self, text: str, *, team: str, user: str, key: str) -> httpx.Response:
        body = urlencode(
            {
                "team_id": team,
                "channel_id": self.fake.dm_channel(user),
                "channel_name": "directmessage",
                "user_id": user,
                "user_name": "installer",
                "command": "/papers",
                "text": text,
                "response_url": self.fake.response_url(key),
                "trigger_id": "1.2.3",
            }
        )
        headers = {"Content-Type": "application/x-www-form-urlencoded", **sign(body)}
        return await self.http.post(EVENTS_PATH, content=body, headers=headers)


@pytest.fixture
async def site(fake: FakeSlack, sqlite_db: Database) -> AsyncIterator[Site]:
    seed(sqlite_db)
    runtime = assemble(oauth_settings(fake), router_for(sqlite_db), sqlite_db)
    web = Starlette(routes=slack_routes(runtime.app))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=web), base_url="http://testserver"
    ) as http:
        yield Site(fake, runtime, http)
        await settle()
    await runtime.adapter.close()


def stored_bots(db: Database) -> list[dict[str, Any]]:
    with db.engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT team_id, bot_token FROM slack_bots"))
        return [dict(row._mapping) for row in rows]


# --------------------------------------------------------------------------- the flow


async def test_install_store_and_answer_with_the_stored_token(
    site: Site, fake: FakeSlack, sqlite_db: Database
) -> None:
    state = await site.install()
    code = fake.issue_oauth_code(team_id=SECOND_TEAM, team_name="Second Lab", user_id=INSTALLER)
    done = await site.redirect(code, state)
    assert done.status_code == 200, done.text
    [exchange] = fake.calls_to("oauth.v2.access")
    assert exchange.ok
    [bot] = stored_bots(sqlite_db)
    assert bot["team_id"] == SECOND_TEAM
    token = bot["bot_token"]
    assert token.startswith("xoxb-")

    # A slash command from the new workspace is authorised with the stored token: users.info
    # finds the installer, who exists only in that workspace.
    response = await site.slash("subscribe", team=SECOND_TEAM, user=INSTALLER, key="first")
    assert response.status_code == 200
    call = await fake.wait_for(lambda c: c.method == "response_url")
    assert call.params["text"].startswith("Welcome to Trending Papers!")
    info = fake.calls_to("users.info")[-1]
    assert info.ok
    assert info.params["user"] == INSTALLER
    sub = subscribers.find(sqlite_db, Platform.SLACK, chat_key(SECOND_TEAM, INSTALLER))
    assert sub is not None
    assert (sub.workspace_id, sub.timezone) == (SECOND_TEAM, "Europe/Berlin")

    # Digests for that workspace go out with its own token.
    assert site.runtime.store is not None
    sender = SlackSender(site.runtime.client, tokens=site.runtime.store.bot_token)
    await sender.send(sub, digest_payload(), key="d1")
    [posted] = fake.posted_messages(fake.dm_channel(INSTALLER))
    assert posted.text.startswith("Your papers for 2026-11-16")


async def test_a_state_is_good_once_and_only_in_the_browser_that_asked(
    site: Site, fake: FakeSlack, sqlite_db: Database
) -> None:
    state = await site.install()
    code = fake.issue_oauth_code(team_id=SECOND_TEAM, team_name="Second Lab", user_id=INSTALLER)
    other_browser = await site.redirect(code, state, cookie="somebody-elses-state")
    assert other_browser.status_code == 400
    forged = await site.redirect(code, "never-issued", cookie="never-issued")
    assert forged.status_code == 401
    assert not fake.calls_to("oauth.v2.access")
    assert (await site.redirect(code, state)).status_code == 200
    replay = await site.redirect(code, state)
    assert replay.status_code == 401
    assert len(fake.calls_to("oauth.v2.access")) == 1
    assert len(stored_bots(sqlite_db)) == 1


async def test_a_refused_code_stores_nothing(site: Site, sqlite_db: Database) -> None:
    state = await site.install()
    refused = await site.redirect("not-a-real-code", state)
    assert refused.status_code == 401
    assert stored_bots(sqlite_db) == []


async def test_a_workspace_without_an_installation_is_not_served(
    site: Site, fake: FakeSlack, sqlite_db: Database
) -> None:
    response = await site.slash("subscribe", team="T0NOWHERE1", user="U0STRANGER", key="x")
    assert response.status_code == 200
    call = await fake.wait_for(lambda c: c.method == "response_url")
    assert call.params["text"] == NOT_INSTALLED
    assert subscribers.find(sqlite_db, Platform.SLACK, chat_key("T0NOWHERE1", "U0STRANGER")) is None


async def test_uninstalling_removes_the_tokens_and_digests_stop(
    site: Site, fake: FakeSlack, sqlite_db: Database
) -> None:
    state = await site.install()
    code = fake.issue_oauth_code(team_id=SECOND_TEAM, team_name="Second Lab", user_id=INSTALLER)
    assert (await site.redirect(code, state)).status_code == 200
    sub, _ = subscribers.get_or_create(
        sqlite_db, Platform.SLACK, chat_key(SECOND_TEAM, INSTALLER), workspace_id=SECOND_TEAM
    )
    event = {
        "token": "legacy",
        "team_id": SECOND_TEAM,
        "api_app_id": fake.app_id,
        "event": {"type": "app_uninstalled"},
        "type": "event_callback",
        "event_id": "Ev0UNINSTALL",
        "event_time": int(time.time()),
    }
    body = json.dumps(event)
    response = await site.http.post(
        EVENTS_PATH, content=body, headers={"Content-Type": "application/json", **sign(body)}
    )
    assert response.status_code == 200
    for _ in range(100):
        if not stored_bots(sqlite_db):
            break
        await settle()
    assert stored_bots(sqlite_db) == []
    assert site.runtime.store is not None
    sender = SlackSender(site.runtime.client, tokens=site.runtime.store.bot_token)
    with pytest.raises(PermanentDeliveryError, match="not installed"):
        await sender.send(sub, digest_payload(), key="d")


async def test_the_platform_mounts_the_install_routes(fake: FakeSlack, sqlite_db: Database) -> None:
    platform = slack_platform(oauth_settings(fake), router_for(sqlite_db), sqlite_db)
    paths = [route.path for route in platform.routes]  # type: ignore[attr-defined]
    assert paths == [EVENTS_PATH, INSTALL_PATH, REDIRECT_PATH]
    await platform.start()  # no single token to check in OAuth mode
    await platform.stop()
    assert not fake.calls_to("auth.test")


# --------------------------------------------------------------------------- the stores


def installation(team: str, token: str, installed_at: float, user: str = INSTALLER) -> Installation:
    return Installation(
        app_id="A0FAKEAPP1",
        enterprise_id=None,
        team_id=team,
        team_name="Lab",
        bot_token=token,
        bot_id="B0BOT",
        bot_user_id="U0BOT",
        bot_scopes="chat:write,commands",
        user_id=user,
        is_enterprise_install=False,
        token_type="bot",
        installed_at=installed_at,
    )


async def test_installation_store_keeps_the_newest_bot(db: Database) -> None:
    now = [1000.0]
    store = SlackInstallationStore(db, DEFAULT_CLIENT_ID, cache_seconds=30, clock=lambda: now[0])
    assert await store.async_find_bot(enterprise_id=None, team_id=SECOND_TEAM) is None
    await store.async_save(installation(SECOND_TEAM, "xoxb-old", 1_763_000_000.0))
    await store.async_save(installation(SECOND_TEAM, "xoxb-new", 1_763_000_100.0, user="U0OTHER"))
    await store.async_save(installation("T0THIRD001", "xoxb-third", 1_763_000_050.0))

    bot = await store.async_find_bot(enterprise_id=None, team_id=SECOND_TEAM)
    assert bot is not None
    assert bot.bot_token == "xoxb-new"
    assert bot.installed_at == pytest.approx(1_763_000_100.0)
    found = await store.async_find_installation(enterprise_id=None, team_id=SECOND_TEAM)
    assert found is not None
    assert (found.user_id, found.bot_token, found.bot_scopes) == (
        "U0OTHER",
        "xoxb-new",
        ["chat:write", "commands"],
    )
    by_user = await store.async_find_installation(
        enterprise_id=None, team_id=SECOND_TEAM, user_id=INSTALLER
    )
    assert by_user is not None
    assert by_user.bot_token == "xoxb-new"  # the user's own row, with the newest bot token
    assert await store.bot_token(SECOND_TEAM) == "xoxb-new"
    assert await store.bot_token("T0THIRD001") == "xoxb-third"

    # Saving the same installation again updates it in place.
    await store.async_save(installation("T0THIRD001", "xoxb-rotated", 1_763_000_050.0))
    assert await store.bot_token("T0THIRD001") == "xoxb-rotated"
    with db.engine.connect() as connection:
        count = connection.execute(sa.text("SELECT count(*) FROM slack_bots")).scalar()
    assert count == 3

    await store.async_delete_all(enterprise_id=None, team_id=SECOND_TEAM)
    assert await store.async_find_bot(enterprise_id=None, team_id=SECOND_TEAM) is None
    assert await store.bot_token(SECOND_TEAM) is None
    assert await store.bot_token("T0THIRD001") == "xoxb-rotated"


async def test_installation_lookups_are_cached_briefly(sqlite_db: Database) -> None:
    now = [1000.0]
    store = SlackInstallationStore(
        sqlite_db, DEFAULT_CLIENT_ID, cache_seconds=30, clock=lambda: now[0]
    )
    other = SlackInstallationStore(sqlite_db, DEFAULT_CLIENT_ID)  # another replica
    await store.async_save(installation(SECOND_TEAM, "xoxb-one", 1_763_000_000.0))
    assert await store.bot_token(SECOND_TEAM) == "xoxb-one"
    await other.async_save(installation(SECOND_TEAM, "xoxb-two", 1_763_000_500.0))
    assert await store.bot_token(SECOND_TEAM) == "xoxb-one"  # still cached here
    now[0] += 31
    assert await store.bot_token(SECOND_TEAM) == "xoxb-two"


async def test_state_store_states_are_single_use_and_expire(db: Database) -> None:
    now = [1_763_000_000.0]
    store = SlackStateStore(db, expiration_seconds=600, clock=lambda: now[0])
    first = await store.async_issue()
    second = await store.async_issue()
    assert first != second
    assert await store.async_consume(first) is True
    assert await store.async_consume(first) is False
    assert await store.async_consume("never-issued") is False
    assert await store.async_consume("") is False
    now[0] += 601
    assert await store.async_consume(second) is False
    with db.engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM slack_oauth_states")).scalar() == 0


def test_the_migration_creates_the_tables_slack_sdk_defines(db: Database) -> None:
    inspector = sa.inspect(db.engine)
    for name in SLACK_TABLES:
        table = METADATA.tables[name]
        columns = {c["name"]: c for c in inspector.get_columns(name)}
        assert list(columns) == [c.name for c in table.columns]
        for column in table.columns:
            found = columns[column.name]
            assert found["nullable"] == column.nullable, (name, column.name)
            assert type(found["type"]).__name__.upper() in {
                type(column.type).__name__.upper(),
                # PostgreSQL reflects String as VARCHAR, DateTime as TIMESTAMP.
                {"STRING": "VARCHAR", "DATETIME": "TIMESTAMP"}.get(
                    type(column.type).__name__.upper(), ""
                ),
            }, (name, column.name, found["type"])
            length = getattr(column.type, "length", None)
            if length is not None:
                assert getattr(found["type"], "length", None) == length
        indexes = {index["name"]: index["column_names"] for index in inspector.get_indexes(name)}
        for index in table.indexes:
            assert indexes[index.name] == [c.name for c in index.columns]


async def test_timestamps_survive_a_server_in_another_time_zone(
    sqlite_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Stored naive (UTC, as slack_sdk does); read back as local time they would shift by hours.
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        store = SlackInstallationStore(sqlite_db, DEFAULT_CLIENT_ID)
        installed = datetime(2026, 11, 16, 12, 0, tzinfo=UTC).timestamp()
        await store.async_save(installation(SECOND_TEAM, "xoxb-tz", installed))
        bot = await store.async_find_bot(enterprise_id=None, team_id=SECOND_TEAM)
        assert bot is not None
        assert bot.installed_at == pytest.approx(installed)
    finally:
        monkeypatch.undo()
        time.tzset()
