"""Render a ``Reply`` as Telegram HTML messages with inline keyboards (pure, no network).

Every piece of text from a paper is escaped with ``html.escape``, so LaTeX, ``<``, ``&``,
``_`` and ``*`` reach the reader as typed. Long replies are split *between* blocks into
messages of at most ``MESSAGE_LIMIT`` characters, never inside a tag; each paper card has a
budget per field, so one card always fits in one message. Lengths are counted in UTF-16 code
units over the HTML source, which is stricter than Telegram's own count (it counts the text
after parsing), so a chunk that passes here is never "message is too long" there.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from bot.messages import Action, Button, PaperBlock, Reply, TextBlock

MESSAGE_LIMIT = 4096
CALLBACK_LIMIT = 64
"""Telegram's limit on ``callback_data``, in bytes."""
PARAGRAPH = "\n\n"

TITLE_BUDGET = 700
AUTHORS_BUDGET = 400
CATEGORY_BUDGET = 60
WHY_BUDGET = 400
TREND_BUDGET = 300
SNIPPET_BUDGET = 900
URL_BUDGET = 400
"""Escaped UTF-16 units per field of a paper card: together well under one message."""

_NUMBER_PREFIX = re.compile(r"^\d+ ")


@dataclass(frozen=True)
class Key:
    """One inline keyboard button: a callback or a link."""

    text: str
    callback_data: str | None = None
    url: str | None = None


Keyboard = tuple[tuple[Key, ...], ...]


@dataclass(frozen=True)
class Rendered:
    """One Telegram message: HTML text and its inline keyboard (possibly empty)."""

    text: str
    keyboard: Keyboard = ()


def tg_length(text: str) -> int:
    """Length in UTF-16 code units, the way Telegram counts."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def escape(text: str) -> str:
    """Escape text for Telegram's HTML parse mode (``&``, ``<``, ``>``)."""
    return html.escape(text, quote=False)


def clip(text: str, budget: int) -> str:
    """Escape ``text``, cutting it with "…" so the escaped result fits ``budget`` units."""
    escaped = escape(text)
    if tg_length(escaped) <= budget:
        return escaped
    out: list[str] = []
    used = 0
    for char in text:
        piece = escape(char)
        size = tg_length(piece)
        if used + size > budget - 1:
            break
        out.append(piece)
        used += size
    return "".join(out) + "…"


def _link(url: str) -> str | None:
    """The URL quoted for an ``href``, or None when Telegram would refuse it."""
    parts = urlsplit(url.strip()) if len(url) <= URL_BUDGET else None
    if parts is None or parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    if any(ch.isspace() for ch in url.strip()):
        return None
    return html.escape(url.strip(), quote=True)


def _snippet(segments: Sequence[tuple[str, bool]]) -> str:
    out: list[str] = []
    used = 0
    for text, highlighted in segments:
        if not text:
            continue
        overhead = 7 if highlighted else 0
        room = SNIPPET_BUDGET - used - overhead
        if room <= 1:
            out.append("…")
            break
        cut = tg_length(escape(text)) > room
        piece = clip(text, room)
        out.append(f"<b>{piece}</b>" if highlighted else piece)
        used += tg_length(piece) + overhead
        if cut:
            break
    return "".join(out)


def paper_html(block: PaperBlock, *, numbered: bool = True) -> str:
    """One paper card: linked title, authors · category, why, trend line, snippet."""
    item = block.item
    title = clip(
        " ".join(item.title.split()) or item.arxiv_id.strip() or "arXiv paper", TITLE_BUDGET
    )
    head = f"<b>{block.number}.</b> " if numbered and block.number is not None else ""
    href = _link(item.url)
    lines = [f'{head}<a href="{href}">{title}</a>' if href else f"{head}<b>{title}</b>"]
    byline = [
        part
        for part in (
            clip(" ".join(item.short_authors.split()), AUTHORS_BUDGET),
            clip(item.primary_category.strip(), CATEGORY_BUDGET),
        )
        if part.strip()
    ]
    if byline:
        lines.append(" · ".join(byline))
    if item.why.strip():
        lines.append(f"<i>{clip(' '.join(item.why.split()), WHY_BUDGET)}</i>")
    if item.trend_line.strip():
        lines.append(clip(" ".join(item.trend_line.split()), TREND_BUDGET))
    snippet = _snippet(block.snippet)
    if snippet.strip():
        lines.append(snippet)
    return "\n".join(lines)


def split_text(text: str, *, bold: bool = False, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Escape a plain paragraph into pieces of at most ``limit`` units, broken at lines/spaces."""
    overhead = 7 if bold else 0
    budget = limit - overhead
    whole = escape(text)
    if tg_length(whole) <= budget:
        # The common case, one piece: what the loop below would build, without a Python
        # step per character (escaping a character never yields whitespace to strip).
        piece = whole.strip()
        return [f"<b>{piece}</b>" if bold else piece] if piece else []
    escaped = [escape(char) for char in text]
    sizes = [tg_length(piece) for piece in escaped]
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
        if end < len(text) and last_break > start:
            end = last_break + 1
        piece = "".join(escaped[start:end]).strip()
        if piece:
            pieces.append(f"<b>{piece}</b>" if bold else piece)
        start = end
    return pieces


def encode_callback(button: Button) -> str | None:
    """``l:2401.12345``; None when it would not fit Telegram's 64 bytes."""
    data = f"{button.action.value}:{button.target}"
    return data if len(data.encode()) <= CALLBACK_LIMIT else None


def decode_callback(data: str | None) -> tuple[Action | None, str]:
    """(action, target) from callback data; the action is None when unknown."""
    code, _, target = (data or "").partition(":")
    try:
        return Action(code), target
    except ValueError:
        return None, target


def _keys(buttons: Iterable[Button], prefix: str = "") -> tuple[Key, ...]:
    keys = []
    for button in buttons:
        if button.url is not None:
            if _link(button.url):
                keys.append(Key(prefix + button.label, url=button.url.strip()))
            continue
        data = encode_callback(button)
        if data is not None:
            keys.append(Key(prefix + button.label, callback_data=data))
    return tuple(keys)


def _pieces(reply: Reply) -> list[tuple[str, Keyboard]]:
    pieces: list[tuple[str, Keyboard]] = []
    for block in reply.blocks:
        if isinstance(block, TextBlock):
            pieces += [(piece, ()) for piece in split_text(block.text, bold=block.bold)]
        else:
            prefix = f"{block.number} " if block.number is not None else ""
            row = _keys(block.buttons, prefix)
            pieces.append((paper_html(block), (row,) if row else ()))
    return pieces


def render(reply: Reply, *, limit: int = MESSAGE_LIMIT) -> list[Rendered]:
    """The messages that show ``reply``: blocks packed in order, split only between blocks."""
    messages: list[Rendered] = []
    text: list[str] = []
    rows: list[tuple[Key, ...]] = []
    used = 0
    for piece, keyboard in _pieces(reply):
        size = tg_length(piece)
        extra = tg_length(PARAGRAPH) if text else 0
        if text and used + extra + size > limit:
            messages.append(Rendered(PARAGRAPH.join(text), tuple(rows)))
            text, rows, used, extra = [], [], 0, 0
        text.append(piece)
        rows.extend(keyboard)
        used += extra + size
    if text:
        messages.append(Rendered(PARAGRAPH.join(text), tuple(rows)))
    trailing = _keys(reply.buttons)
    if trailing and messages:
        last = messages[-1]
        messages[-1] = Rendered(last.text, (*last.keyboard, trailing))
    return messages


def relabel(keyboard: Keyboard, buttons: Sequence[Button]) -> Keyboard | None:
    """The keyboard with buttons matching ``buttons`` (same action and target) relabelled.

    Keeps the paper number an earlier render put in front of the label. Returns None when
    nothing changes, so the caller can skip an edit Telegram would refuse as "not modified".
    """
    wanted = {data: button.label for button in buttons if (data := encode_callback(button))}
    changed = False
    rows = []
    for row in keyboard:
        keys = []
        for key in row:
            if key.callback_data in wanted:
                number = _NUMBER_PREFIX.match(key.text)
                text = (number.group(0) if number else "") + wanted[key.callback_data]
                changed |= text != key.text
                key = Key(text, callback_data=key.callback_data)
            keys.append(key)
        rows.append(tuple(keys))
    return tuple(rows) if changed else None
