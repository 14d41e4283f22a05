"""Every command the bot understands: argument parsing, validation and all user-facing wording.

Chat adapters (Telegram, Slack, the console) turn their updates into ``Command``s, call
``CommandRouter.handle`` and render the ``Reply``; nothing here knows a platform. ``handle``
answers every input with a ``Reply`` and never raises: bad arguments get one line saying what
was expected, and an unexpected error is logged with its context while the user reads
``SORRY``.

Conventions adapters rely on:

- A button press arrives as ``Command(name="button", action=…, target=…)``.
- A reply for which ``is_button_update`` is true (``edit=True``, no blocks, some buttons)
  means: in the message whose button was pressed, relabel the buttons with the same action
  and target as these, and leave everything else as it is. That is how 👍 becomes "👍✓".
- Any other ``edit=True`` reply replaces the pressed message (search paging, /stop).
- ``notice`` is a short toast for the presser (≤ 200 characters).
- An empty ``Reply()`` (no blocks, no notice) means "send nothing": the per-user limit answers
  the first refused command of a burst and drops the rest silently.
"""

from __future__ import annotations

import asyncio
import difflib
import hashlib
import importlib
import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, tzinfo
from typing import Any, Protocol, TypeVar
from zoneinfo import ZoneInfo

from bot import categories as taxonomy
from bot import timezones
from bot.admin import ANNOUNCEMENT_KIND, MAX_ANNOUNCEMENT_LENGTH, AdminIds, announce, stats_lines
from bot.config import Settings
from bot.digest import (
    DigestItem,
    DigestOutcome,
    FreshPapers,
    build_and_record,
    fresh_papers,
    items_from_payload,
)
from bot.messages import Action, Block, Button, Command, PaperBlock, Reply, TextBlock
from bot.text import fold, same_person
from bot.throttle import Throttle
from bot.trend_cache import TrendCache, TrendProvider
from bot.warm import NotWarm, warm_only
from feeds.ids import find_ids, split_version
from storage import deliveries, feedback, outbox, papers, subscribers
from storage.db import Database
from storage.models import ChatKind, InterestKind, Subscriber

log = logging.getLogger(__name__)

SORRY = "Something went wrong on our side; please try again."
NOT_SUBSCRIBED = "This chat isn't subscribed yet. Send /start first."
NOT_ALLOWED = "Sorry, that's not allowed: /{name} is only for this bot's admins."
ADMINS_ONLY = (
    "Only this group's admins can change its settings. Anyone can use /search, /trending and /help."
)
BUTTON_GONE = "That button no longer works."

MAX_ARGS = 4096
"""Longer argument text is cut before parsing (Telegram's own message limit)."""
MAX_TERM_LENGTH = 100
MAX_INTERESTS = 50
"""Per kind (keywords, authors, categories, muted): enough for anyone, bounded for the DB."""
MIN_SIZE, MAX_SIZE = 1, 30
SEARCH_PER_PAGE = 5
MAX_QUERY_LENGTH = 300
SAVED_SHOWN = 20
TRENDING_SHOWN = 10
LIKE_CHOICES = 3
QUERY_CACHE_SIZE = 2048

TREND_LEVELS: tuple[tuple[float, str], ...] = (
    (0.0, "personal only: what people talk about is ignored"),
    (0.5, "mostly personal"),
    (1.0, "balanced between your interests and what is trending"),
    (2.0, "mostly trending: the papers everybody talks about rank higher"),
)
"""``/settings trend 0..3``: the ``trend_weight`` each level stores, and how it reads."""

DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass(frozen=True)
class CommandSpec:
    """One command: its usage, a one-line summary (menus) and an example (help)."""

    name: str
    usage: str
    summary: str
    example: str


COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec("start", "/start", "Subscribe this chat to a daily paper digest", "/start"),
    CommandSpec("help", "/help", "Every command with an example", "/help"),
    CommandSpec(
        "interests",
        "/interests [add|remove <keywords>]",
        "Show or change your interests",
        "/interests add diffusion models, protein design",
    ),
    CommandSpec("follow", "/follow <author>", "Follow an author", "/follow Yoshua Bengio"),
    CommandSpec("unfollow", "/unfollow <author>", "Stop following an author", "/unfollow Bengio"),
    CommandSpec(
        "categories",
        "/categories [codes…|filter|boost|clear]",
        "Pick arXiv categories",
        "/categories cs.LG cs.CL",
    ),
    CommandSpec("mute", "/mute <term>", "Never show papers with a term", "/mute blockchain"),
    CommandSpec(
        "unmute", "/unmute <term>", "Show papers with a muted term again", "/unmute blockchain"
    ),
    CommandSpec("digest", "/digest", "Your digest, right now", "/digest"),
    CommandSpec("time", "/time <HH:MM>", "When your daily digest arrives", "/time 08:30"),
    CommandSpec(
        "timezone", "/timezone <zone|city|offset>", "Your time zone", "/timezone Europe/Berlin"
    ),
    CommandSpec("size", "/size <1-30>", "Papers per digest", "/size 10"),
    CommandSpec("pause", "/pause", "Pause the daily digest", "/pause"),
    CommandSpec("resume", "/resume", "Resume the daily digest", "/resume"),
    CommandSpec(
        "settings",
        "/settings [trend more|less|0-3] [days …]",
        "All settings at a glance",
        "/settings trend more",
    ),
    CommandSpec(
        "search", "/search <query>", "Search the paper archive", "/search graph transformers"
    ),
    CommandSpec(
        "trending", "/trending [category]", "What the community is reading now", "/trending cs.LG"
    ),
    CommandSpec("saved", "/saved", "Papers you saved with 🔖", "/saved"),
    CommandSpec(
        "like", "/like <arXiv id or title>", "Seed your profile with a paper", "/like 1706.03762"
    ),
    CommandSpec("export", "/export", "Download everything stored about this chat", "/export"),
    CommandSpec("stop", "/stop", "Unsubscribe and delete this chat's data", "/stop"),
)
ADMIN_COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec(
        "stats", "/stats", "Subscribers, digests sent today, source health (bot admins)", "/stats"
    ),
    CommandSpec(
        "announce",
        "/announce <text>",
        "Send a message to every subscriber (bot admins)",
        "/announce The bot moves to a new server tonight; expect a short pause.",
    ),
)
"""Commands for the bot's admins (``TP_ADMIN_IDS``); kept out of the public command menus."""
ALL_COMMANDS = COMMANDS + ADMIN_COMMANDS
SPECS = {spec.name: spec for spec in ALL_COMMANDS}
ALIASES = {
    "subscribe": "start",
    "unsubscribe": "stop",
    "interest": "interests",
    "profile": "interests",
    "category": "categories",
    "cats": "categories",
    "tz": "timezone",
    "trend": "trending",
    "bookmarks": "saved",
    "commands": "help",
}


def menu_commands() -> list[tuple[str, str]]:
    """(name, summary) of every command, for a platform's command menu."""
    return [(spec.name, spec.summary) for spec in COMMANDS]


# --------------------------------------------------------------------------- dependencies


SearchFn = Callable[..., Any]
"""``storage.search.search(db, query, *, page, per_page, now) -> SearchPage``.

A page has ``hits`` (each with ``arxiv_id``, ``title``, ``authors``, ``primary_category``,
``published``, ``snippet`` as (text, highlighted) segments), ``total``, ``page``, ``pages`` and
``message`` (a one-line explanation when the query was odd or found nothing).
"""
TrendingFn = Callable[..., Sequence[Any]]
"""``bot.trend.trending(db, now, *, category, limit) -> list[TrendingPaper]``.

Each paper has ``arxiv_id``, ``title``, ``authors``, ``primary_category`` and ``line`` (the
engagement summary shown under it).
"""
DigestBuilder = Callable[[Database, Subscriber, datetime], DigestOutcome]
"""Builds and records one subscriber's digest now, exactly as the scheduler would."""


class ServiceDigest:
    """``/digest``'s builder: the scheduler's candidates, trend input and never-repeat rule.

    The trend scores are shared by the digests of a few minutes (``bot.trend_cache``).
    """

    def __init__(self, settings: Settings, trend: TrendProvider | None = None) -> None:
        self.settings = settings
        self.shared = TrendCache(trend) if trend is not None else None

    def __call__(self, db: Database, subscriber: Subscriber, now: datetime) -> DigestOutcome:
        """Rank and record ``subscriber``'s digest at ``now``."""
        settings = self.settings
        fresh = fresh_papers(db, now, settings.freshness_days)
        scores, lines = self._trend(db, fresh, now, subscriber_id=subscriber.id)
        return build_and_record(
            db,
            [subscriber],
            now,
            freshness_days=settings.freshness_days,
            title_weight=settings.title_weight,
            trend=scores,
            trend_lines=lines,
            fresh=fresh,
        )[0]

    def warm_up(self, db: Database, now: datetime) -> None:
        """Load what a digest at ``now`` reads, so the first ``/digest`` needs no load."""
        fresh = fresh_papers(db, now, self.settings.freshness_days)
        fresh.index(self.settings.title_weight)
        self._trend(db, fresh, now)

    def _trend(
        self, db: Database, fresh: FreshPapers, now: datetime, *, subscriber_id: int | None = None
    ) -> tuple[Mapping[str, float], Mapping[str, str]]:
        if self.shared is None:
            return {}, {}
        try:
            return self.shared(db, [p.arxiv_id for p in fresh.papers], now)
        except NotWarm:
            raise  # not a failure: the caller builds the digest again in a worker thread
        except Exception:
            log.exception(
                "trend scores unavailable; ranking by relevance alone",
                extra={"subscriber_id": subscriber_id},
            )
            return {}, {}


def digest_builder(settings: Settings, trend: TrendProvider | None = None) -> ServiceDigest:
    """``/digest``'s builder as the service runs it (see :class:`ServiceDigest`)."""
    return ServiceDigest(settings, trend)


def _lazy(module: str, name: str) -> Callable[..., Any]:
    """A function imported on first call, so the router works before that module lands."""

    def call(*args: Any, **kwargs: Any) -> Any:
        """Import ``module`` (once, then cached by Python) and call ``name``."""
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    return call


_T = TypeVar("_T")


class HeavyRunner(Protocol):
    """Runs a blocking function for a command and returns its result (``asyncio.to_thread``)."""

    def __call__(self, function: Callable[..., _T], /, *args: Any, **kwargs: Any) -> Awaitable[_T]:
        """Run ``function(*args, **kwargs)``."""


async def run_inline(function: Callable[..., _T], /, *args: Any, **kwargs: Any) -> _T:
    """Call ``function`` right here on the event loop (the coroutine twin of ``to_thread``)."""
    return function(*args, **kwargs)


def heavy_work_runner(db: Database) -> HeavyRunner:
    """How /search and a warm /digest (see ``bot.warm``) run their work.

    On SQLite the work is all in this process (SQLite's own C code plus ranking in Python) and
    takes milliseconds (a search over a million papers: 49 ms at p95), so a worker thread only
    adds contention for the GIL with the event loop: measured on ``bench/telegram_commands.py``,
    3.3 ms of CPU per command with threads, 1.9 ms without. On PostgreSQL most of the time is
    spent waiting for the server (that search: 410 ms at p95), and a thread keeps the other
    chats' commands moving.
    """
    return run_inline if db.dialect == "sqlite" else asyncio.to_thread


def _utcnow() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------- rendering helpers


def feedback_buttons(
    arxiv_id: str, *, rating: int = 0, saved: bool = False, dislike: bool = True
) -> tuple[Button, ...]:
    """👍 / 👎 / 🔖 for one paper, with a ✓ on the choices already made."""
    buttons = [Button("👍✓" if rating > 0 else "👍", Action.LIKE, arxiv_id)]
    if dislike:
        buttons.append(Button("👎✓" if rating < 0 else "👎", Action.DISLIKE, arxiv_id))
    buttons.append(Button("🔖✓" if saved else "🔖", Action.SAVE, arxiv_id))
    return tuple(buttons)


def digest_reply(items: Sequence[DigestItem], *, heading: str) -> Reply:
    """A digest as a reply: heading, numbered paper cards with feedback buttons, a hint."""
    blocks: list[Block] = [TextBlock(f"{heading} · {len(items)} new", bold=True)]
    blocks += [
        PaperBlock(item, buttons=feedback_buttons(item.arxiv_id), number=number)
        for number, item in enumerate(items, start=1)
    ]
    blocks.append(TextBlock("👍 / 👎 tune tomorrow's digest · 🔖 keeps a paper in /saved"))
    return Reply(blocks=tuple(blocks), disable_preview=True)


def reply_for_payload(data: dict[str, Any]) -> Reply:
    """The reply that renders an outbox payload (what delivery workers send)."""
    if data.get("kind") == ANNOUNCEMENT_KIND:
        return announcement_reply(str(data.get("text") or ""))
    heading = str(data.get("heading") or "Your papers")
    return digest_reply(items_from_payload(data), heading=heading)


def announcement_reply(text: str) -> Reply:
    """An admin's announcement as every subscriber sees it, with how to turn them off."""
    return Reply(
        blocks=(
            TextBlock("📣 Announcement", bold=True),
            TextBlock(text),
            TextBlock("Don't want these? /settings announcements off"),
        ),
        disable_preview=True,
    )


def is_button_update(reply: Reply) -> bool:
    """True when the reply only relabels buttons of the pressed message (see module doc)."""
    return reply.edit and not reply.blocks and bool(reply.buttons)


def _quote(text: str, limit: int = 60) -> str:
    clean = " ".join(text.split())
    return f"“{clean[: limit - 1]}…”" if len(clean) > limit else f"“{clean}”"


def _plural(count: int, word: str, plural: str | None = None) -> str:
    return f"{count} {word if count == 1 else (plural or word + 's')}"


# --------------------------------------------------------------------------- argument parsing

_QUOTES = str.maketrans({"“": '"', "”": '"', "„": '"', "«": '"', "»": '"', "'": "'"})
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u206f]")


def clean_text(text: str) -> str:
    """Drop control and invisible formatting characters and collapse whitespace."""
    return " ".join(_CONTROL.sub(" ", text).split())


def parse_terms(text: str) -> list[str]:
    """Keywords from user text: comma-separated, or quoted phrases plus the other words.

    ``diffusion models, protein design`` → two phrases; ``"graph neural networks" ssl`` →
    ``graph neural networks`` and ``ssl``; ``diffusion models`` → one phrase.
    """
    terms: list[str] = []
    for part in text.translate(_QUOTES).split(","):
        quoted = re.findall(r'"([^"]*)"', part)
        rest = re.sub(r'"[^"]*"', " ", part).replace('"', " ")
        terms += [clean_text(q) for q in quoted]
        if quoted:
            terms += rest.split()
        else:
            terms.append(clean_text(rest))
    seen: set[str] = set()
    unique = []
    for term in terms:
        key = term.casefold()
        if term and key not in seen:
            seen.add(key)
            unique.append(term)
    return unique


def _bad_terms(terms: Sequence[str]) -> str | None:
    for term in terms:
        if len(term) > MAX_TERM_LENGTH:
            return (
                f"{_quote(term, 30)} is too long; keep each term under "
                f"{MAX_TERM_LENGTH} characters."
            )
        if not any(ch.isalnum() for ch in term):
            return f"{_quote(term, 30)} has no letters or digits in it."
    return None


_TIME = re.compile(
    r"^(?P<hour>\d{1,2})(?:(?:[:.h])(?P<minute>\d{2})|(?P<compact>\d{2}))?\s*(?P<half>[ap])?\.?m?\.?$"
)


def parse_time(text: str) -> tuple[int, int] | None:
    """``08:30``, ``8:30``, ``0830``, ``8.30``, ``20h30``, ``8am``, ``8:30 pm``, ``noon``."""
    raw = text.strip().casefold().replace(" ", "")
    if raw in ("noon", "midday"):
        return 12, 0
    if raw == "midnight":
        return 0, 0
    match = _TIME.match(raw)
    if match is None:
        return None
    hour = int(match.group("hour"))
    minute = int(match.group("minute") or match.group("compact") or 0)
    half = match.group("half")
    if half is not None:
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if half == "p" else 0)
    if hour > 23 or minute > 59:
        return None
    return hour, minute


_DAY_KEYS = {
    **{name.casefold(): i for i, name in enumerate(DAY_NAMES)},
    **{name.casefold()[:2]: i for i, name in enumerate(DAY_NAMES)},
    **{
        full: i
        for i, full in enumerate(
            ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
        )
    },
    "tues": 1,
    "thur": 3,
    "thurs": 3,
}


def parse_days(text: str) -> str | None:
    """Weekdays as a ``digest_days`` string (Monday = 0): ``weekdays``, ``mon-fri``, ``tue,thu``."""
    raw = text.strip().casefold()
    if raw in ("every day", "everyday", "daily", "all", "all days", "7"):
        return "0123456"
    if raw in ("weekdays", "workdays", "week days", "working days"):
        return "01234"
    if raw in ("weekends", "weekend"):
        return "56"
    chosen: set[int] = set()
    for part in re.split(r"[,\s]+", raw):
        if not part:
            continue
        start, dash, end = part.partition("-")
        if start not in _DAY_KEYS or (dash and end not in _DAY_KEYS):
            return None
        first = _DAY_KEYS[start]
        last = _DAY_KEYS[end] if dash else first
        day = first
        while True:
            chosen.add(day)
            if day == last:
                break
            day = (day + 1) % 7
    return "".join(str(day) for day in sorted(chosen)) or None


def describe_days(days: str) -> str:
    """``0123456`` → "every day", ``01234`` → "on weekdays", else the day names."""
    if days == "0123456":
        return "every day"
    if days == "01234":
        return "on weekdays"
    if days == "56":
        return "on weekends"
    return "on " + ", ".join(DAY_NAMES[int(d)] for d in days if d.isdigit() and int(d) < 7)


def trend_level(weight: float) -> int:
    """The ``/settings trend`` level (0..3) closest to a stored ``trend_weight``."""
    return min(range(len(TREND_LEVELS)), key=lambda i: abs(TREND_LEVELS[i][0] - weight))


# --------------------------------------------------------------------------- the router


class _QueryCache:
    """Search queries behind short ids, so paging buttons fit Telegram's 64-byte callback data."""

    def __init__(self, size: int = QUERY_CACHE_SIZE) -> None:
        self._size = size
        self._queries: OrderedDict[str, str] = OrderedDict()

    def put(self, query: str) -> str:
        """Remember ``query``; returns its short id (the same id for the same query)."""
        key = hashlib.blake2b(query.encode(), digest_size=6).hexdigest()
        self._queries[key] = query
        self._queries.move_to_end(key)
        while len(self._queries) > self._size:
            self._queries.popitem(last=False)
        return key

    def get(self, key: str) -> str | None:
        """The query behind ``key``, or None once it has been forgotten."""
        query = self._queries.get(key)
        if query is not None:
            self._queries.move_to_end(key)
        return query


Handler = Callable[[Command], Awaitable[Reply]]


class CommandRouter:
    """``handle(Command) -> Reply`` for every platform (this is ``bot.messages.CommandHandler``)."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = _utcnow,
        search: SearchFn | None = None,
        trending: TrendingFn | None = None,
        digest: DigestBuilder | None = None,
        throttle: Throttle | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock
        self._search = search or _lazy("storage.search", "search")
        self._trending = trending or _lazy("bot.trend", "trending")
        self._digest = digest or digest_builder(settings)
        self._heavy = heavy_work_runner(db)
        self.throttle = throttle if throttle is not None else Throttle(20, 60.0)
        self._queries = _QueryCache()
        self.admins = AdminIds(settings.admin_ids)
        self._handlers: dict[str, Handler] = {
            "start": self._start,
            "help": self._help,
            "interests": self._interests,
            "follow": self._follow,
            "unfollow": self._unfollow,
            "categories": self._categories,
            "mute": self._mute,
            "unmute": self._unmute,
            "digest": self._digest_now,
            "time": self._time,
            "timezone": self._timezone,
            "size": self._size,
            "pause": self._pause,
            "resume": self._resume,
            "settings": self._settings,
            "stop": self._stop,
            "search": self._search_command,
            "trending": self._trending_command,
            "saved": self._saved,
            "like": self._like,
            "export": self._export,
            "stats": self._stats,
            "announce": self._announce,
        }

    # ----------------------------------------------------------------- entry point

    async def handle(self, command: Command) -> Reply:
        """Answer one command or button press; never raises."""
        started = time.perf_counter()
        try:
            verdict = self.throttle.check((str(command.platform), command.user_id))
            if not verdict.allowed:
                if not verdict.first_refusal:
                    return Reply()
                wait = max(1, round(verdict.retry_after))
                text = (
                    "You're sending commands faster than I can answer them. "
                    f"Please wait {_plural(wait, 'second')} and try again."
                )
                return Reply.text(text, notice=text[:200])
            return await self._dispatch(command)
        except Exception:
            log.exception(
                "command failed",
                extra={
                    "platform": str(command.platform),
                    "chat_id": command.chat_id,
                    "user_id": command.user_id,
                    "command": command.name,
                    "action": str(command.action) if command.action else None,
                    "elapsed_ms": round((time.perf_counter() - started) * 1000, 1),
                },
            )
            if command.name == "button":
                return Reply(notice=SORRY)
            return Reply.text(SORRY)

    async def _dispatch(self, command: Command) -> Reply:
        if len(command.args) > MAX_ARGS:
            command = _with_args(command, command.args[:MAX_ARGS])
        name = command.name.strip().lstrip("/").casefold()
        if name == "button":
            return await self._button(command)
        if not name:
            return Reply.text(
                "I answer commands. Try /search diffusion models, or /help for everything I can do."
            )
        name = ALIASES.get(name, name)
        handler = self._handlers.get(name)
        if handler is None:
            shown = clean_text(name)[:32]
            close = difflib.get_close_matches(name, list(self._handlers), n=1, cutoff=0.7)
            hint = f" Did you mean /{close[0]}?" if close else ""
            return Reply.text(f"I don't know /{shown}.{hint} Send /help to see every command.")
        return await handler(command)

    # ----------------------------------------------------------------- shared checks

    def _subscriber(self, command: Command) -> Subscriber | None:
        return subscribers.find(self.db, command.platform, command.chat_id)

    @staticmethod
    def _may_change(command: Command) -> bool:
        return command.chat_kind == ChatKind.USER or command.user_is_admin

    def _editable(self, command: Command) -> Subscriber | Reply:
        """The subscriber, when this user may change it; otherwise the reply explaining why."""
        if not self._may_change(command):
            return Reply.text(ADMINS_ONLY)
        subscriber = self._subscriber(command)
        if subscriber is None:
            return Reply.text(NOT_SUBSCRIBED)
        return subscriber

    def _change(self, command: Command, **changes: Any) -> Reply | None:
        """Store ``changes`` on this chat's subscriber; the refusal reply when not allowed."""
        subscriber = self._editable(command)
        if isinstance(subscriber, Reply):
            return subscriber
        assert subscriber.id is not None
        subscribers.update(self.db, subscriber.id, **changes)
        return None

    def _now(self) -> datetime:
        return self.clock()

    def _where(self, subscriber: Subscriber) -> str:
        return f"{subscriber.digest_time} ({subscriber.timezone})"

    # ----------------------------------------------------------------- start, help, stop

    async def _start(self, command: Command) -> Reply:
        if not self._may_change(command):
            return Reply.text(ADMINS_ONLY)
        found = self._subscriber(command)
        here = {
            ChatKind.USER: "this chat",
            ChatKind.GROUP: "this group",
            ChatKind.CHANNEL: "this channel",
        }[command.chat_kind]
        next_step = (
            "Next step: tell me what you work on, e.g.\n"
            "/interests add diffusion models, protein design\n"
            "You can also /follow an author, pick /categories cs.LG cs.CL, or /like a paper "
            "you enjoyed (e.g. /like 1706.03762). /help lists everything."
        )
        if found is None:
            zone = command.user_timezone
            if not zone or not timezones.is_valid(zone):
                zone = self.settings.default_timezone
            if not timezones.is_valid(zone):
                zone = "UTC"
            at = parse_time(self.settings.default_digest_time) or (8, 0)
            created, _ = subscribers.create(
                self.db,
                command.platform,
                command.chat_id,
                kind=command.chat_kind,
                timezone=zone,
                digest_time=f"{at[0]:02d}:{at[1]:02d}",
                digest_size=min(MAX_SIZE, max(MIN_SIZE, self.settings.digest_size)),
                owner_user_id=command.user_id,
                workspace_id=command.workspace_id,
                display_name=(
                    (command.user_display_name or "")[:255] or None
                    if command.chat_kind == ChatKind.USER
                    else None
                ),
            )
            return Reply.text(
                "Welcome to Trending Papers! 📄 Every day at "
                f"{self._where(created)} I'll send {here} the new arXiv papers that match "
                "your interests and are getting attention.\n\n" + next_step
            )
        found_id = found.id
        assert found_id is not None
        if not found.active or found.paused:
            back = subscribers.update(self.db, found_id, active=True, paused=False)
            return Reply.text(
                f"Welcome back! Digests are on again: {_plural(back.digest_size, 'paper')} "
                f"{describe_days(back.digest_days)} at {self._where(back)}."
            )
        profile = subscribers.profile(self.db, found_id)
        tail = next_step if profile.is_empty else "/settings shows everything at a glance."
        return Reply.text(
            f"You're already subscribed: {_plural(found.digest_size, 'paper')} "
            f"{describe_days(found.digest_days)} at {self._where(found)}.\n{tail}"
        )

    async def _help(self, command: Command) -> Reply:
        wanted = command.args.strip().lstrip("/").casefold()
        wanted = ALIASES.get(wanted, wanted)
        if wanted in SPECS:
            spec = SPECS[wanted]
            return Reply.text(f"{spec.usage} — {spec.summary}. Example: {spec.example}")
        lines = [f"{spec.usage} — {spec.summary}. e.g. {spec.example}" for spec in COMMANDS]
        if self.admins.allows(command.platform, command.user_id):
            lines += [f"{spec.usage} — {spec.summary}." for spec in ADMIN_COMMANDS]
        footer = "Under every paper: 👍 more like this · 👎 fewer like this · 🔖 save."
        if command.chat_kind != ChatKind.USER:
            footer += " In groups only admins change settings; anyone can search."
        return Reply(
            blocks=(
                TextBlock("Trending Papers: the new arXiv papers that matter to you.", bold=True),
                TextBlock("\n".join(lines)),
                TextBlock(footer),
            )
        )

    async def _stop(self, command: Command) -> Reply:
        subscriber = self._editable(command)
        if isinstance(subscriber, Reply):
            return subscriber
        return Reply(
            blocks=(
                TextBlock(
                    "Unsubscribe this chat and delete its interests, ratings, saved papers and "
                    "history? This can't be undone."
                ),
            ),
            buttons=(
                Button("Yes, delete everything", Action.CONFIRM_STOP, str(subscriber.id)),
                Button("Cancel", Action.CANCEL, str(subscriber.id)),
            ),
        )

    # ----------------------------------------------------------------- interests

    async def _interests(self, command: Command) -> Reply:
        verb, _, rest = command.args.strip().partition(" ")
        verb = verb.casefold()
        if not verb:
            subscriber = self._subscriber(command)
            if subscriber is None:
                return Reply.text(NOT_SUBSCRIBED)
            return self._profile_reply(subscriber)
        if verb in ("add", "+"):
            return await self._change_terms(command, rest, InterestKind.KEYWORD, add=True)
        if verb in ("remove", "rm", "delete", "del", "-"):
            return await self._change_terms(command, rest, InterestKind.KEYWORD, add=False)
        return Reply.text(
            "Use /interests to see them, /interests add <keywords> or /interests remove <keywords>."
        )

    def _profile_reply(self, subscriber: Subscriber) -> Reply:
        assert subscriber.id is not None
        profile = subscribers.profile(self.db, subscriber.id)
        if profile.is_empty and not profile.muted:
            return Reply.text(
                "No interests yet. Add some: /interests add diffusion models, protein design — "
                "or /follow an author, or pick /categories cs.LG."
            )
        lines = []
        if profile.keywords:
            lines.append("Keywords: " + ", ".join(profile.keywords))
        if profile.authors:
            lines.append("Authors: " + ", ".join(profile.authors))
        if profile.categories:
            mode = "only these" if subscriber.categories_mode == "filter" else "preferred"
            lines.append(f"Categories ({mode}): " + ", ".join(profile.categories))
        if profile.muted:
            lines.append("Muted: " + ", ".join(profile.muted))
        return Reply(
            blocks=(
                TextBlock("Your interests", bold=True),
                TextBlock("\n".join(lines)),
                TextBlock(
                    "Change them with /interests add|remove, /follow, /unfollow, /categories, "
                    "/mute, /unmute."
                ),
            )
        )

    async def _change_terms(
        self, command: Command, text: str, kind: InterestKind, *, add: bool
    ) -> Reply:
        noun = {
            InterestKind.KEYWORD: ("/interests add", "/interests remove", "diffusion models"),
            InterestKind.MUTED: ("/mute", "/unmute", "blockchain"),
        }[kind]
        terms = parse_terms(text)
        if not terms:
            usage = noun[0] if add else noun[1]
            return Reply.text(f"Tell me which terms, e.g. {usage} {noun[2]}")
        subscriber = self._editable(command)
        if isinstance(subscriber, Reply):
            return subscriber
        assert subscriber.id is not None
        if add:
            problem = _bad_terms(terms)
            if problem:
                return Reply.text(problem)
            existing = getattr(subscribers.profile(self.db, subscriber.id), _FIELD[kind])
            if len(existing) + len(terms) > MAX_INTERESTS:
                return Reply.text(
                    f"That would make more than {MAX_INTERESTS}; remove some first ({noun[1]} …)."
                )
            added = subscribers.add_interests(self.db, subscriber.id, kind, terms)
            known = [t for t in terms if t.casefold() not in {a.casefold() for a in added}]
            if kind == InterestKind.MUTED:
                muted = ", ".join(_quote(t) for t in added)
                text = f"Muted {muted}: papers mentioning it won't show up." if added else ""
            else:
                text = f"Added {', '.join(_quote(t) for t in added)}." if added else ""
            if known:
                text += f" Already there: {', '.join(_quote(t) for t in known)}."
            return Reply.text(text.strip())
        removed = subscribers.remove_interests(self.db, subscriber.id, kind, terms)
        missing = [t for t in terms if t.casefold() not in {r.casefold() for r in removed}]
        text = f"Removed {', '.join(_quote(t) for t in removed)}." if removed else ""
        if missing:
            current = getattr(subscribers.profile(self.db, subscriber.id), _FIELD[kind])
            have = ", ".join(current) if current else "nothing"
            text += f" Not found: {', '.join(_quote(t) for t in missing)} (you have: {have})."
        return Reply.text(text.strip())

    async def _mute(self, command: Command) -> Reply:
        return await self._change_terms(command, command.args, InterestKind.MUTED, add=True)

    async def _unmute(self, command: Command) -> Reply:
        return await self._change_terms(command, command.args, InterestKind.MUTED, add=False)

    async def _follow(self, command: Command) -> Reply:
        names = parse_terms(command.args)
        if not names:
            return Reply.text("Tell me whom to follow, e.g. /follow Yoshua Bengio")
        for name in names:
            if len(name) > MAX_TERM_LENGTH or not any(ch.isalpha() for ch in name):
                return Reply.text(f"{_quote(name, 30)} doesn't look like a person's name.")
        subscriber = self._editable(command)
        if isinstance(subscriber, Reply):
            return subscriber
        assert subscriber.id is not None
        current = subscribers.profile(self.db, subscriber.id).authors
        fresh = [n for n in names if not any(same_person(n, have) for have in current)]
        if len(current) + len(fresh) > MAX_INTERESTS:
            return Reply.text(
                f"You can follow up to {MAX_INTERESTS} authors; /unfollow some first."
            )
        added = subscribers.add_interests(self.db, subscriber.id, InterestKind.AUTHOR, fresh)
        parts = []
        if added:
            parts.append(f"Following {', '.join(added)}: their new papers get a boost.")
        already = [n for n in names if n not in added]
        if already:
            parts.append(f"Already following {', '.join(already)}.")
        return Reply.text(" ".join(parts))

    async def _unfollow(self, command: Command) -> Reply:
        names = parse_terms(command.args)
        if not names:
            return Reply.text("Tell me whom to unfollow, e.g. /unfollow Yoshua Bengio")
        subscriber = self._editable(command)
        if isinstance(subscriber, Reply):
            return subscriber
        assert subscriber.id is not None
        current = subscribers.profile(self.db, subscriber.id).authors
        matching = [have for have in current if any(same_person(n, have) for n in names)]
        removed = subscribers.remove_interests(
            self.db, subscriber.id, InterestKind.AUTHOR, matching
        )
        if not removed:
            have = ", ".join(current) if current else "nobody yet"
            return Reply.text(f"You don't follow {', '.join(names)} (you follow: {have}).")
        return Reply.text(f"Stopped following {', '.join(removed)}.")

    async def _categories(self, command: Command) -> Reply:
        words = [w for w in re.split(r"[\s,;]+", command.args.strip()) if w]
        if not words:
            viewer = self._subscriber(command)
            if viewer is None or viewer.id is None:
                return Reply.text(NOT_SUBSCRIBED)
            chosen = subscribers.profile(self.db, viewer.id).categories
            if not chosen:
                return Reply.text(
                    "No categories chosen: papers from every category can show up. Pick some "
                    "with /categories cs.LG cs.CL"
                )
            return Reply.text(self._categories_text(chosen, viewer.categories_mode))
        mode: str | None = None
        clear = False
        codes: list[str] = []
        problems: list[str] = []
        for word in words[:40]:
            lowered = word.casefold()
            if lowered in ("filter", "only"):
                mode = "filter"
            elif lowered in ("boost", "prefer"):
                mode = "boost"
            elif lowered in ("clear", "none", "all", "any"):
                clear = True
            else:
                found = taxonomy.check(word)
                if found.code is not None:
                    if found.code not in codes:
                        codes.append(found.code)
                elif found.archive is not None:
                    problems.append(
                        f"{found.archive} is a whole archive; pick categories such as "
                        f"{', '.join(found.suggestions[:3])}."
                    )
                else:
                    shown = clean_text(word)[:40]
                    hint = (
                        f" (did you mean {', '.join(found.suggestions)}?)"
                        if found.suggestions
                        else ""
                    )
                    problems.append(f"{shown} is not an arXiv category{hint}.")
        if len(words) > 40:
            problems.append("That's more categories than I can take at once (40 at most).")
        if problems:
            return Reply.text(" ".join(problems) + " Nothing changed.")
        if clear and codes:
            return Reply.text("Use either /categories clear or a list of categories, not both.")
        subscriber = self._editable(command)
        if isinstance(subscriber, Reply):
            return subscriber
        assert subscriber.id is not None
        current = subscribers.profile(self.db, subscriber.id).categories
        if clear:
            subscribers.remove_interests(self.db, subscriber.id, InterestKind.CATEGORY, current)
            return Reply.text("Categories cleared: papers from every category can show up.")
        if codes:
            if len(codes) > MAX_INTERESTS:
                return Reply.text(f"Pick at most {MAX_INTERESTS} categories.")
            stale = [c for c in current if c not in codes]
            subscribers.remove_interests(self.db, subscriber.id, InterestKind.CATEGORY, stale)
            subscribers.add_interests(self.db, subscriber.id, InterestKind.CATEGORY, codes)
        if mode is not None and mode != subscriber.categories_mode:
            subscriber = subscribers.update(self.db, subscriber.id, categories_mode=mode)
        chosen = codes or current
        if not chosen:
            return Reply.text(
                f"Categories will be used as a {'filter' if mode == 'filter' else 'boost'} once "
                "you pick some, e.g. /categories cs.LG cs.CL"
            )
        return Reply.text(self._categories_text(chosen, subscriber.categories_mode))

    @staticmethod
    def _categories_text(codes: Sequence[str], mode: str) -> str:
        named = ", ".join(f"{c} ({taxonomy.name_of(c)})" for c in codes)
        if mode == "filter":
            return (
                f"Categories: {named}. Only papers in them are sent "
                "(/categories boost to just prefer them)."
            )
        return (
            f"Categories: {named}. Papers in them rank higher "
            "(/categories filter to see only these)."
        )

    # ----------------------------------------------------------------- schedule and settings

    async def _time(self, command: Command) -> Reply:
        if not command.args.strip():
            return Reply.text("Tell me the time of day, e.g. /time 08:30 (24-hour) or /time 8:30am")
        parsed = parse_time(command.args)
        if parsed is None:
            return Reply.text(
                f"I need a time like 08:30 (24-hour) or 8:30am, not {_quote(command.args, 30)}."
            )
        subscriber = self._editable(command)
        if isinstance(subscriber, Reply):
            return subscriber
        assert subscriber.id is not None
        value = f"{parsed[0]:02d}:{parsed[1]:02d}"
        subscriber = subscribers.update(self.db, subscriber.id, digest_time=value)
        note = " (paused: /resume to get it again)" if subscriber.paused else ""
        return Reply.text(
            f"Done: your digest comes {describe_days(subscriber.digest_days)} at {value}, "
            f"{subscriber.timezone} time{note}."
        )

    async def _timezone(self, command: Command) -> Reply:
        now = self._now()
        if not command.args.strip():
            viewer = self._subscriber(command)
            current = viewer.timezone if viewer else self.settings.default_timezone
            return Reply.text(
                f"Your time zone is {current}. Change it with a zone (/timezone Europe/Berlin), "
                "a city (/timezone new york) or an offset (/timezone UTC+2)."
            )
        guess = timezones.resolve(command.args, now)
        if guess.zone is None:
            return Reply.text(guess.explanation)
        subscriber = self._editable(command)
        if isinstance(subscriber, Reply):
            return subscriber
        assert subscriber.id is not None
        subscriber = subscribers.update(self.db, subscriber.id, timezone=guess.zone)
        return Reply.text(
            f"Time zone set: {guess.explanation} It's {timezones.local_time(guess.zone, now)} "
            f"there now ({timezones.utc_offset_label(guess.zone, now)}); your digest comes at "
            f"{subscriber.digest_time} local time."
        )

    async def _size(self, command: Command) -> Reply:
        raw = command.args.strip()
        if not re.fullmatch(r"\d{1,3}", raw) or not MIN_SIZE <= int(raw) <= MAX_SIZE:
            return Reply.text(
                f"Digest size must be a whole number from {MIN_SIZE} to {MAX_SIZE}, e.g. /size 10"
            )
        subscriber = self._editable(command)
        if isinstance(subscriber, Reply):
            return subscriber
        assert subscriber.id is not None
        subscribers.update(self.db, subscriber.id, digest_size=int(raw))
        return Reply.text(f"Done: up to {_plural(int(raw), 'paper')} per digest.")

    async def _pause(self, command: Command) -> Reply:
        subscriber = self._editable(command)
        if isinstance(subscriber, Reply):
            return subscriber
        assert subscriber.id is not None
        if subscriber.paused:
            return Reply.text("Already paused; /resume turns the daily digest back on.")
        subscribers.update(self.db, subscriber.id, paused=True)
        return Reply.text(
            "Paused: no daily digests until you send /resume. /digest still works any time."
        )

    async def _resume(self, command: Command) -> Reply:
        subscriber = self._editable(command)
        if isinstance(subscriber, Reply):
            return subscriber
        assert subscriber.id is not None
        if not subscriber.paused and subscriber.active:
            return Reply.text(f"Not paused: your digest comes at {self._where(subscriber)}.")
        subscriber = subscribers.update(self.db, subscriber.id, paused=False, active=True)
        return Reply.text(
            f"Resumed: your next digest comes {describe_days(subscriber.digest_days)} at "
            f"{self._where(subscriber)}."
        )

    async def _settings(self, command: Command) -> Reply:
        what, _, value = command.args.strip().partition(" ")
        what = what.casefold()
        if not what:
            viewer = self._subscriber(command)
            if viewer is None:
                return Reply.text(NOT_SUBSCRIBED)
            return self._settings_reply(viewer)
        if what in ("trend", "trending"):
            return await self._set_trend(command, value.strip().casefold())
        if what in ("days", "day"):
            days = parse_days(value)
            if days is None:
                return Reply.text(
                    "Tell me the days, e.g. /settings days weekdays, /settings days every day or "
                    "/settings days mon,wed,fri"
                )
            refused = self._change(command, digest_days=days)
            return refused or Reply.text(f"Done: a digest {describe_days(days)}.")
        if what in ("announcements", "announcement", "announce", "news"):
            return await self._set_announcements(command, value.strip().casefold())
        return Reply.text(
            "I can change: /settings trend more|less|0-3, /settings days weekdays, "
            "/settings announcements on|off. "
            "Time, zone and size have their own commands: /time, /timezone, /size."
        )

    async def _set_announcements(self, command: Command, value: str) -> Reply:
        wanted = {"on": True, "yes": True, "off": False, "no": False}.get(value)
        if wanted is None:
            return Reply.text(
                "Use /settings announcements off to stop messages from the bot's admins, "
                "or /settings announcements on to get them again."
            )
        refused = self._change(command, announcements=wanted)
        if refused is not None:
            return refused
        if wanted:
            return Reply.text("Done: this chat gets announcements from the bot's admins again.")
        return Reply.text(
            "Done: no more announcements from the bot's admins here. Your digest is unchanged."
        )

    async def _set_trend(self, command: Command, value: str) -> Reply:
        subscriber = self._editable(command)
        if isinstance(subscriber, Reply):
            return subscriber
        assert subscriber.id is not None
        level = trend_level(subscriber.trend_weight)
        if value in ("more", "+", "up", "higher"):
            target = min(level + 1, len(TREND_LEVELS) - 1)
        elif value in ("less", "-", "down", "lower"):
            target = max(level - 1, 0)
        elif re.fullmatch(r"[0-3]", value):
            target = int(value)
        else:
            return Reply.text(
                "Use /settings trend more, /settings trend less, or a level from 0 (personal "
                "only) to 3 (mostly trending)."
            )
        weight, meaning = TREND_LEVELS[target]
        subscribers.update(self.db, subscriber.id, trend_weight=weight)
        edge = ""
        if target == level and value in ("more", "+", "up", "higher", "less", "-", "down", "lower"):
            edge = " (that's already the end of the scale)"
        return Reply.text(f"Ranking is now level {target} of 3: {meaning}{edge}.")

    def _settings_reply(self, subscriber: Subscriber) -> Reply:
        assert subscriber.id is not None
        profile = subscribers.profile(self.db, subscriber.id)
        ratings = feedback.ratings(self.db, [subscriber.id])[subscriber.id]
        saved = len(feedback.saved_ids(self.db, subscriber.id))
        if not subscriber.active:
            status = "off: I couldn't reach this chat. Send /start to turn digests back on."
        elif subscriber.paused:
            status = "paused (/resume)"
        else:
            status = "active"
        level = trend_level(subscriber.trend_weight)
        cats = ", ".join(profile.categories) if profile.categories else "any"
        mode = " (only these)" if subscriber.categories_mode == "filter" else " (preferred)"
        lines = [
            f"Status: {status}",
            f"Digest: {_plural(subscriber.digest_size, 'paper')} "
            f"{describe_days(subscriber.digest_days)} at {subscriber.digest_time} "
            f"({subscriber.timezone})",
            f"Ranking: level {level} of 3, {TREND_LEVELS[level][1]}",
            f"Categories: {cats}{mode if profile.categories else ''}",
            f"Interests: {_plural(len(profile.keywords), 'keyword')}, "
            f"{_plural(len(profile.authors), 'author')}, {len(profile.muted)} muted (/interests)",
            f"Feedback: {sum(1 for r in ratings.values() if r > 0)} 👍, "
            f"{sum(1 for r in ratings.values() if r < 0)} 👎, {saved} saved",
            f"Announcements: {'on' if subscriber.announcements else 'off'}",
        ]
        return Reply(
            blocks=(
                TextBlock("Settings", bold=True),
                TextBlock("\n".join(lines)),
                TextBlock(
                    "Change: /time 08:30 · /timezone Berlin · /size 10 · /pause · "
                    "/settings trend more|less · /settings days weekdays · "
                    "/settings announcements off · /categories filter · /stop"
                ),
            )
        )

    # ----------------------------------------------------------------- digest

    async def _digest_now(self, command: Command) -> Reply:
        subscriber = self._editable(command)
        if isinstance(subscriber, Reply):
            return subscriber
        assert subscriber.id is not None
        now = self._now()
        outcome = await self._build_digest(subscriber, now)
        if not outcome.items or outcome.recorded is None:
            profile = subscribers.profile(self.db, subscriber.id)
            tip = (
                " Tell me what you work on with /interests add … so I can pick papers for you."
                if profile.is_empty
                else " arXiv announces new papers Sunday to Thursday evenings (US Eastern)."
            )
            return Reply.text(
                "Nothing new right now: every fresh paper that fits has already been sent to "
                "this chat." + tip
            )
        if outcome.recorded.outbox_id is not None and not outbox.take_for_reply(
            self.db, outcome.recorded.outbox_id, platform_message_id="reply", now=now
        ):
            # The reply itself carries the digest, unless the delivery worker already took it.
            return Reply.text("Your digest is on its way.")
        heading = f"Your papers for {now.astimezone(_zone(subscriber.timezone)).date().isoformat()}"
        reply = digest_reply(outcome.items, heading=heading)
        if subscriber.paused:
            note = TextBlock("Your daily digest is paused; /resume turns it back on.")
            reply = Reply(blocks=(*reply.blocks, note), disable_preview=True)
        return reply

    async def warm_up(self) -> None:
        """Load what the first ``/digest`` and ``/search`` would, in a worker thread.

        Platforms call it before they take commands, so that the first commands after a
        restart do not all wait for the same load. A failure is logged: the commands load
        for themselves then.
        """
        started = time.perf_counter()
        try:
            await asyncio.to_thread(importlib.import_module, "storage.search")
            warm = getattr(self._digest, "warm_up", None)
            if callable(warm):
                await asyncio.to_thread(warm, self.db, self._now())
        except Exception:
            log.warning("could not load the digest's papers ahead of commands", exc_info=True)
            return
        seconds = time.perf_counter() - started
        log.info("digest papers, index and trend scores loaded in %.2f s", seconds)

    async def _build_digest(self, subscriber: Subscriber, now: datetime) -> DigestOutcome:
        """Build on the event loop when everything is loaded, else in a worker thread."""
        if self._heavy is run_inline:
            try:
                with warm_only():
                    return self._digest(self.db, subscriber, now)
            except NotWarm as cold:
                log.debug("digest needs %s loaded: building it in a worker thread", cold)
        return await asyncio.to_thread(self._digest, self.db, subscriber, now)

    # ----------------------------------------------------------------- search and trending

    async def _search_command(self, command: Command) -> Reply:
        query = clean_text(command.args)
        if not query:
            return Reply.text("Search for what? e.g. /search diffusion transformers")
        if len(query) > MAX_QUERY_LENGTH:
            return Reply.text(
                f"That query is too long; keep it under {MAX_QUERY_LENGTH} characters."
            )
        return await self._search_page(command, query, 1, edit=False)

    async def _search_page(self, command: Command, query: str, page: int, *, edit: bool) -> Reply:
        result = await self._heavy(
            self._search, self.db, query, page=page, per_page=SEARCH_PER_PAGE, now=self._now()
        )
        blocks: list[Block] = []
        # A broader or corrected query the search engine offers becomes a one-tap button.
        offer: list[Button] = []
        suggestion = getattr(result, "suggestion", None)
        if isinstance(suggestion, str) and suggestion.strip() and suggestion != query:
            label = f"🔎 {_quote(suggestion, 40)}"
            offer.append(Button(label, Action.PAGE, f"1:{self._queries.put(suggestion)}"))
        if not result.hits:
            text = result.message or f"No papers match {_quote(query)}. Try fewer or broader words."
            return Reply(blocks=(TextBlock(text),), buttons=tuple(offer), edit=edit)
        first = (result.page - 1) * SEARCH_PER_PAGE + 1
        last = first + len(result.hits) - 1
        blocks.append(
            TextBlock(
                f"🔎 {_quote(query)}: {first}–{last} of {result.total}"
                + (f" · page {result.page}/{result.pages}" if result.pages > 1 else ""),
                bold=True,
            )
        )
        if result.message:
            blocks.append(TextBlock(result.message))
        states = self._states(command, [hit.arxiv_id for hit in result.hits])
        for number, hit in enumerate(result.hits, start=first):
            rating, saved = states.get(hit.arxiv_id, (0, False))
            item = DigestItem(
                arxiv_id=hit.arxiv_id,
                title=hit.title,
                authors=tuple(hit.authors),
                primary_category=hit.primary_category,
                url=f"https://arxiv.org/abs/{hit.arxiv_id}",
                why=f"published {hit.published:%d %b %Y}",
            )
            buttons = feedback_buttons(hit.arxiv_id, rating=rating, saved=saved, dislike=False)
            blocks.append(
                PaperBlock(item, buttons=buttons, snippet=tuple(hit.snippet), number=number)
            )
        key = self._queries.put(query)
        paging = []
        if result.page > 1:
            paging.append(Button("◀ Prev", Action.PAGE, f"{result.page - 1}:{key}"))
        if result.page < result.pages:
            paging.append(Button("Next ▶", Action.PAGE, f"{result.page + 1}:{key}"))
        return Reply(blocks=tuple(blocks), buttons=(*paging, *offer), edit=edit)

    def _states(self, command: Command, ids: Sequence[str]) -> dict[str, tuple[int, bool]]:
        subscriber = self._subscriber(command)
        if subscriber is None or subscriber.id is None:
            return {}
        return feedback.states(self.db, subscriber.id, ids)

    async def _trending_command(self, command: Command) -> Reply:
        raw = command.args.strip()
        category: str | None = None
        if raw:
            found = taxonomy.check(raw.split()[0])
            if found.code is None:
                hint = (
                    f" Did you mean {', '.join(found.suggestions[:3])}?"
                    if found.suggestions
                    else ""
                )
                return Reply.text(
                    f"{clean_text(raw)[:40]} is not an arXiv category.{hint} "
                    "e.g. /trending cs.LG, or /trending for everything."
                )
            category = found.code
        now = self._now()
        papers_now = await asyncio.to_thread(
            self._trending, self.db, now, category=category, limit=TRENDING_SHOWN
        )
        where = f" in {category} ({taxonomy.name_of(category)})" if category else ""
        if not papers_now:
            return Reply.text(
                f"Nothing is trending{where} right now: no paper has recent engagement yet."
            )
        states = self._states(command, [p.arxiv_id for p in papers_now])
        blocks: list[Block] = [TextBlock(f"🔥 Trending on arXiv{where}", bold=True)]
        for number, paper in enumerate(papers_now, start=1):
            rating, saved = states.get(paper.arxiv_id, (0, False))
            item = DigestItem(
                arxiv_id=paper.arxiv_id,
                title=paper.title,
                authors=tuple(paper.authors),
                primary_category=paper.primary_category,
                url=f"https://arxiv.org/abs/{paper.arxiv_id}",
                why="",
                trend_line=paper.line,
            )
            buttons = feedback_buttons(paper.arxiv_id, rating=rating, saved=saved, dislike=False)
            blocks.append(PaperBlock(item, buttons=buttons, number=number))
        return Reply(blocks=tuple(blocks))

    # ----------------------------------------------------------------- saved, like, export

    async def _saved(self, command: Command) -> Reply:
        subscriber = self._subscriber(command)
        if subscriber is None or subscriber.id is None:
            return Reply.text(NOT_SUBSCRIBED)
        ids = feedback.saved_ids(self.db, subscriber.id)
        if not ids:
            return Reply.text("Nothing saved yet. Tap 🔖 under a paper to keep it here.")
        shown = ids[:SAVED_SHOWN]
        stored = papers.get_papers(self.db, shown)
        states = self._states(command, shown)
        heading = f"🔖 Saved papers ({len(ids)})"
        if len(ids) > SAVED_SHOWN:
            heading += f", the {SAVED_SHOWN} most recent"
        blocks: list[Block] = [TextBlock(heading, bold=True)]
        for number, arxiv_id in enumerate(shown, start=1):
            paper = stored.get(arxiv_id)
            item = DigestItem(
                arxiv_id=arxiv_id,
                title=paper.title if paper else f"arXiv:{arxiv_id}",
                authors=tuple(paper.authors) if paper else (),
                primary_category=paper.primary_category if paper else "",
                url=f"https://arxiv.org/abs/{arxiv_id}",
                why="",
            )
            rating, _ = states.get(arxiv_id, (0, True))
            buttons = feedback_buttons(arxiv_id, rating=rating, saved=True)
            blocks.append(PaperBlock(item, buttons=buttons, number=number))
        return Reply(blocks=tuple(blocks))

    async def _like(self, command: Command) -> Reply:
        text = clean_text(command.args)
        if not text:
            return Reply.text(
                "Tell me a paper you liked, by arXiv id or title: /like 1706.03762 or "
                "/like attention is all you need"
            )
        subscriber = self._subscriber(command)
        if subscriber is None or subscriber.id is None:
            return Reply.text(NOT_SUBSCRIBED)
        ids = list(dict.fromkeys(find_ids(text)))[:10]
        if ids:
            stored = papers.get_papers(self.db, ids)
            for arxiv_id in ids:
                feedback.set_rating(self.db, subscriber.id, arxiv_id, 1)
            known = [f"{_quote(stored[i].title)} ({i})" for i in ids if i in stored]
            unknown = [i for i in ids if i not in stored]
            parts = []
            if known:
                parts.append(f"👍 noted for {', '.join(known)}: similar papers will rank higher.")
            if unknown:
                parts.append(
                    f"👍 recorded for {', '.join(unknown)}, but I don't have "
                    f"{'that paper' if len(unknown) == 1 else 'those papers'} in my archive yet, "
                    "so it can't shape your ranking until it arrives."
                )
            return Reply.text(" ".join(parts))
        if len(text) > MAX_QUERY_LENGTH:
            return Reply.text("That's too long for a title; try the arXiv id instead.")
        result = await self._heavy(
            self._search, self.db, text, page=1, per_page=LIKE_CHOICES, now=self._now()
        )
        if not result.hits:
            return Reply.text(
                f"I couldn't find a paper titled {_quote(text)}. Try its arXiv id, e.g. "
                "/like 1706.03762"
            )
        top = result.hits[0]
        if len(result.hits) == 1 or fold(clean_text(top.title)) == fold(text):
            feedback.set_rating(self.db, subscriber.id, top.arxiv_id, 1)
            return Reply.text(
                f"👍 noted for {_quote(top.title)} ({top.arxiv_id}): "
                "similar papers will rank higher."
            )
        blocks: list[Block] = [TextBlock("Which one do you mean? Tap 👍 on it.")]
        for number, hit in enumerate(result.hits, start=1):
            item = DigestItem(
                arxiv_id=hit.arxiv_id,
                title=hit.title,
                authors=tuple(hit.authors),
                primary_category=hit.primary_category,
                url=f"https://arxiv.org/abs/{hit.arxiv_id}",
                why=f"published {hit.published:%d %b %Y}",
            )
            buttons = (Button("👍", Action.LIKE, hit.arxiv_id),)
            blocks.append(PaperBlock(item, buttons=buttons, number=number))
        return Reply(blocks=tuple(blocks))

    async def _export(self, command: Command) -> Reply:
        subscriber = self._editable(command)
        if isinstance(subscriber, Reply):
            return subscriber
        data = await asyncio.to_thread(self._export_data, subscriber)
        text = json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True)
        return Reply(
            blocks=(
                TextBlock("Everything I store about this chat, as JSON:"),
                TextBlock(text),
            ),
            extra={
                "document": {
                    "filename": "trending-papers-export.json",
                    "mime_type": "application/json",
                    "content": text,
                }
            },
        )

    def _export_data(self, subscriber: Subscriber) -> dict[str, Any]:
        assert subscriber.id is not None
        profile = subscribers.profile(self.db, subscriber.id)
        saved = feedback.saved_ids(self.db, subscriber.id)
        rated = feedback.ratings(self.db, [subscriber.id])[subscriber.id]
        rows = []
        for arxiv_id in sorted(set(rated) | set(saved)):
            row = feedback.get(self.db, subscriber.id, arxiv_id)
            if row is not None:
                rows.append(
                    {
                        "arxiv_id": arxiv_id,
                        "rating": row.rating,
                        "saved": row.saved,
                        "updated_at": row.updated_at.isoformat(),
                    }
                )
        return {
            "exported_at": self._now().isoformat(),
            "chat": {
                "platform": str(subscriber.platform),
                "chat_id": subscriber.chat_id,
                "kind": str(subscriber.kind),
                "display_name": subscriber.display_name,
                "subscribed_at": subscriber.created_at.isoformat(),
            },
            "settings": {
                "timezone": subscriber.timezone,
                "digest_time": subscriber.digest_time,
                "digest_size": subscriber.digest_size,
                "digest_days": subscriber.digest_days,
                "trend_weight": subscriber.trend_weight,
                "categories_mode": subscriber.categories_mode,
                "paused": subscriber.paused,
                "active": subscriber.active,
                "announcements": subscriber.announcements,
            },
            "interests": {
                "keywords": profile.keywords,
                "authors": profile.authors,
                "categories": profile.categories,
                "muted": profile.muted,
            },
            "feedback": rows,
            "saved": saved,
            "papers_delivered": deliveries.delivery_count(self.db, subscriber.id),
        }

    # ----------------------------------------------------------------- bot admins

    def _refuse_non_admin(self, command: Command, name: str) -> Reply | None:
        if self.admins.allows(command.platform, command.user_id):
            return None
        log.info(
            "admin command refused",
            extra={"platform": str(command.platform), "user_id": command.user_id,
                   "command": name},
        )  # fmt: skip
        return Reply.text(NOT_ALLOWED.format(name=name))

    async def _stats(self, command: Command) -> Reply:
        refused = self._refuse_non_admin(command, "stats")
        if refused is not None:
            return refused
        lines = stats_lines(self.db, self._now())
        return Reply(blocks=(TextBlock("Bot stats", bold=True), TextBlock("\n".join(lines))))

    async def _announce(self, command: Command) -> Reply:
        refused = self._refuse_non_admin(command, "announce")
        if refused is not None:
            return refused
        lines = (_CONTROL.sub(" ", line) for line in command.args.splitlines())
        text = "\n".join(" ".join(line.split()) for line in lines).strip()
        if not any(ch.isalnum() for ch in text):
            return Reply.text(
                "Write the message after the command, e.g. "
                "/announce The bot moves to a new server tonight; expect a short pause."
            )
        if len(text) > MAX_ANNOUNCEMENT_LENGTH:
            return Reply.text(
                f"That's {len(text):,} characters; keep an announcement under "
                f"{MAX_ANNOUNCEMENT_LENGTH:,} so it fits in one message."
            )
        result = announce(self.db, text, self._now(), author=command.user_display_name)
        log.info(
            "announcement queued",
            extra={"platform": str(command.platform), "user_id": command.user_id,
                   "queued": result.queued, "opted_out": result.opted_out,
                   "unreachable": result.unreachable, "already_sent": result.already_sent},
        )  # fmt: skip
        if result.queued == 0 and result.already_sent:
            return Reply.text(
                f"Already announced today: all {_plural(result.already_sent, 'chat')} have it "
                "queued or delivered. Change the text to send something new."
            )
        parts = [f"📣 Queued for {_plural(result.queued, 'chat')}"]
        if result.opted_out:
            parts.append(f"{result.opted_out} turned announcements off")
        if result.unreachable:
            parts.append(f"{result.unreachable} unreachable")
        if result.already_sent:
            parts.append(f"{result.already_sent} already had it")
        return Reply.text(
            "; ".join(parts) + ". They go out through the outbox at the platforms' rate limits."
        )

    # ----------------------------------------------------------------- buttons

    async def _button(self, command: Command) -> Reply:
        action, target = command.action, command.target or ""
        if action in (Action.LIKE, Action.DISLIKE, Action.SAVE):
            return self._feedback(command, action, target)
        if action == Action.PAGE:
            page_text, _, key = target.partition(":")
            query = self._queries.get(key)
            if query is None or not page_text.isdigit():
                return Reply(notice="This search has expired; please send /search again.")
            return await self._search_page(command, query, max(1, int(page_text)), edit=True)
        if action in (Action.CONFIRM_STOP, Action.CANCEL):
            return self._confirm_stop(command, action, target)
        return Reply(notice=BUTTON_GONE)

    def _feedback(self, command: Command, action: Action, target: str) -> Reply:
        try:
            arxiv_id, _ = split_version(target)
        except ValueError:
            return Reply(notice=BUTTON_GONE)
        subscriber = self._subscriber(command)
        if subscriber is None or subscriber.id is None:
            return Reply(notice="Send /start first so I can remember your ratings.")
        row = feedback.get(self.db, subscriber.id, arxiv_id)
        rating, saved = (row.rating, row.saved) if row else (0, False)
        if action == Action.SAVE:
            saved = not saved
            feedback.set_saved(self.db, subscriber.id, arxiv_id, saved)
            notice = "🔖 Saved: find it in /saved." if saved else "Removed from /saved."
        else:
            wanted = 1 if action == Action.LIKE else -1
            rating = 0 if rating == wanted else wanted
            feedback.set_rating(self.db, subscriber.id, arxiv_id, rating)
            if rating > 0:
                notice = "👍 Noted: more like this."
            elif rating < 0:
                notice = "👎 Noted: fewer like this."
            else:
                notice = "Rating removed."
        return Reply(
            edit=True,
            notice=notice,
            buttons=feedback_buttons(arxiv_id, rating=rating, saved=saved),
        )

    def _confirm_stop(self, command: Command, action: Action, target: str) -> Reply:
        if not self._may_change(command):
            return Reply(notice="Only this group's admins can do that.")
        subscriber = self._subscriber(command)
        if subscriber is None or str(subscriber.id) != target:
            return Reply(notice="This question is out of date; send /stop again.")
        if action == Action.CANCEL:
            return Reply(
                edit=True,
                notice="Cancelled.",
                blocks=(TextBlock("Cancelled: you're still subscribed."),),
            )
        assert subscriber.id is not None
        subscribers.remove(self.db, subscriber.id)
        log.info(
            "subscriber removed on request",
            extra={"subscriber_id": subscriber.id, "platform": str(command.platform)},
        )
        return Reply(
            edit=True,
            notice="Unsubscribed.",
            blocks=(
                TextBlock(
                    "Done: this chat is unsubscribed and everything I stored about it is deleted. "
                    "Send /start if you ever want to come back."
                ),
            ),
        )


_FIELD = {
    InterestKind.KEYWORD: "keywords",
    InterestKind.AUTHOR: "authors",
    InterestKind.CATEGORY: "categories",
    InterestKind.MUTED: "muted",
}


def _with_args(command: Command, args: str) -> Command:
    return replace(command, args=args)


def _zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError):
        return UTC
