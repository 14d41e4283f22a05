"""Text normalisation shared by ranking and profile matching: tokens, light stemming, names."""

from __future__ import annotations

import re
import unicodedata
from itertools import pairwise

from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

_TOKEN = re.compile(r"[a-z0-9][a-z0-9\-]*[a-z0-9]|[a-z0-9]")
_LATEX_COMMAND = re.compile(r"\\[a-zA-Z]+")
# Words that end in "s" but are not plurals; stripping the "s" would only confuse matching.
_KEEP_S = frozenset(
    """always analysis basis bias class gas loss less process thus various this its has was is as
    us bus lens plus series species physics mathematics statistics linguistics robotics dynamics
    economics genomics graphics ethics news axis corpus""".split()
)


def fold(text: str) -> str:
    """Lower-case and strip accents: "Schölkopf" → "scholkopf"."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


def stem(token: str) -> str:
    """A deliberately light stemmer: plural forms only ("models" → "model", "queries" → "query")."""
    if len(token) <= 3 or token in _KEEP_S or token.endswith(("ss", "us", "is")):
        return token
    if token.endswith("ies") and len(token) > 4:
        return token[:-3] + "y"
    if token.endswith(("ches", "shes", "xes", "sses")):
        return token[:-2]
    if token.endswith("s"):
        return token[:-1]
    return token


def tokens(text: str) -> list[str]:
    """Content tokens of ``text``: folded, LaTeX commands dropped, stop words out, stemmed."""
    cleaned = _LATEX_COMMAND.sub(" ", fold(text))
    return [stem(t) for t in _TOKEN.findall(cleaned) if len(t) > 1 and t not in ENGLISH_STOP_WORDS]


def analyze(text: str) -> list[str]:
    """Unigrams and bigrams of :func:`tokens`, the TF-IDF vocabulary unit."""
    words = tokens(text)
    return words + [f"{a} {b}" for a, b in pairwise(words)]


def name_key(name: str) -> tuple[str, str]:
    """(surname, first initial) of a person's name, robust to order, accents and initials.

    "Yann LeCun", "Y. LeCun" and "LeCun, Yann" all give ("lecun", "y").
    """
    folded = fold(name).strip()
    if "," in folded:
        surname, _, given = folded.partition(",")
        parts = given.split() + surname.split()
    else:
        parts = folded.split()
    parts = [p.strip(".") for p in parts if p.strip(".")]
    if not parts:
        return ("", "")
    surname = re.sub(r"[^a-z0-9]", "", parts[-1])
    initial = parts[0][0] if len(parts) > 1 else ""
    return (surname, initial)


def same_person(a: str, b: str) -> bool:
    """True when two author strings plausibly name the same person."""
    surname_a, initial_a = name_key(a)
    surname_b, initial_b = name_key(b)
    if not surname_a or surname_a != surname_b:
        return False
    return not initial_a or not initial_b or initial_a == initial_b
