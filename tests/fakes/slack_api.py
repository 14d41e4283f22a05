"""A fake Slack Web API that slack_sdk's clients (and so slack-bolt) can talk to over loopback.

Start it with `async with FakeSlack() as fake:` and build the client with
`AsyncWebClient(token=fake.bot_token, base_url=fake.base_url)`; `base_url` ends in `/api/`
because slack_sdk joins it with the method name.

How slack_sdk sends: the bot token travels in `Authorization: Bearer xoxb-...` (a `token`
argument is moved there too). `chat.postMessage`, `chat.update`, `chat.postEphemeral` and
`views.publish` post a JSON body; `auth.test` posts with the arguments in the query string;
`users.info` and `conversations.info` are GETs with a query string; `oauth.v2.access` posts a
form and authenticates with HTTP Basic `client_id:client_secret`. The fake accepts every one
of these encodings for every method, and decodes `blocks`, `attachments` and `view` when they
arrive as JSON strings inside a form.

Answers follow Slack: HTTP 200 with `{"ok": true, ...}` or `{"ok": false, "error": "..."}`,
except rate limiting, which is HTTP 429 with a `Retry-After` header. Implemented methods:
auth.test, chat.postMessage, chat.update, chat.postEphemeral, views.publish, users.info,
conversations.info, oauth.v2.access; any other method answers `unknown_method`.
`response_url(key)` gives a URL on this server that records what is posted to it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import itertools
import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self
from zoneinfo import ZoneInfo

from aiohttp import web

from . import CallLog, LoopbackServer, RecordedCall, read_raw_params, wall_clock

__all__ = [
    "DEFAULT_BOT_TOKEN",
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "FakeSlack",
    "SlackChannel",
    "SlackMessage",
    "SlackUser",
    "block_errors",
]

DEFAULT_BOT_TOKEN = "xoxb-100000000001-200000000001-FakeBotTokenForLoopback"
DEFAULT_CLIENT_ID = "100000000001.300000000001"
DEFAULT_CLIENT_SECRET = "fake-client-secret-0123456789abcdef"
DEFAULT_SCOPE = "chat:write,commands,im:write,users:read"

MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
MAX_MESSAGE_TEXT = 40_000
MAX_RESPONSE_URL_USES = 5

# Inside a form these arrive as JSON strings; the real API decodes them, so does the fake.
_JSON_PARAMS = frozenset({"attachments", "blocks", "metadata", "view"})
_KNOWN_BLOCK_TYPES = frozenset(
    {
        "actions",
        "context",
        "divider",
        "file",
        "header",
        "image",
        "input",
        "markdown",
        "rich_text",
        "section",
        "video",
    }
)


class _SlackError(Exception):
    """An error answer, raised anywhere inside a method handler."""

    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"ok": False, "error": self.error, **self.extra}


# --------------------------------------------------------------------------- Block Kit checks


def _text_object_errors(
    value: Any, max_length: int, pointer: str, *, plain_only: bool = False
) -> list[str]:
    if not isinstance(value, dict):
        return [f"must be a text object [json-pointer:{pointer}]"]
    allowed = ("plain_text",) if plain_only else ("plain_text", "mrkdwn")
    if value.get("type") not in allowed:
        return [f"must be one of {', '.join(allowed)} [json-pointer:{pointer}/type]"]
    text = value.get("text")
    if not isinstance(text, str) or not text:
        return [f"must be more than 0 characters [json-pointer:{pointer}/text]"]
    if len(text) > max_length:
        return [f"must be less than {max_length + 1} characters [json-pointer:{pointer}/text]"]
    return []


def _length_error(value: Any, max_length: int, pointer: str) -> list[str]:
    if value is not None and len(str(value)) > max_length:
        return [f"must be less than {max_length + 1} characters [json-pointer:{pointer}]"]
    return []


def _count_error(items: Any, low: int, high: int, pointer: str) -> list[str]:
    if not isinstance(items, list):
        return [f"must be an array [json-pointer:{pointer}]"]
    if len(items) < low:
        return [f"must provide at least {low} items [json-pointer:{pointer}]"]
    if len(items) > high:
        return [f"must be less than {high + 1} items [json-pointer:{pointer}]"]
    return []


def _element_errors(element: Any, pointer: str) -> list[str]:
    if not isinstance(element, dict):
        return [f"must be an object [json-pointer:{pointer}]"]
    errors = _length_error(element.get("action_id"), 255, f"{pointer}/action_id")
    if element.get("type") == "button":
        errors += _text_object_errors(element.get("text"), 75, f"{pointer}/text", plain_only=True)
        errors += _length_error(element.get("value"), 2000, f"{pointer}/value")
        errors += _length_error(element.get("url"), 3000, f"{pointer}/url")
    return errors


def _block_errors_one(block: Any, pointer: str) -> list[str]:
    if not isinstance(block, dict) or "type" not in block:
        return [f"missing required field: type [json-pointer:{pointer}]"]
    kind = block["type"]
    if kind not in _KNOWN_BLOCK_TYPES:
        return [f"unsupported type: {kind} [json-pointer:{pointer}/type]"]
    errors = _length_error(block.get("block_id"), 255, f"{pointer}/block_id")
    if kind == "section":
        text, fields = block.get("text"), block.get("fields")
        if text is None and fields is None:
            errors.append(f"must provide text or fields [json-pointer:{pointer}]")
        if text is not None:
            errors += _text_object_errors(text, 3000, f"{pointer}/text")
        if fields is not None:
            errors += _count_error(fields, 1, 10, f"{pointer}/fields")
            if isinstance(fields, list):
                for index, item in enumerate(fields):
                    errors += _text_object_errors(item, 2000, f"{pointer}/fields/{index}")
        if "accessory" in block:
            errors += _element_errors(block["accessory"], f"{pointer}/accessory")
    elif kind == "header":
        errors += _text_object_errors(block.get("text"), 150, f"{pointer}/text", plain_only=True)
    elif kind == "context":
        errors += _count_error(block.get("elements"), 1, 10, f"{pointer}/elements")
    elif kind == "actions":
        elements = block.get("elements")
        errors += _count_error(elements, 1, 25, f"{pointer}/elements")
        if isinstance(elements, list):
            for index, element in enumerate(elements):
                errors += _element_errors(element, f"{pointer}/elements/{index}")
    elif kind == "image":
        if not block.get("image_url") and not block.get("slack_file"):
            errors.append(f"missing required field: image_url [json-pointer:{pointer}]")
        errors += _length_error(block.get("alt_text", ""), 2000, f"{pointer}/alt_text")
        if not block.get("alt_text"):
            errors.append(f"missing required field: alt_text [json-pointer:{pointer}]")
    elif kind == "markdown":
        errors += _length_error(block.get("text", ""), 12_000, f"{pointer}/text")
    return errors


def block_errors(
    blocks: Any, limit: int = MAX_MESSAGE_BLOCKS, pointer: str = "/blocks"
) -> list[str]:
    """Check Block Kit limits the way Slack does; an empty list means the blocks are fine.

    Covers the block count (50 in messages, 100 in views), section text (3000 characters) and
    fields (10, 2000 characters each), header text (150), context (10 elements), actions
    (25 elements, button text 75), image alt text, `block_id` length and uniqueness.
    """
    if not isinstance(blocks, list):
        return [f"must be an array [json-pointer:{pointer}]"]
    if len(blocks) > limit:
        return [f"must be less than {limit + 1} items [json-pointer:{pointer}]"]
    errors: list[str] = []
    seen_ids: set[str] = set()
    for index, block in enumerate(blocks):
        errors += _block_errors_one(block, f"{pointer}/{index}")
        block_id = block.get("block_id") if isinstance(block, dict) else None
        if block_id is not None:
            if block_id in seen_ids:
                errors.append(f"duplicate block_id [json-pointer:{pointer}/{index}/block_id]")
            seen_ids.add(block_id)
    return errors


def _invalid_blocks(errors: list[str], error: str = "invalid_blocks") -> _SlackError:
    return _SlackError(
        error,
        errors=errors,
        response_metadata={"messages": [f"[ERROR] {message}" for message in errors]},
    )


# --------------------------------------------------------------------------- workspace data


@dataclass
class SlackUser:
    """A workspace member as users.info describes one."""

    id: str
    name: str
    team_id: str
    real_name: str = ""
    tz: str = "Europe/Berlin"
    tz_offset: int | None = None
    is_admin: bool = False
    is_owner: bool = False
    locale: str = "en-US"

    def to_api(self, now: float) -> dict[str, Any]:
        """The `user` object, with the time-zone offset at `now` unless one was fixed."""
        local = datetime.fromtimestamp(now, UTC).astimezone(ZoneInfo(self.tz))
        offset = self.tz_offset
        if offset is None:
            delta = local.utcoffset()
            offset = int(delta.total_seconds()) if delta is not None else 0
        real_name = self.real_name or self.name
        return {
            "id": self.id,
            "team_id": self.team_id,
            "name": self.name,
            "deleted": False,
            "real_name": real_name,
            "tz": self.tz,
            "tz_label": local.tzname() or self.tz,
            "tz_offset": offset,
            "is_admin": self.is_admin,
            "is_owner": self.is_owner,
            "is_primary_owner": False,
            "is_restricted": False,
            "is_ultra_restricted": False,
            "is_bot": False,
            "is_app_user": False,
            "updated": int(now),
            "locale": self.locale,
            "profile": {"real_name": real_name, "display_name": self.name},
        }


@dataclass
class SlackChannel:
    """A conversation: public or private channel, or a direct-message channel."""

    id: str
    name: str
    team_id: str
    is_private: bool = False
    is_member: bool = True
    is_archived: bool = False
    dm_user: str | None = None

    def to_api(self, created: int) -> dict[str, Any]:
        """The `channel` object of conversations.info."""
        if self.dm_user is not None:
            return {
                "id": self.id,
                "created": created,
                "is_im": True,
                "is_org_shared": False,
                "user": self.dm_user,
                "is_archived": False,
            }
        return {
            "id": self.id,
            "name": self.name,
            "name_normalized": self.name,
            "created": created,
            "is_channel": not self.is_private,
            "is_group": False,
            "is_im": False,
            "is_mpim": False,
            "is_private": self.is_private,
            "is_archived": self.is_archived,
            "is_general": False,
            "is_shared": False,
            "is_org_shared": False,
            "is_member": self.is_member,
            "context_team_id": self.team_id,
        }


@dataclass
class SlackMessage:
    """A message the bot posted; `chat.update` rewrites it in place."""

    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]] | None
    params: dict[str, Any]
    ephemeral_user: str | None = None
    history: list[str] = field(default_factory=list)

    def to_api(self, bot_user_id: str, bot_id: str) -> dict[str, Any]:
        """The `message` object Slack echoes back."""
        payload: dict[str, Any] = {
            "type": "message",
            "user": bot_user_id,
            "bot_id": bot_id,
            "text": self.text,
            "ts": self.ts,
        }
        if self.blocks is not None:
            payload["blocks"] = self.blocks
        if "thread_ts" in self.params:
            payload["thread_ts"] = self.params["thread_ts"]
        return payload


@dataclass
class _Workspace:
    team_id: str
    team_name: str
    domain: str
    bot_user_id: str
    bot_id: str
    users: dict[str, SlackUser] = field(default_factory=dict)
    channels: dict[str, SlackChannel] = field(default_factory=dict)


@dataclass
class _Fault:
    error: str
    status: int
    retry_after: int | None


@dataclass(frozen=True)
class _OAuthGrant:
    team_id: str
    team_name: str
    user_id: str


_Handler = Callable[[dict[str, Any], _Workspace], dict[str, Any]]


# --------------------------------------------------------------------------- the server


class FakeSlack:
    """A Slack Web API server on 127.0.0.1 for one app installed in one or more workspaces.

    Args:
        bot_token: the bot token of the first workspace; other tokens get `invalid_auth`.
        team_id, team_name, bot_user_id, bot_id: that workspace and the bot user in it.
        app_id, client_id, client_secret, scope: the app, for `oauth.v2.access`.
        clock: epoch seconds, for message `ts` values and users' current UTC offsets.
    """

    def __init__(
        self,
        *,
        bot_token: str = DEFAULT_BOT_TOKEN,
        team_id: str = "T0FAKE0001",
        team_name: str = "Fake Lab",
        bot_user_id: str = "U0FAKEBOT1",
        bot_id: str = "B0FAKEBOT1",
        app_id: str = "A0FAKEAPP1",
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        scope: str = DEFAULT_SCOPE,
        clock: Callable[[], float] = wall_clock,
    ) -> None:
        self.bot_token = bot_token
        self.team_id = team_id
        self.app_id = app_id
        self.client_id = client_id
        self.client_secret = client_secret
        self.scope = scope
        self._clock = clock
        self._log = CallLog()
        self._server = LoopbackServer(self._build_app())
        self._workspaces: dict[str, _Workspace] = {}
        self._tokens: dict[str, str] = {}
        self._revoked: set[str] = set()
        self._faults: dict[str, deque[_Fault]] = {}
        self._messages: dict[str, dict[str, SlackMessage]] = {}
        self._ephemeral: list[SlackMessage] = []
        self._home_views: dict[str, dict[str, Any]] = {}
        self._response_posts: dict[str, list[dict[str, Any]]] = {}
        self._oauth_codes: dict[str, _OAuthGrant] = {}
        self._ts_sequence = itertools.count(100)
        self._id_sequence = itertools.count(1)
        self.add_workspace(
            team_id, team_name, bot_token=bot_token, bot_user_id=bot_user_id, bot_id=bot_id
        )

    # ----------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> Self:
        await self._server.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._server.stop()

    @property
    def base_url(self) -> str:
        """What `AsyncWebClient(base_url=...)` wants; it ends in `/api/`."""
        return f"{self._server.root}/api/"

    def response_url(self, key: str) -> str:
        """A `response_url` on this server; what is posted to it lands in `responses(key)`."""
        return f"{self._server.root}/response/{key}"

    # ----------------------------------------------------------------- workspace set-up

    def add_workspace(
        self,
        team_id: str,
        team_name: str,
        *,
        bot_token: str,
        bot_user_id: str | None = None,
        bot_id: str | None = None,
    ) -> None:
        """Install the app in another workspace, reachable with `bot_token`."""
        number = next(self._id_sequence)
        self._workspaces[team_id] = _Workspace(
            team_id=team_id,
            team_name=team_name,
            domain=team_name.lower().replace(" ", "-"),
            bot_user_id=bot_user_id or f"U0BOT{number:05d}",
            bot_id=bot_id or f"B0BOT{number:05d}",
        )
        self._tokens[bot_token] = team_id

    def revoke_token(self, token: str) -> None:
        """Every later call with `token` answers `token_revoked`."""
        self._revoked.add(token)

    def add_user(
        self,
        user_id: str,
        name: str,
        *,
        real_name: str = "",
        tz: str = "Europe/Berlin",
        tz_offset: int | None = None,
        is_admin: bool = False,
        is_owner: bool = False,
        team_id: str | None = None,
    ) -> SlackUser:
        """A member of a workspace (the first one unless `team_id` says otherwise)."""
        workspace = self._workspaces[team_id or self.team_id]
        user = SlackUser(
            id=user_id,
            name=name,
            team_id=workspace.team_id,
            real_name=real_name,
            tz=tz,
            tz_offset=tz_offset,
            is_admin=is_admin,
            is_owner=is_owner,
        )
        workspace.users[user_id] = user
        dm_id = self.dm_channel(user_id)
        workspace.channels[dm_id] = SlackChannel(
            id=dm_id, name=user_id, team_id=workspace.team_id, dm_user=user_id
        )
        return user

    def add_channel(
        self,
        channel_id: str,
        name: str,
        *,
        is_private: bool = False,
        is_member: bool = True,
        is_archived: bool = False,
        team_id: str | None = None,
    ) -> SlackChannel:
        """A channel of a workspace; posting needs the bot to be a member of it."""
        workspace = self._workspaces[team_id or self.team_id]
        channel = SlackChannel(
            id=channel_id,
            name=name,
            team_id=workspace.team_id,
            is_private=is_private,
            is_member=is_member,
            is_archived=is_archived,
        )
        workspace.channels[channel_id] = channel
        return channel

    @staticmethod
    def dm_channel(user_id: str) -> str:
        """The id of the bot's direct-message channel with a user."""
        return f"D{user_id[1:]}"

    def issue_oauth_code(
        self, *, team_id: str, team_name: str, user_id: str, code: str | None = None
    ) -> str:
        """A one-time code that `oauth.v2.access` exchanges for a new bot token."""
        code = code or f"{next(self._id_sequence)}.fake-oauth-code"
        self._oauth_codes[code] = _OAuthGrant(team_id, team_name, user_id)
        return code

    # ----------------------------------------------------------------- faults

    def fail_next(
        self,
        method: str,
        error: str = "ratelimited",
        *,
        status: int | None = None,
        retry_after: int | None = None,
        count: int = 1,
    ) -> None:
        """Answer the next `count` calls of `method` (or `response_url`) with `error`.

        `ratelimited` is HTTP 429 with `Retry-After` (1 s unless given); any other error
        (`channel_not_found`, `not_in_channel`, `account_inactive`, `token_revoked`,
        `is_archived`, ...) is a normal HTTP 200 error body unless `status` says otherwise.
        """
        if status is None:
            status = 429 if error == "ratelimited" else 200
        if status == 429:
            retry_after = retry_after or 1
        faults = self._faults.setdefault(method, deque())
        faults.extend(_Fault(error, status, retry_after) for _ in range(count))

    # ----------------------------------------------------------------- recorded calls

    @property
    def calls(self) -> list[RecordedCall]:
        """Every call answered so far, oldest first (response_url posts included)."""
        return self._log.calls

    def calls_to(self, method: str) -> list[RecordedCall]:
        """Recorded calls of one method."""
        return [call for call in self.calls if call.method == method]

    async def wait_for(
        self,
        predicate: Callable[[RecordedCall], bool],
        timeout: float = 5.0,  # noqa: ASYNC109 - tests read better with the limit in the call
        *,
        since: int = 0,
    ) -> RecordedCall:
        """The first recorded call at index `since` or later that matches, awaited if needed."""
        return await self._log.wait_for(predicate, timeout, since=since)

    def posted_messages(self, channel: str | None = None) -> list[SlackMessage]:
        """Messages the bot posted (not ephemeral ones), oldest first."""
        channels = [channel] if channel is not None else list(self._messages)
        found = [m for c in channels for m in self._messages.get(c, {}).values()]
        return sorted(found, key=lambda message: float(message.ts))

    def last_message(self, channel: str) -> SlackMessage | None:
        """The bot's newest message in a channel."""
        messages = self.posted_messages(channel)
        return messages[-1] if messages else None

    def ephemeral_messages(self, channel: str | None = None) -> list[SlackMessage]:
        """Ephemeral messages, oldest first; `ephemeral_user` says who saw each one."""
        return [m for m in self._ephemeral if channel is None or m.channel == channel]

    def home_view(self, user_id: str) -> dict[str, Any] | None:
        """The App Home view last published for a user."""
        return self._home_views.get(user_id)

    def responses(self, key: str) -> list[dict[str, Any]]:
        """The JSON bodies posted to `response_url(key)`, oldest first."""
        return list(self._response_posts.get(key, []))

    # ----------------------------------------------------------------- HTTP plumbing

    def _build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._handle_api)
        app.router.add_post("/response/{key}", self._handle_response_url)
        return app

    def _methods(self) -> dict[str, _Handler]:
        return {
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "views.publish": self._views_publish,
            "users.info": self._users_info,
            "conversations.info": self._conversations_info,
        }

    async def _handle_api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        raw, encoding = await read_raw_params(request)
        params = _decode_params(raw)
        token = _bearer_token(request) or params.pop("token", None)
        params.pop("token", None)
        status, body, headers = self._answer(method, params, token, request)
        await self._log.record(
            RecordedCall(
                method=method,
                params=params,
                timestamp=wall_clock(),
                status=status,
                response=body,
                http_method=request.method,
                content_type=encoding,
            )
        )
        return web.json_response(body, status=status, headers=headers)

    def _answer(
        self, method: str, params: dict[str, Any], token: str | None, request: web.Request
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        handler = self._methods().get(method)
        if handler is None and method != "oauth.v2.access":
            return 200, {"ok": False, "error": "unknown_method"}, {}
        faults = self._faults.get(method)
        if faults:
            fault = faults.popleft()
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after else {}
            return fault.status, {"ok": False, "error": fault.error}, headers
        try:
            if handler is None:
                result = self._oauth_v2_access(params, request)
            else:
                result = handler(params, self._workspace_for(token))
        except _SlackError as error:
            return 200, error.body(), {}
        return 200, {"ok": True, **result}, {}

    def _workspace_for(self, token: str | None) -> _Workspace:
        if not token:
            raise _SlackError("not_authed")
        if token in self._revoked:
            raise _SlackError("token_revoked")
        if token not in self._tokens:
            raise _SlackError("invalid_auth")
        return self._workspaces[self._tokens[token]]

    async def _handle_response_url(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        raw, encoding = await read_raw_params(request)
        body = _decode_params(raw)
        status, answer = self._response_url_answer(key, body)
        await self._log.record(
            RecordedCall(
                method="response_url",
                params={"response_url_key": key, **body},
                timestamp=wall_clock(),
                status=status,
                response=answer,
                http_method=request.method,
                content_type=encoding,
            )
        )
        return web.Response(status=status, text=answer, content_type="text/plain")

    def _response_url_answer(self, key: str, body: dict[str, Any]) -> tuple[int, str]:
        faults = self._faults.get("response_url")
        if faults:
            fault = faults.popleft()
            return (fault.status if fault.status != 200 else 500), fault.error
        posts = self._response_posts.setdefault(key, [])
        # Slack honours a response_url five times; the wording of the refusal is a guess.
        if len(posts) >= MAX_RESPONSE_URL_USES:
            return 404, "used_url"
        if not body.get("text") and not body.get("blocks") and not body.get("delete_original"):
            return 400, "no_text"
        if "blocks" in body and block_errors(body["blocks"]):
            return 400, "invalid_blocks"
        posts.append(body)
        return 200, "ok"

    # ----------------------------------------------------------------- methods

    def _auth_test(self, params: dict[str, Any], workspace: _Workspace) -> dict[str, Any]:
        return {
            "url": f"https://{workspace.domain}.slack.com/",
            "team": workspace.team_name,
            "user": "trending_papers",
            "team_id": workspace.team_id,
            "user_id": workspace.bot_user_id,
            "bot_id": workspace.bot_id,
            "is_enterprise_install": False,
        }

    def _channel_for_post(self, params: dict[str, Any], workspace: _Workspace) -> SlackChannel:
        target = str(params.get("channel") or "")
        if target in workspace.users:
            target = self.dm_channel(target)
        channel = workspace.channels.get(target)
        if channel is None or (channel.is_private and not channel.is_member):
            raise _SlackError("channel_not_found")
        if channel.is_archived:
            raise _SlackError("is_archived")
        if not channel.is_member:
            raise _SlackError("not_in_channel")
        return channel

    @staticmethod
    def _checked_content(params: dict[str, Any]) -> tuple[str, list[dict[str, Any]] | None]:
        text = params.get("text")
        blocks = params.get("blocks")
        if not text and not blocks and not params.get("attachments"):
            raise _SlackError("no_text")
        if text is not None and len(str(text)) > MAX_MESSAGE_TEXT:
            raise _SlackError("msg_too_long")
        if blocks is not None:
            errors = block_errors(blocks)
            if errors:
                raise _invalid_blocks(errors)
        return str(text or ""), blocks

    def _next_ts(self) -> str:
        return f"{int(self._clock())}.{next(self._ts_sequence):06d}"

    def _chat_post_message(self, params: dict[str, Any], workspace: _Workspace) -> dict[str, Any]:
        channel = self._channel_for_post(params, workspace)
        text, blocks = self._checked_content(params)
        message = SlackMessage(
            channel=channel.id, ts=self._next_ts(), text=text, blocks=blocks, params=params
        )
        self._messages.setdefault(channel.id, {})[message.ts] = message
        return {
            "channel": channel.id,
            "ts": message.ts,
            "message": message.to_api(workspace.bot_user_id, workspace.bot_id),
        }

    def _chat_update(self, params: dict[str, Any], workspace: _Workspace) -> dict[str, Any]:
        channel = self._channel_for_post(params, workspace)
        message = self._messages.get(channel.id, {}).get(str(params.get("ts") or ""))
        if message is None:
            raise _SlackError("message_not_found")
        text, blocks = self._checked_content(params)
        message.history.append(message.text)
        message.text = text
        message.blocks = blocks
        message.params = params
        return {
            "channel": channel.id,
            "ts": message.ts,
            "text": text,
            "message": message.to_api(workspace.bot_user_id, workspace.bot_id),
        }

    def _chat_post_ephemeral(self, params: dict[str, Any], workspace: _Workspace) -> dict[str, Any]:
        channel = self._channel_for_post(params, workspace)
        user = str(params.get("user") or "")
        if user not in workspace.users:
            raise _SlackError("user_not_found")
        text, blocks = self._checked_content(params)
        message = SlackMessage(
            channel=channel.id,
            ts=self._next_ts(),
            text=text,
            blocks=blocks,
            params=params,
            ephemeral_user=user,
        )
        self._ephemeral.append(message)
        return {"message_ts": message.ts}

    def _views_publish(self, params: dict[str, Any], workspace: _Workspace) -> dict[str, Any]:
        user = str(params.get("user_id") or "")
        if user not in workspace.users:
            raise _SlackError("user_not_found")
        view = params.get("view")
        if not isinstance(view, dict) or view.get("type") != "home":
            raise _invalid_blocks(
                ["must be a home view [json-pointer:/view/type]"], "invalid_arguments"
            )
        errors = block_errors(view.get("blocks"), MAX_VIEW_BLOCKS, "/view/blocks")
        if errors:
            raise _invalid_blocks(errors, "invalid_arguments")
        published = {
            **view,
            "id": f"V0FAKE{next(self._id_sequence):05d}",
            "team_id": workspace.team_id,
            "app_id": self.app_id,
            "bot_id": workspace.bot_id,
            "hash": f"{int(self._clock())}.fakehash",
        }
        self._home_views[user] = published
        return {"view": published}

    def _users_info(self, params: dict[str, Any], workspace: _Workspace) -> dict[str, Any]:
        user = workspace.users.get(str(params.get("user") or ""))
        if user is None:
            raise _SlackError("user_not_found")
        return {"user": user.to_api(self._clock())}

    def _conversations_info(self, params: dict[str, Any], workspace: _Workspace) -> dict[str, Any]:
        channel = workspace.channels.get(str(params.get("channel") or ""))
        if channel is None or (channel.is_private and not channel.is_member):
            raise _SlackError("channel_not_found")
        return {"channel": channel.to_api(int(self._clock()) - 86_400)}

    def _oauth_v2_access(self, params: dict[str, Any], request: web.Request) -> dict[str, Any]:
        client_id, client_secret = _basic_credentials(request)
        client_id = client_id or str(params.get("client_id") or "")
        client_secret = client_secret or str(params.get("client_secret") or "")
        if client_id != self.client_id:
            raise _SlackError("invalid_client_id")
        if client_secret != self.client_secret:
            raise _SlackError("bad_client_secret")
        grant = self._oauth_codes.pop(str(params.get("code") or ""), None)
        if grant is None:
            raise _SlackError("invalid_code")
        number = next(self._id_sequence)
        token = f"xoxb-{number:012d}-{number + 1:012d}-FakeInstalledBotToken{number:04d}"
        if grant.team_id in self._workspaces:
            self._tokens[token] = grant.team_id
        else:
            self.add_workspace(grant.team_id, grant.team_name, bot_token=token)
        workspace = self._workspaces[grant.team_id]
        if grant.user_id not in workspace.users:
            self.add_user(grant.user_id, "installer", team_id=grant.team_id)
        return {
            "app_id": self.app_id,
            "authed_user": {"id": grant.user_id},
            "scope": self.scope,
            "token_type": "bot",
            "access_token": token,
            "bot_user_id": workspace.bot_user_id,
            "team": {"id": workspace.team_id, "name": workspace.team_name},
            "enterprise": None,
            "is_enterprise_install": False,
        }


# --------------------------------------------------------------------------- helpers


def _decode_params(raw: dict[str, Any]) -> dict[str, Any]:
    params = dict(raw)
    for name in _JSON_PARAMS.intersection(params):
        # Undecodable JSON stays a string, which the block checks then reject.
        if isinstance(params[name], str):
            with contextlib.suppress(ValueError):
                params[name] = json.loads(params[name])
    return params


def _bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


def _basic_credentials(request: web.Request) -> tuple[str, str]:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return "", ""
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return "", ""
    client_id, _, client_secret = decoded.partition(":")
    return client_id, client_secret
