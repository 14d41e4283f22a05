"""Serve the bundled demo payloads to the real adapters through ``httpx.MockTransport``.

``trending-papers demo`` runs every adapter unchanged against ``feeds/samples``: payloads in
each API's real format, recorded for one announcement day (Monday 2026-11-16). The transport
answers by host and path and mimics the server behaviour the adapters rely on: conditional GET
on the arXiv feeds, paging (Algolia ``page``/``hitsPerPage``, Reddit ``after``/``limit``,
Bluesky ``cursor``/``limit``), time filters (Algolia ``numericFilters``, Bluesky ``since``/
``until``, Hugging Face ``date``), Reddit rate-limit headers, Semantic Scholar's batch answer in
request order with ``null`` for unknown ids, and the arXiv query API's ``max_results`` default
of 10. Anything it has no recording for gets a 404 whose JSON body names the URL, so a missing
sample is obvious rather than silently empty.

The arXiv query API answer is built from the papers of the RSS samples, with the submission
dates listed in ``manifest.json``; ``search_query`` alone (no ``id_list``) matches nothing.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element, SubElement, indent, tostring

import httpx
from defusedxml.ElementTree import fromstring

from feeds.ids import split_version

SAMPLES_PACKAGE = "feeds.samples"
DEMO_NOW = datetime(2026, 11, 16, 12, 0, tzinfo=UTC)
"""The moment the samples describe; a demo should pin its clock here."""
DEMO_BLUESKY_ACTOR = "demo-researcher.bsky.social"
"""The Bluesky account whose follows ``getFollows.json`` records."""

_JSON = "application/json; charset=utf-8"
_ATOM_NS = "http://www.w3.org/2005/Atom"
_ARXIV_NS = "http://arxiv.org/schemas/atom"
_OPENSEARCH_NS = "http://a9.com/-/spec/opensearch/1.1/"
_DC_NS = "http://purl.org/dc/elements/1.1/"
_CATEGORY = re.compile(r"[a-z-]+(?:\.[A-Za-z-]+)?")
_SUBREDDIT = re.compile(r"[A-Za-z0-9_]{2,21}")
_RSS_ITEM = re.compile(rb"[ \t]*<item>.*?</item>[ \t]*\n?", re.DOTALL)
_RSS_CHANNEL_END = re.compile(rb"[ \t]*</channel>")
_RSS_GUID = re.compile(rb"<guid[^>]*>oai:arXiv\.org:([^<]+?)v\d+</guid>")
_ALGOLIA_FILTER = re.compile(r"\s*(created_at_i|points|num_comments)\s*(<=|>=|<|>|=)\s*(\d+)\s*")
_BSKY_HOSTS = frozenset({"api.bsky.app", "public.api.bsky.app", "bsky.social"})
_REDDIT_HOSTS = frozenset({"www.reddit.com", "oauth.reddit.com"})
# Reddit's request budget per 10-minute window: OAuth clients get 100/min, anonymous 10/min.
_REDDIT_BUDGET = {"oauth.reddit.com": 1000, "www.reddit.com": 100}
_REDDIT_RESET_SECONDS = "412"


def recorded_transport(samples_dir: Path | None = None) -> httpx.MockTransport:
    """A transport answering the demo's API calls from ``feeds/samples`` (or ``samples_dir``).

    Each transport keeps its own Reddit request counter; files are read on first use.
    """
    root: Traversable = samples_dir if samples_dir is not None else files(SAMPLES_PACKAGE)
    return httpx.MockTransport(_Replay(root).handle)


class _MissingSample(Exception):
    def __init__(self, relative_path: str) -> None:
        super().__init__(relative_path)
        self.relative_path = relative_path


@dataclass(frozen=True, slots=True)
class _Route:
    method: str
    hosts: frozenset[str]
    path: re.Pattern[str]
    answer: Callable[[httpx.Request, re.Match[str]], httpx.Response]


@dataclass(frozen=True, slots=True)
class _ArxivPaper:
    arxiv_id: str
    version: int
    title: str
    abstract: str
    authors: tuple[str, ...]
    categories: tuple[str, ...]
    published: str
    updated: str


class _Replay:
    def __init__(self, root: Traversable) -> None:
        self._root = root
        self._bytes: dict[str, bytes | None] = {}
        self._arxiv_papers: dict[str, _ArxivPaper] | None = None
        self._reddit_used = dict.fromkeys(_REDDIT_BUDGET, 0)
        self._routes = self._build_routes()

    def _build_routes(self) -> tuple[_Route, ...]:
        def route(
            method: str,
            hosts: frozenset[str] | str,
            path: str,
            answer: Callable[[httpx.Request, re.Match[str]], httpx.Response],
        ) -> _Route:
            host_set = frozenset({hosts}) if isinstance(hosts, str) else hosts
            return _Route(method, host_set, re.compile(path), answer)

        xrpc = "/xrpc/"
        return (
            route("GET", "rss.arxiv.org", r"/rss/(?P<categories>[^/]+)/?", self._arxiv_rss),
            route("GET", "export.arxiv.org", r"/api/query/?", self._arxiv_query),
            route("GET", "hn.algolia.com", r"/api/v1/(?:search|search_by_date)/?", self._hn),
            route("GET", _REDDIT_HOSTS, r"/r/(?P<sub>[^/]+)/new(?:\.json)?/?", self._reddit),
            route(
                "GET",
                _REDDIT_HOSTS,
                r"/domain/(?P<domain>[^/]+)/new(?:\.json)?/?",
                self._reddit_domain,
            ),
            route("POST", "www.reddit.com", r"/api/v1/access_token/?", self._reddit_token),
            route("GET", _BSKY_HOSTS, xrpc + r"app\.bsky\.feed\.searchPosts", self._bsky_search),
            route("GET", _BSKY_HOSTS, xrpc + r"app\.bsky\.actor\.getProfiles", self._bsky_profiles),
            route("GET", _BSKY_HOSTS, xrpc + r"app\.bsky\.actor\.getProfile", self._bsky_profile),
            route("GET", _BSKY_HOSTS, xrpc + r"app\.bsky\.graph\.getFollows", self._bsky_follows),
            route(
                "POST",
                "bsky.social",
                xrpc + r"com\.atproto\.server\.(?:createSession|refreshSession)",
                self._bsky_session,
            ),
            route("GET", "huggingface.co", r"/api/daily_papers/?", self._hf_daily),
            route("GET", "huggingface.co", r"/api/papers/(?P<paper>[^/]+)/?", self._hf_paper),
            route(
                "POST",
                "api.semanticscholar.org",
                r"/graph/v1/paper/batch/?",
                self._s2_batch,
            ),
        )

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer ``request`` from the samples, or 404 when nothing was recorded for it."""
        host = request.url.host.lower()
        path = request.url.path
        for route in self._routes:
            if request.method != route.method or host not in route.hosts:
                continue
            match = route.path.fullmatch(path)
            if match is None:
                continue
            try:
                return route.answer(request, match)
            except _MissingSample as missing:
                return _not_recorded(request, f"sample file missing: {missing.relative_path}")
        return _not_recorded(request, "no recording for this method, host and path")

    # -- sample files -------------------------------------------------------------------------

    def _read(self, relative_path: str) -> bytes | None:
        if relative_path not in self._bytes:
            node = self._root
            for part in relative_path.split("/"):
                node = node / part
            self._bytes[relative_path] = node.read_bytes() if node.is_file() else None
        return self._bytes[relative_path]

    def _require(self, relative_path: str) -> bytes:
        content = self._read(relative_path)
        if content is None:
            raise _MissingSample(relative_path)
        return content

    def _json(self, relative_path: str) -> Any:
        return json.loads(self._require(relative_path))

    def _list_dir(self, relative_dir: str) -> list[str]:
        node = self._root / relative_dir
        return sorted(child.name for child in node.iterdir()) if node.is_dir() else []

    # -- arXiv --------------------------------------------------------------------------------

    def _arxiv_rss(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        categories = match["categories"].split("+")
        body = self._rss_feed(categories)
        etag = f'"{hashlib.sha256(body).hexdigest()}"'
        headers = {"ETag": etag}
        last_modified = _rss_build_date(body)
        if last_modified is not None:
            headers["Last-Modified"] = format_datetime(last_modified, usegmt=True)
        if_none_match = request.headers.get("If-None-Match")
        if if_none_match is not None:
            if _etag_matches(if_none_match, etag):
                return httpx.Response(304, headers=headers)
        elif last_modified is not None and _not_modified_since(request, last_modified):
            return httpx.Response(304, headers=headers)
        headers["Content-Type"] = "application/rss+xml"
        return httpx.Response(200, content=body, headers=headers)

    def _rss_feed(self, categories: list[str]) -> bytes:
        feeds = [
            (category, feed)
            for category in categories
            if _CATEGORY.fullmatch(category)
            and (feed := self._read(f"arxiv/rss_{category}.xml")) is not None
        ]
        if not feeds:
            return self._require("arxiv/rss_empty.xml")
        if len(feeds) == 1 and len(categories) == 1:
            return feeds[0][1]
        # A joined feed (cs.AI+cs.CL) lists each paper once, in the first category that has it.
        first_category, first_feed = feeds[0]
        first_item = _RSS_ITEM.search(first_feed)
        channel_end = _RSS_CHANNEL_END.search(first_feed)
        if channel_end is None:
            return first_feed
        split_at = first_item.start() if first_item else channel_end.start()
        joined = "+".join(categories).encode()
        head = first_feed[:split_at].replace(b"rss/" + first_category.encode(), b"rss/" + joined)
        head = head.replace(first_category.encode() + b" updates", joined + b" updates")
        seen: set[bytes] = set()
        items: list[bytes] = []
        for _, feed in feeds:
            for item in _RSS_ITEM.finditer(feed):
                guid = _RSS_GUID.search(item.group())
                key = guid.group(1) if guid else item.group()
                if key not in seen:
                    seen.add(key)
                    items.append(item.group())
        tail = first_feed[channel_end.start() :]
        return head + b"".join(items) + tail

    def _papers(self) -> dict[str, _ArxivPaper]:
        if self._arxiv_papers is None:
            dates = self._json("manifest.json").get("arxiv_dates", {})
            papers: dict[str, _ArxivPaper] = {}
            for name in self._list_dir("arxiv"):
                if name.startswith("rss_") and name.endswith(".xml"):
                    for paper in _rss_papers(self._require(f"arxiv/{name}"), dates):
                        known = papers.get(paper.arxiv_id)
                        if known is None or paper.version > known.version:
                            papers[paper.arxiv_id] = paper
            self._arxiv_papers = papers
        return self._arxiv_papers

    def _arxiv_query(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        params = request.url.params
        search_query = params.get("search_query", "")
        id_list = params.get("id_list", "")
        try:
            start = int(params.get("start", "0"))
            max_results = int(params.get("max_results", "10"))
        except ValueError:
            return _arxiv_error(request, "start and max_results must be integers")
        if start < 0 or max_results < 0:
            return _arxiv_error(request, "start and max_results must be non-negative")
        if max_results > 30000:
            return _arxiv_error(request, "max_results may not exceed 30000")
        wanted: list[tuple[str, int | None]] = []
        for raw in filter(None, (part.strip() for part in id_list.split(","))):
            try:
                wanted.append(split_version(raw))
            except ValueError:
                return _arxiv_error(request, f"incorrect id format for {raw}")
        papers = self._papers()
        found: list[_ArxivPaper] = []
        seen: set[tuple[str, int]] = set()
        for arxiv_id, version in wanted:
            paper = papers.get(arxiv_id)
            if paper is None or (version is not None and version > paper.version):
                continue
            if version is not None and version != paper.version:
                # An earlier version: only its dates differ in what the demo knows.
                paper = _ArxivPaper(
                    paper.arxiv_id,
                    version,
                    paper.title,
                    paper.abstract,
                    paper.authors,
                    paper.categories,
                    paper.published,
                    paper.published if version == 1 else paper.updated,
                )
            if (paper.arxiv_id, paper.version) not in seen:
                seen.add((paper.arxiv_id, paper.version))
                found.append(paper)
        body = _atom_feed(search_query, id_list, start, max_results, found)
        return httpx.Response(
            200, content=body, headers={"Content-Type": "application/atom+xml; charset=utf-8"}
        )

    # -- Hacker News --------------------------------------------------------------------------

    def _hn(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        envelope = self._json("hackernews/search_by_date.json")
        params = request.url.params
        try:
            page = int(params.get("page", "0"))
            per_page = int(params.get("hitsPerPage", str(envelope.get("hitsPerPage", 20))))
            filters = _algolia_filters(params.get("numericFilters", ""))
        except ValueError as exc:
            return _json_response(400, {"message": str(exc), "status": 400})
        if page < 0 or not 0 < per_page <= 1000:
            return _json_response(400, {"message": "invalid page or hitsPerPage", "status": 400})
        hits = [hit for hit in envelope.get("hits", []) if all(f(hit) for f in filters)]
        envelope["nbHits"] = len(hits)
        envelope["hitsPerPage"] = per_page
        envelope["nbPages"] = max(1, math.ceil(len(hits) / per_page))
        envelope["page"] = page
        envelope["hits"] = hits[page * per_page : (page + 1) * per_page]
        return _json_response(200, envelope)

    # -- Reddit -------------------------------------------------------------------------------

    def _reddit(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        wanted = match["sub"]
        children: list[Any] = []
        if _SUBREDDIT.fullmatch(wanted):
            # Subreddit names are case-insensitive; the sample files carry the canonical case.
            for name in self._list_dir("reddit"):
                if name.lower() == f"{wanted.lower()}_new.json":
                    children = self._json(f"reddit/{name}")["data"]["children"]
        return self._reddit_listing(request, children)

    def _reddit_domain(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        domain = match["domain"].lower()
        children = [
            child
            for name in self._list_dir("reddit")
            if name.endswith("_new.json")
            for child in self._json(f"reddit/{name}")["data"]["children"]
            if child["data"].get("domain", "").lower() == domain
        ]
        children.sort(key=lambda child: child["data"].get("created_utc", 0), reverse=True)
        return self._reddit_listing(request, children)

    def _reddit_listing(self, request: httpx.Request, children: list[Any]) -> httpx.Response:
        params = request.url.params
        try:
            limit = min(100, max(1, int(params.get("limit", "25"))))
        except ValueError:
            limit = 25
        after = params.get("after")
        start = 0
        if after:
            names = [child["data"].get("name") for child in children]
            start = names.index(after) + 1 if after in names else len(children)
        page = children[start : start + limit]
        more = start + limit < len(children)
        listing = {
            "kind": "Listing",
            "data": {
                "after": page[-1]["data"]["name"] if more and page else None,
                "dist": len(page),
                "modhash": "",
                "geo_filter": "",
                "children": page,
                "before": None,
            },
        }
        host = request.url.host.lower()
        self._reddit_used[host] += 1
        used = self._reddit_used[host]
        headers = {
            "x-ratelimit-used": str(used),
            "x-ratelimit-remaining": f"{max(0, _REDDIT_BUDGET[host] - used):.1f}",
            "x-ratelimit-reset": _REDDIT_RESET_SECONDS,
        }
        return _json_response(200, listing, headers)

    def _reddit_token(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        token = {
            "access_token": "replay-reddit-access-token",
            "token_type": "bearer",
            "expires_in": 3600,
            "scope": "*",
        }
        return _json_response(200, token)

    # -- Bluesky ------------------------------------------------------------------------------

    def _bsky_search(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        params = request.url.params
        if not params.get("q"):
            return _xrpc_error('Input must have the property "q"')
        posts = self._json("bluesky/searchPosts.json")["posts"]
        since, until = params.get("since"), params.get("until")
        try:
            # The server filters on the post's sort time, which is its createdAt here.
            if since:
                posts = [p for p in posts if _posted_at(p) >= _instant(since)]
            if until:
                posts = [p for p in posts if _posted_at(p) < _instant(until)]
        except ValueError:
            return _xrpc_error("since and until must be datetimes or dates")
        page, cursor = _offset_page(posts, params, default_limit=25, max_limit=100)
        if page is None:
            return _xrpc_error("invalid limit or cursor")
        body: dict[str, Any] = {"posts": page, "hitsTotal": len(posts)}
        if cursor is not None:
            body["cursor"] = cursor
        return _json_response(200, body)

    def _bsky_profiles(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        actors = request.url.params.get_list("actors")
        if not actors:
            return _xrpc_error('Input must have the property "actors"')
        if len(actors) > 25:
            return _xrpc_error("Input/actors must not have more than 25 elements")
        profiles = self._json("bluesky/getProfiles.json")["profiles"]
        by_actor = {p["did"]: p for p in profiles} | {p["handle"]: p for p in profiles}
        chosen = [by_actor[actor] for actor in dict.fromkeys(actors) if actor in by_actor]
        return _json_response(200, {"profiles": chosen})

    def _bsky_profile(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        actor = request.url.params.get("actor")
        if not actor:
            return _xrpc_error('Input must have the property "actor"')
        for profile in self._json("bluesky/getProfiles.json")["profiles"]:
            if actor in (profile["did"], profile["handle"]):
                return _json_response(200, profile)
        return _xrpc_error("Profile not found")

    def _bsky_follows(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        params = request.url.params
        if not params.get("actor"):
            return _xrpc_error('Input must have the property "actor"')
        recorded = self._json("bluesky/getFollows.json")
        # Only the demo user's follows were recorded; any actor gets them.
        page, cursor = _offset_page(recorded["follows"], params, default_limit=50, max_limit=100)
        if page is None:
            return _xrpc_error("invalid limit or cursor")
        body: dict[str, Any] = {"subject": recorded["subject"], "follows": page}
        if cursor is not None:
            body["cursor"] = cursor
        return _json_response(200, body)

    def _bsky_session(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        if request.url.path.endswith("refreshSession"):
            handle = DEMO_BLUESKY_ACTOR
        else:
            try:
                login = json.loads(request.content or b"{}")
            except ValueError:
                return _xrpc_error("request body must be JSON")
            if not isinstance(login, dict) or not login.get("identifier"):
                return _xrpc_error('Input must have the property "identifier"')
            if not login.get("password"):
                return _xrpc_error('Input must have the property "password"')
            handle = str(login["identifier"])
        did = next(
            (
                profile["did"]
                for profile in self._json("bluesky/getProfiles.json")["profiles"]
                if profile["handle"] == handle
            ),
            "did:plc:" + _base32(handle)[:24],
        )
        session = {
            "did": did,
            "handle": handle,
            "accessJwt": _fake_jwt(did, "com.atproto.access", 2 * 3600),
            "refreshJwt": _fake_jwt(did, "com.atproto.refresh", 90 * 24 * 3600),
            "active": True,
        }
        return _json_response(200, session)

    # -- Hugging Face -------------------------------------------------------------------------

    def _hf_daily(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        params = request.url.params
        entries = self._json("huggingface/daily_papers.json")
        day = params.get("date")
        if day:
            entries = [e for e in entries if str(e.get("publishedAt", "")).startswith(day)]
        try:
            page = int(params.get("p", "0"))
            limit = int(params.get("limit", "50"))
        except ValueError:
            return _json_response(400, {"error": "p and limit must be integers"})
        if page < 0 or limit < 1:
            return _json_response(400, {"error": "p must be >= 0 and limit >= 1"})
        return _json_response(200, entries[page * limit : (page + 1) * limit])

    def _hf_paper(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        for entry in self._json("huggingface/daily_papers.json"):
            if entry["paper"]["id"] == match["paper"]:
                return _json_response(200, entry["paper"])
        return _json_response(404, {"error": "Paper not found"})

    # -- Semantic Scholar ---------------------------------------------------------------------

    def _s2_batch(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        try:
            body = json.loads(request.content or b"null")
        except ValueError:
            return _json_response(400, {"error": "Unacceptable JSON body"})
        ids = body.get("ids") if isinstance(body, dict) else None
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            return _json_response(400, {"error": 'Body must contain a non-empty "ids" list'})
        if len(ids) > 500:
            return _json_response(400, {"error": "Cannot process more than 500 ids at once"})
        by_arxiv = {
            item["externalIds"]["ArXiv"]: item
            for item in self._json("semanticscholar/paper_batch.json")
            if item is not None
        }
        fields = [f for f in request.url.params.get("fields", "title").split(",") if f]
        answer: list[dict[str, Any] | None] = []
        for raw in ids:
            prefix, _, arxiv_id = raw.partition(":")
            item = by_arxiv.get(arxiv_id) if prefix.upper() == "ARXIV" else None
            if item is None:
                answer.append(None)
                continue
            chosen = {"paperId": item["paperId"]}
            chosen.update({field: item[field] for field in fields if field in item})
            answer.append(chosen)
        return _json_response(200, answer)


# ---------------------------------------------------------------------------------------------
# Helpers


def _json_response(
    status: int, body: object, headers: dict[str, str] | None = None
) -> httpx.Response:
    content = json.dumps(body, ensure_ascii=False).encode("utf-8")
    return httpx.Response(
        status, content=content, headers={"Content-Type": _JSON, **(headers or {})}
    )


def _not_recorded(request: httpx.Request, reason: str) -> httpx.Response:
    body = {
        "error": "not recorded",
        "reason": reason,
        "method": request.method,
        "url": str(request.url),
        "hint": "feeds.replay serves only the demo samples listed in feeds/samples/manifest.json",
    }
    return _json_response(404, body)


def _xrpc_error(message: str) -> httpx.Response:
    return _json_response(400, {"error": "InvalidRequest", "message": message})


def _etag_matches(if_none_match: str, etag: str) -> bool:
    # If-None-Match uses weak comparison: W/"x" matches "x", and * matches any current entity.
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in tags or etag in tags


def _not_modified_since(request: httpx.Request, last_modified: datetime) -> bool:
    header = request.headers.get("If-Modified-Since")
    if not header:
        return False
    try:
        since = parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return False
    return since.tzinfo is not None and last_modified <= since


def _rss_build_date(feed: bytes) -> datetime | None:
    found = re.search(rb"<lastBuildDate>([^<]+)</lastBuildDate>", feed)
    if found is None:
        return None
    try:
        return parsedate_to_datetime(found.group(1).decode())
    except (TypeError, ValueError):
        return None


def _rss_papers(feed: bytes, dates: dict[str, dict[str, str]]) -> list[_ArxivPaper]:
    channel = fromstring(feed).find("channel")
    if channel is None:
        return []
    pub_date = channel.findtext("pubDate")
    fallback = _iso(parsedate_to_datetime(pub_date)) if pub_date else _iso(DEMO_NOW)
    papers = []
    for item in channel.iter("item"):
        guid = (item.findtext("guid") or "").removeprefix("oai:arXiv.org:")
        arxiv_id, version = split_version(guid)
        description = item.findtext("description") or ""
        _, _, abstract = description.partition("Abstract: ")
        creators = item.findtext(f"{{{_DC_NS}}}creator") or ""
        paper_dates = dates.get(arxiv_id, {})
        papers.append(
            _ArxivPaper(
                arxiv_id=arxiv_id,
                version=version or 1,
                title=item.findtext("title") or "",
                abstract=abstract.strip(),
                authors=tuple(name.strip() for name in creators.split(",") if name.strip()),
                categories=tuple(c.text or "" for c in item.findall("category")),
                published=paper_dates.get("published", fallback),
                updated=paper_dates.get("updated", fallback),
            )
        )
    return papers


def _atom_feed(
    search_query: str, id_list: str, start: int, max_results: int, found: list[_ArxivPaper]
) -> bytes:
    # Literal prefixed tag names reproduce the API's exact namespace layout without touching
    # ElementTree's process-wide prefix registry.
    query = f"search_query={search_query}&id_list={id_list}&start={start}&max_results={max_results}"
    digest = hashlib.sha1(query.encode(), usedforsecurity=False).digest()
    feed_id = base64.b64encode(digest).decode().rstrip("=")
    feed = Element(
        "feed",
        {"xmlns:opensearch": _OPENSEARCH_NS, "xmlns:arxiv": _ARXIV_NS, "xmlns": _ATOM_NS},
    )
    SubElement(feed, "id").text = f"https://arxiv.org/api/{feed_id}"
    SubElement(feed, "title").text = f"arXiv Query: {query}"
    SubElement(feed, "updated").text = _iso(DEMO_NOW)
    link = (
        f"https://arxiv.org/api/query?search_query={search_query}&start={start}"
        f"&max_results={max_results}&id_list={id_list}"
    )
    SubElement(feed, "link", {"href": link, "type": "application/atom+xml"})
    SubElement(feed, "opensearch:itemsPerPage").text = str(max_results)
    SubElement(feed, "opensearch:totalResults").text = str(len(found))
    SubElement(feed, "opensearch:startIndex").text = str(start)
    for paper in found[start : start + max_results]:
        versioned = f"{paper.arxiv_id}v{paper.version}"
        entry = SubElement(feed, "entry")
        SubElement(entry, "id").text = f"http://arxiv.org/abs/{versioned}"
        SubElement(entry, "title").text = paper.title
        SubElement(entry, "updated").text = paper.updated
        SubElement(entry, "link", {"href": f"https://arxiv.org/abs/{versioned}"})
        SubElement(entry, "link", {"href": f"https://arxiv.org/pdf/{versioned}"})
        SubElement(entry, "summary").text = paper.abstract
        for category in paper.categories:
            SubElement(entry, "category", {"term": category, "scheme": _ARXIV_NS})
        SubElement(entry, "published").text = paper.published
        if paper.categories:
            SubElement(entry, "arxiv:primary_category", {"term": paper.categories[0]})
        for name in paper.authors:
            SubElement(SubElement(entry, "author"), "name").text = name
    return _xml_document(feed)


def _arxiv_error(request: httpx.Request, message: str) -> httpx.Response:
    feed = Element("feed", {"xmlns:opensearch": _OPENSEARCH_NS, "xmlns": _ATOM_NS})
    SubElement(feed, "id").text = "https://arxiv.org/api/errors"
    SubElement(feed, "title").text = "Error"
    SubElement(feed, "updated").text = _iso(DEMO_NOW)
    SubElement(feed, "opensearch:totalResults").text = "1"
    SubElement(feed, "opensearch:startIndex").text = "0"
    SubElement(feed, "opensearch:itemsPerPage").text = "1"
    entry = SubElement(feed, "entry")
    SubElement(entry, "id").text = "https://arxiv.org/api/errors#" + message.replace(" ", "_")
    SubElement(entry, "title").text = "Error"
    SubElement(entry, "summary").text = message
    SubElement(entry, "updated").text = _iso(DEMO_NOW)
    SubElement(entry, "link", {"href": "https://arxiv.org/api/errors", "rel": "alternate"})
    body = _xml_document(feed)
    return httpx.Response(
        400, content=body, headers={"Content-Type": "application/atom+xml; charset=utf-8"}
    )


def _xml_document(root: Element) -> bytes:
    indent(root, space="  ")
    text = tostring(root, encoding="unicode")
    return ("<?xml version='1.0' encoding='UTF-8'?>\n" + text + "\n").encode("utf-8")


def _algolia_filters(raw: str) -> list[Callable[[dict[str, Any]], bool]]:
    compare: dict[str, Callable[[int, int], bool]] = {
        "<": int.__lt__,
        "<=": int.__le__,
        ">": int.__gt__,
        ">=": int.__ge__,
        "=": int.__eq__,
    }
    filters: list[Callable[[dict[str, Any]], bool]] = []
    for condition in filter(None, raw.split(",")):
        parsed = _ALGOLIA_FILTER.fullmatch(condition)
        if parsed is None:
            raise ValueError(f"invalid numericFilters: {condition!r}")
        attribute, operator, bound = parsed.group(1), parsed.group(2), int(parsed.group(3))

        def keep(
            hit: dict[str, Any],
            attribute: str = attribute,
            test: Callable[[int, int], bool] = compare[operator],
            bound: int = bound,
        ) -> bool:
            value = hit.get(attribute)
            return isinstance(value, int) and test(value, bound)

        filters.append(keep)
    return filters


def _offset_page(
    items: list[Any], params: httpx.QueryParams, *, default_limit: int, max_limit: int
) -> tuple[list[Any] | None, str | None]:
    # XRPC cursors are opaque strings; here they are the offset of the next item.
    try:
        limit = int(params.get("limit", str(default_limit)))
        offset = int(params.get("cursor", "0"))
    except ValueError:
        return None, None
    if not 1 <= limit <= max_limit or offset < 0:
        return None, None
    page = items[offset : offset + limit]
    more = offset + limit < len(items)
    return page, str(offset + limit) if more else None


def _posted_at(post: dict[str, Any]) -> datetime:
    created = (post.get("record") or {}).get("createdAt")
    return _instant(created or post["indexedAt"])


def _instant(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _base32(text: str) -> str:
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode().lower()


def _fake_jwt(did: str, scope: str, lifetime: int) -> str:
    # Shaped like the PDS's tokens so adapters that peek at them work; never signed.
    def part(data: dict[str, Any]) -> str:
        raw = json.dumps(data, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    issued = int(DEMO_NOW.timestamp())
    claims = {"scope": scope, "sub": did, "iat": issued, "exp": issued + lifetime}
    claims["aud"] = "did:web:bsky.social"
    return f"{part({'typ': 'JWT', 'alg': 'ES256K'})}.{part(claims)}.replay-unsigned"
