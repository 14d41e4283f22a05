"""Slack OAuth installations and state in our own database, for slack-bolt's ``AsyncApp``.

The tables are slack_sdk's: ``slack_installations``, ``slack_bots`` and
``slack_oauth_states`` with exactly the columns and indexes of its ``SQLAlchemyInstallationStore``
and ``SQLAlchemyOAuthStateStore`` (created by our migration 0005, so ``db upgrade`` owns the
schema), and the rows mean what they mean there, so the data stays usable by slack_sdk's own
stores. The code is ours because those stores cannot be imported here: they import
``sqlalchemy.ext.asyncio``, which needs ``greenlet``; and their async variants need an
``AsyncEngine`` with an async driver. These stores run plain SQLAlchemy Core on the
application's engine in worker threads, so a round trip never blocks the event loop.

Bolt asks for the workspace's bot on every incoming request; answers are cached for
``cache_seconds`` (and dropped at once when this process saves or deletes an installation), so
a busy workspace costs one query per half minute instead of one per click.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from slack_bolt.error import BoltError
from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from slack_sdk.oauth.installation_store.models.bot import Bot
from slack_sdk.oauth.installation_store.models.installation import Installation
from slack_sdk.oauth.state_store.async_state_store import AsyncOAuthStateStore
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from storage.db import Database
from storage.errors import StorageError

log = logging.getLogger(__name__)

STATE_EXPIRATION_SECONDS = 600
CACHE_SIZE = 10_000

METADATA = sa.MetaData()
"""The Slack tables; kept apart from the application's models (slack_sdk defines them)."""

INSTALLATIONS = sa.Table(
    "slack_installations",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("client_id", sa.String(32), nullable=False),
    sa.Column("app_id", sa.String(32), nullable=False),
    sa.Column("enterprise_id", sa.String(32)),
    sa.Column("enterprise_name", sa.String(200)),
    sa.Column("enterprise_url", sa.String(200)),
    sa.Column("team_id", sa.String(32)),
    sa.Column("team_name", sa.String(200)),
    sa.Column("bot_token", sa.String(200)),
    sa.Column("bot_id", sa.String(32)),
    sa.Column("bot_user_id", sa.String(32)),
    sa.Column("bot_scopes", sa.String(1000)),
    sa.Column("bot_refresh_token", sa.String(200)),
    sa.Column("bot_token_expires_at", sa.DateTime),
    sa.Column("user_id", sa.String(32), nullable=False),
    sa.Column("user_token", sa.String(200)),
    sa.Column("user_scopes", sa.String(1000)),
    sa.Column("user_refresh_token", sa.String(200)),
    sa.Column("user_token_expires_at", sa.DateTime),
    sa.Column("incoming_webhook_url", sa.String(200)),
    sa.Column("incoming_webhook_channel", sa.String(200)),
    sa.Column("incoming_webhook_channel_id", sa.String(200)),
    sa.Column("incoming_webhook_configuration_url", sa.String(200)),
    sa.Column("is_enterprise_install", sa.Boolean, nullable=False, default=False),
    sa.Column("token_type", sa.String(32)),
    sa.Column("installed_at", sa.DateTime, nullable=False),
    sa.Index(
        "slack_installations_idx",
        "client_id",
        "enterprise_id",
        "team_id",
        "user_id",
        "installed_at",
    ),
)

BOTS = sa.Table(
    "slack_bots",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("client_id", sa.String(32), nullable=False),
    sa.Column("app_id", sa.String(32), nullable=False),
    sa.Column("enterprise_id", sa.String(32)),
    sa.Column("enterprise_name", sa.String(200)),
    sa.Column("team_id", sa.String(32)),
    sa.Column("team_name", sa.String(200)),
    sa.Column("bot_token", sa.String(200)),
    sa.Column("bot_id", sa.String(32)),
    sa.Column("bot_user_id", sa.String(32)),
    sa.Column("bot_scopes", sa.String(1000)),
    sa.Column("bot_refresh_token", sa.String(200)),
    sa.Column("bot_token_expires_at", sa.DateTime),
    sa.Column("is_enterprise_install", sa.Boolean, nullable=False, default=False),
    sa.Column("installed_at", sa.DateTime, nullable=False),
    sa.Index("slack_bots_idx", "client_id", "enterprise_id", "team_id", "installed_at"),
)

STATES = sa.Table(
    "slack_oauth_states",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("state", sa.String(200), nullable=False),
    sa.Column("expire_at", sa.DateTime, nullable=False),
)

SLACK_TABLES = tuple(METADATA.tables)
"""``slack_installations``, ``slack_bots``, ``slack_oauth_states``."""

_BOT_FIELDS = (
    "bot_token",
    "bot_id",
    "bot_user_id",
    "bot_scopes",
    "bot_refresh_token",
    "bot_token_expires_at",
)
_MISSING = object()


def _naive_utc(value: Any) -> Any:
    """Datetimes are stored as naive UTC, the way slack_sdk stores them."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def _aware(value: Any) -> Any:
    """A stored naive UTC datetime made aware, so slack_sdk never reads it as local time."""
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _row_values(table: sa.Table, data: Mapping[str, Any], client_id: str) -> dict[str, Any]:
    values = {name: _naive_utc(value) for name, value in data.items() if name in table.c}
    values["client_id"] = client_id
    values.pop("id", None)
    return values


def _same(column: sa.ColumnElement[Any], value: Any) -> sa.ColumnElement[bool]:
    return column.is_(None) if value is None else column == value


def _installation(row: sa.RowMapping) -> Installation:
    return Installation(
        **{
            name: _aware(row[name])
            for name in INSTALLATIONS.c.keys()  # noqa: SIM118 - a ColumnCollection, not a dict
            if name not in ("id", "client_id")
        }
    )


def _bot(row: sa.RowMapping) -> Bot:
    return Bot(
        **{
            name: _aware(row[name])
            for name in BOTS.c.keys()  # noqa: SIM118 - a ColumnCollection, not a dict
            if name not in ("id", "client_id")
        }
    )


class SlackInstallationStore(AsyncInstallationStore):
    """Installations and bots per workspace, for bolt's OAuth flow and authorisation."""

    def __init__(
        self,
        db: Database,
        client_id: str,
        *,
        cache_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.client_id = client_id
        self._ttl = cache_seconds
        self._clock = clock
        self._cache: OrderedDict[tuple[Any, ...], tuple[Any, float]] = OrderedDict()

    @property
    def logger(self) -> logging.Logger:
        """The logger slack_sdk expects every store to have."""
        return log

    # --- plumbing --------------------------------------------------------------------------

    def _cached(self, key: tuple[Any, ...]) -> Any:
        found = self._cache.get(key)
        if found is None or found[1] <= self._clock():
            return _MISSING
        self._cache.move_to_end(key)
        return found[0]

    def _remember(self, key: tuple[Any, ...], value: Any) -> None:
        self._cache[key] = (value, self._clock() + self._ttl)
        self._cache.move_to_end(key)
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)

    def forget(self) -> None:
        """Drop every cached answer (after this process changed an installation)."""
        self._cache.clear()

    async def _run(self, what: str, work: Callable[[Connection], Any], *, write: bool) -> Any:
        def in_thread() -> Any:
            context = self.db.engine.begin() if write else self.db.engine.connect()
            with context as connection:
                return work(connection)

        try:
            return await asyncio.to_thread(in_thread)
        except SQLAlchemyError as exc:
            raise StorageError(f"slack installation store: {what} failed: {exc}") from exc

    async def _lookup(
        self, key: tuple[Any, ...], what: str, work: Callable[[Connection], Any]
    ) -> Any:
        found = self._cached(key)
        if found is _MISSING:
            found = await self._run(what, work, write=False)
            self._remember(key, found)
        return found

    # --- writes ----------------------------------------------------------------------------

    def _upsert(self, connection: Connection, table: sa.Table, values: dict[str, Any]) -> None:
        """Insert, or update the row of the same workspace and install time (a re-save)."""
        match = sa.and_(
            table.c.client_id == self.client_id,
            _same(table.c.enterprise_id, values.get("enterprise_id")),
            _same(table.c.team_id, values.get("team_id")),
            table.c.installed_at == values["installed_at"],
        )
        found = connection.execute(sa.select(table.c.id).where(match).limit(1)).scalar()
        if found is None:
            connection.execute(table.insert().values(**values))
        else:
            connection.execute(table.update().where(table.c.id == found).values(**values))

    async def async_save(self, installation: Installation) -> None:
        """Store a new installation and its bot, in one transaction.

        A database failure is raised as bolt's ``BoltError``, which the OAuth flow turns into
        its "installation failed" page instead of a server error.
        """
        installation_values = _row_values(INSTALLATIONS, installation.to_dict(), self.client_id)
        bot_values = _row_values(BOTS, installation.to_bot().to_dict(), self.client_id)

        def work(connection: Connection) -> None:
            self._upsert(connection, INSTALLATIONS, installation_values)
            self._upsert(connection, BOTS, bot_values)

        try:
            await self._run("save", work, write=True)
        except StorageError as exc:
            log.error(
                "could not store a slack installation",
                extra={"team_id": installation.team_id, "error": str(exc)},
            )
            raise BoltError("could not store the installation") from exc
        finally:
            self.forget()
        log.info(
            "slack app installed",
            extra={"team_id": installation.team_id, "enterprise_id": installation.enterprise_id},
        )

    async def async_save_bot(self, bot: Bot) -> None:
        """Store a bot (token rotation saves refreshed bots this way)."""
        values = _row_values(BOTS, bot.to_dict(), self.client_id)
        try:
            await self._run("save_bot", lambda c: self._upsert(c, BOTS, values), write=True)
        finally:
            self.forget()

    async def async_delete_bot(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        """Forget a workspace's bot (tokens revoked, app uninstalled)."""
        statement = BOTS.delete().where(
            BOTS.c.client_id == self.client_id,
            _same(BOTS.c.enterprise_id, enterprise_id),
            _same(BOTS.c.team_id, team_id),
        )
        try:
            await self._run("delete_bot", lambda c: c.execute(statement), write=True)
        finally:
            self.forget()
        log.info("slack bot removed", extra={"team_id": team_id, "enterprise_id": enterprise_id})

    async def async_delete_installation(
        self, *, enterprise_id: str | None, team_id: str | None, user_id: str | None = None
    ) -> None:
        """Forget a workspace's installations (or only one user's)."""
        conditions = [
            INSTALLATIONS.c.client_id == self.client_id,
            _same(INSTALLATIONS.c.enterprise_id, enterprise_id),
            _same(INSTALLATIONS.c.team_id, team_id),
        ]
        if user_id is not None:
            conditions.append(INSTALLATIONS.c.user_id == user_id)
        statement = INSTALLATIONS.delete().where(*conditions)
        try:
            await self._run("delete_installation", lambda c: c.execute(statement), write=True)
        finally:
            self.forget()

    # --- reads -----------------------------------------------------------------------------

    def _latest_bot(
        self, connection: Connection, enterprise_id: str | None, team_id: str | None
    ) -> Bot | None:
        row = (
            connection.execute(
                BOTS.select()
                .where(
                    BOTS.c.client_id == self.client_id,
                    _same(BOTS.c.enterprise_id, enterprise_id),
                    _same(BOTS.c.team_id, team_id),
                    BOTS.c.bot_token.is_not(None),
                )
                .order_by(BOTS.c.installed_at.desc(), BOTS.c.id.desc())
                .limit(1)
            )
            .mappings()
            .first()
        )
        return _bot(row) if row is not None else None

    async def async_find_bot(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        is_enterprise_install: bool | None = False,
    ) -> Bot | None:
        """The newest bot with a token in a workspace (or org-wide install), or None."""
        team = None if is_enterprise_install else team_id
        found: Bot | None = await self._lookup(
            ("bot", enterprise_id, team),
            "find_bot",
            lambda c: self._latest_bot(c, enterprise_id, team),
        )
        return found

    async def async_find_installation(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None = None,
        is_enterprise_install: bool | None = False,
    ) -> Installation | None:
        """The newest installation of a workspace (or by one user), with the newest bot token."""
        team = None if is_enterprise_install else team_id

        def work(connection: Connection) -> Installation | None:
            conditions = [
                INSTALLATIONS.c.client_id == self.client_id,
                _same(INSTALLATIONS.c.enterprise_id, enterprise_id),
                _same(INSTALLATIONS.c.team_id, team),
            ]
            if user_id is not None:
                conditions.append(INSTALLATIONS.c.user_id == user_id)
            row = (
                connection.execute(
                    INSTALLATIONS.select()
                    .where(*conditions)
                    .order_by(INSTALLATIONS.c.installed_at.desc(), INSTALLATIONS.c.id.desc())
                    .limit(1)
                )
                .mappings()
                .first()
            )
            if row is None:
                return None
            installation = _installation(row)
            if user_id is not None or installation.bot_token is None:
                # A user's own installation may predate the workspace's newest bot token.
                bot = self._latest_bot(connection, enterprise_id, team)
                if bot is not None and bot.bot_token != installation.bot_token:
                    for name in _BOT_FIELDS:
                        setattr(installation, name, getattr(bot, name))
            return installation

        found: Installation | None = await self._lookup(
            ("installation", enterprise_id, team, user_id), "find_installation", work
        )
        return found

    async def bot_token(self, team_id: str) -> str | None:
        """The newest bot token for a workspace, whichever org it belongs to; None if none.

        Subscribers remember only their workspace (team) id, so this looks the bot up by team
        alone rather than by (enterprise, team) as bolt does.
        """
        query = (
            sa.select(BOTS.c.bot_token)
            .where(
                BOTS.c.client_id == self.client_id,
                BOTS.c.team_id == team_id,
                BOTS.c.bot_token.is_not(None),
            )
            .order_by(BOTS.c.installed_at.desc(), BOTS.c.id.desc())
            .limit(1)
        )
        token = await self._lookup(
            ("token", team_id), "bot_token", lambda c: c.execute(query).scalar()
        )
        return str(token) if token else None


class SlackStateStore(AsyncOAuthStateStore):
    """OAuth ``state`` values, single use and short-lived, in ``slack_oauth_states``.

    The state is consumed in the database, so the install and the redirect may be served by
    different replicas.
    """

    def __init__(
        self,
        db: Database,
        *,
        expiration_seconds: int = STATE_EXPIRATION_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.expiration_seconds = expiration_seconds
        self._clock = clock

    @property
    def logger(self) -> logging.Logger:
        """The logger slack_sdk expects every store to have."""
        return log

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC).replace(tzinfo=None)

    def _issue(self) -> str:
        state = str(uuid.uuid4())
        expire_at = datetime.fromtimestamp(self._clock() + self.expiration_seconds, UTC)
        with self.db.engine.begin() as connection:
            connection.execute(
                STATES.insert().values(state=state, expire_at=expire_at.replace(tzinfo=None))
            )
        return state

    def _consume(self, state: str) -> bool:
        with self.db.engine.begin() as connection:
            # Expired states are of no use to anyone: sweep them on the way.
            connection.execute(STATES.delete().where(STATES.c.expire_at <= self._now()))
            deleted = connection.execute(STATES.delete().where(STATES.c.state == state))
            return bool(deleted.rowcount)

    async def async_issue(self, *args: Any, **kwargs: Any) -> str:
        """A new random state, valid for ``expiration_seconds``."""
        try:
            return await asyncio.to_thread(self._issue)
        except SQLAlchemyError as exc:
            raise StorageError(f"slack state store: issue failed: {exc}") from exc

    async def async_consume(self, state: str) -> bool:
        """True exactly once for a state this store issued and that has not expired."""
        if not state:
            return False
        try:
            return await asyncio.to_thread(self._consume, state)
        except SQLAlchemyError:
            log.exception("could not check an OAuth state; refusing it")
            return False
