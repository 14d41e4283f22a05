"""A fake chat that talks to a command handler, so command tests read like a conversation.

    chat = FakeChat(router)
    reply = await chat.say("/interests add diffusion")
    await chat.press(reply, "👍", 0)         # the first 👍 button in that reply

`say` parses `/name args` the way every adapter does and records the exchange; `press` finds a
button by its label (ignoring a trailing ✓) and sends the press as a `button` command.
`member(...)` gives the same chat as seen by another (e.g. non-admin) user.

Also here: stand-ins for the router's collaborators (`substring_search` has the shape of
`storage.search.search`, `newest_as_trending` that of `bot.trend.trending`) and `paper(...)`
to seed a database.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.messages import Button, Command, PaperBlock, Reply
from feeds.records import Paper as PaperRecord
from storage import papers
from storage.db import Database
from storage.models import ChatKind, Platform

__all__ = [
    "FakeChat",
    "SearchHit",
    "SearchPage",
    "TrendingPaper",
    "buttons_of",
    "newest_as_trending",
    "paper",
    "substring_search",
]

_COMMAND = re.compile(r"^/(?P<name>\w+)(?:@\w+)?(?:\s+(?P<args>.*))?$", re.DOTALL)


@dataclass
class FakeChat:
    """One chat (private by default) and the user typing in it."""

    handle: Any
    """A ``CommandRouter`` or any ``async (Command) -> Reply``."""
    platform: Platform = Platform.TELEGRAM
    chat_id: str = "1001"
    user_id: str = "1001"
    kind: ChatKind = ChatKind.USER
    admin: bool = True
    display_name: str = "Ada"
    user_timezone: str | None = None
    history: list[tuple[Command, Reply]] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Accept a CommandRouter as well as a bare handler function.
        method = getattr(self.handle, "handle", None)
        if method is not None:
            self.handle = method

    def command(self, text: str) -> Command:
        """The `Command` an adapter would build for `text`."""
        match = _COMMAND.match(text.strip())
        name, args = (match.group("name"), match.group("args") or "") if match else ("", text)
        return Command(
            platform=self.platform,
            chat_id=self.chat_id,
            user_id=self.user_id,
            name=name,
            args=args.strip(),
            chat_kind=self.kind,
            user_is_admin=self.admin,
            user_display_name=self.display_name,
            user_timezone=self.user_timezone,
        )

    async def send(self, command: Command) -> Reply:
        """Send any command and record the exchange."""
        assert callable(self.handle)
        reply = await self.handle(command)
        assert isinstance(reply, Reply), f"{command.name!r} answered {reply!r}"
        self.history.append((command, reply))
        return reply

    async def say(self, text: str) -> Reply:
        """Type a message (usually a `/command`)."""
        return await self.send(self.command(text))

    async def press(self, reply: Reply, label: str, index: int = 0) -> Reply:
        """Press the `index`-th button labelled `label` (✓ ignored) anywhere in `reply`."""
        button = buttons_of(reply, label)[index]
        command = replace(
            self.command(""), name="button", args="", action=button.action, target=button.target
        )
        return await self.send(command)

    def member(self, user_id: str, *, admin: bool = False, name: str = "Bob") -> FakeChat:
        """The same chat, typed in by another user."""
        return replace(self, user_id=user_id, admin=admin, display_name=name, history=[])


def buttons_of(reply: Reply, label: str | None = None) -> list[Button]:
    """Every button of a reply (paper cards first, in order), optionally by label."""
    found: list[Button] = []
    for block in reply.blocks:
        if isinstance(block, PaperBlock):
            found.extend(block.buttons)
    found.extend(reply.buttons)
    if label is None:
        return found
    return [b for b in found if b.label.rstrip("✓") == label.rstrip("✓")]


# --------------------------------------------------------------------------- collaborators


@dataclass(frozen=True)
class SearchHit:
    """The shape `storage.search.search` returns per hit."""

    arxiv_id: str
    title: str
    authors: tuple[str, ...]
    primary_category: str
    published: datetime
    snippet: tuple[tuple[str, bool], ...]
    score: float


@dataclass(frozen=True)
class SearchPage:
    """The shape `storage.search.search` returns."""

    hits: list[SearchHit]
    total: int
    page: int
    pages: int
    message: str | None = None
    suggestion: str | None = None


def substring_search(
    db: Database,
    query: str,
    *,
    page: int = 1,
    per_page: int = 5,
    now: datetime | None = None,
) -> SearchPage:
    """A stand-in for `storage.search.search`: every query word in title or abstract."""
    words = [w.casefold() for w in query.split() if w.strip()]
    stored = papers.recent_papers(db, datetime(1990, 1, 1, tzinfo=UTC))
    found = [
        p
        for p in sorted(stored, key=lambda p: p.arxiv_id)
        if words and all(w in f"{p.title} {p.abstract}".casefold() for w in words)
    ]
    pages = max(1, -(-len(found) // per_page))
    chosen = found[(page - 1) * per_page : page * per_page]
    hits = [
        SearchHit(
            arxiv_id=p.arxiv_id,
            title=p.title,
            authors=tuple(p.authors),
            primary_category=p.primary_category,
            published=p.published,
            snippet=((p.abstract[:80], False), (words[0], True)),
            score=1.0,
        )
        for p in chosen
    ]
    message = None if found else f"Nothing matches {query!r}; try fewer words."
    return SearchPage(hits=hits, total=len(found), page=page, pages=pages, message=message)


@dataclass(frozen=True)
class TrendingPaper:
    """The shape `bot.trend.trending` returns."""

    arxiv_id: str
    title: str
    authors: tuple[str, ...]
    primary_category: str
    score: float
    line: str
    counts: dict[str, float] = field(default_factory=dict)


def newest_as_trending(
    db: Database,
    now: datetime,
    *,
    category: str | None = None,
    since: timedelta = timedelta(days=3),
    limit: int = 10,
) -> list[TrendingPaper]:
    """A stand-in for `bot.trend.trending`: the newest papers, with a made-up count line."""
    recent = papers.recent_papers(db, now - since)
    chosen = [p for p in recent if category is None or p.primary_category == category][:limit]
    return [
        TrendingPaper(
            arxiv_id=p.arxiv_id,
            title=p.title,
            authors=tuple(p.authors),
            primary_category=p.primary_category,
            score=float(limit - rank),
            line=f"🔥 HN {100 - rank} pts",
            counts={"hackernews": float(100 - rank)},
        )
        for rank, p in enumerate(chosen)
    ]


def paper(
    arxiv_id: str,
    title: str,
    abstract: str = "",
    *,
    authors: tuple[str, ...] = ("Ada Lovelace", "Alan Turing"),
    category: str = "cs.LG",
    announced: datetime | None = None,
) -> PaperRecord:
    """A paper record for seeding a test database."""
    when = announced or datetime(2026, 11, 15, 20, 0, tzinfo=UTC)
    return PaperRecord(
        arxiv_id=arxiv_id,
        version=1,
        title=title,
        abstract=abstract or f"We study {title.lower()} in depth.",
        authors=authors,
        categories=(category,),
        primary_category=category,
        published=when - timedelta(days=1),
        updated=when - timedelta(days=1),
        announced=when,
    )
