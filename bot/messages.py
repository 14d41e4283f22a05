"""The platform-neutral conversation model: a ``Command`` comes in, a ``Reply`` goes out.

Chat adapters (Telegram, Slack, console) only translate their updates into ``Command``s and
render ``Reply``s; every piece of wording and logic lives in ``bot/commands.py``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum

from bot.digest import DigestItem
from storage.models import ChatKind, Platform


class Action(StrEnum):
    """What a button press means; encoded compactly into callback data."""

    LIKE = "l"
    DISLIKE = "d"
    SAVE = "s"
    PAGE = "p"
    CONFIRM_STOP = "x"
    CANCEL = "c"


@dataclass(frozen=True)
class Command:
    """One user action: a slash command with its argument text, or a button press."""

    platform: Platform
    chat_id: str
    user_id: str
    name: str
    """Command name without the slash (``interests``), or ``button`` for a press."""
    args: str = ""
    chat_kind: ChatKind = ChatKind.USER
    user_is_admin: bool = False
    """The user may change this chat's settings (private chat owner, group or workspace admin)."""
    user_display_name: str | None = None
    user_timezone: str | None = None
    """The platform's idea of the user's time zone (Slack ``users.info``), when known."""
    action: Action | None = None
    target: str | None = None
    """What a button acts on: an arXiv id, a page token…"""
    workspace_id: str | None = None


@dataclass(frozen=True)
class Button:
    """An inline button; ``data`` is what comes back as ``Command.action``/``target``."""

    label: str
    action: Action
    target: str = ""
    url: str | None = None
    """A link button instead of a callback."""


@dataclass(frozen=True)
class TextBlock:
    """A paragraph of plain text (adapters escape it for their markup)."""

    text: str
    bold: bool = False


@dataclass(frozen=True)
class PaperBlock:
    """A paper card: a digest item or a search hit, with its buttons."""

    item: DigestItem
    buttons: tuple[Button, ...] = ()
    snippet: tuple[tuple[str, bool], ...] = ()
    """Search snippet as (text, highlighted) segments, escaped by each adapter."""
    number: int | None = None


Block = TextBlock | PaperBlock


@dataclass(frozen=True)
class Reply:
    """What the bot answers: blocks, buttons under the whole message, and how to deliver it."""

    blocks: tuple[Block, ...] = ()
    buttons: tuple[Button, ...] = ()
    edit: bool = False
    """Replace the message the button was pressed on instead of sending a new one."""
    ephemeral: bool = False
    """Only the asking user sees it (Slack); a normal message elsewhere."""
    notice: str | None = None
    """A short toast for a button press (Telegram answerCallbackQuery, Slack ephemeral)."""
    disable_preview: bool = True
    extra: dict[str, object] = field(default_factory=dict)

    @classmethod
    def text(cls, text: str, **kwargs: object) -> Reply:
        """A reply of one plain paragraph."""
        return cls(blocks=(TextBlock(text),), **kwargs)  # type: ignore[arg-type]

    @property
    def plain_text(self) -> str:
        """The reply as plain text (fallback text, console, tests)."""
        parts = []
        for block in self.blocks:
            if isinstance(block, TextBlock):
                parts.append(block.text)
            else:
                parts.append(f"{block.item.title} — {block.item.url}")
        return "\n\n".join(parts)


CommandHandler = Callable[[Command], Awaitable[Reply]]
"""The one entry point every adapter calls: ``bot.commands.CommandRouter.handle``."""
