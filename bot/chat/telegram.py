"""Telegram adapter on python-telegram-bot 22: updates in as ``Command``s, ``Reply``s out as HTML.

Nothing here decides what to answer: every update becomes a ``Command`` for
``CommandRouter.handle`` and the ``Reply`` is rendered by ``bot.chat.telegram_render``. This
module only knows Telegram: which chat is a group, who is an admin there (``getChatMember``,
cached briefly), how to edit the message a button belongs to, how to answer inline queries,
and which Bot API errors mean "blocked", "wait" or "try again" for the delivery worker.

Bot API calls go over aiohttp (``bot.chat.telegram_http``), not PTB's default httpx client:
a few times less CPU per call. Polling is the default. Webhook mode
(``TP_TELEGRAM_WEBHOOK_URL``) registers the URL with Telegram's ``secret_token`` and
``telegram_webhook_route`` checks that token on every request before an update is queued.
``TP_TELEGRAM_API_BASE_URL`` points the bot at any server that speaks the Bot API (a
self-hosted ``telegram-bot-api`` or a test server).
"""

from __future__ import annotations

import os

# PTB 22 warns on every RetryAfter unless durations are timedeltas; opt in before importing it.
os.environ.setdefault("PTB_TIMEDELTA", "1")

import asyncio
import hmac
import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from telegram import (
    Bot,
    BotCommand,
    Chat,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InlineQueryResultArticle,
    InputTextMessageContent,
    LinkPreviewOptions,
    Message,
    Update,
    User,
)
from telegram.constants import ParseMode
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.ext import (
    Application,
    ApplicationBuilder,
    BaseUpdateProcessor,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    InlineQueryHandler,
    MessageHandler,
    filters,
)

from bot.chat.sender import (
    DeliveryError,
    Pace,
    PermanentDeliveryError,
    RetryLater,
    TransientDeliveryError,
    unpaced,
)
from bot.chat.telegram_http import AiohttpRequest
from bot.chat.telegram_render import (
    Key,
    Keyboard,
    Rendered,
    decode_callback,
    paper_html,
    relabel,
    render,
)
from bot.commands import (
    ALIASES,
    ALL_COMMANDS,
    is_button_update,
    menu_commands,
    reply_for_payload,
)
from bot.config import Settings
from bot.messages import Action, Command, PaperBlock, Reply
from bot.messages import CommandHandler as HandleFn
from storage.models import ChatKind, Platform, Subscriber

log = logging.getLogger(__name__)

ALLOWED_UPDATES = ["message", "channel_post", "callback_query", "inline_query"]
ADMIN_CACHE_SECONDS = 60.0
INLINE_RESULTS_CACHE_SECONDS = 60
MAX_WEBHOOK_BODY = 1_000_000
POOL_TIMEOUT_SECONDS = 10.0
INTERACTIVE_RETRY_LIMIT = 10.0
"""A reply Telegram asks us to delay by more than this many seconds is dropped, not queued."""
_COMMAND = re.compile(
    r"^/(?P<name>[A-Za-z0-9_]{1,64})(?:@(?P<bot>[A-Za-z0-9_]{1,64}))?(?:\s+(?P<args>.*))?$",
    re.DOTALL,
)
_PERMANENT_BAD_REQUESTS = (
    "chat not found",
    "user not found",
    "chat_write_forbidden",
    "not enough rights",
    "have no rights",
    "need administrator rights",
    "peer_id_invalid",
    "bot was blocked",
)
KNOWN_COMMANDS = frozenset([spec.name for spec in ALL_COMMANDS] + list(ALIASES))
_ADAPTER = "tp_adapter"
_WEBHOOK = "tp_webhook"


def parse_command(text: str, bot_username: str | None) -> tuple[str, str] | None:
    """(name, args) of ``/name@bot args``; None when it is not a command for this bot."""
    match = _COMMAND.match(text.strip())
    if match is None:
        return None
    mention = match.group("bot")
    if mention and (bot_username is None or mention.casefold() != bot_username.casefold()):
        return None
    return match.group("name").casefold(), (match.group("args") or "").strip()


def to_markup(keyboard: Keyboard) -> InlineKeyboardMarkup | None:
    """A PTB inline keyboard from rendered keys (None when there are none)."""
    rows = [
        [
            InlineKeyboardButton(key.text, url=key.url)
            if key.url
            else InlineKeyboardButton(key.text, callback_data=key.callback_data)
            for key in row
        ]
        for row in keyboard
        if row
    ]
    return InlineKeyboardMarkup(rows) if rows else None


def from_markup(markup: InlineKeyboardMarkup | None) -> Keyboard:
    """Rendered keys back from a message's inline keyboard."""
    if markup is None:
        return ()
    return tuple(
        tuple(
            Key(
                button.text,
                callback_data=button.callback_data
                if isinstance(button.callback_data, str)
                else None,
                url=button.url,
            )
            for button in row
        )
        for row in markup.inline_keyboard
    )


def chat_kind(chat: Chat) -> ChatKind:
    """Private chats are users, channels are channels, everything else is a group."""
    if chat.type == Chat.PRIVATE:
        return ChatKind.USER
    if chat.type == Chat.CHANNEL:
        return ChatKind.CHANNEL
    return ChatKind.GROUP


class ChatOrderedProcessor(BaseUpdateProcessor):
    """Process updates concurrently, but one at a time per chat so each chat keeps its order.

    Without this, PTB either runs every update strictly one after another (slow under load)
    or runs them all concurrently (a user's "/interests add x" could overtake their "/start").
    """

    def __init__(self, max_concurrent_updates: int = 64) -> None:
        super().__init__(max_concurrent_updates)
        self._locks: dict[int, asyncio.Lock] = {}
        self._users: dict[int, int] = {}

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        """Await ``coroutine`` under the lock of the update's chat (or user, for inline queries)."""
        key = _order_key(update)
        if key is None:
            await coroutine
            return
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._users[key] = self._users.get(key, 0) + 1
        try:
            async with lock:
                await coroutine
        finally:
            self._users[key] -= 1
            if not self._users[key]:
                del self._users[key]
                del self._locks[key]

    async def initialize(self) -> None:
        """Nothing to set up."""

    async def shutdown(self) -> None:
        """Nothing to release."""


def _order_key(update: object) -> int | None:
    if not isinstance(update, Update):
        return None
    if update.effective_chat is not None:
        return update.effective_chat.id
    if update.effective_user is not None:
        return update.effective_user.id
    return None


class TelegramAdapter:
    """The PTB callbacks: build ``Command``s, call the router, render and send the ``Reply``."""

    def __init__(
        self,
        handle: HandleFn,
        *,
        admin_cache_seconds: float = ADMIN_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.handle = handle
        self._admin_ttl = admin_cache_seconds
        self._clock = clock
        self._sleep = sleep
        self._admins: OrderedDict[tuple[int, int], tuple[bool, float]] = OrderedDict()

    # ----------------------------------------------------------------- commands in

    async def on_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Any ``/command`` in a private chat, group or channel."""
        message = update.effective_message
        chat = update.effective_chat
        if message is None or chat is None or not message.text:
            return
        parsed = parse_command(message.text, context.bot.username)
        if parsed is None:
            return  # addressed to another bot
        name, args = parsed
        if (
            chat.type != Chat.PRIVATE
            and name not in KNOWN_COMMANDS
            and "@" not in (message.text.split(maxsplit=1)[0])
        ):
            return  # an unknown bare /command in a group is probably another bot's
        command = await self._command(context.bot, chat, update.effective_user, message, name, args)
        reply = await self.handle(command)
        await self._send(context.bot, chat.id, reply, thread_id=_thread(message))

    async def on_text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Plain text in a private chat: the router explains that it answers commands."""
        message = update.effective_message
        chat = update.effective_chat
        if message is None or chat is None or not message.text:
            return
        command = await self._command(
            context.bot, chat, update.effective_user, message, "", message.text
        )
        reply = await self.handle(command)
        await self._send(context.bot, chat.id, reply)

    async def _command(
        self,
        bot: Bot,
        chat: Chat,
        user: User | None,
        message: Message | None,
        name: str,
        args: str,
        *,
        action: Action | None = None,
        target: str | None = None,
    ) -> Command:
        kind = chat_kind(chat)
        if kind != ChatKind.GROUP:
            # A private chat belongs to its user; only a channel's admins can post in it.
            admin = True
        elif message is not None and message.sender_chat and message.sender_chat.id == chat.id:
            admin = True  # an anonymous group admin posts as the group itself
        elif user is None:
            admin = False
        else:
            admin = await self._is_admin(bot, chat.id, user.id)
        return Command(
            platform=Platform.TELEGRAM,
            chat_id=str(chat.id),
            user_id=str(user.id if user is not None else chat.id),
            name=name,
            args=args,
            chat_kind=kind,
            user_is_admin=admin,
            user_display_name=(user.full_name if user is not None else chat.title),
            action=action,
            target=target,
        )

    async def _is_admin(self, bot: Bot, chat_id: int, user_id: int) -> bool:
        key = (chat_id, user_id)
        now = self._clock()
        cached = self._admins.get(key)
        if cached is not None and cached[1] > now:
            return cached[0]
        try:
            member = await bot.get_chat_member(chat_id, user_id)
            admin = member.status in ("administrator", "creator")
        except TelegramError as exc:
            log.warning(
                "getChatMember failed; treating the user as a member",
                extra={"chat_id": chat_id, "user_id": user_id, "error": str(exc)},
            )
            return False
        self._admins[key] = (admin, now + self._admin_ttl)
        self._admins.move_to_end(key)
        while len(self._admins) > 10_000:
            self._admins.popitem(last=False)
        return admin

    # ----------------------------------------------------------------- buttons and inline

    async def on_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A press on one of our inline buttons."""
        query = update.callback_query
        if query is None:
            return
        message = query.message if isinstance(query.message, Message) else None
        chat = update.effective_chat
        if chat is None:
            await query.answer()
            return
        action, target = decode_callback(query.data)
        command = await self._command(
            context.bot, chat, query.from_user, None, "button", "", action=action, target=target
        )
        reply = await self.handle(command)
        await query.answer(reply.notice[:200] if reply.notice else None)
        if is_button_update(reply):
            if message is not None:
                keyboard = relabel(from_markup(message.reply_markup), reply.buttons)
                if keyboard is not None:
                    await _ignore_not_modified(
                        message.edit_reply_markup(reply_markup=to_markup(keyboard))
                    )
            return
        if reply.edit and reply.blocks and message is not None:
            rendered = render(reply)
            if rendered:
                first = rendered[0]
                await _ignore_not_modified(
                    message.edit_text(
                        first.text,
                        parse_mode=ParseMode.HTML,
                        reply_markup=to_markup(first.keyboard),
                        link_preview_options=LinkPreviewOptions(is_disabled=reply.disable_preview),
                    )
                )
                await self._send_rendered(context.bot, chat.id, rendered[1:], reply)
            return
        if reply.blocks:
            await self._send(context.bot, chat.id, reply, thread_id=_thread(message))

    async def on_inline_query(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """``@bot query`` anywhere: search results as articles the user can share."""
        query = update.inline_query
        if query is None:
            return
        text = query.query.strip()
        if not text:
            await query.answer([], cache_time=INLINE_RESULTS_CACHE_SECONDS)
            return
        user = query.from_user
        command = Command(
            platform=Platform.TELEGRAM,
            chat_id=str(user.id),
            # Inline queries fire as the user types: give them their own rate-limit bucket.
            user_id=f"inline:{user.id}",
            name="search",
            args=text,
            chat_kind=ChatKind.USER,
            user_is_admin=True,
            user_display_name=user.full_name,
        )
        reply = await self.handle(command)
        results = [
            InlineQueryResultArticle(
                id=block.item.arxiv_id[:64] or str(index),
                title=" ".join(block.item.title.split())[:200] or block.item.arxiv_id,
                description=" · ".join(
                    part for part in (block.item.short_authors, block.item.primary_category) if part
                )[:200],
                input_message_content=InputTextMessageContent(
                    paper_html(block, numbered=False), parse_mode=ParseMode.HTML
                ),
            )
            for index, block in enumerate(reply.blocks)
            if isinstance(block, PaperBlock)
        ]
        unique = list({result.id: result for result in results}.values())
        await query.answer(unique, cache_time=INLINE_RESULTS_CACHE_SECONDS, is_personal=False)

    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Log a failed update with its chat; the application keeps running."""
        chat_id = None
        update_id = None
        if isinstance(update, Update):
            update_id = update.update_id
            chat_id = update.effective_chat.id if update.effective_chat else None
        error = context.error
        log.error(
            "telegram update failed",
            exc_info=(type(error), error, error.__traceback__) if error else None,
            extra={"update_id": update_id, "chat_id": chat_id},
        )

    # ----------------------------------------------------------------- replies out

    async def _send(
        self, bot: Bot, chat_id: int, reply: Reply, *, thread_id: int | None = None
    ) -> None:
        await self._send_rendered(bot, chat_id, render(reply), reply, thread_id=thread_id)

    async def _send_rendered(
        self,
        bot: Bot,
        chat_id: int,
        messages: list[Rendered],
        reply: Reply,
        *,
        thread_id: int | None = None,
    ) -> None:
        for rendered in messages:
            for attempt in range(2):
                try:
                    await bot.send_message(
                        chat_id=chat_id,
                        text=rendered.text,
                        parse_mode=ParseMode.HTML,
                        reply_markup=to_markup(rendered.keyboard),
                        link_preview_options=LinkPreviewOptions(is_disabled=reply.disable_preview),
                        message_thread_id=thread_id,
                    )
                    break
                except RetryAfter as exc:
                    wait = _seconds(exc.retry_after)
                    if attempt or wait > INTERACTIVE_RETRY_LIMIT:
                        raise
                    await self._sleep(wait)


def _thread(message: Message | None) -> int | None:
    if message is not None and message.is_topic_message:
        return message.message_thread_id
    return None


def _seconds(value: timedelta | float | int) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


async def _ignore_not_modified(call: Awaitable[Any]) -> None:
    try:
        await call
    except BadRequest as exc:
        if "not modified" not in str(exc).lower():
            raise


# --------------------------------------------------------------------------- application


def file_url_for(base_url: str) -> str:
    """The file download base that goes with a Bot API base URL (``…/bot`` → ``…/file/bot``)."""
    if base_url.rstrip("/").endswith("/bot"):
        return base_url.rstrip("/")[: -len("/bot")] + "/file/bot"
    return base_url.rstrip("/") + "/file/bot"


def bot_commands() -> list[BotCommand]:
    """The command menu shown in Telegram clients."""
    return [BotCommand(name, summary) for name, summary in menu_commands()]


async def set_commands(application: Application) -> bool:
    """Fill the command menu; a failure is logged, never fatal (returns False then)."""
    try:
        await application.bot.set_my_commands(bot_commands())
    except TelegramError as exc:
        log.warning(
            "setMyCommands failed; the command menu stays as it was", extra={"error": str(exc)}
        )
        return False
    return True


async def _post_init(application: Application) -> None:
    await set_commands(application)


class Router(Protocol):
    """What the adapter needs from ``bot.commands.CommandRouter``."""

    async def handle(self, command: Command) -> Reply:
        """Answer one command or button press; never raises."""


def build_application(
    settings: Settings,
    router: Router,
    *,
    base_url: str | None = None,
    base_file_url: str | None = None,
    concurrency: int = 64,
) -> Application:
    """The PTB application wired to ``router.handle`` (a ``CommandRouter``)."""
    if settings.telegram_token is None:
        raise ValueError(
            "TP_TELEGRAM_TOKEN is not set: create a bot with @BotFather and put its token there"
        )
    base = base_url or settings.telegram_api_base_url
    application = (
        ApplicationBuilder()
        .token(settings.telegram_token.get_secret_value())
        .base_url(base)
        .base_file_url(base_file_url or file_url_for(base))
        .concurrent_updates(ChatOrderedProcessor(concurrency))
        # One connection per update in flight, plus room for answers to button presses;
        # a burst beyond that waits for a free connection instead of failing after 1 s.
        .request(AiohttpRequest(concurrency + 8, pool_timeout=POOL_TIMEOUT_SECONDS))
        # Long polling holds one connection of its own.
        .get_updates_request(AiohttpRequest(1))
        .job_queue(None)
        .post_init(_post_init)
        .build()
    )
    adapter = TelegramAdapter(router.handle)
    application.bot_data[_ADAPTER] = adapter
    secret = settings.telegram_webhook_secret
    application.bot_data[_WEBHOOK] = (
        settings.telegram_webhook_url,
        secret.get_secret_value() if secret is not None else None,
    )
    updates = filters.UpdateType.MESSAGE | filters.UpdateType.CHANNEL_POST
    application.add_handler(
        CommandHandler(sorted(KNOWN_COMMANDS), adapter.on_command, filters=updates)
    )
    # Unknown commands, and commands in channel posts (which may come without entities).
    application.add_handler(MessageHandler(updates & filters.Regex(r"^\s*/"), adapter.on_command))
    application.add_handler(
        MessageHandler(
            filters.UpdateType.MESSAGE & filters.ChatType.PRIVATE & filters.TEXT,
            adapter.on_text,
        )
    )
    application.add_handler(CallbackQueryHandler(adapter.on_button))
    application.add_handler(InlineQueryHandler(adapter.on_inline_query))
    application.add_error_handler(adapter.on_error)
    return application


async def start_telegram(application: Application) -> None:
    """Initialise, fill the command menu, then poll (default) or register the webhook."""
    url, secret = application.bot_data.get(_WEBHOOK, (None, None))
    await application.initialize()
    # ``post_init`` only runs under run_polling(); we run inside our own event loop.
    await set_commands(application)
    if url:
        if not secret:
            raise ValueError("webhook mode needs TP_TELEGRAM_WEBHOOK_SECRET as well")
        await application.bot.set_webhook(url, secret_token=secret, allowed_updates=ALLOWED_UPDATES)
        await application.start()
        log.info("telegram webhook registered", extra={"url": url})
        return
    assert application.updater is not None
    await application.updater.start_polling(
        poll_interval=0.0, timeout=timedelta(seconds=30), allowed_updates=ALLOWED_UPDATES
    )
    await application.start()
    log.info("telegram polling started", extra={"bot": application.bot.username})


async def stop_telegram(application: Application) -> None:
    """Stop polling, finish the updates in hand, and close the HTTP connections."""
    if application.updater is not None and application.updater.running:
        await application.updater.stop()
    if application.running:
        await application.stop()
    await application.shutdown()


def webhook_path(settings: Settings) -> str:
    """The local path of the webhook route: the path of ``TP_TELEGRAM_WEBHOOK_URL``."""
    from urllib.parse import urlsplit

    path = urlsplit(settings.telegram_webhook_url or "").path
    return path if path and path != "/" else "/telegram/webhook"


def telegram_webhook_route(
    application: Application, secret: str, *, path: str = "/telegram/webhook"
) -> Route:
    """A Starlette route that checks Telegram's secret token and queues the update."""
    expected = secret.encode()

    async def endpoint(request: Request) -> Response:
        """Check the secret, parse the update, queue it; answer before it is processed."""
        supplied = request.headers.get("x-telegram-bot-api-secret-token", "").encode()
        if not expected or not hmac.compare_digest(supplied, expected):
            return PlainTextResponse("unauthorized", status_code=401)
        declared = request.headers.get("content-length", "0")
        if declared.isdigit() and int(declared) > MAX_WEBHOOK_BODY:
            return PlainTextResponse("too large", status_code=413)
        body = await request.body()
        if len(body) > MAX_WEBHOOK_BODY:
            return PlainTextResponse("too large", status_code=413)
        try:
            data = json.loads(body)
            update = Update.de_json(data, application.bot) if isinstance(data, dict) else None
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            log.warning("unreadable webhook body", extra={"error": str(exc)})
            update = None
        if update is None:
            return PlainTextResponse("bad update", status_code=400)
        await application.update_queue.put(update)
        return Response(status_code=200)

    return Route(path, endpoint, methods=["POST"])


# --------------------------------------------------------------------------- delivery


class TelegramSender:
    """``ChatSender`` for Telegram: renders an outbox payload and sends it, split if long."""

    platform = Platform.TELEGRAM

    def __init__(self, bot: Bot, *, remember: int = 10_000) -> None:
        self.bot = bot
        self._remember = remember
        self._progress: OrderedDict[str, tuple[int, str]] = OrderedDict()

    async def send(
        self, subscriber: Subscriber, payload: dict[str, Any], *, key: str, pace: Pace = unpaced
    ) -> str:
        """Send every part of the digest, each in its own ``pace()`` slot; returns the first id.

        When a later part fails, a retry with the same ``key`` resumes after the parts that
        already went out, so nobody gets the first half twice.
        """
        messages = render(reply_for_payload(payload))
        if not messages:
            raise TransientDeliveryError(f"outbox payload {key} renders to nothing")
        done, first_id = self._progress.get(key, (0, ""))
        chat_id: int | str = (
            int(subscriber.chat_id)
            if subscriber.chat_id.lstrip("-").isdigit()
            else subscriber.chat_id
        )
        for index in range(done, len(messages)):
            rendered = messages[index]
            markup = to_markup(rendered.keyboard)
            try:
                async with pace():
                    sent = await self.bot.send_message(
                        chat_id=chat_id,
                        text=rendered.text,
                        parse_mode=ParseMode.HTML,
                        reply_markup=markup,
                        link_preview_options=LinkPreviewOptions(is_disabled=True),
                    )
            except TelegramError as exc:
                raise delivery_error(exc, subscriber) from exc
            first_id = first_id or str(sent.message_id)
            self._progress[key] = (index + 1, first_id)
            self._progress.move_to_end(key)
            while len(self._progress) > self._remember:
                self._progress.popitem(last=False)
        self._progress.pop(key, None)
        return first_id


def delivery_error(exc: TelegramError, subscriber: Subscriber | None = None) -> DeliveryError:
    """Translate a Bot API error into what the delivery worker should do about it."""
    message = str(exc)
    context = {"subscriber_id": subscriber.id if subscriber else None, "error": message}
    if isinstance(exc, Forbidden):
        log.info("chat unreachable: deactivating", extra=context)
        return PermanentDeliveryError(message)
    if isinstance(exc, RetryAfter):
        return RetryLater(_seconds(exc.retry_after), message)
    if isinstance(exc, ChatMigrated):
        log.warning("group became a supergroup", extra={**context, "new_chat_id": exc.new_chat_id})
        return PermanentDeliveryError(
            f"group moved to supergroup {exc.new_chat_id}; /start the bot there again"
        )
    if isinstance(exc, BadRequest):
        if any(marker in message.lower() for marker in _PERMANENT_BAD_REQUESTS):
            log.info("chat gone: deactivating", extra=context)
            return PermanentDeliveryError(message)
        log.error("Telegram refused a message", extra=context)
        return TransientDeliveryError(message)
    if isinstance(exc, InvalidToken):
        # The token is wrong for every chat: never deactivate subscribers because of it.
        log.error(
            "Telegram rejected the bot token", extra={"subscriber_id": context["subscriber_id"]}
        )
        return TransientDeliveryError("bot token rejected by Telegram")
    if isinstance(exc, (TimedOut, NetworkError)):
        return TransientDeliveryError(message)
    return TransientDeliveryError(message)
