"""arXiv adapters: the daily announcement feed, the query API and OAI-PMH.

Each format has a pure ``parse_*`` function (bytes in, ``PaperBatch`` out, no I/O) and a thin
async ``fetch_*`` function that only builds the request and hands the body to the parser.
Every format is parsed with namespace-aware ElementTree through ``feeds.http.parse_xml``
(defusedxml), never by element order or by ``title`` attributes, because arXiv changed its API
output in autumn 2025 and may do so again.

Errors:

- ``feeds.http.MalformedPayload``: the body is not XML, or not the document we asked for.
- ``ArxivApiError`` (a ``FetchError``): the query API answered with its error feed (one entry
  titled ``Error``), e.g. for a malformed id. The request was wrong, not the payload.
- ``OaiError`` (a ``FetchError``): an OAI-PMH error other than ``noRecordsMatch``; ``code``
  says which (``badResumptionToken`` means: restart the harvest from ``from_date``).

Normalisation shared by every format: ids via ``feeds.ids.split_version`` (old style
``hep-th/9901001`` included), whitespace collapsed in titles, abstracts and comments, HTML
entities left over after XML decoding are decoded, LaTeX is kept exactly as written, and every
datetime is timezone-aware UTC.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import Protocol
from urllib.parse import unquote
from xml.etree.ElementTree import Element

import httpx

from feeds.http import (
    FetchError,
    MalformedPayload,
    conditional_headers,
    cycle_collection_paused,
    parse_xml,
    raise_for_status,
)
from feeds.ids import normalize_id, split_version
from feeds.records import AnnounceType, PageInfo, Paper, PaperBatch

logger = logging.getLogger(__name__)

ANNOUNCE_URL = "https://rss.arxiv.org/rss/{category}"
API_URL = "https://export.arxiv.org/api/query"
OAI_URL = "https://oaipmh.arxiv.org/oai"

# The API caps one call at 2000 results (user manual §3.1.1.2).
MAX_API_BATCH = 2000

_NS = {
    "atom": "http://www.w3.org/2005/Atom",
    "arxiv": "http://arxiv.org/schemas/atom",
    "opensearch": "http://a9.com/-/spec/opensearch/1.1/",
    "dc": "http://purl.org/dc/elements/1.1/",
    "oai": "http://www.openarchives.org/OAI/2.0/",
    "arXiv": "http://arxiv.org/OAI/arXiv/",
    "arXivRaw": "http://arxiv.org/OAI/arXivRaw/",
}
_ATOM_FEED = f"{{{_NS['atom']}}}feed"
_OAI_ROOT = f"{{{_NS['oai']}}}OAI-PMH"
_OAI_ARXIV = f"{{{_NS['arXiv']}}}arXiv"
_OAI_ARXIV_RAW = f"{{{_NS['arXivRaw']}}}arXivRaw"

# Only well-formed entities: a bare "&" in LaTeX (``a & b``) or "&amp" without ";" stays as is.
_ENTITY = re.compile(r"&(?:#[0-9]+|#[xX][0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]{1,31});")
# arXiv categories (``cs.LG``, ``hep-th``, ``cond-mat.stat-mech``); the API and OAI also list
# MSC and ACM classes (``68T05``, ``I.2.7``) as categories, which are not arXiv categories.
_CATEGORY = re.compile(r"^[a-z][a-z-]*(?:\.[A-Za-z][A-Za-z-]*)?$")
_CATEGORY_LIST = re.compile(r"^[A-Za-z][A-Za-z.-]*(?:\+[A-Za-z][A-Za-z.-]*)*$")
_DESCRIPTION_ID = re.compile(r"arXiv:(\S+)")
_DESCRIPTION_TYPE = re.compile(r"Announce Type:\s*([a-z-]+)")
_ABSTRACT_MARK = re.compile(r"Abstract:\s*")
_ABS_URL = re.compile(r"arxiv\.org/abs/(.+)$")
_PDF_URL = re.compile(r"arxiv\.org/pdf/([^?#]+?)(?:\.pdf)?$")
_DOI_URL = re.compile(r"(?:dx\.)?doi\.org/(10\..+)$")
_NEW_STYLE_MONTH = re.compile(r"^(\d{2})(\d{2})\.")
_OLD_STYLE_MONTH = re.compile(r"/(\d{2})(\d{2})\d{3}$")
_AND_SEPARATOR = re.compile(r",?\s+and\s+")
_PARENTHESES = re.compile(r"\([^()]*\)")
_NAME_SUFFIXES = frozenset({"jr", "jr.", "sr", "sr.", "ii", "iii", "iv"})
_NOT_NAMES = frozenset({"et al", "et al."})
# "This paper has been withdrawn by the author…", "Withdrawn: error in Lemma 3", "Paper withdrawn".
_WITHDRAWN_COMMENT = re.compile(
    r"\b(?:has\s+been|is|was)\s+withdrawn\b|^\s*(?:(?:this\s+)?(?:paper|article|submission|"
    r"manuscript)\s+)?withdrawn\b",
    re.IGNORECASE,
)
_WITHDRAWN_ABSTRACT = re.compile(
    r"^\s*(?:this\s+(?:paper|article|submission|manuscript)\s+(?:has\s+been|is)\s+withdrawn|"
    r"withdrawn\b)",
    re.IGNORECASE,
)
_PRIMARY_LISTINGS = frozenset({AnnounceType.NEW, AnnounceType.REPLACE})


class ArxivApiError(FetchError):
    """The query API rejected the request and answered with its Atom error feed."""

    def __init__(self, message: str, url: str = "", status: int | None = None) -> None:
        super().__init__(url or API_URL, status, f"arXiv API error: {message}")
        self.message = message


class OaiError(FetchError):
    """OAI-PMH answered with an error (``code`` as in the OAI-PMH spec, e.g. badArgument)."""

    def __init__(self, code: str, message: str, url: str = "", status: int | None = None) -> None:
        super().__init__(url or OAI_URL, status, f"OAI-PMH error {code}: {message}")
        self.code = code
        self.message = message


# ---------------------------------------------------------------------------------------------
# Text, dates, ids


def _clean(text: str | None) -> str:
    """Decode leftover HTML entities and collapse all whitespace; LaTeX is left alone.

    The whitespace is collapsed exactly as ``" ".join(text.split())`` would, but text that is
    already tidy (most titles, names and comments; many abstracts once their line breaks are
    spaces) is not split into words and joined again, which costs microseconds per abstract.
    """
    if not text:
        return ""
    if "&" in text:
        text = _ENTITY.sub(lambda match: html.unescape(match.group(0)), text)
    # Splitting a few words is cheaper than checking them.
    if len(text) > 64 and text.isascii():
        flat = text.replace("\n", " ").strip(" ")
        if "  " not in flat and not _has_other_ascii_space(flat):
            return flat
    return " ".join(text.split())


def _has_other_ascii_space(text: str) -> bool:
    # What str.split() also splits on besides space and newline; XML text can only hold tab
    # and CR of these, but the check stays exact. Spelled out: a loop costs three times more.
    return (
        "\t" in text or "\r" in text or "\x0b" in text or "\x0c" in text
        or "\x1c" in text or "\x1d" in text or "\x1e" in text or "\x1f" in text
    )  # fmt: skip


def _optional(text: str | None) -> str | None:
    return _clean(text) or None


def _find_text(element: Element, path: str) -> str | None:
    found = element.find(path, _NS)
    if found is None:
        return None
    return _optional("".join(found.itertext()))


def _as_utc(moment: datetime) -> datetime:
    # An RFC 822 "-0000" zone or a bare date means "UTC, offset unknown".
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _parse_rfc822(value: str) -> datetime:
    try:
        return _as_utc(parsedate_to_datetime(value.strip()))
    except (TypeError, ValueError, IndexError) as exc:
        raise ValueError(f"bad RFC 822 date {value!r}") from exc


# A harvest page carries a handful of distinct dates for a thousand records.
@lru_cache(maxsize=4096)
def _parse_iso(value: str) -> datetime:
    value = value.strip()
    if len(value) == 10:
        return datetime.combine(date.fromisoformat(value), datetime.min.time(), tzinfo=UTC)
    return _as_utc(datetime.fromisoformat(value))


def _split_id(raw: str) -> tuple[str, int | None]:
    return split_version(raw.strip().removeprefix("oai:arXiv.org:"))


def _first_month(arxiv_id: str) -> datetime | None:
    """The first day of the month an id was assigned in (ids encode YYMM), or None."""
    match = _NEW_STYLE_MONTH.match(arxiv_id) or _OLD_STYLE_MONTH.search(arxiv_id)
    if not match:
        return None
    two_digit_year, month = int(match.group(1)), int(match.group(2))
    # Old-style ids started in 1991 and ended in March 2007.
    year = 1900 + two_digit_year if two_digit_year >= 91 else 2000 + two_digit_year
    return datetime(year, month, 1, tzinfo=UTC)


def _split_authors(raw: str | None) -> tuple[str, ...]:
    """Split arXiv's one-string author lists: ``A, B, and C`` / ``A, B and C``.

    Parenthesised affiliations (``E. L. Berger (ANL)``) are dropped, and commas inside them
    never split a name.
    """
    if not raw:
        return ()
    text = _clean(raw)
    while True:
        stripped = _PARENTHESES.sub("", text)
        if stripped == text:
            break
        text = stripped
    names: list[str] = []
    for chunk in text.split(","):
        for part in _AND_SEPARATOR.split(f" {chunk.strip()} "):
            name = " ".join(part.split())
            if name.lower() in _NOT_NAMES:
                continue
            if name.lower() in _NAME_SUFFIXES and names:
                # "John Smith, Jr." is one author, not two.
                names[-1] = f"{names[-1]} {name}"
            elif name:
                names.append(name)
    return tuple(names)


def _arxiv_categories(terms: Iterable[str | None]) -> tuple[str, ...]:
    found: dict[str, None] = {}
    for term in terms:
        term = (term or "").strip()
        if _CATEGORY.match(term):
            found.setdefault(term, None)
    return tuple(found)


def _with_primary(categories: tuple[str, ...], primary: str | None) -> tuple[tuple[str, ...], str]:
    """Categories with the primary first; the first category when no primary is stated."""
    if primary and _CATEGORY.match(primary):
        return (primary, *(c for c in categories if c != primary)), primary
    if not categories:
        raise ValueError("no arXiv category")
    return categories, categories[0]


def _is_withdrawn(comment: str | None, abstract: str) -> bool:
    return bool(
        (comment and _WITHDRAWN_COMMENT.search(comment)) or _WITHDRAWN_ABSTRACT.match(abstract)
    )


def _announce_type(raw: str | None) -> AnnounceType | None:
    if not raw:
        return None
    try:
        return AnnounceType(raw.strip().lower())
    except ValueError:
        logger.warning("unknown arXiv announce type %r", raw)
        return None


# ---------------------------------------------------------------------------------------------
# Announcement feeds (rss.arxiv.org)


def parse_announcements(raw: bytes, *, url: str = "") -> PaperBatch:
    """Parse a daily announcement feed, RSS 2.0 or Atom (told apart by the root element).

    A weekend or holiday feed (a channel without items) is an empty batch. ``announced`` is the
    item's announcement date. arXiv's feed does not say when version 1 appeared, so
    ``published`` is a best effort: the announcement date for version 1 of a ``new`` or
    ``cross`` listing, otherwise the first day of the month the id was assigned in (ids encode
    YYMM; a paper submitted on the last day or two of the month before can be slightly
    older), which keeps replacements from looking new. ``updated`` is the announcement date.
    Items without a usable id, date or category are skipped and logged.
    """
    root = parse_xml(raw, url)
    if root.tag == "rss":
        channel = root.find("channel")
        if channel is None:
            raise MalformedPayload("RSS feed without <channel>", url)
        channel_date = channel.findtext("pubDate")
        papers = [_rss_item(item, channel_date) for item in channel.findall("item")]
    elif root.tag == _ATOM_FEED:
        papers = [_atom_announcement(entry) for entry in root.findall("atom:entry", _NS)]
    else:
        raise MalformedPayload(f"not an arXiv announcement feed: <{root.tag}>", url)
    return PaperBatch(papers=tuple(paper for paper in papers if paper is not None))


def _rss_item(item: Element, channel_date: str | None) -> Paper | None:
    description = item.findtext("description") or ""
    published = item.findtext("pubDate") or channel_date
    try:
        return _announcement_paper(
            guid=item.findtext("guid"),
            description=description,
            title=item.findtext("title"),
            creators=item.findtext("dc:creator", namespaces=_NS),
            categories=[category.text for category in item.findall("category")],
            announced=_parse_rfc822(published) if published else None,
            announce_type=item.findtext("arxiv:announce_type", namespaces=_NS),
            doi=item.findtext("arxiv:DOI", namespaces=_NS),
            journal_ref=item.findtext("arxiv:journal_reference", namespaces=_NS),
        )
    except ValueError as exc:
        logger.warning("skipping arXiv RSS item %r: %s", item.findtext("guid"), exc)
        return None


def _atom_announcement(entry: Element) -> Paper | None:
    published = entry.findtext("atom:published", namespaces=_NS) or entry.findtext(
        "atom:updated", namespaces=_NS
    )
    creators = entry.findtext("dc:creator", namespaces=_NS)
    if creators is None:
        names = [name.text or "" for name in entry.findall("atom:author/atom:name", _NS)]
        creators = ", ".join(names)
    try:
        return _announcement_paper(
            guid=entry.findtext("atom:id", namespaces=_NS),
            description=entry.findtext("atom:summary", namespaces=_NS) or "",
            title=entry.findtext("atom:title", namespaces=_NS),
            creators=creators,
            categories=[c.get("term") for c in entry.findall("atom:category", _NS)],
            announced=_parse_iso(published) if published else None,
            announce_type=entry.findtext("arxiv:announce_type", namespaces=_NS),
            doi=entry.findtext("arxiv:DOI", namespaces=_NS),
            journal_ref=entry.findtext("arxiv:journal_reference", namespaces=_NS),
        )
    except ValueError as exc:
        logger.warning(
            "skipping arXiv Atom entry %r: %s", entry.findtext("atom:id", namespaces=_NS), exc
        )
        return None


def _announcement_paper(
    *,
    guid: str | None,
    description: str,
    title: str | None,
    creators: str | None,
    categories: Sequence[str | None],
    announced: datetime | None,
    announce_type: str | None,
    doi: str | None,
    journal_ref: str | None,
) -> Paper:
    if guid and guid.strip():
        arxiv_id, version = _split_id(guid)
    else:
        found = _DESCRIPTION_ID.search(description)
        if not found:
            raise ValueError("no arXiv id in guid or description")
        arxiv_id, version = _split_id(found.group(1))
    if announced is None:
        raise ValueError("no announcement date")
    kind = _announce_type(announce_type)
    if kind is None:
        found_type = _DESCRIPTION_TYPE.search(description)
        kind = _announce_type(found_type.group(1)) if found_type else None
    version = version or 1
    marker = _ABSTRACT_MARK.search(description)
    abstract = _clean(description[marker.end() :] if marker else description)
    all_categories, primary = _with_primary(_arxiv_categories(categories), None)
    first_listing = version == 1 and kind in (AnnounceType.NEW, AnnounceType.CROSS)
    published = announced
    if not first_listing:
        published = min(announced, _first_month(arxiv_id) or announced)
    return Paper(
        arxiv_id=arxiv_id,
        version=version,
        title=_clean(title),
        abstract=abstract,
        authors=_split_authors(creators),
        categories=all_categories,
        primary_category=primary,
        published=published,
        updated=announced,
        journal_ref=_optional(journal_ref),
        doi=_optional(doi),
        announce_type=kind,
        announced=announced,
        withdrawn=_is_withdrawn(None, abstract),
    )


# ---------------------------------------------------------------------------------------------
# Query API (export.arxiv.org/api/query)


def parse_api_feed(raw: bytes, *, url: str = "") -> PaperBatch:
    """Parse an API query response, current (post-2025-11) or old (up to 2025-08) format.

    Raises ``ArxivApiError`` for the API's error feed. Old-format "ghost" entries for ids that
    do not exist (no ``<id>``, empty category) are skipped, as is any entry without a usable
    id or date (logged). An entry id without a version (very old responses) takes the version
    from its PDF link, else 1. Papers whose comment (or abstract opening) says the paper was
    withdrawn get ``withdrawn=True``.
    """
    root = parse_xml(raw, url)
    if root.tag != _ATOM_FEED:
        raise MalformedPayload(f"not an arXiv API Atom feed: <{root.tag}>", url)
    entries = root.findall("atom:entry", _NS)
    for entry in entries:
        entry_id = entry.findtext("atom:id", default="", namespaces=_NS)
        if "/api/errors" in entry_id:
            message = _find_text(entry, "atom:summary") or _clean(entry_id)
            raise ArxivApiError(message, url)
    page = PageInfo(
        total=_int_or_none(root.findtext("opensearch:totalResults", namespaces=_NS)),
        start=_int_or_none(root.findtext("opensearch:startIndex", namespaces=_NS)),
        per_page=_int_or_none(root.findtext("opensearch:itemsPerPage", namespaces=_NS)),
    )
    papers = (_api_entry(entry) for entry in entries)
    return PaperBatch(papers=tuple(paper for paper in papers if paper is not None), page=page)


def _int_or_none(text: str | None) -> int | None:
    if text is None or not text.strip():
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


def _api_entry(entry: Element) -> Paper | None:
    entry_id = (entry.findtext("atom:id", default="", namespaces=_NS)).strip()
    if not entry_id:
        return None  # old-format ghost entry standing in for an id that does not exist
    try:
        return _api_paper(entry, entry_id)
    except ValueError as exc:
        logger.warning("skipping arXiv API entry %r: %s", entry_id, exc)
        return None


def _api_paper(entry: Element, entry_id: str) -> Paper:
    abs_match = _ABS_URL.search(entry_id)
    if not abs_match:
        raise ValueError("entry id is not an arXiv abstract URL")
    arxiv_id, version = split_version(abs_match.group(1))
    links = entry.findall("atom:link", _NS)
    if version is None:
        version = _version_from_pdf_link(links) or 1
    published_text = entry.findtext("atom:published", namespaces=_NS)
    updated_text = entry.findtext("atom:updated", namespaces=_NS) or published_text
    if not updated_text:
        raise ValueError("no dates")
    updated = _parse_iso(updated_text)
    published = _parse_iso(published_text) if published_text else updated
    primary_element = entry.find("arxiv:primary_category", _NS)
    primary = primary_element.get("term") if primary_element is not None else None
    terms = [category.get("term") for category in entry.findall("atom:category", _NS)]
    categories, primary_category = _with_primary(_arxiv_categories(terms), primary)
    abstract = _find_text(entry, "atom:summary") or ""
    comment = _find_text(entry, "arxiv:comment")
    return Paper(
        arxiv_id=arxiv_id,
        version=version,
        title=_find_text(entry, "atom:title") or "",
        abstract=abstract,
        authors=tuple(
            name
            for name in (_clean(n.text) for n in entry.findall("atom:author/atom:name", _NS))
            if name
        ),
        categories=categories,
        primary_category=primary_category,
        published=published,
        updated=updated,
        comment=comment,
        journal_ref=_find_text(entry, "arxiv:journal_ref"),
        doi=_find_text(entry, "arxiv:doi") or _doi_from_links(links),
        withdrawn=_is_withdrawn(comment, abstract),
    )


def _version_from_pdf_link(links: Iterable[Element]) -> int | None:
    for link in links:
        match = _PDF_URL.search(link.get("href", ""))
        if match:
            try:
                return split_version(match.group(1))[1]
            except ValueError:
                continue
    return None


def _doi_from_links(links: Iterable[Element]) -> str | None:
    for link in links:
        if link.get("rel") != "related":
            continue
        match = _DOI_URL.search(link.get("href", ""))
        if match:
            return unquote(match.group(1))
    return None


# ---------------------------------------------------------------------------------------------
# OAI-PMH (oaipmh.arxiv.org/oai)
#
# A backfill parses hundreds of pages of a thousand records each, so this path looks children
# up by their namespace-qualified tag (ElementTree's C fast path, no path parsing), walks each
# record's fields once, and caches what repeats across records (category lists, dates).

_OAI_RECORD = f"{{{_NS['oai']}}}record"
_OAI_HEADER = f"{{{_NS['oai']}}}header"
_OAI_IDENTIFIER = f"{{{_NS['oai']}}}identifier"
_OAI_METADATA = f"{{{_NS['oai']}}}metadata"
_OAI_RAW_VERSION = f"{{{_NS['arXivRaw']}}}version"
_OAI_RAW_DATE = f"{{{_NS['arXivRaw']}}}date"
# Local names of the elements both formats use, so that most tags need no splitting.
_OAI_LOCAL_NAMES = {
    f"{{{_NS[prefix]}}}{name}": name
    for prefix in ("arXiv", "arXivRaw")
    for name in (
        "id", "created", "updated", "authors", "author", "keyname", "forenames", "suffix",
        "affiliation", "title", "categories", "comments", "journal-ref", "doi", "license",
        "abstract", "msc-class", "acm-class", "report-no", "proxy", "submitter", "version",
    )
}  # fmt: skip


def parse_oai(raw: bytes, *, url: str = "") -> PaperBatch:
    """Parse an OAI-PMH ``ListRecords`` or ``GetRecord`` page in ``arXiv`` or ``arXivRaw`` format.

    ``noRecordsMatch`` is an empty batch; any other OAI error raises ``OaiError``. Records with
    ``status="deleted"`` go to ``deleted_ids``. An empty ``<resumptionToken/>`` means the last
    page (``PageInfo.resumption_token`` is None); ``completeListSize``/``cursor``, which arXiv
    stopped sending in 2025, fill ``total``/``start`` when present.

    The ``arXiv`` format carries no version number: the version is 1 when the record has no
    ``<updated>``, else 2, the lowest version an update implies. Use ``arXivRaw`` (full
    version history) when the exact version matters; consumers must never let a lower
    version overwrite a higher one.
    """
    # The page's element tree is released before the collector runs again.
    with cycle_collection_paused():
        return _oai_batch(parse_xml(raw, url), url)


def _oai_batch(root: Element, url: str) -> PaperBatch:
    if root.tag != _OAI_ROOT:
        raise MalformedPayload(f"not an OAI-PMH response: <{root.tag}>", url)
    errors = root.findall("oai:error", _NS)
    if errors:
        codes = [error.get("code", "") for error in errors]
        if all(code == "noRecordsMatch" for code in codes):
            return PaperBatch(papers=())
        first = next(e for e in errors if e.get("code") != "noRecordsMatch")
        raise OaiError(first.get("code", "unknown"), _clean(first.text), url)
    container = root.find("oai:ListRecords", _NS)
    if container is None:
        container = root.find("oai:GetRecord", _NS)
    if container is None:
        raise MalformedPayload("OAI-PMH response without ListRecords or GetRecord", url)
    papers: list[Paper] = []
    deleted: list[str] = []
    for record in container.findall(_OAI_RECORD):
        header = record.find(_OAI_HEADER)
        if header is not None and header.get("status") == "deleted":
            identifier = header.findtext(_OAI_IDENTIFIER, default="")
            try:
                deleted.append(normalize_id(identifier.strip().removeprefix("oai:arXiv.org:")))
            except ValueError:
                logger.warning("skipping deleted OAI record with odd identifier %r", identifier)
            continue
        paper = _oai_record(record, url)
        if paper is not None:
            papers.append(paper)
    return PaperBatch(papers=tuple(papers), page=_oai_page(container), deleted_ids=tuple(deleted))


def _oai_page(container: Element) -> PageInfo:
    token = container.find("oai:resumptionToken", _NS)
    if token is None:
        return PageInfo()
    return PageInfo(
        total=_int_or_none(token.get("completeListSize")),
        start=_int_or_none(token.get("cursor")),
        resumption_token=(token.text or "").strip() or None,
    )


def _oai_record(record: Element, url: str) -> Paper | None:
    metadata = record.find(_OAI_METADATA)
    if metadata is None or len(metadata) == 0:
        logger.warning("skipping OAI record without metadata")
        return None
    document = metadata[0]
    if document.tag not in (_OAI_ARXIV, _OAI_ARXIV_RAW):
        raise MalformedPayload(f"unsupported OAI metadata format <{document.tag}>", url)
    try:
        if document.tag == _OAI_ARXIV:
            return _oai_arxiv_paper(document)
        return _oai_raw_paper(document)
    except ValueError as exc:
        logger.warning("skipping OAI record %r: %s", document.findtext("{*}id"), exc)
        return None


def _children(document: Element) -> dict[str, Element]:
    """Direct children by local name (first wins): one pass instead of a path search per field."""
    fields: dict[str, Element] = {}
    for child in document:
        tag = child.tag
        name = _OAI_LOCAL_NAMES.get(tag) or tag.rpartition("}")[2]
        if name not in fields:
            fields[name] = child
    return fields


def _text_of(fields: dict[str, Element], name: str) -> str | None:
    element = fields.get(name)
    if element is None:
        return None
    # Most fields are plain text; only a few (rare inline markup) need itertext.
    return _clean(element.text if len(element) == 0 else "".join(element.itertext())) or None


def _oai_arxiv_paper(document: Element) -> Paper:
    fields = _children(document)
    arxiv_id = normalize_id(_text_of(fields, "id") or "")
    created_text = _text_of(fields, "created")
    if not created_text:
        raise ValueError("no <created> date")
    created = _parse_iso(created_text)
    updated_text = _text_of(fields, "updated")
    updated = _parse_iso(updated_text) if updated_text else created
    authors_element = fields.get("authors")
    authors: tuple[str, ...] = ()
    if authors_element is not None:
        authors = tuple(name for name in map(_oai_author_name, authors_element) if name)
    return _oai_paper(
        fields,
        arxiv_id=arxiv_id,
        version=2 if updated_text else 1,
        authors=authors,
        published=created,
        updated=updated,
    )


def _oai_author_name(author: Element) -> str:
    forenames = keyname = suffix = ""
    for child in author:
        tag = child.tag
        part = _OAI_LOCAL_NAMES.get(tag) or tag.rpartition("}")[2]
        if part == "keyname":
            keyname = child.text or ""
        elif part == "forenames":
            forenames = child.text or ""
        elif part == "suffix":
            suffix = child.text or ""
    # Collapsing the three together tidies each part's whitespace and drops the empty ones.
    return " ".join(f"{forenames} {keyname} {suffix}".split())


def _oai_raw_paper(document: Element) -> Paper:
    fields = _children(document)
    arxiv_id = normalize_id(_text_of(fields, "id") or "")
    history: list[tuple[int, datetime]] = []
    for version in document.findall(_OAI_RAW_VERSION):
        label = version.get("version", "").strip().lower().removeprefix("v")
        when = version.findtext(_OAI_RAW_DATE)
        if label.isdigit() and when:
            history.append((int(label), _parse_rfc822(when)))
    if not history:
        raise ValueError("no version history")
    history.sort()
    latest_version, latest_date = history[-1]
    return _oai_paper(
        fields,
        arxiv_id=arxiv_id,
        version=latest_version,
        authors=_split_authors(_text_of(fields, "authors")),
        published=history[0][1],
        updated=latest_date,
    )


@lru_cache(maxsize=1024)
def _oai_categories(text: str) -> tuple[tuple[str, ...], str]:
    """The arXiv categories of a ``<categories>`` list, primary (the first) first."""
    return _with_primary(_arxiv_categories(text.split()), None)


def _oai_paper(
    fields: dict[str, Element],
    *,
    arxiv_id: str,
    version: int,
    authors: tuple[str, ...],
    published: datetime,
    updated: datetime,
) -> Paper:
    """The fields the ``arXiv`` and ``arXivRaw`` formats spell the same way."""
    categories, primary = _oai_categories(_text_of(fields, "categories") or "")
    abstract = _text_of(fields, "abstract") or ""
    comment = _text_of(fields, "comments")
    return Paper(
        arxiv_id=arxiv_id,
        version=version,
        title=_text_of(fields, "title") or "",
        abstract=abstract,
        authors=authors,
        categories=categories,
        primary_category=primary,
        published=published,
        updated=updated,
        comment=comment,
        journal_ref=_text_of(fields, "journal-ref"),
        doi=_text_of(fields, "doi"),
        withdrawn=_is_withdrawn(comment, abstract),
    )


# ---------------------------------------------------------------------------------------------
# Network side


@dataclass(frozen=True, slots=True)
class AnnouncementResult:
    """One conditional fetch of an announcement feed."""

    batch: PaperBatch
    etag: str | None
    """Validator to send next time (the previous one when the server sent none)."""
    last_modified: str | None
    not_modified: bool = False
    """True on HTTP 304: nothing changed since the validators we sent; ``batch`` is empty."""


async def fetch_announcements(
    client: httpx.AsyncClient,
    category: str,
    *,
    etag: str | None = None,
    last_modified: str | None = None,
) -> AnnouncementResult:
    """Fetch today's RSS announcement feed of ``category`` (``cs.LG``, or ``cs.AI+cs.CL``)."""
    if not _CATEGORY_LIST.match(category):
        raise ValueError(f"not an arXiv category: {category!r}")
    url = ANNOUNCE_URL.format(category=category)
    response = await client.get(url, headers=conditional_headers(etag, last_modified))
    raise_for_status(response)
    new_etag = response.headers.get("ETag") or etag
    new_last_modified = response.headers.get("Last-Modified") or last_modified
    if response.status_code == 304:
        return AnnouncementResult(
            PaperBatch(papers=()), new_etag, new_last_modified, not_modified=True
        )
    return AnnouncementResult(
        parse_announcements(response.content, url=url), new_etag, new_last_modified
    )


async def fetch_by_ids(
    client: httpx.AsyncClient, ids: Iterable[str], *, batch_size: int = 100
) -> list[Paper]:
    """Look up papers by id through the query API, ``batch_size`` ids per request.

    Ids may carry a version (``2401.12345v2`` pins that version; without one the API returns
    the latest). Unknown ids are simply absent from the result. Raises ``ValueError`` for a
    string that is not an arXiv id, since one bad id makes the API reject the whole batch.
    """
    if not 1 <= batch_size <= MAX_API_BATCH:
        raise ValueError(f"batch_size must be between 1 and {MAX_API_BATCH}")
    wanted: dict[str, None] = {}
    for raw in ids:
        arxiv_id, version = split_version(raw)
        wanted.setdefault(f"{arxiv_id}v{version}" if version else arxiv_id, None)
    ordered = list(wanted)
    papers: list[Paper] = []
    for start in range(0, len(ordered), batch_size):
        batch = ordered[start : start + batch_size]
        # max_results defaults to 10 even for id_list queries, silently dropping the rest.
        params = {"id_list": ",".join(batch), "start": "0", "max_results": str(batch_size)}
        response = await client.get(API_URL, params=params)
        papers.extend(_api_response(response).papers)
    return papers


def _api_response(response: httpx.Response) -> PaperBatch:
    url = str(response.request.url)
    if response.status_code == 400 and response.content:
        # The API pairs some rejections with its error feed; its message beats "HTTP 400".
        try:
            parse_api_feed(response.content, url=url)
        except ArxivApiError as exc:
            raise ArxivApiError(exc.message, url, 400) from None
        except MalformedPayload:
            pass
    raise_for_status(response)
    return parse_api_feed(response.content, url=url)


async def fetch_oai_page(
    client: httpx.AsyncClient,
    *,
    from_date: date | None = None,
    until: date | None = None,
    set_spec: str | None = None,
    resumption_token: str | None = None,
    metadata_prefix: str = "arXiv",
) -> PaperBatch:
    """Fetch one ``ListRecords`` page; pass the previous page's token to continue a harvest.

    With a resumption token only ``verb`` and ``resumptionToken`` are sent, as OAI-PMH
    requires (any other argument makes it a ``badArgument``). Tokens expire daily: on
    ``OaiError`` with code ``badResumptionToken`` restart from ``from_date``.
    """
    params: dict[str, str] = {"verb": "ListRecords"}
    if resumption_token:
        params["resumptionToken"] = resumption_token
    else:
        params["metadataPrefix"] = metadata_prefix
        if from_date is not None:
            params["from"] = f"{from_date:%Y-%m-%d}"
        if until is not None:
            params["until"] = f"{until:%Y-%m-%d}"
        if set_spec:
            params["set"] = set_spec
    response = await client.get(OAI_URL, params=params)
    url = str(response.request.url)
    if response.status_code in (400, 422) and response.content:
        try:
            parse_oai(response.content, url=url)
        except OaiError as exc:
            raise OaiError(exc.code, exc.message, url, response.status_code) from None
        except MalformedPayload:
            pass
    raise_for_status(response)
    return parse_oai(response.content, url=url)


# ---------------------------------------------------------------------------------------------
# Sources


class PaperSource(Protocol):
    """Anything that yields the papers that are new since the last call."""

    name: str

    async def fetch_new(self) -> PaperBatch:
        """Fetch papers announced since the previous call (may be empty)."""


def merge_papers(papers: Iterable[Paper]) -> tuple[Paper, ...]:
    """One record per id, in first-seen order: highest version, categories of every listing.

    A paper cross-listed in several fetched categories is the same paper; at equal versions
    the listing in its primary category (``new``/``replace``) wins over a cross-listing.
    """
    chosen: dict[str, Paper] = {}
    categories: dict[str, dict[str, None]] = {}
    for paper in papers:
        seen = categories.setdefault(paper.arxiv_id, {})
        for category in paper.categories:
            seen.setdefault(category, None)
        current = chosen.get(paper.arxiv_id)
        if current is None or _listing_rank(paper) > _listing_rank(current):
            chosen[paper.arxiv_id] = paper
    merged: list[Paper] = []
    for arxiv_id, paper in chosen.items():
        union = tuple(dict.fromkeys((*paper.categories, *categories[arxiv_id])))
        merged.append(paper if union == paper.categories else replace(paper, categories=union))
    return tuple(merged)


def _listing_rank(paper: Paper) -> tuple[int, bool]:
    return paper.version, paper.announce_type in _PRIMARY_LISTINGS


class ArxivAnnouncementSource:
    """Today's announcements of several categories, merged, with conditional GETs.

    ETag/Last-Modified are remembered per category, but only once a whole round succeeded:
    if one category fails, the next round re-fetches every category in full, so a paper is
    never lost behind a 304.
    """

    name = "arxiv"

    def __init__(self, client: httpx.AsyncClient, categories: Sequence[str]) -> None:
        if not categories:
            raise ValueError("at least one category is needed")
        self._client = client
        self._categories = tuple(dict.fromkeys(categories))
        self._validators: dict[str, tuple[str | None, str | None]] = {}

    async def fetch_new(self) -> PaperBatch:
        """Fetch every category's feed and merge the papers (dedupe by id)."""
        papers: list[Paper] = []
        validators: dict[str, tuple[str | None, str | None]] = {}
        for category in self._categories:
            etag, last_modified = self._validators.get(category, (None, None))
            result = await fetch_announcements(
                self._client, category, etag=etag, last_modified=last_modified
            )
            validators[category] = (result.etag, result.last_modified)
            papers.extend(result.batch.papers)
        self._validators = validators
        return PaperBatch(papers=merge_papers(papers))
