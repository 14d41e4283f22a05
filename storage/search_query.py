"""The search query language, parsed into a small syntax tree; nothing here touches a database.

Accepted syntax (anything else is read as plain words, never as engine syntax)::

    diffusion transformer        every word must match (stemmed by the engine)
    "exact phrase"               the words in this order
    diffus*                      words starting with "diffus" (at least 3 letters before *)
    -excluded, NOT excluded      papers with this word (or "phrase", or filter) are left out
    graph OR hypergraph          either word (an upper-case OR between two words)
    author:hinton, author:"geoffrey hinton"
    cat:cs.LG, cat:cs            a category, or every category of an archive
    since:2024-01-01, since:7d   published on or after (also 2024-01, 2024, 2w, 3m, 1y, today)
    before:2024-06-01            published before
    id:2401.12345, 2401.12345, https://arxiv.org/abs/2401.12345
    sort:new, sort:trending      newest first / most talked about first (default: relevance)

Input is cleaned first: Unicode NFKC, control characters and lone surrogates dropped, at most
:data:`MAX_QUERY_CHARS` characters and :data:`MAX_TERMS` terms. Whatever was ignored or
changed is described in :attr:`Query.notes`, one short sentence each.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum

from feeds.ids import find_ids, split_version

MAX_QUERY_CHARS = 1000
MAX_TERMS = 24
MIN_PREFIX = 3
MAX_WORD_CHARS = 64

_WORD = re.compile(r"[^\W_]+")
_CATEGORY = re.compile(r"^[a-z][a-z-]*(?:\.[a-z][a-z-]*)?$", re.IGNORECASE)
_RELATIVE = re.compile(r"^(\d{1,5})\s*(d|day|days|w|week|weeks|m|month|months|y|year|years)$")
_ABSOLUTE = re.compile(r"^(\d{4})(?:-(\d{1,2})(?:-(\d{1,2}))?)?$")
_BRACKETS = "()[]{}"
_BREAKS = _BRACKETS + '"'
_URLISH = re.compile(r"[/:]|arxiv", re.IGNORECASE)

_FIELDS = {
    "author": "author", "au": "author", "by": "author",
    "cat": "cat", "category": "cat", "in": "cat",
    "since": "since", "after": "since", "from": "since",
    "before": "before", "until": "before",
    "id": "id", "arxiv": "id",
    "sort": "sort", "order": "sort",
}  # fmt: skip


class Sort(StrEnum):
    """How results are ordered."""

    RELEVANCE = "relevance"
    NEW = "new"
    TRENDING = "trending"


_SORTS = {
    "relevance": Sort.RELEVANCE, "rel": Sort.RELEVANCE, "best": Sort.RELEVANCE,
    "new": Sort.NEW, "newest": Sort.NEW, "date": Sort.NEW, "recent": Sort.NEW,
    "trending": Sort.TRENDING, "trend": Sort.TRENDING, "hot": Sort.TRENDING,
    "popular": Sort.TRENDING,
}  # fmt: skip


@dataclass(frozen=True)
class Word:
    """One folded word; ``prefix`` matches every word that starts with it."""

    text: str
    prefix: bool = False

    def render(self) -> str:
        """The word as query syntax."""
        return self.text + ("*" if self.prefix else "")


@dataclass(frozen=True)
class Phrase:
    """Folded words that must appear next to each other, in this order."""

    words: tuple[str, ...]

    def render(self) -> str:
        """The phrase as query syntax."""
        return '"' + " ".join(self.words) + '"'


Atom = Word | Phrase


@dataclass(frozen=True)
class Query:
    """A parsed search: ``groups`` are ANDed, the atoms inside one group ORed."""

    groups: tuple[tuple[Atom, ...], ...] = ()
    excluded: tuple[Atom, ...] = ()
    authors: tuple[tuple[str, ...], ...] = ()
    """Each followed author filter as its folded name words; all must match."""
    excluded_authors: tuple[tuple[str, ...], ...] = ()
    categories: tuple[str, ...] = ()
    """Category or archive names as typed (``cs.LG``, ``cs``); any of them may match."""
    excluded_categories: tuple[str, ...] = ()
    ids: tuple[str, ...] = ()
    since: datetime | None = None
    before: datetime | None = None
    sort: Sort = Sort.RELEVANCE
    notes: tuple[str, ...] = field(default=(), compare=False)

    @property
    def has_text(self) -> bool:
        """True when some word or phrase must match."""
        return bool(self.groups)

    @property
    def has_filters(self) -> bool:
        """True when authors, categories, dates or ids narrow the search."""
        return bool(
            self.authors
            or self.excluded_authors
            or self.categories
            or self.excluded_categories
            or self.ids
            or self.since
            or self.before
        )

    @property
    def is_empty(self) -> bool:
        """True when nothing at all would narrow the search."""
        return not (self.has_text or self.excluded or self.has_filters)

    def without_filters(self) -> Query:
        """The same words with every author, category, date and id filter dropped."""
        return Query(groups=self.groups, excluded=self.excluded, sort=self.sort)

    def filter_text(self) -> str:
        """The filters as query syntax, for messages ("cat:cs.LG since:2024-01-01")."""
        parts = [f"author:{_quoted(' '.join(name))}" for name in self.authors]
        parts += [f"-author:{_quoted(' '.join(name))}" for name in self.excluded_authors]
        parts += [f"cat:{category}" for category in self.categories]
        parts += [f"-cat:{category}" for category in self.excluded_categories]
        parts += [f"id:{arxiv_id}" for arxiv_id in self.ids]
        if self.since:
            parts.append(f"since:{self.since:%Y-%m-%d}")
        if self.before:
            parts.append(f"before:{self.before:%Y-%m-%d}")
        return " ".join(parts)

    def render(self) -> str:
        """The whole query as canonical query syntax (parses back to an equal ``Query``)."""
        parts = [" OR ".join(atom.render() for atom in group) for group in self.groups]
        parts += ["-" + atom.render() for atom in self.excluded]
        filters = self.filter_text()
        if filters:
            parts.append(filters)
        if self.sort is not Sort.RELEVANCE:
            parts.append(f"sort:{self.sort.value}")
        return " ".join(parts)

    def words(self) -> list[Word]:
        """Every plain (non-phrase) word that must match, in order."""
        return [atom for group in self.groups for atom in group if isinstance(atom, Word)]

    def replace_word(self, old: str, new: str) -> Query:
        """The same query with plain word ``old`` replaced by ``new`` everywhere."""

        def swap(atom: Atom) -> Atom:
            if isinstance(atom, Word) and atom.text == old and not atom.prefix:
                return Word(new)
            return atom

        groups = tuple(tuple(swap(atom) for atom in group) for group in self.groups)
        return replace(self, groups=groups)


def _quoted(text: str) -> str:
    return f'"{text}"' if " " in text else text


def fold(text: str) -> str:
    """Lower-case and strip accents ("Schölkopf" → "scholkopf"), as both engines index."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


def words_of(text: str) -> list[str]:
    """The folded words of ``text``: letters and digits, split at everything else."""
    return [w[:MAX_WORD_CHARS] for w in _WORD.findall(fold(text))]


def clean(text: str) -> str:
    """NFKC, no control/format/surrogate/private characters, whitespace collapsed."""
    normalized = unicodedata.normalize("NFKC", text)
    kept = []
    for char in normalized:
        category = unicodedata.category(char)
        if category in ("Cc", "Cf", "Cs", "Co", "Cn") or category.startswith("Z"):
            kept.append(" ")
        else:
            kept.append(char)
    return " ".join("".join(kept).split())


# ---------------------------------------------------------------------------------------------
# Lexing: split into raw tokens, honouring quotes; nothing is interpreted yet.


@dataclass(frozen=True)
class _Token:
    text: str
    quoted: bool = False
    negated: bool = False
    field: str | None = None
    """Raw field name before ':' (lower case), or None."""


def _lex(text: str, notes: list[str]) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char.isspace() or char in _BRACKETS:
            i += 1
            continue
        negated = False
        if char in "-!" and i + 1 < n and not text[i + 1].isspace():
            negated = True
            i += 1
        if text[i] == '"':
            body, i = _read_quoted(text, i, notes)
            tokens.append(_Token(body, quoted=True, negated=negated))
            continue
        start = i
        while i < n and not text[i].isspace() and text[i] not in _BREAKS:
            i += 1
        raw = text[start:i]
        name, colon, value = raw.partition(":")
        if colon and name.lower() in _FIELDS:
            if not value and i < n and text[i] == '"':
                body, i = _read_quoted(text, i, notes)
                tokens.append(_Token(body, quoted=True, negated=negated, field=name.lower()))
            else:
                tokens.append(_Token(value, negated=negated, field=name.lower()))
            continue
        # A quote or bracket glued to a word (foo"bar", f(x)) ends it; it is lexed next.
        if raw:
            tokens.append(_Token(raw, negated=negated))
    return tokens


def _read_quoted(text: str, start: int, notes: list[str]) -> tuple[str, int]:
    end = text.find('"', start + 1)
    if end < 0:
        notes.append("Closed an unbalanced quote at the end.")
        return text[start + 1 :], len(text)
    return text[start + 1 : end], end + 1


# ---------------------------------------------------------------------------------------------
# Parsing


def parse(text: str, *, now: datetime | None = None) -> Query:
    """Parse a user's search into a :class:`Query`; never raises, whatever the input."""
    now = now or datetime.now(UTC)
    notes: list[str] = []
    cleaned = clean(text)
    if len(cleaned) > MAX_QUERY_CHARS:
        cut = cleaned.rfind(" ", 0, MAX_QUERY_CHARS)
        cleaned = cleaned[: cut if cut > MAX_QUERY_CHARS // 2 else MAX_QUERY_CHARS]
        notes.append(f"Used the first {len(cleaned)} characters of the query.")
    builder = _Builder(now, notes)
    for token in _lex(cleaned, notes):
        builder.add(token)
    return builder.build()


class _Builder:
    def __init__(self, now: datetime, notes: list[str]) -> None:
        self.now = now
        self.notes = notes
        self.groups: list[list[Atom]] = []
        self.excluded: list[Atom] = []
        self.authors: list[tuple[str, ...]] = []
        self.excluded_authors: list[tuple[str, ...]] = []
        self.categories: list[str] = []
        self.excluded_categories: list[str] = []
        self.ids: list[str] = []
        self.since: datetime | None = None
        self.before: datetime | None = None
        self.sort = Sort.RELEVANCE
        self.pending_or = False
        self.pending_not = False
        self.terms = 0
        self.dropped = 0

    # -- tokens --------------------------------------------------------------------------------

    def add(self, token: _Token) -> None:
        negated = token.negated or self.pending_not
        self.pending_not = False
        if token.field is not None:
            self.pending_or = False
            self._field(_FIELDS[token.field], token.field, token.text, negated)
            return
        if not token.quoted and not token.negated:
            if token.text == "OR":
                self.pending_or = bool(self.groups)
                return
            if token.text == "AND":
                return
            if token.text == "NOT":
                self.pending_not = True
                return
        if not token.quoted and self._bare_ids(token.text, negated):
            self.pending_or = False
            return
        atom = self._atom(token.text, quoted=token.quoted)
        if atom is None:
            self.pending_or = False
            return
        if not self._count():
            return
        if negated:
            self.excluded.append(atom)
        elif self.pending_or and self.groups:
            if atom not in self.groups[-1]:
                self.groups[-1].append(atom)
        elif not any(group == [atom] for group in self.groups):
            self.groups.append([atom])
        self.pending_or = False

    def _count(self) -> bool:
        self.terms += 1
        if self.terms > MAX_TERMS:
            self.dropped += 1
            return False
        return True

    def _atom(self, raw: str, *, quoted: bool) -> Atom | None:
        prefix = not quoted and raw.endswith("*")
        words = words_of(raw)
        if not words:
            return None
        if len(words) > 1:
            # "state-of-the-art", "GPT-4" and quoted text are phrases.
            return Phrase(tuple(words[:MAX_TERMS]))
        word = words[0]
        if prefix and len(word) < MIN_PREFIX:
            self.notes.append(
                f"A prefix needs at least {MIN_PREFIX} letters; searched for “{word}” itself."
            )
            prefix = False
        return Word(word, prefix=prefix)

    def _bare_ids(self, raw: str, negated: bool) -> bool:
        """A bare arXiv id or arXiv URL: jump to that paper."""
        ids = find_ids(raw)
        if not ids:
            return False
        if not _URLISH.search(raw):
            try:
                split_version(raw)
            except ValueError:
                return False
        if negated:
            self.notes.append("Papers can't be excluded by id; ignored.")
            return True
        for arxiv_id in ids:
            if arxiv_id not in self.ids:
                self.ids.append(arxiv_id)
        return True

    # -- fields --------------------------------------------------------------------------------

    def _field(self, name: str, typed: str, value: str, negated: bool) -> None:
        value = value.strip()
        if not value:
            self.notes.append(f"“{typed}:” needs a value; ignored.")
            return
        if name == "author":
            words = tuple(words_of(value))[:8]
            if not words:
                self.notes.append(f"“{typed}:{value}” has no name in it; ignored.")
            elif negated:
                self.excluded_authors.append(words)
            elif words not in self.authors:
                self.authors.append(words)
        elif name == "cat":
            self._category(typed, value, negated)
        elif name in ("since", "before"):
            self._date(name, typed, value, negated)
        elif name == "id":
            ids = find_ids(value)
            if not ids:
                self.notes.append(f"“{value[:40]}” is not an arXiv id; ignored.")
            elif negated:
                self.notes.append("Papers can't be excluded by id; ignored.")
            else:
                self.ids.extend(i for i in ids if i not in self.ids)
        elif name == "sort":
            sort = _SORTS.get(value.lower())
            if sort is None:
                self.notes.append(f"Unknown sort “{value[:20]}”; use sort:new or sort:trending.")
            else:
                self.sort = sort

    def _category(self, typed: str, value: str, negated: bool) -> None:
        found = False
        for part in value.split(","):
            part = part.strip()
            if not part:
                continue
            if not _CATEGORY.match(part) or len(part) > 32:
                self.notes.append(f"“{part[:32]}” is not an arXiv category (like cs.LG); ignored.")
                continue
            found = True
            target = self.excluded_categories if negated else self.categories
            if part.lower() not in (c.lower() for c in target):
                target.append(part)
        if not found and not value.strip(","):
            self.notes.append(f"“{typed}:” needs a category; ignored.")

    def _date(self, name: str, typed: str, value: str, negated: bool) -> None:
        moment = parse_date(value, self.now)
        if moment is None:
            self.notes.append(
                f"Couldn't read the date “{value[:20]}”; use {typed}:2024-01-01 or {typed}:7d."
            )
            return
        if negated:
            # -since:X means "before X" and -before:X means "since X".
            name = "before" if name == "since" else "since"
        if name == "since":
            self.since = moment if self.since is None else max(self.since, moment)
        else:
            self.before = moment if self.before is None else min(self.before, moment)

    # -- result --------------------------------------------------------------------------------

    def build(self) -> Query:
        if self.dropped:
            self.notes.append(f"Used the first {MAX_TERMS} terms; {self.dropped} more ignored.")
        if self.since and self.before and self.since >= self.before:
            self.notes.append("The since: date is not before the before: date; ignored both.")
            self.since = self.before = None
        return Query(
            groups=tuple(tuple(group) for group in self.groups),
            excluded=tuple(dict.fromkeys(self.excluded)),
            authors=tuple(self.authors),
            excluded_authors=tuple(dict.fromkeys(self.excluded_authors)),
            categories=tuple(self.categories),
            excluded_categories=tuple(self.excluded_categories),
            ids=tuple(self.ids),
            since=self.since,
            before=self.before,
            sort=self.sort,
            notes=tuple(dict.fromkeys(self.notes)),
        )


def parse_date(value: str, now: datetime) -> datetime | None:
    """``2024-01-31``, ``2024-01``, ``2024``, ``7d``, ``2w``, ``3m``, ``1y``, ``today``,
    ``yesterday`` → the UTC start of that day (None when unreadable or out of range)."""
    value = value.strip().lower()
    today = datetime(now.year, now.month, now.day, tzinfo=UTC)
    if value == "today":
        return today
    if value == "yesterday":
        return today - timedelta(days=1)
    relative = _RELATIVE.match(value)
    if relative:
        amount, unit = int(relative.group(1)), relative.group(2)[0]
        days = amount * {"d": 1, "w": 7, "m": 30, "y": 365}[unit]
        if days > 365 * 60:
            return None
        return today - timedelta(days=days)
    absolute = _ABSOLUTE.match(value)
    if not absolute:
        return None
    year, month, day = absolute.group(1), absolute.group(2), absolute.group(3)
    try:
        moment = date(int(year), int(month or 1), int(day or 1))
    except ValueError:
        return None
    if not 1990 <= moment.year <= 2200:
        return None
    return datetime(moment.year, moment.month, moment.day, tzinfo=UTC)


def category_token(category: str) -> str:
    """The index token of a category: ``cs.LG`` → ``catcslg``, ``cs`` → ``catcs``."""
    return "cat" + re.sub(r"[^a-z0-9]", "", category.lower())
