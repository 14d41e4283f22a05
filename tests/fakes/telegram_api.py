"""A fake Telegram Bot API server that python-telegram-bot can talk to over loopback HTTP.

Start it with `async with FakeTelegram() as fake:` and point the library at it::

    app = (
        ApplicationBuilder()
        .token(fake.token)
        .base_url(fake.base_url)
        .base_file_url(fake.base_file_url)
        .build()
    )

PTB posts every call to `{base_url}{token}/{method}` as `application/x-www-form-urlencoded`
(multipart when a file is uploaded). String values travel as they are and every other value,
nested objects such as `reply_markup` included, as a JSON string. The fake also accepts JSON
bodies and query strings. Answers are `{"ok": true, "result": ...}` or
`{"ok": false, "error_code": N, "description": "...", "parameters": {...}}` with HTTP status N.

Implemented methods: getMe, getUpdates, setWebhook, deleteWebhook, getWebhookInfo, setMyCommands,
getMyCommands, deleteMyCommands, sendMessage, sendChatAction, editMessageText,
editMessageReplyMarkup, deleteMessage, answerCallbackQuery, answerInlineQuery, getChat,
getChatMember, getChatAdministrators. Any other method answers 404. The fake serves long polling
only: a webhook can be set and inspected, but updates are never pushed to it (`update_payload`
gives the JSON a test can post to the bot's webhook itself).

Flood limits (off unless `enforce_limits=True`): about 30 messages/s overall, 1 message/s per
private chat after a burst of 3, 20 messages/min per group or channel. They run on a scaled
clock: with `time_scale=10` the fake's seconds pass ten times faster than real ones, so every
limit is ten times higher in real time and a benchmark finishes ten times sooner. The
`retry_after` in a 429 answer is in the fake's scaled seconds; a client should sleep
`retry_after / time_scale` real seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import re
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

from aiohttp import web

from . import CallLog, LoopbackServer, RecordedCall, read_raw_params, wall_clock

__all__ = [
    "DEFAULT_BOT_USERNAME",
    "DEFAULT_TOKEN",
    "EntityParseError",
    "FakeTelegram",
    "FloodLimits",
    "ParsedText",
    "TelegramStats",
    "TgChat",
    "TgMessage",
    "TgUser",
    "parse_html",
    "parse_markdown_v2",
]

DEFAULT_TOKEN = "123456789:TEST-fake-token-for-the-loopback-api"
DEFAULT_BOT_USERNAME = "trending_papers_bot"

MAX_TEXT_LENGTH = 4096
MAX_CALLBACK_DATA_BYTES = 64
MAX_CALLBACK_ANSWER_LENGTH = 200
MAX_INLINE_RESULTS = 50
MAX_BOT_COMMANDS = 100

# Values of these parameters are plain strings even when they look like JSON ("123", "true").
_TEXT_PARAMS = frozenset(
    {
        "action",
        "business_connection_id",
        "callback_query_id",
        "caption",
        "custom_title",
        "description",
        "inline_message_id",
        "inline_query_id",
        "ip_address",
        "language_code",
        "message_effect_id",
        "name",
        "next_offset",
        "parse_mode",
        "query",
        "secret_token",
        "short_description",
        "switch_pm_parameter",
        "switch_pm_text",
        "text",
        "title",
        "url",
    }
)
# A JSON body may still carry these as JSON strings, the way some clients build them.
_JSON_OBJECT_PARAMS = frozenset(
    {
        "allowed_updates",
        "button",
        "caption_entities",
        "commands",
        "entities",
        "link_preview_options",
        "menu_button",
        "reply_markup",
        "reply_parameters",
        "results",
        "scope",
    }
)
_INLINE_BUTTON_ACTIONS = frozenset(
    {
        "callback_data",
        "callback_game",
        "copy_text",
        "login_url",
        "pay",
        "switch_inline_query",
        "switch_inline_query_chosen_chat",
        "switch_inline_query_current_chat",
        "url",
        "web_app",
    }
)
_BOT_COMMAND_NAME = re.compile(r"[a-z0-9_]{1,32}")
_COMMAND_IN_TEXT = re.compile(r"(?<!\S)/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32})?")
_NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)


class _ApiError(Exception):
    """An error answer: raised anywhere inside a method handler."""

    def __init__(self, status: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "ok": False,
            "error_code": self.status,
            "description": self.description,
        }
        if self.retry_after is not None:
            answer["parameters"] = {"retry_after": self.retry_after}
        return answer


def _bad_request(detail: str) -> _ApiError:
    return _ApiError(400, f"Bad Request: {detail}")


# --------------------------------------------------------------------------- formatted text


class EntityParseError(ValueError):
    """The text does not parse in the requested parse mode."""


@dataclass(frozen=True)
class ParsedText:
    """Message text after Telegram strips the markup: what users see, plus its entities."""

    plain: str
    entities: tuple[dict[str, Any], ...] = ()


_SIMPLE_TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
}
_NAMED_HTML_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_HTML_ENTITY = re.compile(r"&(?:#([0-9]{1,7})|#[xX]([0-9a-fA-F]{1,6})|([A-Za-z]{1,8}));")
_TAG_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]*")
_TAG_ATTRIBUTE = re.compile(
    r"""\s+([A-Za-z][A-Za-z0-9_-]*)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?"""
)
_LINK_SCHEMES = frozenset({"http", "https", "tg"})
_MARKUP = re.compile(r"[<&]")


def _utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _byte_offset(text: str, index: int) -> int:
    return len(text[:index].encode("utf-8"))


def _decode_html_entities(text: str, where: str) -> str:
    """Replace Telegram's supported character references; anything else with `&` is an error."""
    pieces: list[str] = []
    position = 0
    while (amp := text.find("&", position)) != -1:
        pieces.append(text[position:amp])
        pieces.append(_decode_one_entity(text, amp, where))
        match = _HTML_ENTITY.match(text, amp)
        position = match.end() if match else amp + 1
    pieces.append(text[position:])
    return "".join(pieces)


def _decode_one_entity(text: str, index: int, where: str) -> str:
    match = _HTML_ENTITY.match(text, index)
    if match is None:
        raise EntityParseError(
            f"Character '&' at byte offset {_byte_offset(text, index)} {where} must be "
            "written as &amp;"
        )
    decimal, hexadecimal, name = match.groups()
    if name is not None:
        if name not in _NAMED_HTML_ENTITIES:
            raise EntityParseError(
                f'Unsupported HTML entity "&{name};" at byte offset {_byte_offset(text, index)}'
            )
        return _NAMED_HTML_ENTITIES[name]
    code_point = int(decimal) if decimal is not None else int(hexadecimal, 16)
    if code_point == 0 or code_point > 0x10FFFF or 0xD800 <= code_point <= 0xDFFF:
        raise EntityParseError(
            f"Invalid character reference at byte offset {_byte_offset(text, index)}"
        )
    return chr(code_point)


@dataclass
class _OpenTag:
    name: str
    entity: dict[str, Any] | None
    start: int
    byte_offset: int
    order: int = 0


def _find_tag_end(text: str, start: int) -> int:
    quote: str | None = None
    for index in range(start + 1, len(text)):
        char = text[index]
        if quote is not None:
            if char == quote:
                quote = None
        elif char in "\"'" and text[index - 1] in "= ":
            quote = char
        elif char == ">":
            return index
    return -1


def _parse_attributes(text: str, tag: str, offset: int) -> dict[str, str]:
    attributes: dict[str, str] = {}
    position = 0
    stripped_end = len(text.rstrip())
    while position < stripped_end:
        match = _TAG_ATTRIBUTE.match(text, position)
        if match is None:
            raise EntityParseError(
                f'Can\'t parse the attributes of tag "{tag}" at byte offset {offset}'
            )
        name, double_quoted, single_quoted, bare = match.groups()
        raw_value = next(
            (value for value in (double_quoted, single_quoted, bare) if value is not None), ""
        )
        attributes[name.lower()] = _decode_html_entities(raw_value, f'in tag "{tag}"')
        position = match.end()
    return attributes


def _open_html_tag(inner: str, stack: list[_OpenTag], offset: int, start: int) -> _OpenTag:
    name_match = _TAG_NAME.match(inner)
    name = name_match.group(0).lower() if name_match else ""
    rest = inner[name_match.end() :] if name_match else inner
    if rest.rstrip().endswith("/"):
        raise EntityParseError(f'Unsupported self-closing tag "{name}" at byte offset {offset}')
    known = name in _SIMPLE_TAGS or name in {"span", "a", "code", "pre", "blockquote", "tg-emoji"}
    if not known:
        raise EntityParseError(f'Unsupported start tag "{name}" at byte offset {offset}')
    attributes = _parse_attributes(rest, name, offset)
    inside = [tag.name for tag in stack]
    if any(tag in ("code", "pre") for tag in inside) and not _code_opens_pre(stack, name):
        raise EntityParseError(
            f'Tag "{name}" at byte offset {offset} can\'t be used inside "{inside[-1]}"'
        )
    entity: dict[str, Any] | None
    if name in _SIMPLE_TAGS:
        entity = {"type": _SIMPLE_TAGS[name]}
    elif name == "span":
        if attributes.get("class") != "tg-spoiler":
            raise EntityParseError(
                f'Tag "span" must have class "tg-spoiler" at byte offset {offset}'
            )
        entity = {"type": "spoiler"}
    elif name == "a":
        url = attributes.get("href", "")
        if urlsplit(url).scheme.lower() not in _LINK_SCHEMES or "://" not in url:
            raise EntityParseError(f'Invalid URL "{url}" in tag "a" at byte offset {offset}')
        entity = {"type": "text_link", "url": url}
    elif name == "code":
        language = attributes.get("class", "")
        if _code_opens_pre(stack, name):
            if language.startswith("language-"):
                stack[-1].entity = {"type": "pre", "language": language.removeprefix("language-")}
            entity = None
        else:
            entity = {"type": "code"}
    elif name == "pre":
        entity = {"type": "pre"}
    elif name == "blockquote":
        if "blockquote" in inside:
            raise EntityParseError(f"Blockquotes can't be nested, byte offset {offset}")
        entity = {"type": "expandable_blockquote" if "expandable" in attributes else "blockquote"}
    else:
        emoji_id = attributes.get("emoji-id", "")
        if not emoji_id.isdigit():
            raise EntityParseError(f'Tag "tg-emoji" needs a numeric emoji-id, byte offset {offset}')
        entity = {"type": "custom_emoji", "custom_emoji_id": emoji_id}
    return _OpenTag(name=name, entity=entity, start=start, byte_offset=offset)


def _code_opens_pre(stack: list[_OpenTag], name: str) -> bool:
    """`<pre><code class="language-x">` is the one nesting allowed inside a code block."""
    return name == "code" and bool(stack) and stack[-1].name == "pre"


def parse_html(text: str) -> ParsedText:
    """Parse text the way Telegram's `parse_mode=HTML` does, strictly.

    Raises `EntityParseError` for unknown tags, bare `<` or `&`, unsupported character
    references, and tags that are unclosed, closed out of order, or nested where Telegram
    forbids it. Entity offsets and lengths are in UTF-16 code units, as the Bot API counts them.
    """
    plain: list[str] = []
    position16 = 0
    stack: list[_OpenTag] = []
    entities: list[tuple[int, dict[str, Any]]] = []
    opened = 0
    index = 0
    while index < len(text):
        char = text[index]
        if char == "<":
            offset = _byte_offset(text, index)
            end = _find_tag_end(text, index)
            if end == -1:
                raise EntityParseError(f"Unclosed start tag at byte offset {offset}")
            inner = text[index + 1 : end]
            if inner.startswith("/"):
                _close_html_tag(inner[1:].strip().lower(), stack, entities, position16, offset)
            else:
                tag = _open_html_tag(inner, stack, offset, position16)
                tag.order = opened
                opened += 1
                stack.append(tag)
            index = end + 1
            continue
        if char == "&":
            decoded = _decode_one_entity(text, index, "in the text")
            match = _HTML_ENTITY.match(text, index)
            index = match.end() if match else index + 1
        else:
            # Plain text up to the next tag or character reference, in one step: a step per
            # character made the fake the slowest part of bench/telegram_commands.py.
            markup = _MARKUP.search(text, index)
            end = markup.start() if markup else len(text)
            decoded = text[index:end]
            index = end
        plain.append(decoded)
        position16 += _utf16_length(decoded)
    if stack:
        raise EntityParseError(
            f'Can\'t find end tag corresponding to start tag "{stack[-1].name}" '
            f"at byte offset {stack[-1].byte_offset}"
        )
    # Telegram lists entities by offset, longer first, and outer before inner when they tie.
    entities.sort(key=lambda item: (item[1]["offset"], -item[1]["length"], item[0]))
    return ParsedText(plain="".join(plain), entities=tuple(entity for _, entity in entities))


def _close_html_tag(
    name: str,
    stack: list[_OpenTag],
    entities: list[tuple[int, dict[str, Any]]],
    position16: int,
    offset: int,
) -> None:
    if not stack:
        raise EntityParseError(f'Unexpected end tag "{name}" at byte offset {offset}')
    top = stack.pop()
    if name != top.name:
        raise EntityParseError(
            f'Unmatched end tag at byte offset {offset}, expected "</{top.name}>", '
            f'found "</{name}>"'
        )
    length = position16 - top.start
    if top.entity is not None and length > 0:
        entities.append((top.order, {**top.entity, "offset": top.start, "length": length}))


_MARKDOWN_V2_RESERVED = frozenset("_*[]()~`>#+-=|{}.!")


def parse_markdown_v2(text: str) -> ParsedText:
    """Check the MarkdownV2 rules a bot most often breaks; returns the plain text only.

    Every reserved character outside an entity marker must be escaped with a backslash, code
    spans and links must be closed, and bold/italic/underline/strikethrough/spoiler markers
    must pair up. Entities themselves are not reported.
    """
    plain: list[str] = []
    open_markers: list[tuple[str, int]] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text):
            plain.append(text[index + 1])
            index += 2
            continue
        if char == "`":
            fence = "```" if text.startswith("```", index) else "`"
            end = _find_unescaped(text, fence, index + len(fence))
            if end == -1:
                raise EntityParseError(
                    f"Can't find end of the code entity at byte offset {_byte_offset(text, index)}"
                )
            plain.append(text[index + len(fence) : end].replace("\\`", "`").replace("\\\\", "\\"))
            index = end + len(fence)
            continue
        marker = next(
            (m for m in ("__", "||", "*", "_", "~", "[") if text.startswith(m, index)), ""
        )
        if marker:
            if open_markers and open_markers[-1][0] == marker and marker != "[":
                open_markers.pop()
            else:
                open_markers.append((marker, index))
            index += len(marker)
            continue
        if char == "]" and open_markers and open_markers[-1][0] == "[":
            open_markers.pop()
            if not text.startswith("(", index + 1):
                raise EntityParseError(
                    f"Link text at byte offset {_byte_offset(text, index)} has no (url)"
                )
            end = _find_unescaped(text, ")", index + 2)
            if end == -1:
                raise EntityParseError(
                    f"Can't find end of the URL at byte offset {_byte_offset(text, index)}"
                )
            index = end + 1
            continue
        at_line_start = index == 0 or text[index - 1] == "\n"
        if char == ">" and at_line_start:
            index += 1
            continue
        if char in _MARKDOWN_V2_RESERVED:
            raise EntityParseError(
                f"Character '{char}' is reserved and must be escaped with the preceding '\\'"
            )
        plain.append(char)
        index += 1
    if open_markers:
        marker, start = open_markers[-1]
        raise EntityParseError(
            f"Can't find end of the entity starting at byte offset {_byte_offset(text, start)}"
        )
    return ParsedText(plain="".join(plain))


def _find_unescaped(text: str, needle: str, start: int) -> int:
    index = start
    while index < len(text):
        if text[index] == "\\":
            index += 2
            continue
        if text.startswith(needle, index):
            return index
        index += 1
    return -1


def _parse_text(text: str, parse_mode: str | None) -> ParsedText:
    mode = (parse_mode or "").lower()
    try:
        if mode == "html":
            return parse_html(text)
        if mode == "markdownv2":
            return parse_markdown_v2(text)
    except EntityParseError as error:
        raise _bad_request(f"can't parse entities: {error}") from None
    if mode not in ("", "markdown"):
        raise _bad_request("unsupported parse_mode")
    return ParsedText(plain=text)


# --------------------------------------------------------------------------- users and chats


@dataclass(frozen=True)
class TgUser:
    """A Telegram user as the Bot API describes one."""

    id: int
    first_name: str
    username: str | None = None
    last_name: str | None = None
    language_code: str | None = "en"
    is_bot: bool = False

    def to_api(self) -> dict[str, Any]:
        """The `User` JSON object."""
        payload: dict[str, Any] = {
            "id": self.id,
            "is_bot": self.is_bot,
            "first_name": self.first_name,
        }
        for name in ("last_name", "username", "language_code"):
            if (value := getattr(self, name)) is not None:
                payload[name] = value
        return payload


@dataclass(frozen=True)
class TgChat:
    """A chat: `private`, `group`, `supergroup` or `channel`."""

    id: int
    type: str
    title: str | None = None
    username: str | None = None
    first_name: str | None = None
    last_name: str | None = None

    def to_api(self) -> dict[str, Any]:
        """The `Chat` JSON object."""
        payload: dict[str, Any] = {"id": self.id, "type": self.type}
        for name in ("title", "username", "first_name", "last_name"):
            if (value := getattr(self, name)) is not None:
                payload[name] = value
        return payload

    @property
    def is_private(self) -> bool:
        """Whether this is a one-to-one chat with a user."""
        return self.type == "private"


@dataclass
class TgMessage:
    """A message stored by the fake; bot messages can be edited and deleted."""

    chat_id: int
    message_id: int
    sender_id: int | None
    text: str
    plain_text: str
    parse_mode: str | None = None
    entities: tuple[dict[str, Any], ...] = ()
    reply_markup: dict[str, Any] | None = None
    date: int = 0
    edit_date: int | None = None
    deleted: bool = False
    history: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)

    def buttons(self) -> list[dict[str, Any]]:
        """Every inline keyboard button, row by row."""
        rows = (self.reply_markup or {}).get("inline_keyboard", [])
        return [button for row in rows for button in row]

    def callback_data(self) -> list[str]:
        """The `callback_data` of every inline button that has one."""
        return [b["callback_data"] for b in self.buttons() if "callback_data" in b]


# --------------------------------------------------------------------------- flood control


@dataclass(frozen=True)
class FloodLimits:
    """Telegram's documented send limits, in messages per second of the fake's clock."""

    overall_per_second: int = 30
    private_per_second: float = 1.0
    private_burst: int = 3
    group_per_minute: int = 20


@dataclass
class TelegramStats:
    """Counters a benchmark reads after a run."""

    messages_sent: int = 0
    too_many_requests: int = 0
    duplicate_texts: int = 0
    calls_by_method: Counter[str] = field(default_factory=Counter)


class _FloodGate:
    """Sliding windows overall and per group, a token bucket per private chat."""

    def __init__(self, limits: FloodLimits, clock: Callable[[], float], time_scale: float) -> None:
        self._limits = limits
        self._clock = clock
        self._time_scale = time_scale
        self._origin = clock()
        self._overall: deque[float] = deque()
        self._groups: dict[int, deque[float]] = {}
        self._private_tokens: dict[int, tuple[float, float]] = {}

    def now(self) -> float:
        return (self._clock() - self._origin) * self._time_scale

    def admit(self, chat_id: int, private: bool) -> int | None:
        """Count one message, or return the whole seconds to wait when it is over a limit."""
        now = self.now()
        waits: list[float] = []
        _drop_older(self._overall, now - 1.0)
        if len(self._overall) >= self._limits.overall_per_second:
            waits.append(self._overall[0] + 1.0 - now)
        tokens = 0.0
        if private:
            tokens, last = self._private_tokens.get(
                chat_id, (float(self._limits.private_burst), now)
            )
            rate = self._limits.private_per_second
            tokens = min(float(self._limits.private_burst), tokens + (now - last) * rate)
            if tokens < 1.0:
                waits.append((1.0 - tokens) / rate)
        else:
            window = self._groups.setdefault(chat_id, deque())
            _drop_older(window, now - 60.0)
            if len(window) >= self._limits.group_per_minute:
                waits.append(window[0] + 60.0 - now)
        if waits:
            return max(1, math.ceil(max(waits)))
        self._overall.append(now)
        if private:
            self._private_tokens[chat_id] = (tokens - 1.0, now)
        else:
            self._groups[chat_id].append(now)
        return None


def _drop_older(window: deque[float], horizon: float) -> None:
    while window and window[0] <= horizon:
        window.popleft()


@dataclass
class _Fault:
    status: int
    description: str | None
    retry_after: int | None


_BAD_GATEWAY_PAGE = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n"
)
_DEFAULT_FAULT_TEXT = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    500: "Internal Server Error",
    503: "Service Unavailable",
}

# Sends to a chat that blocked or removed the bot fail with 403.
_CHAT_WRITE_METHODS = frozenset(
    {"sendmessage", "sendchataction", "editmessagetext", "editmessagereplymarkup"}
)

_Handler = Callable[[dict[str, Any]], Awaitable[Any]]


# --------------------------------------------------------------------------- the server


class FakeTelegram:
    """A Telegram Bot API server on 127.0.0.1 for one bot.

    Args:
        token: the only token the fake accepts; others get 401 Unauthorized.
        bot_username: the bot's `username` in getMe and in `/cmd@username` commands.
        bot_id: the bot's user id.
        known_chats_only: when true, sends to a chat the fake was never told about answer
            400 "chat not found"; when false such chats spring into existence.
        enforce_limits: turn on flood control (see the module docstring).
        time_scale: how many of the fake's seconds pass per real second (flood limits only).
        limits: the flood limits to enforce.
        clock: monotonic seconds for flood control; inject one to test limits without waiting.
        max_long_poll: real seconds a getUpdates call waits at most, whatever its `timeout`.
    """

    def __init__(
        self,
        *,
        token: str = DEFAULT_TOKEN,
        bot_username: str = DEFAULT_BOT_USERNAME,
        bot_id: int | None = None,
        known_chats_only: bool = True,
        enforce_limits: bool = False,
        time_scale: float = 1.0,
        limits: FloodLimits | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_long_poll: float = 1.0,
    ) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self.token = token
        self.bot = TgUser(
            id=bot_id if bot_id is not None else int(token.split(":", 1)[0]),
            first_name="Trending Papers",
            username=bot_username,
            language_code=None,
            is_bot=True,
        )
        self.known_chats_only = known_chats_only
        self.enforce_limits = enforce_limits
        self.time_scale = time_scale
        self.max_long_poll = max_long_poll
        self.stats = TelegramStats()
        self._flood = _FloodGate(limits or FloodLimits(), clock, time_scale)
        self._log = CallLog()
        self._server = LoopbackServer(self._build_app())
        self._chats: dict[int, TgChat] = {}
        self._users: dict[int, TgUser] = {}
        self._messages: dict[int, dict[int, TgMessage]] = {}
        self._next_message_id: dict[int, int] = {}
        self._sent_texts: dict[int, set[str]] = {}
        self._blocked: dict[int, str] = {}
        self._admins: dict[int, list[TgUser]] = {}
        self._creators: dict[int, TgUser] = {}
        self._bot_admin_in: set[int] = set()
        self._faults: dict[str, deque[_Fault]] = {}
        self._pending_updates: list[dict[str, Any]] = []
        self._all_updates: dict[int, dict[str, Any]] = {}
        # An Event, not a Condition: the update helpers are plain functions and must wake pollers.
        self._updates_arrived = asyncio.Event()
        self._poller_waiting = asyncio.Event()
        self._update_ids = itertools.count(300_000_001)
        self._user_ids = itertools.count(7_000_001)
        self._group_ids = itertools.count(4_000_000_001)
        self._supergroup_ids = itertools.count(1_002_000_000_001)
        self._query_ids = itertools.count(4_100_000_000_000_001)
        self._open_callback_queries: set[str] = set()
        self._open_inline_queries: set[str] = set()
        self._commands: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._webhook: dict[str, Any] = {}
        self._closing = False

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
        self._closing = True
        self._updates_arrived.set()
        await self._server.stop()

    @property
    def base_url(self) -> str:
        """What `ApplicationBuilder().base_url(...)` wants: the token is appended to it."""
        return f"{self._server.root}/bot"

    @property
    def base_file_url(self) -> str:
        """What `ApplicationBuilder().base_file_url(...)` wants."""
        return f"{self._server.root}/file/bot"

    # ----------------------------------------------------------------- recorded calls

    @property
    def calls(self) -> list[RecordedCall]:
        """Every call answered so far, oldest first."""
        return self._log.calls

    def calls_to(self, method: str) -> list[RecordedCall]:
        """Recorded calls of one method (case-insensitive, as the Bot API is)."""
        return [call for call in self.calls if call.method.lower() == method.lower()]

    async def wait_for(
        self,
        predicate: Callable[[RecordedCall], bool],
        timeout: float = 5.0,  # noqa: ASYNC109 - tests read better with the limit in the call
        *,
        since: int = 0,
    ) -> RecordedCall:
        """The first recorded call at index `since` or later that matches, awaited if needed."""
        return await self._log.wait_for(predicate, timeout, since=since)

    async def wait_for_message(
        self,
        chat_id: int | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109 - same as wait_for
        *,
        since: int = 0,
    ) -> TgMessage:
        """Await a successful sendMessage (to `chat_id`, if given) and return what was stored."""

        def sent(call: RecordedCall) -> bool:
            return (
                call.method.lower() == "sendmessage"
                and call.ok
                and (chat_id is None or call.response["result"]["chat"]["id"] == chat_id)
            )

        call = await self.wait_for(sent, timeout, since=since)
        result = call.response["result"]
        return self._messages[result["chat"]["id"]][result["message_id"]]

    def sent_messages(
        self, chat_id: int | None = None, *, include_deleted: bool = False
    ) -> list[TgMessage]:
        """Messages the bot sent, oldest first, in one chat or in all of them."""
        chats = [chat_id] if chat_id is not None else list(self._messages)
        found = [
            message
            for chat in chats
            for message in self._messages.get(chat, {}).values()
            if message.sender_id == self.bot.id and (include_deleted or not message.deleted)
        ]
        return sorted(found, key=lambda message: (message.date, message.message_id))

    def last_message(self, chat_id: int) -> TgMessage | None:
        """The bot's newest undeleted message in a chat."""
        messages = self.sent_messages(chat_id)
        return messages[-1] if messages else None

    def message(self, chat_id: int, message_id: int) -> TgMessage:
        """A stored message, the bot's or a user's."""
        return self._messages[chat_id][message_id]

    # ----------------------------------------------------------------- users and chats

    def new_user(
        self,
        first_name: str = "Ada",
        *,
        language_code: str | None = "en",
        username: str | None = None,
        last_name: str | None = None,
    ) -> TgUser:
        """A fresh human user with an unused id, known to the fake."""
        user = TgUser(
            id=next(self._user_ids),
            first_name=first_name,
            username=username,
            last_name=last_name,
            language_code=language_code,
        )
        self._users[user.id] = user
        return user

    def private_chat(self, user: TgUser) -> TgChat:
        """The user's private chat with the bot (its id is the user's id)."""
        self._users[user.id] = user
        chat = TgChat(
            id=user.id,
            type="private",
            first_name=user.first_name,
            last_name=user.last_name,
            username=user.username,
        )
        return self.add_chat(chat)

    def new_group(self, title: str = "Reading group", *, supergroup: bool = True) -> TgChat:
        """A fresh group (a supergroup unless told otherwise) with the bot in it."""
        if supergroup:
            chat = TgChat(id=-next(self._supergroup_ids), type="supergroup", title=title)
        else:
            chat = TgChat(id=-next(self._group_ids), type="group", title=title)
        return self.add_chat(chat)

    def new_channel(self, title: str = "New papers", *, username: str | None = None) -> TgChat:
        """A fresh channel where the bot may post."""
        chat = TgChat(
            id=-next(self._supergroup_ids), type="channel", title=title, username=username
        )
        return self.add_chat(chat)

    def add_chat(self, chat: TgChat) -> TgChat:
        """Make a chat built by hand known to the fake."""
        self._chats[chat.id] = chat
        return chat

    def set_admins(
        self,
        chat: TgChat | int,
        admins: Iterable[TgUser],
        *,
        creator: TgUser | None = None,
        bot_is_admin: bool = False,
    ) -> None:
        """Who getChatMember/getChatAdministrators report as administrators of a group."""
        chat_id = _chat_id(chat)
        self._admins[chat_id] = list(admins)
        for user in self._admins[chat_id]:
            self._users[user.id] = user
        if creator is not None:
            self._users[creator.id] = creator
            self._creators[chat_id] = creator
        if bot_is_admin:
            self._bot_admin_in.add(chat_id)
        else:
            self._bot_admin_in.discard(chat_id)

    # ----------------------------------------------------------------- faults

    def block(self, chat: TgChat | int) -> None:
        """The user blocked the bot: sends to the chat answer 403."""
        self._blocked[_chat_id(chat)] = "Forbidden: bot was blocked by the user"

    def kick(self, chat: TgChat | int) -> None:
        """The bot was removed from a group: sends to it answer 403."""
        chat_id = _chat_id(chat)
        kind = self._chats[chat_id].type if chat_id in self._chats else "group"
        if kind == "private":
            self.block(chat_id)
        elif kind == "channel":
            self._blocked[chat_id] = "Forbidden: bot is not a member of the channel chat"
        else:
            self._blocked[chat_id] = f"Forbidden: bot was kicked from the {kind} chat"

    def unblock(self, chat: TgChat | int) -> None:
        """Undo `block` or `kick`."""
        self._blocked.pop(_chat_id(chat), None)

    def fail_next(
        self,
        method: str,
        status: int,
        description: str | None = None,
        *,
        retry_after: int | None = None,
        count: int = 1,
    ) -> None:
        """Answer the next `count` calls of `method` with an error instead of handling them.

        A 429 gets `parameters.retry_after` (1 unless given) and the usual description; a 502
        without a description gets an HTML page like a failing proxy sends.
        """
        if status == 429:
            retry_after = retry_after or 1
            description = description or f"Too Many Requests: retry after {retry_after}"
        faults = self._faults.setdefault(method.lower(), deque())
        faults.extend(_Fault(status, description, retry_after) for _ in range(count))

    # ----------------------------------------------------------------- updates in

    async def wait_until_polling(
        self,
        timeout: float = 5.0,  # noqa: ASYNC109 - same as wait_for
    ) -> None:
        """Return once a getUpdates call is waiting for updates (a long poll is open)."""
        async with asyncio.timeout(timeout):
            await self._poller_waiting.wait()

    @property
    def pending_updates(self) -> list[dict[str, Any]]:
        """Updates not yet confirmed by a getUpdates offset."""
        return list(self._pending_updates)

    def update_payload(self, update_id: int) -> dict[str, Any]:
        """The JSON of an update this fake built, e.g. to post to a webhook in a test."""
        return self._all_updates[update_id]

    def enqueue_update(self, kind: str, payload: dict[str, Any]) -> int:
        """Queue an update of any kind (`message`, `my_chat_member`, ...); returns its id."""
        update_id = next(self._update_ids)
        update = {"update_id": update_id, kind: payload}
        self._pending_updates.append(update)
        self._all_updates[update_id] = update
        self._updates_arrived.set()
        return update_id

    def user_sends(self, chat: TgChat, user: TgUser, text: str) -> int:
        """A user writes `text` in a chat; `/commands` get `bot_command` entities."""
        self._users[user.id] = user
        self.add_chat(chat)
        entities = [
            {
                "type": "bot_command",
                "offset": _utf16_length(text[: match.start()]),
                "length": _utf16_length(match.group(0)),
            }
            for match in _COMMAND_IN_TEXT.finditer(text)
        ]
        message = self._store(chat.id, user.id, text, ParsedText(text, tuple(entities)))
        return self.enqueue_update("message", self._message_payload(message))

    def user_presses(self, chat: TgChat, user: TgUser, message_id: int, callback_data: str) -> int:
        """A user presses an inline button under a stored message."""
        self._users[user.id] = user
        message = self._messages[chat.id][message_id]
        query_id = str(next(self._query_ids))
        self._open_callback_queries.add(query_id)
        payload = {
            "id": query_id,
            "from": user.to_api(),
            "message": self._message_payload(message),
            "chat_instance": str(abs(hash((chat.id, self.bot.id))) % 10**18),
            "data": callback_data,
        }
        return self.enqueue_update("callback_query", payload)

    def inline_query(self, user: TgUser, query: str, *, chat_type: str = "sender") -> int:
        """A user types `@bot query` in some chat."""
        self._users[user.id] = user
        query_id = str(next(self._query_ids))
        self._open_inline_queries.add(query_id)
        payload = {
            "id": query_id,
            "from": user.to_api(),
            "query": query,
            "offset": "",
            "chat_type": chat_type,
        }
        return self.enqueue_update("inline_query", payload)

    def channel_post(self, chat: TgChat, text: str) -> int:
        """Someone posts in a channel the bot administers."""
        self.add_chat(chat)
        message = self._store(chat.id, None, text, ParsedText(text))
        return self.enqueue_update("channel_post", self._message_payload(message))

    def bot_membership_changes(
        self, chat: TgChat, by_user: TgUser, new_status: str, old_status: str = "left"
    ) -> int:
        """The bot's status in a chat changed: added to a group, blocked by a user, ..."""
        self._users[by_user.id] = by_user
        self.add_chat(chat)
        payload = {
            "chat": chat.to_api(),
            "from": by_user.to_api(),
            "date": int(wall_clock()),
            "old_chat_member": {"status": old_status, "user": self.bot.to_api()},
            "new_chat_member": self._member_payload(chat.id, self.bot, status=new_status),
        }
        return self.enqueue_update("my_chat_member", payload)

    # ----------------------------------------------------------------- HTTP plumbing

    def _build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_route("*", "/file/bot{token}/{path:.*}", self._handle_file)
        return app

    def _methods(self) -> dict[str, _Handler]:
        return {
            "getme": self._get_me,
            "getupdates": self._get_updates,
            "setwebhook": self._set_webhook,
            "deletewebhook": self._delete_webhook,
            "getwebhookinfo": self._get_webhook_info,
            "setmycommands": self._set_my_commands,
            "getmycommands": self._get_my_commands,
            "deletemycommands": self._delete_my_commands,
            "sendmessage": self._send_message,
            "sendchataction": self._send_chat_action,
            "editmessagetext": self._edit_message_text,
            "editmessagereplymarkup": self._edit_message_reply_markup,
            "deletemessage": self._delete_message,
            "answercallbackquery": self._answer_callback_query,
            "answerinlinequery": self._answer_inline_query,
            "getchat": self._get_chat,
            "getchatmember": self._get_chat_member,
            "getchatadministrators": self._get_chat_administrators,
        }

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        raw, encoding = await read_raw_params(request)
        params = _decode_params(raw, from_json=encoding == "json")
        status, body = await self._answer(request.match_info["token"], method, params)
        self.stats.calls_by_method[method] += 1
        if status == 429:
            self.stats.too_many_requests += 1
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
        if isinstance(body, str):
            return web.Response(status=status, text=body, content_type="text/html")
        return web.json_response(body, status=status)

    async def _handle_file(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"ok": False, "error_code": 404, "description": "Not Found"}, status=404
        )

    async def _answer(
        self, token: str, method: str, params: dict[str, Any]
    ) -> tuple[int, dict[str, Any] | str]:
        if token != self.token:
            return 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
        handler = self._methods().get(method.lower())
        if handler is None:
            return 404, {
                "ok": False,
                "error_code": 404,
                "description": "Not Found: method not found",
            }
        faults = self._faults.get(method.lower())
        if faults:
            fault = faults.popleft()
            if fault.status == 502 and fault.description is None:
                return 502, _BAD_GATEWAY_PAGE
            description = fault.description or _DEFAULT_FAULT_TEXT.get(fault.status, "Error")
            return fault.status, _ApiError(fault.status, description, fault.retry_after).body()
        try:
            if method.lower() in _CHAT_WRITE_METHODS and "chat_id" in params:
                self._refuse_if_blocked(self._resolve_chat(params["chat_id"]).id)
            result = await handler(params)
        except _ApiError as error:
            return error.status, error.body()
        return 200, {"ok": True, "result": result}

    def _refuse_if_blocked(self, chat_id: int) -> None:
        if chat_id in self._blocked:
            raise _ApiError(403, self._blocked[chat_id])

    def _resolve_chat(self, raw: Any) -> TgChat:
        if isinstance(raw, str) and raw.startswith("@"):
            for chat in self._chats.values():
                if chat.username and f"@{chat.username}".lower() == raw.lower():
                    return chat
            raise _bad_request("chat not found")
        try:
            chat_id = int(raw)
        except (TypeError, ValueError):
            raise _bad_request("chat not found") from None
        if chat_id in self._chats:
            return self._chats[chat_id]
        if self.known_chats_only:
            raise _bad_request("chat not found")
        kind = "private" if chat_id > 0 else "supergroup"
        title = None if kind == "private" else f"Chat {chat_id}"
        first_name = f"User {chat_id}" if kind == "private" else None
        return self.add_chat(TgChat(id=chat_id, type=kind, title=title, first_name=first_name))

    # ----------------------------------------------------------------- stored messages

    def _store(
        self,
        chat_id: int,
        sender_id: int | None,
        text: str,
        parsed: ParsedText,
        *,
        parse_mode: str | None = None,
        reply_markup: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> TgMessage:
        message_id = self._next_message_id.get(chat_id, 1)
        self._next_message_id[chat_id] = message_id + 1
        message = TgMessage(
            chat_id=chat_id,
            message_id=message_id,
            sender_id=sender_id,
            text=text,
            plain_text=parsed.plain,
            parse_mode=parse_mode,
            entities=parsed.entities,
            reply_markup=reply_markup,
            date=int(wall_clock()),
            params=dict(params or {}),
        )
        self._messages.setdefault(chat_id, {})[message_id] = message
        return message

    def _message_payload(self, message: TgMessage) -> dict[str, Any]:
        chat = self._chats[message.chat_id]
        payload: dict[str, Any] = {
            "message_id": message.message_id,
            "date": message.date,
            "chat": chat.to_api(),
        }
        if chat.type == "channel":
            payload["sender_chat"] = chat.to_api()
        elif message.sender_id is not None:
            sender = (
                self.bot if message.sender_id == self.bot.id else self._users[message.sender_id]
            )
            payload["from"] = sender.to_api()
        payload["text"] = message.plain_text
        if message.entities:
            payload["entities"] = [dict(entity) for entity in message.entities]
        if message.reply_markup and "inline_keyboard" in message.reply_markup:
            payload["reply_markup"] = message.reply_markup
        if message.edit_date is not None:
            payload["edit_date"] = message.edit_date
        return payload

    def _bot_message(self, params: dict[str, Any], action: str) -> TgMessage:
        chat = self._resolve_chat(params.get("chat_id"))
        message = self._messages.get(chat.id, {}).get(_int_param(params, "message_id"))
        if message is None or message.deleted:
            raise _bad_request(f"message to {action} not found")
        if message.sender_id != self.bot.id:
            raise _bad_request(f"message can't be {action}ed")
        return message

    # ----------------------------------------------------------------- methods

    async def _get_me(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            **self.bot.to_api(),
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": True,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        if self._webhook.get("url"):
            raise _ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = params.get("offset")
        if isinstance(offset, int) and offset > 0:
            self._pending_updates = [
                update for update in self._pending_updates if update["update_id"] >= offset
            ]
        elif isinstance(offset, int) and offset < 0:
            self._pending_updates = self._pending_updates[offset:]
        limit = min(max(_int_param(params, "limit", 100), 1), 100)
        wait = min(float(params.get("timeout") or 0), self.max_long_poll)
        if not self._pending_updates and wait > 0 and not self._closing:
            self._updates_arrived.clear()
            self._poller_waiting.set()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._updates_arrived.wait()
            self._poller_waiting.clear()
        return self._pending_updates[:limit]

    async def _set_webhook(self, params: dict[str, Any]) -> bool:
        url = str(params.get("url", ""))
        if url and urlsplit(url).scheme != "https":
            raise _bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        secret = params.get("secret_token")
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", str(secret)):
            raise _bad_request("secret token contains unallowed characters")
        if params.get("drop_pending_updates") is True:
            self._pending_updates.clear()
        self._webhook = {
            "url": url,
            "secret_token": secret,
            "max_connections": _int_param(params, "max_connections", 40),
            "allowed_updates": params.get("allowed_updates"),
        }
        return True

    async def _delete_webhook(self, params: dict[str, Any]) -> bool:
        if params.get("drop_pending_updates") is True:
            self._pending_updates.clear()
        self._webhook = {}
        return True

    async def _get_webhook_info(self, params: dict[str, Any]) -> dict[str, Any]:
        info: dict[str, Any] = {
            "url": self._webhook.get("url", ""),
            "has_custom_certificate": False,
            "pending_update_count": len(self._pending_updates),
        }
        if info["url"]:
            info["max_connections"] = self._webhook["max_connections"]
            if self._webhook.get("allowed_updates") is not None:
                info["allowed_updates"] = self._webhook["allowed_updates"]
        return info

    @staticmethod
    def _commands_key(params: dict[str, Any]) -> tuple[str, str]:
        scope = params.get("scope") or {"type": "default"}
        return json.dumps(scope, sort_keys=True), str(params.get("language_code") or "")

    async def _set_my_commands(self, params: dict[str, Any]) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list):
            raise _bad_request("can't parse commands JSON object")
        if len(commands) > MAX_BOT_COMMANDS:
            raise _bad_request("too many commands")
        for command in commands:
            if not isinstance(command, dict):
                raise _bad_request("can't parse BotCommand")
            if not _BOT_COMMAND_NAME.fullmatch(str(command.get("command", ""))):
                raise _bad_request("BOT_COMMAND_INVALID")
            if not 1 <= len(str(command.get("description", ""))) <= 256:
                raise _bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
        self._commands[self._commands_key(params)] = commands
        return True

    async def _get_my_commands(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        return self._commands.get(self._commands_key(params), [])

    async def _delete_my_commands(self, params: dict[str, Any]) -> bool:
        self._commands.pop(self._commands_key(params), None)
        return True

    def _checked_text(self, params: dict[str, Any]) -> ParsedText:
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            raise _bad_request("message text is empty")
        parsed = _parse_text(text, params.get("parse_mode"))
        if not parsed.plain.strip():
            raise _bad_request("message text is empty")
        if len(parsed.plain) > MAX_TEXT_LENGTH:
            raise _bad_request("message is too long")
        return parsed

    async def _send_message(self, params: dict[str, Any]) -> dict[str, Any]:
        chat = self._resolve_chat(params.get("chat_id"))
        parsed = self._checked_text(params)
        markup = _checked_reply_markup(params.get("reply_markup"))
        self._check_reply_target(chat.id, params)
        if self.enforce_limits:
            retry_after = self._flood.admit(chat.id, chat.is_private)
            if retry_after is not None:
                raise _ApiError(429, f"Too Many Requests: retry after {retry_after}", retry_after)
        text = str(params["text"])
        sent_before = self._sent_texts.setdefault(chat.id, set())
        if text in sent_before:
            self.stats.duplicate_texts += 1
        sent_before.add(text)
        self.stats.messages_sent += 1
        message = self._store(
            chat.id,
            self.bot.id,
            text,
            parsed,
            parse_mode=params.get("parse_mode"),
            reply_markup=markup,
            params=params,
        )
        return self._message_payload(message)

    def _check_reply_target(self, chat_id: int, params: dict[str, Any]) -> None:
        reply = params.get("reply_parameters")
        if not isinstance(reply, dict):
            reply = (
                {"message_id": params["reply_to_message_id"]}
                if params.get("reply_to_message_id")
                else None
            )
        if reply is None or reply.get("allow_sending_without_reply") is True:
            return
        target_chat = self._resolve_chat(reply.get("chat_id", chat_id)).id
        target = self._messages.get(target_chat, {}).get(_int_param(reply, "message_id"))
        if target is None or target.deleted:
            raise _bad_request("message to be replied not found")

    async def _send_chat_action(self, params: dict[str, Any]) -> bool:
        self._resolve_chat(params.get("chat_id"))
        if not params.get("action"):
            raise _bad_request("wrong parameter action in request")
        return True

    async def _edit_message_text(self, params: dict[str, Any]) -> dict[str, Any] | bool:
        parsed = self._checked_text(params)
        markup = _checked_reply_markup(params.get("reply_markup"))
        if params.get("inline_message_id"):
            return True
        message = self._bot_message(params, "edit")
        if (
            parsed.plain == message.plain_text
            and parsed.entities == message.entities
            and markup == message.reply_markup
        ):
            raise _bad_request(_NOT_MODIFIED)
        message.history.append(message.text)
        message.text = str(params["text"])
        message.plain_text = parsed.plain
        message.entities = parsed.entities
        message.parse_mode = params.get("parse_mode")
        message.reply_markup = markup
        message.edit_date = int(wall_clock())
        return self._message_payload(message)

    async def _edit_message_reply_markup(self, params: dict[str, Any]) -> dict[str, Any] | bool:
        markup = _checked_reply_markup(params.get("reply_markup"))
        if params.get("inline_message_id"):
            return True
        message = self._bot_message(params, "edit")
        if markup == message.reply_markup:
            raise _bad_request(_NOT_MODIFIED)
        message.reply_markup = markup
        message.edit_date = int(wall_clock())
        return self._message_payload(message)

    async def _delete_message(self, params: dict[str, Any]) -> bool:
        chat = self._resolve_chat(params.get("chat_id"))
        message = self._messages.get(chat.id, {}).get(_int_param(params, "message_id"))
        if message is None or message.deleted:
            raise _bad_request("message to delete not found")
        message.deleted = True
        return True

    async def _answer_callback_query(self, params: dict[str, Any]) -> bool:
        query_id = str(params.get("callback_query_id", ""))
        if query_id not in self._open_callback_queries:
            raise _bad_request(
                "query is too old and response timeout expired or query ID is invalid"
            )
        if len(str(params.get("text") or "")) > MAX_CALLBACK_ANSWER_LENGTH:
            raise _bad_request("MESSAGE_TOO_LONG")
        self._open_callback_queries.discard(query_id)
        return True

    async def _answer_inline_query(self, params: dict[str, Any]) -> bool:
        query_id = str(params.get("inline_query_id", ""))
        if query_id not in self._open_inline_queries:
            raise _bad_request(
                "query is too old and response timeout expired or query ID is invalid"
            )
        results = params.get("results")
        if not isinstance(results, list):
            raise _bad_request("can't parse inline query results JSON object")
        if len(results) > MAX_INLINE_RESULTS:
            raise _bad_request("RESULTS_TOO_MUCH")
        seen: set[str] = set()
        for result in results:
            result_id = str(result.get("id", "")) if isinstance(result, dict) else ""
            if not 1 <= len(result_id.encode()) <= 64 or not result.get("type"):
                raise _bad_request("RESULT_ID_INVALID")
            if result_id in seen:
                raise _bad_request("RESULT_ID_DUPLICATE")
            seen.add(result_id)
            content = result.get("input_message_content")
            if isinstance(content, dict) and "message_text" in content:
                self._checked_text(
                    {"text": content["message_text"], "parse_mode": content.get("parse_mode")}
                )
            _checked_reply_markup(result.get("reply_markup"))
        self._open_inline_queries.discard(query_id)
        return True

    async def _get_chat(self, params: dict[str, Any]) -> dict[str, Any]:
        chat = self._resolve_chat(params.get("chat_id"))
        return {
            **chat.to_api(),
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": {
                "unlimited_gifts": False,
                "limited_gifts": False,
                "unique_gifts": False,
                "premium_subscription": False,
                "gifts_from_channels": False,
            },
        }

    async def _get_chat_member(self, params: dict[str, Any]) -> dict[str, Any]:
        chat = self._resolve_chat(params.get("chat_id"))
        if chat.id in self._blocked and not chat.is_private:
            raise _ApiError(403, self._blocked[chat.id])
        user_id = _int_param(params, "user_id")
        user = self.bot if user_id == self.bot.id else self._users.get(user_id)
        if user is None:
            raise _bad_request("user not found")
        return self._member_payload(chat.id, user)

    async def _get_chat_administrators(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        chat = self._resolve_chat(params.get("chat_id"))
        if chat.is_private:
            raise _bad_request("there are no administrators in the private chat")
        if chat.id in self._blocked:
            raise _ApiError(403, self._blocked[chat.id])
        members = [self._creators[chat.id]] if chat.id in self._creators else []
        members += self._admins.get(chat.id, [])
        if chat.id in self._bot_admin_in:
            members.append(self.bot)
        return [self._member_payload(chat.id, user) for user in members]

    def _member_payload(
        self, chat_id: int, user: TgUser, *, status: str | None = None
    ) -> dict[str, Any]:
        if status is None:
            if self._creators.get(chat_id) == user:
                status = "creator"
            elif user in self._admins.get(chat_id, []) or (
                user == self.bot and chat_id in self._bot_admin_in
            ):
                status = "administrator"
            else:
                status = "member"
        payload: dict[str, Any] = {"status": status, "user": user.to_api()}
        if status == "creator":
            payload["is_anonymous"] = False
        elif status == "administrator":
            payload.update(
                {
                    "can_be_edited": False,
                    "is_anonymous": False,
                    "can_manage_chat": True,
                    "can_delete_messages": True,
                    "can_manage_video_chats": True,
                    "can_restrict_members": True,
                    "can_promote_members": False,
                    "can_change_info": True,
                    "can_invite_users": True,
                    "can_post_stories": False,
                    "can_edit_stories": False,
                    "can_delete_stories": False,
                    "can_pin_messages": True,
                }
            )
        elif status in ("kicked", "restricted"):
            payload["until_date"] = 0
        return payload


# --------------------------------------------------------------------------- helpers


def _chat_id(chat: TgChat | int) -> int:
    return chat.id if isinstance(chat, TgChat) else int(chat)


def _int_param(params: dict[str, Any], name: str, default: int = 0) -> int:
    value = params.get(name, default)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _bad_request(f"wrong parameter {name} in request") from None


def _decode_params(raw: dict[str, Any], *, from_json: bool) -> dict[str, Any]:
    """Undo PTB's encoding: every non-string parameter arrives as a JSON string."""
    params: dict[str, Any] = {}
    for name, value in raw.items():
        if isinstance(value, str) and name not in _TEXT_PARAMS:
            if from_json and name not in _JSON_OBJECT_PARAMS:
                params[name] = value
                continue
            try:
                params[name] = json.loads(value)
            except ValueError:
                params[name] = value
        else:
            params[name] = value
    return params


def _checked_reply_markup(markup: Any) -> dict[str, Any] | None:
    """Validate an inline keyboard like Telegram does; other keyboards pass through."""
    if markup is None:
        return None
    if not isinstance(markup, dict):
        raise _bad_request("can't parse reply keyboard markup JSON object")
    if "inline_keyboard" not in markup:
        return markup
    rows = markup["inline_keyboard"]
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise _bad_request('field "inline_keyboard" of the InlineKeyboardMarkup must be an Array')
    for button in (button for row in rows for button in row):
        if not isinstance(button, dict) or not str(button.get("text", "")).strip():
            raise _bad_request("BUTTON_TEXT_INVALID")
        actions = _INLINE_BUTTON_ACTIONS.intersection(button)
        if len(actions) != 1:
            raise _bad_request(
                "can't parse inline keyboard button: Text buttons are unallowed in the "
                "inline keyboard"
            )
        if "callback_data" in button:
            data = button["callback_data"]
            if not isinstance(data, str) or not 1 <= len(data.encode()) <= MAX_CALLBACK_DATA_BYTES:
                raise _bad_request("BUTTON_DATA_INVALID")
        if "url" in button:
            url = str(button["url"])
            if urlsplit(url).scheme.lower() not in _LINK_SCHEMES or "://" not in url:
                raise _bad_request("BUTTON_URL_INVALID")
    return markup
