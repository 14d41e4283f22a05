"""Slack adapter on slack-bolt's ``AsyncApp``: slash commands, buttons and App Home as ``Command``s.

Nothing here decides what to answer: every interaction becomes a ``Command`` for
``CommandRouter.handle`` and the ``Reply`` is rendered to Block Kit by
``bot.chat.slack_render``. This module only knows Slack:

- One slash command (``/papers``, whatever name the app gives it) with subcommands:
  ``/papers interests add diffusion`` is the ``interests`` command with ``add diffusion``.
  Every request is acknowledged as soon as bolt has verified it (Slack wants an answer
  within 3 s): each listener is an empty ack plus the real work started as a task (bolt's
  "lazy" listeners), and the reply goes out through the command's ``response_url``. In a
  direct message the reply is a normal message; in a channel it is visible only to the
  member who asked, except the channel's own ``subscribe`` and ``digest``, which everybody
  there should see.
- Who a subscription belongs to: a command in a DM is the user's own subscription (digests
  arrive in their DM with the app); a command in a channel is about that channel's
  subscription, which only the member who set it up, or a workspace admin or owner
  (``users.info``, cached briefly), may change.
- Chats are keyed ``TEAM:CONVERSATION`` (``T123:U456`` for a person, ``T123:C789`` for a
  channel), so two workspaces can never collide in one deployment.
- Buttons (👍 / 👎 / 🔖, paging, confirmations) are acknowledged at once; the press is
  routed, and the message is updated in place (``chat.update``, or ``response_url`` for
  ephemeral messages). A notice is shown to the presser only when nothing visibly changed.
- ``app_home_opened`` publishes the user's settings, interests and saved papers; DMs to the
  app and ``@mentions`` are read as commands too.

HTTP mode serves Events API, interactivity and slash commands on one route (``/slack/events``)
with bolt's signature check (5-minute replay window), plus ``/slack/install`` and
``/slack/oauth_redirect`` for multi-workspace OAuth, whose installations and states live in our
database (``bot.chat.slack_store``). With ``TP_SLACK_APP_TOKEN`` the app uses Socket Mode
instead and needs no public URL. ``TP_SLACK_API_BASE_URL`` points the Web API client at
another server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp
from pydantic import SecretStr
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook import WebhookResponse
from slack_sdk.webhook.async_client import AsyncWebhookClient
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from bot.chat.sender import (
    DeliveryError,
    Pace,
    PermanentDeliveryError,
    RetryLater,
    TransientDeliveryError,
    unpaced,
)
from bot.chat.slack_render import (
    ACTION_PREFIX,
    DEFAULT_COMMAND,
    DEFAULT_FALLBACK,
    Rendered,
    decode_value,
    escape,
    home_view,
    notice_text,
    relabel,
    render,
    unescape,
)
from bot.chat.slack_store import SlackInstallationStore, SlackStateStore
from bot.commands import ALIASES, SORRY, SPECS, is_button_update, reply_for_payload
from bot.config import Settings
from bot.messages import Action, Command, Reply
from bot.messages import CommandHandler as HandleFn
from storage import subscribers
from storage.db import Database
from storage.models import ChatKind, Platform, Subscriber

if TYPE_CHECKING:
    from bot.service import ChatPlatform

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
INSTALL_PATH = "/slack/install"
REDIRECT_PATH = "/slack/oauth_redirect"
DEFAULT_API_BASE_URL = "https://slack.com/api/"
DEFAULT_SCOPES = (
    "commands",
    "chat:write",
    "chat:write.public",
    "users:read",
    "im:write",
    "im:history",
    "app_mentions:read",
)
"""Bot scopes the app asks for; ``deploy/slack-manifest.yaml`` lists the same."""
NOT_INSTALLED = (
    "Trending Papers is not installed in this workspace (any more). "
    "Ask a workspace admin to install it again."
)
"""What bolt answers a request from a workspace without a stored installation."""
MAX_BODY = 1_000_000
USER_CACHE_SECONDS = 300.0
HOME_MIN_INTERVAL = 10.0
"""``app_home_opened`` fires on every visit to the tab; republish at most this often."""
IN_CHANNEL = frozenset({"start", "digest"})
"""Commands whose answer the whole channel sees; everything else there is ephemeral."""
AUTO_ZONE = frozenset({"auto", "slack", "mine", "my", "here", "local"})
"""``/papers timezone auto``: take the zone from the user's Slack profile."""
PERMANENT_ERRORS = frozenset(
    {
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "account_inactive",
        "token_revoked",
        "invalid_auth",
        "user_not_found",
        "user_disabled",
        "cannot_dm_bot",
        "team_not_found",
    }
)
"""Web API errors after which a chat cannot receive digests: its subscriber is deactivated."""
SHARED_TOKEN_ERRORS = frozenset({"invalid_auth", "not_authed"})
"""With one configured token these mean "our configuration is wrong", not "this chat is gone"."""
RATE_LIMITED = frozenset({"ratelimited", "rate_limited"})
DEFAULT_RETRY_AFTER = 30.0
_MENTION = re.compile(r"<[@!][^>]*>")


# --------------------------------------------------------------------------- configuration


def _secret(value: object) -> str | None:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    return str(value) if value else None


@dataclass(frozen=True)
class SlackConfig:
    """The Slack part of ``Settings`` (fields not yet in ``Settings`` read as unset)."""

    api_base_url: str = DEFAULT_API_BASE_URL
    signing_secret: str | None = None
    bot_token: str | None = None
    app_token: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    redirect_uri: str | None = None
    command: str = DEFAULT_COMMAND

    @property
    def oauth(self) -> bool:
        """Multi-workspace: installs through OAuth, tokens from the installation store."""
        return bool(self.client_id and self.client_secret)

    @property
    def socket_mode(self) -> bool:
        """Socket Mode (an ``xapp-`` token) instead of HTTP requests from Slack."""
        return bool(self.app_token)

    @classmethod
    def from_settings(cls, settings: Settings, *, base_url: str | None = None) -> SlackConfig:
        """Read every Slack setting; ``base_url`` overrides ``TP_SLACK_API_BASE_URL``."""
        scopes: Any = getattr(settings, "slack_scopes", None) or DEFAULT_SCOPES
        if isinstance(scopes, str):
            scopes = [part.strip() for part in scopes.split(",")]
        command = str(getattr(settings, "slack_command", None) or DEFAULT_COMMAND).strip()
        return cls(
            api_base_url=base_url
            or getattr(settings, "slack_api_base_url", None)
            or DEFAULT_API_BASE_URL,
            signing_secret=_secret(getattr(settings, "slack_signing_secret", None)),
            bot_token=_secret(getattr(settings, "slack_bot_token", None)),
            app_token=_secret(getattr(settings, "slack_app_token", None)),
            client_id=_secret(getattr(settings, "slack_client_id", None)),
            client_secret=_secret(getattr(settings, "slack_client_secret", None)),
            scopes=tuple(scope for scope in scopes if scope),
            redirect_uri=getattr(settings, "slack_redirect_uri", None) or None,
            command=command if command.startswith("/") else f"/{command}",
        )


def authorize_url_for(api_base_url: str) -> str:
    """Where installers approve the app: ``/oauth/v2/authorize`` on the Web API's server."""
    parts = urlsplit(api_base_url)
    return f"{parts.scheme}://{parts.netloc}/oauth/v2/authorize"


# --------------------------------------------------------------------------- translation


def chat_key(team_id: str, conversation: str) -> str:
    """A subscriber's ``chat_id``: ``TEAM:USER`` for a person, ``TEAM:CHANNEL`` for a channel."""
    return f"{team_id}:{conversation}"


def conversation_of(chat_id: str) -> str:
    """The Slack user or channel id inside a ``chat_key`` (where digests are posted)."""
    return chat_id.rpartition(":")[2]


def conversation_kind(channel_id: str, channel_name: object = None) -> ChatKind:
    """A direct message belongs to its user; every other conversation is a channel."""
    if channel_id.startswith("D") or channel_name == "directmessage":
        return ChatKind.USER
    return ChatKind.CHANNEL


def parse_subcommand(text: str) -> tuple[str, str]:
    """(name, args) of a slash command's text: ``interests add x`` → (``interests``, ``add x``).

    Empty text asks for help; a leading ``/`` on the subcommand is forgiven.
    """
    words = text.strip().split(maxsplit=1)
    if not words:
        return "help", ""
    name = words[0].lstrip("/").casefold()
    return (name or "help"), (words[1].strip() if len(words) > 1 else "")


def parse_message(text: str) -> tuple[str, str]:
    """(name, args) of a DM or mention: a known command word starts it, else plain text."""
    clean = _MENTION.sub(" ", text).strip()
    name, args = parse_subcommand(clean)
    if clean and (name in SPECS or name in ALIASES):
        return name, args
    return "", clean


@dataclass(frozen=True)
class _UserFacts:
    tz: str | None = None
    is_admin: bool = False
    name: str | None = None


_API_FAULTS = (SlackClientError, aiohttp.ClientError, asyncio.TimeoutError, OSError)


class _ChatLocks:
    """One lock per chat, so one chat's commands run in the order they arrived."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        """Run the block once every earlier holder of ``key`` is done."""
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._users[key] = self._users.get(key, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._users[key] -= 1
            if not self._users[key]:
                del self._users[key]
                del self._locks[key]


Respond = Callable[..., Awaitable[WebhookResponse]]
"""``respond(text=…, blocks=…, response_type=…, replace_original=…)``, like bolt's."""


class _Responses:
    """Posts to ``response_url``s over one pooled HTTP session.

    bolt's own ``respond`` opens a new connection (and TLS handshake) for every reply; one
    session keeps the connection to Slack's hooks server alive between replies.
    """

    def __init__(self, timeout: int = 15) -> None:
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    def bind(self, url: str) -> Respond:
        """A ``respond`` function for one interaction's ``response_url``."""

        async def respond(text: str = "", **options: Any) -> WebhookResponse:
            if self._session is None or self._session.closed:
                self._session = aiohttp.ClientSession()
            message: dict[str, Any] = {"text": text}
            message.update({k: v for k, v in options.items() if v is not None})
            client = AsyncWebhookClient(url, timeout=self.timeout, session=self._session)
            return await client.send_dict(message)

        return respond

    async def close(self) -> None:
        """Close the pooled connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None


class SlackAdapter:
    """The bolt listeners: build ``Command``s, call the router, render and send the ``Reply``."""

    def __init__(
        self,
        handle: HandleFn,
        db: Database,
        *,
        command: str = DEFAULT_COMMAND,
        user_cache_seconds: float = USER_CACHE_SECONDS,
        home_min_interval: float = HOME_MIN_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.handle = handle
        self.db = db
        self.command = command
        self._user_ttl = user_cache_seconds
        self._home_interval = home_min_interval
        self._clock = clock
        self._users: OrderedDict[tuple[str, str], tuple[_UserFacts, float]] = OrderedDict()
        self._home_seen: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._locks = _ChatLocks()
        self._responses = _Responses()

    async def close(self) -> None:
        """Release the HTTP connections kept for replies."""
        await self._responses.close()

    # ----------------------------------------------------------------- slash command

    async def on_command(self, body: dict[str, Any], client: AsyncWebClient, context: Any) -> None:
        """``/papers <subcommand> …`` (already acknowledged): route, answer via ``response_url``."""
        respond = self._responses.bind(str(body.get("response_url") or ""))
        team = _team(context, body)
        user = str(body.get("user_id") or "")
        channel_id = str(body.get("channel_id") or "")
        kind = conversation_kind(channel_id, body.get("channel_name"))
        chat_id = chat_key(team, user if kind == ChatKind.USER else channel_id)
        name, args = parse_subcommand(unescape(str(body.get("text") or "")))
        display = _display_name(kind, body.get("user_name"), body.get("channel_name"))
        async with self._locks.hold(chat_id):
            try:
                command = await self._command(
                    client, team, user, chat_id, kind, name, args, display=display
                )
                reply = await self.handle(command)
                visibility = _visibility(kind, name, reply)
                await self._respond(respond, reply, response_type=visibility)
            except Exception:
                log.exception(
                    "slack command failed",
                    extra={"team_id": team, "chat_id": chat_id, "user_id": user, "command": name},
                )
                with contextlib.suppress(Exception):
                    await respond(text=escape(SORRY), response_type="ephemeral")

    async def _command(
        self,
        client: AsyncWebClient,
        team: str,
        user: str,
        chat_id: str,
        kind: ChatKind,
        name: str,
        args: str,
        *,
        display: str | None = None,
        action: Action | None = None,
        target: str | None = None,
    ) -> Command:
        canonical = ALIASES.get(name, name)
        zone = None
        if canonical == "start" or (canonical == "timezone" and args.casefold() in AUTO_ZONE):
            facts = await self._user(client, team, user)
            zone = facts.tz
            if canonical == "timezone" and zone:
                args = zone
            if kind == ChatKind.USER and facts.name:
                display = facts.name
        return Command(
            platform=Platform.SLACK,
            chat_id=chat_id,
            user_id=chat_key(team, user),
            name=name,
            args=args,
            chat_kind=kind,
            user_is_admin=await self._may_change(client, team, user, chat_id, kind),
            user_display_name=display,
            user_timezone=zone,
            action=action,
            target=target,
            workspace_id=team or None,
        )

    async def _may_change(
        self, client: AsyncWebClient, team: str, user: str, chat_id: str, kind: ChatKind
    ) -> bool:
        """A DM is its user's; a channel is its subscriber's owner's and the admins'."""
        if kind == ChatKind.USER:
            return True
        found = await asyncio.to_thread(subscribers.find, self.db, Platform.SLACK, chat_id)
        if found is None:
            return True  # whoever sets a channel up becomes its owner
        if found.owner_user_id == chat_key(team, user):
            return True
        return (await self._user(client, team, user)).is_admin

    async def _user(self, client: AsyncWebClient, team: str, user: str) -> _UserFacts:
        key = (team, user)
        now = self._clock()
        cached = self._users.get(key)
        if cached is not None and cached[1] > now:
            return cached[0]
        try:
            answer = await client.users_info(user=user)
        except _API_FAULTS as exc:
            log.warning(
                "users.info failed; treating the user as a member",
                extra={"team_id": team, "user_id": user, "error": _error_name(exc)},
            )
            return _UserFacts()
        data = answer.get("user") or {}
        profile = data.get("profile") or {}
        facts = _UserFacts(
            tz=data.get("tz") or None,
            is_admin=bool(
                data.get("is_admin") or data.get("is_owner") or data.get("is_primary_owner")
            ),
            name=data.get("real_name") or profile.get("real_name") or data.get("name") or None,
        )
        self._users[key] = (facts, now + self._user_ttl)
        self._users.move_to_end(key)
        while len(self._users) > 10_000:
            self._users.popitem(last=False)
        return facts

    async def _respond(
        self,
        respond: Respond,
        reply: Reply,
        *,
        response_type: str,
        replace_first: bool = False,
    ) -> bool:
        """Send a reply through ``response_url``; False when there was nothing to send."""
        messages = render(reply, command=self.command)
        if not messages and reply.notice:
            messages = [Rendered(notice_text(reply.notice, self.command))]
        for index, message in enumerate(messages):
            extra: dict[str, Any] = {"blocks": message.blocks} if message.blocks else {}
            if replace_first and index == 0:
                extra["replace_original"] = True
            else:
                extra["response_type"] = response_type
            answer = await respond(
                text=message.text, unfurl_links=False, unfurl_media=False, **extra
            )
            if answer.status_code != 200:
                log.warning(
                    "response_url refused a reply",
                    extra={"status": answer.status_code, "body": str(answer.body)[:200]},
                )
                return False
        return bool(messages)

    # ----------------------------------------------------------------- buttons

    async def on_action(self, body: dict[str, Any], client: AsyncWebClient, context: Any) -> None:
        """A press on one of our buttons (already acknowledged): route, update the message."""
        respond = self._responses.bind(str(body.get("response_url") or ""))
        actions = body.get("actions") or []
        action, target = decode_value(actions[0].get("value") if actions else None)
        if action is None:
            return  # a link button, which Slack reports too
        team = _team(context, body)
        user = str((body.get("user") or {}).get("id") or "")
        container = body.get("container") or {}
        channel = body.get("channel") or {}
        in_home = container.get("type") == "view"
        channel_id = "" if in_home else str(channel.get("id") or container.get("channel_id") or "")
        kind = ChatKind.USER if in_home else conversation_kind(channel_id, channel.get("name"))
        chat_id = chat_key(team, user if kind == ChatKind.USER else channel_id)
        async with self._locks.hold(chat_id):
            try:
                command = await self._command(
                    client, team, user, chat_id, kind, "button", "", action=action, target=target
                )
                reply = await self.handle(command)
                if in_home:
                    await self.publish_home(client, team, user)
                else:
                    await self._apply(client, respond, body, reply)
            except Exception:
                log.exception(
                    "slack button failed",
                    extra={"team_id": team, "chat_id": chat_id, "user_id": user,
                           "action": str(action)},
                )  # fmt: skip
                if body.get("response_url"):
                    with contextlib.suppress(Exception):
                        await respond(
                            text=escape(SORRY), response_type="ephemeral", replace_original=False
                        )

    async def _apply(
        self, client: AsyncWebClient, respond: Respond, body: dict[str, Any], reply: Reply
    ) -> None:
        """Show a button's reply: relabel, replace or add messages; a notice if nothing showed."""
        container = body.get("container") or {}
        visibility = "ephemeral" if container.get("is_ephemeral") else "in_channel"
        shown = False
        if is_button_update(reply):
            # Ephemeral messages come without their blocks: then only the notice can tell.
            message = body.get("message") or {}
            blocks = message.get("blocks")
            try:
                updated = relabel(blocks, reply.buttons) if isinstance(blocks, list) else None
            except ValueError:
                updated = None  # the message changed since; leave it alone
            if updated is not None:
                text = str(message.get("text") or DEFAULT_FALLBACK)
                shown = updated == blocks or await self._replace(
                    client, respond, body, Rendered(text, updated)
                )
        elif reply.edit and reply.blocks:
            messages = render(reply, command=self.command)
            if messages:
                shown = await self._replace(client, respond, body, messages[0])
                rest = messages[1:] if shown else messages
                if rest and body.get("response_url"):
                    shown = await self._send_rendered(respond, rest, visibility)
        elif reply.blocks and body.get("response_url"):
            shown = await self._respond(respond, reply, response_type=visibility)
        if reply.notice and not shown and body.get("response_url"):
            await respond(
                text=notice_text(reply.notice, self.command),
                response_type="ephemeral",
                replace_original=False,
            )

    async def _send_rendered(
        self, respond: Respond, messages: list[Rendered], visibility: str
    ) -> bool:
        for message in messages:
            answer = await respond(
                text=message.text,
                blocks=message.blocks,
                response_type=visibility,
                replace_original=False,
                unfurl_links=False,
                unfurl_media=False,
            )
            if answer.status_code != 200:
                log.warning("response_url refused a reply", extra={"status": answer.status_code})
                return False
        return True

    async def _replace(
        self, client: AsyncWebClient, respond: Respond, body: dict[str, Any], message: Rendered
    ) -> bool:
        """Put ``message`` in place of the pressed one; False when Slack would not let us."""
        container = body.get("container") or {}
        channel, ts = container.get("channel_id"), container.get("message_ts")
        if channel and ts and not container.get("is_ephemeral"):
            try:
                await client.chat_update(
                    channel=channel, ts=ts, text=message.text, blocks=message.blocks
                )
                return True
            except SlackApiError as exc:
                # Messages posted through response_url in a channel the bot is not in can
                # only be replaced through response_url.
                log.info(
                    "chat.update refused; trying response_url",
                    extra={"channel": channel, "error": _error_name(exc)},
                )
        if not body.get("response_url"):
            return False
        answer = await respond(text=message.text, blocks=message.blocks, replace_original=True)
        return bool(answer.status_code == 200)

    # ----------------------------------------------------------------- App Home

    async def on_home_opened(
        self, event: dict[str, Any], client: AsyncWebClient, context: Any
    ) -> None:
        """The user opened the app's Home tab: show their profile, settings and saved papers."""
        if event.get("tab", "home") != "home":
            return
        team = _team(context, {})
        user = str(event.get("user") or "")
        key = (team, user)
        now = self._clock()
        last = self._home_seen.get(key)
        if last is not None and now - last < self._home_interval:
            return
        self._home_seen[key] = now
        self._home_seen.move_to_end(key)
        while len(self._home_seen) > 10_000:
            self._home_seen.popitem(last=False)
        try:
            await self.publish_home(client, team, user)
        except Exception:
            log.exception(
                "publishing the home tab failed", extra={"team_id": team, "user_id": user}
            )

    async def publish_home(self, client: AsyncWebClient, team: str, user: str) -> None:
        """Render the user's Home tab from the router's own answers and publish it."""
        chat_id = chat_key(team, user)
        found = await asyncio.to_thread(subscribers.find, self.db, Platform.SLACK, chat_id)
        names = ("settings", "interests", "saved") if found is not None else ("help",)
        replies = []
        for name in names:
            command = Command(
                platform=Platform.SLACK,
                chat_id=chat_id,
                # The Home tab refreshes itself; give it its own rate-limit bucket.
                user_id=f"home:{chat_id}",
                name=name,
                chat_kind=ChatKind.USER,
                user_is_admin=True,
                workspace_id=team or None,
            )
            reply = await self.handle(command)
            if reply.blocks:
                replies.append(reply)
        if found is None:
            replies.insert(
                0, Reply.text(f"Send {self.command} subscribe to get a daily digest here.")
            )
        await client.views_publish(user_id=user, view=home_view(replies, command=self.command))

    # ----------------------------------------------------------------- messages and mentions

    async def on_message(self, event: dict[str, Any], client: AsyncWebClient, context: Any) -> None:
        """A direct message to the app: read it as a command (``search diffusion``)."""
        if event.get("channel_type") != "im" or event.get("subtype") or event.get("bot_id"):
            return
        await self._conversation(event, client, context, thread=False)

    async def on_mention(self, event: dict[str, Any], client: AsyncWebClient, context: Any) -> None:
        """``@Trending Papers search diffusion`` in a channel: answer in a thread."""
        if event.get("bot_id"):
            return
        await self._conversation(event, client, context, thread=True)

    async def _conversation(
        self, event: dict[str, Any], client: AsyncWebClient, context: Any, *, thread: bool
    ) -> None:
        team = _team(context, event)
        user = str(event.get("user") or "")
        channel_id = str(event.get("channel") or "")
        if not user or not channel_id:
            return
        kind = conversation_kind(
            channel_id, "directmessage" if event.get("channel_type") == "im" else None
        )
        chat_id = chat_key(team, user if kind == ChatKind.USER else channel_id)
        name, args = parse_message(unescape(str(event.get("text") or "")))
        thread_ts = (event.get("thread_ts") or event.get("ts")) if thread else None
        async with self._locks.hold(chat_id):
            try:
                command = await self._command(client, team, user, chat_id, kind, name, args)
                reply = await self.handle(command)
                for message in render(reply, command=self.command):
                    await client.chat_postMessage(
                        channel=channel_id,
                        text=message.text,
                        blocks=message.blocks,
                        thread_ts=thread_ts,
                        unfurl_links=False,
                        unfurl_media=False,
                    )
            except Exception:
                log.exception(
                    "slack message failed",
                    extra={"team_id": team, "chat_id": chat_id, "user_id": user, "command": name},
                )

    async def on_error(self, error: Exception, body: dict[str, Any]) -> None:
        """Log a failure bolt caught outside our listeners; the app keeps running."""
        log.error(
            "slack request failed",
            exc_info=(type(error), error, error.__traceback__),
            extra={"team_id": _team(None, body), "type": body.get("type") if body else None},
        )


def _team(context: Any, body: Mapping[str, Any]) -> str:
    """The workspace a request came from (bolt's reading of it first, then the payload's)."""
    team = getattr(context, "team_id", None) or getattr(context, "enterprise_id", None)
    if not team and body:
        nested = body.get("team")
        team = body.get("team_id") or (nested.get("id") if isinstance(nested, dict) else nested)
    return str(team or "")


def _display_name(kind: ChatKind, user_name: object, channel_name: object) -> str | None:
    if kind == ChatKind.CHANNEL and isinstance(channel_name, str) and channel_name:
        return f"#{channel_name}"
    return str(user_name) if user_name else None


def _visibility(kind: ChatKind, name: str, reply: Reply) -> str:
    if reply.ephemeral:
        return "ephemeral"
    if kind == ChatKind.USER or ALIASES.get(name, name) in IN_CHANNEL:
        return "in_channel"
    return "ephemeral"


def _error_name(exc: BaseException) -> str:
    if isinstance(exc, SlackApiError):
        return str(exc.response.get("error") or exc.response.status_code)
    return type(exc).__name__


# --------------------------------------------------------------------------- application


@dataclass
class SlackRuntime:
    """Everything ``build_slack_app`` wires together, for the platform and for tests."""

    app: AsyncApp
    adapter: SlackAdapter
    config: SlackConfig
    client: AsyncWebClient
    store: SlackInstallationStore | None


def assemble(
    settings: Settings, router: Any, db: Database, *, client_base_url: str | None = None
) -> SlackRuntime:
    """Build the bolt app, its adapter and (in OAuth mode) the installation store."""
    config = SlackConfig.from_settings(settings, base_url=client_base_url)
    if not config.oauth and not config.bot_token:
        raise ValueError(
            "Slack needs TP_SLACK_BOT_TOKEN (one workspace) or TP_SLACK_CLIENT_ID and "
            "TP_SLACK_CLIENT_SECRET (installs into many workspaces through OAuth)"
        )
    if not config.socket_mode and not config.signing_secret:
        raise ValueError(
            "TP_SLACK_SIGNING_SECRET is not set: copy it from the app's Basic Information page "
            "(or set TP_SLACK_APP_TOKEN to use Socket Mode, which needs no public URL)"
        )
    client = AsyncWebClient(
        base_url=config.api_base_url, token=None if config.oauth else config.bot_token
    )
    store: SlackInstallationStore | None = None
    oauth_settings: AsyncOAuthSettings | None = None
    if config.oauth:
        assert config.client_id is not None
        assert config.client_secret is not None
        store = SlackInstallationStore(db, config.client_id)
        oauth_settings = AsyncOAuthSettings(
            client_id=config.client_id,
            client_secret=config.client_secret,
            scopes=list(config.scopes),
            redirect_uri=config.redirect_uri,
            install_path=INSTALL_PATH,
            redirect_uri_path=REDIRECT_PATH,
            authorization_url=authorize_url_for(config.api_base_url),
            installation_store=store,
            installation_store_bot_only=True,
            state_store=SlackStateStore(db),
            logger=log,
        )
        # auth.test once per token, not once per click; a new install brings a new token.
        oauth_settings.authorize.cache_enabled = True  # type: ignore[attr-defined]
    app = AsyncApp(
        name="trending-papers",
        logger=logging.getLogger("bot.chat.slack.bolt"),
        signing_secret=config.signing_secret or "",
        client=client,
        oauth_settings=oauth_settings,
        user_facing_authorize_error_message=NOT_INSTALLED,
        # Each listener below is an empty ack run inline plus the real work started as a
        # task ("lazy"), so the HTTP answer leaves as soon as the request is verified,
        # whatever else the process is busy with.
        process_before_response=True,
    )
    adapter = SlackAdapter(router.handle, db, command=config.command)
    app.command(re.compile(r"^/"))(ack=acknowledge, lazy=[adapter.on_command])
    app.action(re.compile("^" + re.escape(ACTION_PREFIX)))(
        ack=acknowledge, lazy=[adapter.on_action]
    )
    app.event("app_home_opened")(ack=acknowledge, lazy=[adapter.on_home_opened])
    app.event("app_mention")(ack=acknowledge, lazy=[adapter.on_mention])
    app.event("message")(ack=acknowledge, lazy=[adapter.on_message])
    app.error(adapter.on_error)
    if store is not None:
        # tokens_revoked / app_uninstalled delete the workspace's installation.
        app.enable_token_revocation_listeners()
    return SlackRuntime(app=app, adapter=adapter, config=config, client=client, store=store)


async def acknowledge(ack: Any) -> None:
    """Answer Slack at once with an empty 200; the reply follows through ``response_url``."""
    await ack()


def build_slack_app(
    settings: Settings, router: Any, db: Database, *, client_base_url: str | None = None
) -> AsyncApp:
    """The bolt ``AsyncApp`` wired to ``router.handle`` (a ``CommandRouter``)."""
    return assemble(settings, router, db, client_base_url=client_base_url).app


def slack_routes(app: AsyncApp, *, events: bool = True) -> list[Route]:
    """Starlette routes: ``/slack/events`` (when ``events``) and the OAuth install pair."""
    handler = AsyncSlackRequestHandler(app)

    async def events_endpoint(request: Request) -> Response:
        declared = request.headers.get("content-length", "0")
        if declared.isdigit() and int(declared) > MAX_BODY:
            return PlainTextResponse("too large", status_code=413)
        body = await request.body()  # cached: bolt's handler reads it again
        if len(body) > MAX_BODY:
            return PlainTextResponse("too large", status_code=413)
        return await handler.handle(request)

    async def oauth_endpoint(request: Request) -> Response:
        try:
            return await handler.handle(request)
        except Exception:
            log.exception("slack OAuth step failed", extra={"path": request.url.path})
            return PlainTextResponse(
                "The installation could not be completed; please try again.", status_code=500
            )

    routes = [Route(EVENTS_PATH, events_endpoint, methods=["POST"])] if events else []
    flow = app.oauth_flow
    if flow is not None:
        routes.append(Route(flow.install_path, oauth_endpoint, methods=["GET"]))
        routes.append(Route(flow.redirect_uri_path, oauth_endpoint, methods=["GET"]))
    return routes


def socket_mode_handler(
    app: AsyncApp, app_token: str, *, web_client: AsyncWebClient | None = None
) -> AsyncSocketModeHandler:
    """The Socket Mode connection for ``app`` (``apps.connections.open`` via ``web_client``)."""
    return AsyncSocketModeHandler(app, app_token, logger=log, web_client=web_client)


# --------------------------------------------------------------------------- delivery

TokenSource = Callable[[str], Awaitable[str | None]]
"""``team_id`` → that workspace's bot token (None when the app is not installed there)."""


class SlackSender:
    """``ChatSender`` for Slack: renders an outbox payload to Block Kit and posts it.

    A DM subscriber's digest is posted to the user id, which Slack delivers in their direct
    message with the app; a channel's to the channel. With ``tokens`` each workspace's own
    bot token is used (OAuth mode); otherwise the client's token.
    """

    platform = Platform.SLACK

    def __init__(
        self,
        client: AsyncWebClient,
        *,
        tokens: TokenSource | None = None,
        command: str = DEFAULT_COMMAND,
        remember: int = 10_000,
    ) -> None:
        self.client = client
        self.tokens = tokens
        self.command = command
        self._remember = remember
        self._progress: OrderedDict[str, tuple[int, str]] = OrderedDict()

    async def send(
        self, subscriber: Subscriber, payload: dict[str, Any], *, key: str, pace: Pace = unpaced
    ) -> str:
        """Post every part of the digest, each in its own ``pace()`` slot; returns ``channel/ts``.

        When a later part fails, a retry with the same ``key`` resumes after the parts that
        already went out, so nobody gets the first half twice.
        """
        messages = render(reply_for_payload(payload), command=self.command)
        if not messages:
            raise TransientDeliveryError(f"outbox payload {key} renders to nothing")
        token = await self._token(subscriber)
        channel = conversation_of(subscriber.chat_id)
        done, first = self._progress.get(key, (0, ""))
        for index in range(done, len(messages)):
            message = messages[index]
            try:
                async with pace():
                    sent = await self.client.chat_postMessage(
                        channel=channel,
                        text=message.text,
                        blocks=message.blocks,
                        unfurl_links=False,
                        unfurl_media=False,
                        token=token,
                    )
            except _API_FAULTS as exc:
                raise delivery_error(exc, subscriber, shared_token=self.tokens is None) from exc
            first = first or f"{sent.get('channel') or channel}/{sent.get('ts')}"
            self._progress[key] = (index + 1, first)
            self._progress.move_to_end(key)
            while len(self._progress) > self._remember:
                self._progress.popitem(last=False)
        self._progress.pop(key, None)
        return first

    async def _token(self, subscriber: Subscriber) -> str | None:
        if self.tokens is None:
            return None  # the client's own token
        team = subscriber.workspace_id or subscriber.chat_id.partition(":")[0]
        try:
            token = await self.tokens(team)
        except Exception as exc:
            raise TransientDeliveryError(f"could not read the token of workspace {team}") from exc
        if token is None:
            log.info(
                "app not installed in the subscriber's workspace: deactivating",
                extra={"subscriber_id": subscriber.id, "team_id": team},
            )
            raise PermanentDeliveryError(f"the app is not installed in workspace {team}")
        return token


def _retry_after(headers: Any) -> float:
    if isinstance(headers, Mapping):
        for name, value in headers.items():
            if str(name).lower() == "retry-after":
                try:
                    return max(0.0, float(value[0] if isinstance(value, list) else value))
                except (TypeError, ValueError):
                    break
    return DEFAULT_RETRY_AFTER


def delivery_error(
    exc: BaseException, subscriber: Subscriber | None = None, *, shared_token: bool = False
) -> DeliveryError:
    """Translate a Web API failure into what the delivery worker should do about it.

    ``shared_token``: one configured token serves every chat, so "invalid token" is a
    configuration problem to fix, never a reason to switch every subscriber off.
    """
    context = {"subscriber_id": subscriber.id if subscriber else None}
    if not isinstance(exc, SlackApiError):
        return TransientDeliveryError(f"{type(exc).__name__}: {exc}")
    response = exc.response
    error = str(response.get("error") or f"http_{response.status_code}")
    if response.status_code == 429 or error in RATE_LIMITED:
        return RetryLater(_retry_after(response.headers), error)
    if shared_token and error in SHARED_TOKEN_ERRORS:
        log.error("Slack rejected the configured bot token", extra={**context, "error": error})
        return TransientDeliveryError(f"{error}: check TP_SLACK_BOT_TOKEN")
    if error in PERMANENT_ERRORS:
        log.info("slack chat unreachable: deactivating", extra={**context, "error": error})
        return PermanentDeliveryError(error)
    log.warning("Slack refused a message", extra={**context, "error": error})
    return TransientDeliveryError(error)


# --------------------------------------------------------------------------- the platform


def slack_platform(settings: Settings, router: Any, db: Database) -> ChatPlatform:
    """Slack for the service: routes (HTTP mode) or a Socket Mode connection, and the sender."""
    # Imported here: the service wires chat adapters together, so it may import this module.
    from bot.service import ChatPlatform

    runtime = assemble(settings, router, db)
    config = runtime.config
    sender = SlackSender(
        runtime.client,
        tokens=runtime.store.bot_token if runtime.store is not None else None,
        command=config.command,
    )
    # Made on start: the Socket Mode client opens an HTTP session as soon as it exists.
    sockets: list[AsyncSocketModeHandler] = []

    async def start() -> None:
        warm_up = getattr(router, "warm_up", None)
        if warm_up is not None:
            await warm_up()  # the first commands after a restart then find the papers loaded
        if not config.oauth:
            await check_token(runtime.client)
        if config.app_token:
            socket = socket_mode_handler(runtime.app, config.app_token, web_client=runtime.client)
            sockets.append(socket)
            await socket.connect_async()
            log.info("slack socket mode connected")
        else:
            log.info("slack HTTP mode: Slack posts to %s", EVENTS_PATH)

    async def stop() -> None:
        while sockets:
            await sockets.pop().close_async()
        await runtime.adapter.close()

    return ChatPlatform(
        Platform.SLACK,
        sender,
        start,
        stop,
        slack_routes(runtime.app, events=not config.socket_mode),
    )


async def check_token(client: AsyncWebClient) -> None:
    """Fail fast on a wrong bot token; only log when Slack cannot be reached right now."""
    try:
        identity = await client.auth_test()
    except SlackApiError as exc:
        error = _error_name(exc)
        if error in SHARED_TOKEN_ERRORS or error in PERMANENT_ERRORS:
            raise ValueError(
                f"Slack rejected TP_SLACK_BOT_TOKEN ({error}): copy the Bot User OAuth Token "
                "(xoxb-…) from the app's OAuth & Permissions page"
            ) from exc
        log.warning("auth.test failed; starting anyway", extra={"error": error})
        return
    except _API_FAULTS as exc:
        log.warning(
            "Slack unreachable at start; starting anyway", extra={"error": _error_name(exc)}
        )
        return
    log.info(
        "slack bot ready",
        extra={"team_id": identity.get("team_id"), "bot_user_id": identity.get("user_id")},
    )
