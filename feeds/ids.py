"""Find arXiv identifiers in any text or URL form.

Every engagement source and every arXiv format goes through this module, so an id looks the
same everywhere: new style ``2401.12345`` (4 or 5 digits after the dot), old style
``hep-th/9901001``, always without the version.
"""

from __future__ import annotations

import re

# Old-style archives (with optional subject class such as ``math.AG``) that ever existed.
_OLD_ARCHIVES = (
    "acc-phys|adap-org|alg-geom|ao-sci|astro-ph|atom-ph|bayes-an|chao-dyn|chem-ph|cmp-lg|"
    "comp-gas|cond-mat|cs|dg-ga|funct-an|gr-qc|hep-ex|hep-lat|hep-ph|hep-th|math|math-ph|"
    "mtrl-th|nlin|nucl-ex|nucl-th|patt-sol|physics|plasm-ph|q-alg|q-bio|quant-ph|solv-int|"
    "supr-con"
)
_NEW_ID = r"(?P<new>(?:0[7-9]|[1-9]\d)(?:0[1-9]|1[0-2])\.\d{4,5})"
_OLD_ID = rf"(?P<old>(?:{_OLD_ARCHIVES})(?:\.[A-Z]{{2}})?/\d{{7}})"
_VERSION = r"(?:v(?P<version>\d+))?"

# Forms in URLs: arxiv.org/abs|pdf|html|format, export./www. hosts, alphaxiv, Hugging Face
# paper pages, and the arXiv DOI (10.48550/arXiv.<id>).
_URL_PATTERN = re.compile(
    r"(?:arxiv\.org/(?:abs|pdf|html|format|ps)/|alphaxiv\.org/(?:abs/|overview/)?"
    r"|huggingface\.co/papers/|hf\.co/papers/|10\.48550/arxiv\.)"
    rf"(?:{_NEW_ID}|{_OLD_ID}){_VERSION}",
    re.IGNORECASE,
)
# Forms in prose: "arXiv:2401.12345v2", "arXiv 2401.12345", or a bare new-style id.
_TEXT_PATTERN = re.compile(
    rf"(?:\barxiv[:\s]\s*)?(?<![\w./-])(?:{_NEW_ID}|{_OLD_ID}){_VERSION}(?![\w/]|\.\d)",
    re.IGNORECASE,
)
_PLAIN_NEW_ID = re.compile(_NEW_ID)
_EXACT = re.compile(rf"^(?:arxiv:)?(?:{_NEW_ID}|{_OLD_ID}){_VERSION}$", re.IGNORECASE)


def _canonical(match: re.Match[str]) -> tuple[str, int | None]:
    new, old = match.group("new"), match.group("old")
    if new:
        arxiv_id = new
    else:
        archive, number = old.split("/")
        # Archive names are lower case, the subject class (math.AG) upper case.
        head, _, subject = archive.partition(".")
        arxiv_id = f"{head.lower()}{'.' + subject.upper() if subject else ''}/{number}"
    version = match.group("version")
    return arxiv_id, int(version) if version else None


def split_version(raw: str) -> tuple[str, int | None]:
    """Split ``2401.12345v2`` into ``("2401.12345", 2)``; raise ``ValueError`` if not an id."""
    match = _EXACT.match(raw.strip())
    if not match:
        raise ValueError(f"not an arXiv identifier: {raw!r}")
    return _canonical(match)


def normalize_id(raw: str) -> str:
    """Return the versionless id of ``raw`` (an id, with or without ``arXiv:`` or version)."""
    if _PLAIN_NEW_ID.fullmatch(raw):
        return raw  # already canonical: the common case of every harvested record
    return split_version(raw)[0]


def find_ids(text: str) -> list[str]:
    """Every distinct arXiv id mentioned in ``text`` (URLs first, then prose), in order."""
    found: dict[str, None] = {}
    for match in _URL_PATTERN.finditer(text):
        found.setdefault(_canonical(match)[0], None)
    for match in _TEXT_PATTERN.finditer(text):
        found.setdefault(_canonical(match)[0], None)
    return list(found)


def find_id(text: str) -> str | None:
    """The first arXiv id in ``text``, or None."""
    ids = find_ids(text)
    return ids[0] if ids else None
