"""Render a ``Reply`` as Slack Block Kit messages and App Home views (pure, no network).

Every piece of text from a paper or a user goes through ``escape`` (``&``, ``<``, ``>``), so
nothing in a title can open a link, mention ``@channel`` or break the mrkdwn around it; ``_``
and ``*`` only become italics/bold markers where we put them, and a field that contains one
is shown without that emphasis rather than half-formatted.

Slack's limits are enforced here, not hoped for: at most ``MAX_BLOCKS`` blocks per message
(``MAX_VIEW_BLOCKS`` in a Home view), ``TEXT_LIMIT`` characters per section text, 150 per
header, 75 per button label, and a ``text`` fallback on every message (notifications and
screen readers use it). Each paper card has a budget per field, so one card always fits in
one section; a long reply is split *between* cards into several messages, never inside one.
Lengths are counted in UTF-16 code units, never fewer than Slack counts.

Router wording names Telegram-style commands (``/interests add …``); ``slack_commands``
rewrites them to the one slash command a Slack app has (``/papers interests add …``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from bot.commands import ALIASES, ALL_COMMANDS
from bot.messages import Action, Button, PaperBlock, Reply, TextBlock

MAX_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
TEXT_LIMIT = 3000
HEADER_LIMIT = 150
BUTTON_LIMIT = 75
VALUE_LIMIT = 2000
ACTIONS_PER_BLOCK = 25
FALLBACK_LIMIT = 3000
MESSAGE_TEXT_BUDGET = 12_000
"""Characters of section text per message: Slack refuses very large block payloads
(``msg_blocks_too_long``) well before 50 full sections, so big cards split earlier."""

TITLE_BUDGET = 600
AUTHORS_BUDGET = 400
CATEGORY_BUDGET = 60
WHY_BUDGET = 400
TREND_BUDGET = 300
SNIPPET_BUDGET = 900
URL_BUDGET = 500
"""Escaped UTF-16 units per field of a paper card: together well under ``TEXT_LIMIT``."""

ACTION_PREFIX = "tp:"
"""Every button's ``action_id`` starts with this, so one listener catches them all."""
DEFAULT_COMMAND = "/papers"
DEFAULT_FALLBACK = "Trending Papers"


@dataclass(frozen=True)
class Rendered:
    """One Slack message: the notification ``text`` and its blocks."""

    text: str
    blocks: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Unit:
    """Blocks that must stay in one message (a paper card and its buttons), with a summary."""

    blocks: list[dict[str, Any]]
    summary: str
    size: int


# --------------------------------------------------------------------------- text


def slack_length(text: str) -> int:
    """Length in UTF-16 code units (never less than Slack's own count)."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def escape(text: str) -> str:
    """Escape text for mrkdwn: ``&``, ``<`` and ``>`` become entities."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def unescape(text: str) -> str:
    """Undo ``escape`` (Slack sends slash-command and message text escaped this way)."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def clip(text: str, budget: int) -> str:
    """Escape ``text``, cutting it with "…" so the escaped result fits ``budget`` units."""
    escaped = escape(text)
    if slack_length(escaped) <= budget:
        return escaped
    out: list[str] = []
    used = 0
    for char in text:
        piece = escape(char)
        size = slack_length(piece)
        if used + size > budget - 1:
            break
        out.append(piece)
        used += size
    return "".join(out) + "…"


def clip_plain(text: str, budget: int) -> str:
    """Cut plain text (no escaping: ``plain_text`` objects are shown as typed) to ``budget``."""
    if slack_length(text) <= budget:
        return text
    out: list[str] = []
    used = 0
    for char in text:
        size = slack_length(char)
        if used + size > budget - 1:
            break
        out.append(char)
        used += size
    return "".join(out) + "…"


def _oneline(text: str) -> str:
    return " ".join(text.split())


def _emphasis(text: str, marker: str) -> str:
    """``text`` (already escaped) wrapped in ``marker`` when that is safe, else as it is."""
    inner = text.strip()
    if not inner or marker in inner:
        return text
    start = text[: len(text) - len(text.lstrip())]
    end = text[len(text.rstrip()) :]
    return f"{start}{marker}{inner}{marker}{end}"


def link(url: str) -> str | None:
    """The URL escaped for ``<url|label>``, or None when Slack would not take it as a link."""
    url = url.strip()
    if not url or len(url) > URL_BUDGET or "|" in url or any(ch.isspace() for ch in url):
        return None
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return escape(url)


_COMMAND_NAMES = sorted(
    {spec.name for spec in ALL_COMMANDS} | set(ALIASES), key=lambda name: (-len(name), name)
)
_COMMAND_MENTION = re.compile(
    r"(?<![\w/.:&#-])/(" + "|".join(map(re.escape, _COMMAND_NAMES)) + r")(?![\w/-])"
)
_SLACK_NAMES = {"start": "subscribe", "stop": "stop"}


def slack_commands(text: str, command: str = DEFAULT_COMMAND) -> str:
    """``/interests add`` → ``/papers interests add``; ``/start`` → ``/papers subscribe``."""
    if not command:
        return text
    return _COMMAND_MENTION.sub(
        lambda match: f"{command} {_SLACK_NAMES.get(match.group(1), match.group(1))}", text
    )


def split_mrkdwn(text: str, *, bold: bool = False, limit: int = TEXT_LIMIT) -> list[str]:
    """Escape a plain paragraph into pieces of at most ``limit`` units, broken at lines/spaces.

    Bold pieces are bold line by line (a ``*`` pair cannot span lines in mrkdwn); every piece
    is non-empty, as a section text must be.
    """
    whole = escape(text).strip()
    if not bold and slack_length(whole) <= limit:
        return [whole] if whole else []
    # Room for the ``*`` pairs of a bold piece: at most two per line.
    escaped = [escape(char) for char in text]
    sizes = [slack_length(piece) + (2 if bold and char == "\n" else 0) for piece, char in
             zip(escaped, text, strict=True)]  # fmt: skip
    budget = limit - (2 if bold else 0)
    pieces: list[str] = []
    start = 0
    while start < len(text):
        used = 0
        end = start
        last_break = -1
        while end < len(text) and used + sizes[end] <= budget:
            used += sizes[end]
            if text[end] in "\n ":
                last_break = end
            end += 1
        if end == start:
            end = start + 1  # never loop forever, whatever the budget
        if end < len(text) and last_break > start:
            end = last_break + 1
        piece = "".join(escaped[start:end]).strip()
        if piece:
            if bold:
                piece = "\n".join(_emphasis(line, "*") for line in piece.split("\n"))
            pieces.append(piece)
        start = end
    return pieces


# --------------------------------------------------------------------------- paper cards


def _snippet(segments: Sequence[tuple[str, bool]]) -> str:
    out: list[str] = []
    used = 0
    for text, highlighted in segments:
        text = text.replace("\n", " ")
        if not text:
            continue
        overhead = 2 if highlighted else 0
        room = SNIPPET_BUDGET - used - overhead
        if room <= 1:
            out.append("…")
            break
        cut = slack_length(escape(text)) > room
        piece = clip(text, room)
        out.append(_emphasis(piece, "*") if highlighted else piece)
        used += slack_length(piece) + overhead
        if cut:
            break
    return "".join(out)


def paper_mrkdwn(block: PaperBlock, *, numbered: bool = True) -> str:
    """One paper card: number, linked title, authors · category, why, trend line, snippet."""
    item = block.item
    title = clip(_oneline(item.title) or item.arxiv_id.strip() or "arXiv paper", TITLE_BUDGET)
    head = f"*{block.number}.* " if numbered and block.number is not None else ""
    href = link(item.url)
    lines = [f"{head}<{href}|{title}>" if href else f"{head}{_emphasis(title, '*')}"]
    byline = [
        part
        for part in (
            clip(_oneline(item.short_authors), AUTHORS_BUDGET),
            clip(item.primary_category.strip(), CATEGORY_BUDGET),
        )
        if part.strip()
    ]
    if byline:
        lines.append(" · ".join(byline))
    if item.why.strip():
        lines.append(_emphasis(clip(_oneline(item.why), WHY_BUDGET), "_"))
    if item.trend_line.strip():
        lines.append(clip(_oneline(item.trend_line), TREND_BUDGET))
    snippet = _snippet(block.snippet)
    if snippet.strip():
        lines.append(snippet)
    return "\n".join(lines)


def paper_summary(block: PaperBlock) -> str:
    """A paper in one plain line, for the notification fallback."""
    item = block.item
    title = _oneline(item.title) or item.arxiv_id
    number = f"{block.number}. " if block.number is not None else ""
    authors = _oneline(item.short_authors)
    return f"{number}{title}" + (f" — {authors}" if authors else "")


# --------------------------------------------------------------------------- buttons


def encode_value(button: Button) -> str | None:
    """``l:2401.12345``; None when it would not fit a button's value."""
    value = f"{button.action.value}:{button.target}"
    return value if len(value) <= VALUE_LIMIT else None


def decode_value(value: str | None) -> tuple[Action | None, str]:
    """(action, target) from a button value; the action is None when unknown or absent."""
    code, _, target = (value or "").partition(":")
    try:
        return Action(code), target
    except ValueError:
        return None, target


class _Ids:
    """Hands out ``action_id``s unique within one message."""

    def __init__(self) -> None:
        self.count = 0

    def next(self, kind: str) -> str:
        """A fresh ``tp:<kind>:<n>``."""
        self.count += 1
        return f"{ACTION_PREFIX}{kind}:{self.count}"


def _button(button: Button, ids: _Ids) -> dict[str, Any] | None:
    label = clip_plain(_oneline(button.label), BUTTON_LIMIT) or "·"
    element: dict[str, Any] = {
        "type": "button",
        "text": {"type": "plain_text", "text": label, "emoji": True},
    }
    if button.url is not None:
        url = button.url.strip()
        if link(url) is None:
            return None
        element["url"] = url
        element["action_id"] = ids.next("link")
        return element
    value = encode_value(button)
    if value is None:
        return None
    element["value"] = value
    element["action_id"] = ids.next(button.action.value)
    if button.action == Action.CONFIRM_STOP:
        element["style"] = "danger"
    return element


def _actions(buttons: Iterable[Button], ids: _Ids) -> list[dict[str, Any]]:
    elements = [element for b in buttons if (element := _button(b, ids)) is not None]
    return [
        {"type": "actions", "elements": elements[start : start + ACTIONS_PER_BLOCK]}
        for start in range(0, len(elements), ACTIONS_PER_BLOCK)
    ]


# --------------------------------------------------------------------------- messages


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _units(reply: Reply, command: str, ids: _Ids) -> list[_Unit]:
    units: list[_Unit] = []
    for block in reply.blocks:
        if isinstance(block, TextBlock):
            text = slack_commands(block.text, command)
            line = _oneline(text)
            if block.bold and "\n" not in text.strip() and 0 < slack_length(line) <= HEADER_LIMIT:
                header = {
                    "type": "header",
                    "text": {"type": "plain_text", "text": line, "emoji": True},
                }
                units.append(_Unit([header], line, slack_length(line)))
                continue
            for piece in split_mrkdwn(text, bold=block.bold):
                units.append(_Unit([_section(piece)], unescape(piece), slack_length(piece)))
        else:
            card = paper_mrkdwn(block)
            blocks = [_section(card), *_actions(block.buttons, ids)]
            units.append(_Unit(blocks, paper_summary(block), slack_length(card)))
    trailing = _actions(reply.buttons, ids)
    if trailing:
        units.append(_Unit(trailing, "", 0))
    return units


def _fallback(units: Sequence[_Unit]) -> str:
    text = "\n".join(unit.summary for unit in units if unit.summary.strip())
    return clip(text.strip(), FALLBACK_LIMIT) or DEFAULT_FALLBACK


def _pack(units: Sequence[_Unit], max_blocks: int) -> list[list[_Unit]]:
    groups: list[list[_Unit]] = []
    current: list[_Unit] = []
    blocks = size = 0
    for unit in units:
        fits = blocks + len(unit.blocks) <= max_blocks and size + unit.size <= MESSAGE_TEXT_BUDGET
        if current and not fits:
            groups.append(current)
            current, blocks, size = [], 0, 0
        current.append(unit)
        blocks += len(unit.blocks)
        size += unit.size
    if current:
        groups.append(current)
    return groups


def render(
    reply: Reply, *, command: str = DEFAULT_COMMAND, max_blocks: int = MAX_BLOCKS
) -> list[Rendered]:
    """The messages that show ``reply``, in order; empty when the reply has nothing to show.

    Buttons under the whole reply (paging, confirmations) go under the last message.
    """
    ids = _Ids()
    units = _units(reply, command, ids)
    if not units:
        return []
    if units and not units[-1].summary and len(units) > 1:
        # Trailing buttons alone would make a message with an empty fallback; keep them
        # with the reply's last content.
        *rest, last = units
        rest[-1] = _Unit(rest[-1].blocks + last.blocks, rest[-1].summary, rest[-1].size)
        units = rest
    messages: list[Rendered] = []
    for group in _pack(units, max_blocks):
        blocks = [block for unit in group for block in unit.blocks]
        messages.append(Rendered(_fallback(group), blocks))
    return messages


def notice_text(notice: str, command: str = DEFAULT_COMMAND) -> str:
    """A button notice as ephemeral mrkdwn text."""
    return clip(slack_commands(_oneline(notice), command), FALLBACK_LIMIT) or DEFAULT_FALLBACK


# --------------------------------------------------------------------------- updates and views


def relabel(blocks: Sequence[dict[str, Any]], buttons: Sequence[Button]) -> list[dict[str, Any]]:
    """``blocks`` with every button whose value matches one of ``buttons`` relabelled.

    Raises ``ValueError`` when no button matched (the message changed, or is not ours), and
    returns the blocks unchanged when the labels were already right.
    """
    wanted = {value: button.label for button in buttons if (value := encode_value(button))}
    matched = False
    out: list[dict[str, Any]] = []
    for block in blocks:
        if block.get("type") == "actions" and isinstance(block.get("elements"), list):
            elements = []
            for element in block["elements"]:
                value = element.get("value") if isinstance(element, dict) else None
                if isinstance(value, str) and value in wanted:
                    matched = True
                    label = clip_plain(_oneline(wanted[value]), BUTTON_LIMIT) or "·"
                    text = {**element.get("text", {}), "type": "plain_text", "text": label}
                    element = {**element, "text": text}
                elements.append(element)
            block = {**block, "elements": elements}
        out.append(block)
    if not matched:
        raise ValueError("no button of the message matches")
    return out


def home_view(
    replies: Sequence[Reply], *, command: str = DEFAULT_COMMAND, max_blocks: int = MAX_VIEW_BLOCKS
) -> dict[str, Any]:
    """An App Home view showing ``replies`` one after another, separated by dividers."""
    ids = _Ids()
    blocks: list[dict[str, Any]] = []
    cut = False
    for index, reply in enumerate(replies):
        units = _units(reply, command, ids)
        divider = [{"type": "divider"}] if index and units else []
        for position, unit in enumerate(units):
            extra = divider if position == 0 else []
            # Keep one slot for the "more" note, so a cut view still says it was cut.
            if len(blocks) + len(extra) + len(unit.blocks) > max_blocks - 1:
                cut = True
                break
            blocks += extra + unit.blocks
        if cut:
            break
    if cut:
        more = f"… more with `{escape(command)} saved` and `{escape(command)} settings`."
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": more}]})
    if not blocks:
        blocks.append(_section(escape(DEFAULT_FALLBACK)))
    return {"type": "home", "blocks": blocks}
