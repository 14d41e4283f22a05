"""The bundled demo samples are well-formed and consistent, and the replay transport serves them."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import AsyncIterator, Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element

import httpx
import pytest
from defusedxml.ElementTree import fromstring

import feeds.samples
from feeds.ids import find_ids, split_version
from feeds.replay import DEMO_BLUESKY_ACTOR, DEMO_NOW, recorded_transport

SAMPLES = Path(feeds.samples.__file__).parent
ARXIV_NS = "http://arxiv.org/schemas/atom"
ATOM_NS = "http://www.w3.org/2005/Atom"
OPENSEARCH_NS = "http://a9.com/-/spec/opensearch/1.1/"
DC_NS = "http://purl.org/dc/elements/1.1/"
CATEGORY_FEEDS = ("cs.LG", "cs.CL", "cs.CV", "cs.AI", "stat.ML")
ENGAGEMENT_FILES = (
    "hackernews/search_by_date.json",
    "reddit/MachineLearning_new.json",
    "reddit/LocalLLaMA_new.json",
    "bluesky/searchPosts.json",
    "huggingface/daily_papers.json",
    "semanticscholar/paper_batch.json",
)
DESCRIPTION = re.compile(
    r"arXiv:(?P<vid>\S+) Announce Type: (?P<kind>new|cross|replace|replace-cross) \n"
    r"Abstract: (?P<abstract>.+)",
    re.DOTALL,
)


def sample_files() -> list[Path]:
    return sorted(p for p in SAMPLES.rglob("*") if p.suffix in {".xml", ".json"})


def load(relative: str) -> Any:
    return json.loads((SAMPLES / relative).read_text(encoding="utf-8"))


def rss_items(category: str) -> list[Element]:
    root = fromstring((SAMPLES / "arxiv" / f"rss_{category}.xml").read_bytes())
    return list(root.iter("item"))


def demo_papers() -> dict[str, set[int]]:
    versions: dict[str, set[int]] = {}
    for category in CATEGORY_FEEDS:
        for item in rss_items(category):
            arxiv_id, version = split_version(
                (item.findtext("guid") or "").removeprefix("oai:arXiv.org:")
            )
            versions.setdefault(arxiv_id, set()).add(version or 0)
    return versions


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=recorded_transport()) as http:
        yield http


# ---------------------------------------------------------------------------------------------
# The sample files


def test_every_sample_file_is_listed() -> None:
    names = {p.relative_to(SAMPLES).as_posix() for p in sample_files()}
    assert {f"arxiv/rss_{c}.xml" for c in CATEGORY_FEEDS} | {"arxiv/rss_empty.xml"} <= names
    assert set(ENGAGEMENT_FILES) | {"bluesky/getProfiles.json", "bluesky/getFollows.json"} <= names
    assert "manifest.json" in names


@pytest.mark.parametrize("path", sample_files(), ids=lambda p: p.relative_to(SAMPLES).as_posix())
def test_sample_file_parses(path: Path) -> None:
    content = path.read_bytes()
    if path.suffix == ".xml":
        assert fromstring(content).tag == "rss"
    else:
        json.loads(content.decode("utf-8"))


def test_feeds_hold_at_least_seventy_distinct_valid_papers() -> None:
    papers = demo_papers()
    assert len(papers) >= 70
    for versions in papers.values():
        assert len(versions) == 1, "a paper has one current version across every feed"
        assert versions.pop() >= 1


@pytest.mark.parametrize("category", CATEGORY_FEEDS)
def test_rss_items_follow_the_announcement_format(category: str) -> None:
    root = fromstring((SAMPLES / "arxiv" / f"rss_{category}.xml").read_bytes())
    channel = root.find("channel")
    assert channel is not None
    assert channel.findtext("title") == f"{category} updates on arXiv.org"
    assert [d.text for d in channel.iter("day")] == ["Saturday", "Sunday"]
    assert channel.findtext("language") == "en-us"
    items = list(channel.iter("item"))
    assert items
    for item in items:
        description = DESCRIPTION.fullmatch(item.findtext("description") or "")
        assert description, item.findtext("title")
        arxiv_id, version = split_version(description["vid"])
        assert version is not None
        assert item.findtext("guid") == f"oai:arXiv.org:{arxiv_id}v{version}"
        assert item.find("guid").get("isPermaLink") == "false"  # type: ignore[union-attr]
        assert item.findtext("link") == f"https://arxiv.org/abs/{arxiv_id}"
        assert item.findtext(f"{{{ARXIV_NS}}}announce_type") == description["kind"]
        categories = [c.text for c in item.findall("category")]
        assert category in categories
        primary = categories[0] == category
        if description["kind"] in ("new", "replace"):
            assert primary
        else:
            assert not primary
        assert (version > 1) == description["kind"].startswith("replace")
        assert parsedate_to_datetime(item.findtext("pubDate") or "") == parsedate_to_datetime(
            "Mon, 16 Nov 2026 00:00:00 -0500"
        )
        assert item.findtext(f"{{{DC_NS}}}rights", "").startswith("http")
        creators = item.findtext(f"{{{DC_NS}}}creator") or ""
        assert all(name.strip() for name in creators.split(","))
        sentences = [s for s in re.split(r"(?<=[.?!])\s+", description["abstract"]) if s]
        assert 2 <= len(sentences) <= 5


def test_feeds_include_cross_lists_replacements_and_markup() -> None:
    kinds: dict[str, set[str]] = {}
    abstracts = []
    for category in CATEGORY_FEEDS:
        for item in rss_items(category):
            kind = item.findtext(f"{{{ARXIV_NS}}}announce_type") or ""
            kinds.setdefault(kind, set()).add(item.findtext("guid") or "")
            abstracts.append(item.findtext("description") or "")
    assert {"new", "cross", "replace", "replace-cross"} <= set(kinds)
    assert 2 <= len(kinds["replace"]) <= 3
    assert any("$\\mathcal{O}" in text for text in abstracts)
    assert any("<" in text for text in abstracts)
    assert any("&" in text for text in abstracts)


def test_empty_feed_has_a_channel_but_no_items() -> None:
    root = fromstring((SAMPLES / "arxiv" / "rss_empty.xml").read_bytes())
    assert root.find("channel") is not None
    assert not list(root.iter("item"))


@pytest.mark.parametrize("relative", ENGAGEMENT_FILES)
def test_engagement_payloads_mention_only_demo_papers(relative: str) -> None:
    papers = demo_papers()
    mentioned = {arxiv_id for text in strings(load(relative)) for arxiv_id in find_ids(text)}
    assert mentioned
    assert mentioned <= set(papers), mentioned - set(papers)


def test_engagement_covers_a_subset_with_varied_heat() -> None:
    hits = load("hackernews/search_by_date.json")["hits"]
    points = sorted((hit["points"] for hit in hits), reverse=True)
    assert points[0] > 500
    assert points[-1] < 10
    mentioned = {
        arxiv_id
        for relative in ENGAGEMENT_FILES
        for text in strings(load(relative))
        for arxiv_id in find_ids(text)
    }
    assert 10 < len(mentioned) < len(demo_papers()) / 2


def test_bluesky_facets_point_at_the_link_text() -> None:
    for post in load("bluesky/searchPosts.json")["posts"]:
        record = post["record"]
        text = record["text"].encode("utf-8")
        for facet in record.get("facets", []):
            index = facet["index"]
            label = text[index["byteStart"] : index["byteEnd"]].decode("utf-8")
            uri = facet["features"][0]["uri"]
            assert label.rstrip(".") in uri


def test_bluesky_profiles_cover_authors_and_follows() -> None:
    profiles = {p["did"]: p for p in load("bluesky/getProfiles.json")["profiles"]}
    authors = {post["author"]["did"] for post in load("bluesky/searchPosts.json")["posts"]}
    assert authors <= set(profiles)
    assert len({profiles[did]["followersCount"] for did in authors}) == len(authors)
    follows = load("bluesky/getFollows.json")
    assert follows["subject"]["handle"] == DEMO_BLUESKY_ACTOR
    assert len(follows["follows"]) == 4
    assert {f["did"] for f in follows["follows"]} <= authors


def test_semantic_scholar_sample_answers_the_manifest_request() -> None:
    requested = load("manifest.json")["semanticscholar_request_ids"]
    answer = load("semanticscholar/paper_batch.json")
    assert len(answer) == len(requested)
    assert None in answer
    for raw_id, item in zip(requested, answer, strict=True):
        if item is not None:
            assert raw_id == f"ARXIV:{item['externalIds']['ArXiv']}"


def test_manifest_dates_every_demo_paper() -> None:
    dates = load("manifest.json")["arxiv_dates"]
    assert set(dates) == set(demo_papers())
    for arxiv_id, known in dates.items():
        assert known["published"] <= known["updated"], arxiv_id


# ---------------------------------------------------------------------------------------------
# The transport: arXiv


async def test_rss_route_serves_the_category_file(client: httpx.AsyncClient) -> None:
    response = await client.get("https://rss.arxiv.org/rss/cs.CV")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/rss+xml"
    assert response.content == (SAMPLES / "arxiv" / "rss_cs.CV.xml").read_bytes()
    assert response.headers["etag"].startswith('"')
    assert parsedate_to_datetime(response.headers["last-modified"]) < DEMO_NOW


async def test_rss_conditional_get_answers_304(client: httpx.AsyncClient) -> None:
    first = await client.get("https://rss.arxiv.org/rss/cs.LG")
    etag = first.headers["etag"]
    same = await client.get("https://rss.arxiv.org/rss/cs.LG", headers={"If-None-Match": etag})
    assert same.status_code == 304
    assert same.content == b""
    assert same.headers["etag"] == etag
    weak = await client.get(
        "https://rss.arxiv.org/rss/cs.LG", headers={"If-None-Match": f'"other", W/{etag}'}
    )
    assert weak.status_code == 304
    stale = await client.get("https://rss.arxiv.org/rss/cs.LG", headers={"If-None-Match": '"x"'})
    assert stale.status_code == 200
    other = await client.get("https://rss.arxiv.org/rss/cs.AI", headers={"If-None-Match": etag})
    assert other.status_code == 200
    by_date = await client.get(
        "https://rss.arxiv.org/rss/cs.LG",
        headers={"If-Modified-Since": first.headers["last-modified"]},
    )
    assert by_date.status_code == 304


async def test_unknown_category_gets_the_empty_feed(client: httpx.AsyncClient) -> None:
    response = await client.get("https://rss.arxiv.org/rss/q-bio.NC")
    assert response.status_code == 200
    assert not list(fromstring(response.content).iter("item"))


async def test_joined_categories_list_each_paper_once(client: httpx.AsyncClient) -> None:
    response = await client.get("https://rss.arxiv.org/rss/cs.AI+cs.CL")
    root = fromstring(response.content)
    guids = [item.findtext("guid") for item in root.iter("item")]
    assert len(guids) == len(set(guids))
    expected = {i.findtext("guid") for c in ("cs.AI", "cs.CL") for i in rss_items(c)}
    assert set(guids) == expected
    assert root.findtext("channel/title") == "cs.AI+cs.CL updates on arXiv.org"


def atom_entries(content: bytes) -> tuple[Element, list[Element]]:
    root = fromstring(content)
    return root, root.findall(f"{{{ATOM_NS}}}entry")


async def test_query_api_answers_id_lists_from_the_feeds(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "https://export.arxiv.org/api/query",
        params={"id_list": "2506.23589,1201.56789,2606.29066", "max_results": "10"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/atom+xml")
    root, entries = atom_entries(response.content)
    assert root.findtext(f"{{{OPENSEARCH_NS}}}totalResults") == "2"
    assert [e.findtext(f"{{{ATOM_NS}}}id") for e in entries] == [
        "http://arxiv.org/abs/2506.23589v2",
        "http://arxiv.org/abs/2606.29066v1",
    ]
    replaced = entries[0]
    assert replaced.findtext(f"{{{ATOM_NS}}}title") == (
        "Transition Matching: Scalable and Flexible Generative Modeling"
    )
    assert (replaced.findtext(f"{{{ATOM_NS}}}published") or "") < (
        replaced.findtext(f"{{{ATOM_NS}}}updated") or ""
    )
    primary = replaced.find(f"{{{ARXIV_NS}}}primary_category")
    assert primary is not None
    assert primary.get("term") == "cs.LG"
    hrefs = [link.get("href") for link in replaced.findall(f"{{{ATOM_NS}}}link")]
    assert "https://arxiv.org/pdf/2506.23589v2" in hrefs
    authors = [a.findtext(f"{{{ATOM_NS}}}name") for a in replaced.iter(f"{{{ATOM_NS}}}author")]
    assert authors[0] == "Neta Shaul"
    summary = entries[1].findtext(f"{{{ATOM_NS}}}summary") or ""
    assert "$x$" in summary
    assert "Abstract:" not in summary


async def test_query_api_keeps_the_default_page_of_ten(client: httpx.AsyncClient) -> None:
    ids = sorted(demo_papers())[:12]
    response = await client.get(
        "https://export.arxiv.org/api/query", params={"id_list": ",".join(ids)}
    )
    root, entries = atom_entries(response.content)
    assert root.findtext(f"{{{OPENSEARCH_NS}}}totalResults") == "12"
    assert len(entries) == 10


async def test_query_api_pins_versions_and_rejects_bad_ids(client: httpx.AsyncClient) -> None:
    pinned = await client.get(
        "https://export.arxiv.org/api/query", params={"id_list": "2506.23589v1,2506.23589v7"}
    )
    _, entries = atom_entries(pinned.content)
    assert [e.findtext(f"{{{ATOM_NS}}}id") for e in entries] == [
        "http://arxiv.org/abs/2506.23589v1"
    ]
    bad = await client.get("https://export.arxiv.org/api/query", params={"id_list": "12.34"})
    assert bad.status_code == 400
    _, entries = atom_entries(bad.content)
    assert entries[0].findtext(f"{{{ATOM_NS}}}title") == "Error"


# ---------------------------------------------------------------------------------------------
# The transport: engagement sources


@pytest.mark.parametrize("path", ["/api/v1/search_by_date", "/api/v1/search"])
async def test_hacker_news_first_page_then_empty(client: httpx.AsyncClient, path: str) -> None:
    url = f"https://hn.algolia.com{path}"
    first = (await client.get(url, params={"query": "arxiv.org", "page": 0})).json()
    assert first["hits"] == load("hackernews/search_by_date.json")["hits"]
    second = (await client.get(url, params={"query": "arxiv.org", "page": 1})).json()
    assert second["hits"] == []
    assert second["page"] == 1
    assert second["nbHits"] == first["nbHits"]


async def test_hacker_news_honours_hits_per_page_and_filters(client: httpx.AsyncClient) -> None:
    url = "https://hn.algolia.com/api/v1/search_by_date"
    since = int(DEMO_NOW.replace(hour=0).timestamp())
    body = (
        await client.get(
            url, params={"numericFilters": f"created_at_i>{since}", "hitsPerPage": 4, "page": 1}
        )
    ).json()
    recorded = load("hackernews/search_by_date.json")["hits"]
    recent = [hit for hit in recorded if hit["created_at_i"] > since]
    assert body["nbHits"] == len(recent) < len(recorded)
    assert body["hits"] == recent[4:8]
    assert body["nbPages"] == -(-len(recent) // 4)
    bad = await client.get(url, params={"numericFilters": "points>>3"})
    assert bad.status_code == 400


@pytest.mark.parametrize(
    "url",
    [
        "https://www.reddit.com/r/MachineLearning/new.json",
        "https://oauth.reddit.com/r/MachineLearning/new",
        "https://oauth.reddit.com/r/machinelearning/new",
    ],
)
async def test_reddit_listing_with_rate_headers(client: httpx.AsyncClient, url: str) -> None:
    response = await client.get(url, params={"limit": 100, "raw_json": 1})
    assert response.status_code == 200
    assert response.json() == load("reddit/MachineLearning_new.json")
    assert response.headers["x-ratelimit-used"] == "1"
    assert float(response.headers["x-ratelimit-remaining"]) > 0
    assert int(response.headers["x-ratelimit-reset"]) > 0


async def test_reddit_pages_with_after_and_counts_requests(client: httpx.AsyncClient) -> None:
    url = "https://www.reddit.com/r/LocalLLaMA/new.json"
    first = await client.get(url, params={"limit": 5})
    listing = first.json()["data"]
    assert listing["dist"] == 5
    assert listing["after"] == listing["children"][-1]["data"]["name"]
    second = await client.get(url, params={"limit": 5, "after": listing["after"]})
    rest = second.json()["data"]
    assert rest["after"] is None
    names = [c["data"]["name"] for c in listing["children"] + rest["children"]]
    recorded = load("reddit/LocalLLaMA_new.json")["data"]["children"]
    assert names == [c["data"]["name"] for c in recorded]
    assert second.headers["x-ratelimit-used"] == "2"
    assert float(second.headers["x-ratelimit-remaining"]) == 98.0


async def test_reddit_unknown_subreddit_is_an_empty_listing(client: httpx.AsyncClient) -> None:
    body = (await client.get("https://www.reddit.com/r/nosuchsub/new.json")).json()
    assert body["kind"] == "Listing"
    assert body["data"]["children"] == []
    assert body["data"]["after"] is None


async def test_reddit_domain_listing_and_token(client: httpx.AsyncClient) -> None:
    body = (await client.get("https://www.reddit.com/domain/arxiv.org/new.json")).json()
    domains = {child["data"]["domain"] for child in body["data"]["children"]}
    assert domains == {"arxiv.org"}
    token = await client.post(
        "https://www.reddit.com/api/v1/access_token", data={"grant_type": "client_credentials"}
    )
    assert token.json()["token_type"] == "bearer"


@pytest.mark.parametrize("host", ["api.bsky.app", "public.api.bsky.app", "bsky.social"])
async def test_bluesky_search_posts(client: httpx.AsyncClient, host: str) -> None:
    url = f"https://{host}/xrpc/app.bsky.feed.searchPosts"
    recorded = load("bluesky/searchPosts.json")["posts"]
    body = (await client.get(url, params={"q": "arxiv.org", "limit": 100})).json()
    assert body["posts"] == recorded
    assert body["hitsTotal"] == len(recorded)
    assert "cursor" not in body


async def test_bluesky_search_pages_and_filters(client: httpx.AsyncClient) -> None:
    url = "https://api.bsky.app/xrpc/app.bsky.feed.searchPosts"
    recorded = load("bluesky/searchPosts.json")["posts"]
    first = (await client.get(url, params={"q": "arxiv", "limit": 10})).json()
    assert first["posts"] == recorded[:10]
    assert first["cursor"] == "10"
    rest = (await client.get(url, params={"q": "arxiv", "limit": 100, "cursor": "10"})).json()
    assert rest["posts"] == recorded[10:]
    assert "cursor" not in rest
    since = "2026-11-16T06:00:00.000Z"
    recent = (await client.get(url, params={"q": "arxiv", "since": since, "limit": 100})).json()
    assert 0 < len(recent["posts"]) < len(recorded)
    assert all(p["record"]["createdAt"] >= since for p in recent["posts"])
    missing_q = await client.get(url)
    assert missing_q.status_code == 400
    assert missing_q.json()["error"] == "InvalidRequest"


async def test_bluesky_profiles_only_the_requested_actors(client: httpx.AsyncClient) -> None:
    profiles = load("bluesky/getProfiles.json")["profiles"]
    wanted = [profiles[2]["did"], "nobody.bsky.social", profiles[0]["handle"]]
    response = await client.get(
        "https://api.bsky.app/xrpc/app.bsky.actor.getProfiles",
        params=[("actors", actor) for actor in wanted],
    )
    assert [p["did"] for p in response.json()["profiles"]] == [
        profiles[2]["did"],
        profiles[0]["did"],
    ]


async def test_bluesky_follows_and_session(client: httpx.AsyncClient) -> None:
    follows = await client.get(
        "https://public.api.bsky.app/xrpc/app.bsky.graph.getFollows",
        params={"actor": DEMO_BLUESKY_ACTOR, "limit": 100},
    )
    assert follows.json() == load("bluesky/getFollows.json")
    session = await client.post(
        "https://bsky.social/xrpc/com.atproto.server.createSession",
        json={"identifier": DEMO_BLUESKY_ACTOR, "password": "demo-app-password"},
    )
    body = session.json()
    assert body["handle"] == DEMO_BLUESKY_ACTOR
    assert body["did"] == follows.json()["subject"]["did"]
    assert body["accessJwt"].count(".") == 2
    assert body["refreshJwt"] != body["accessJwt"]
    refused = await client.post(
        "https://bsky.social/xrpc/com.atproto.server.createSession", json={"identifier": "x"}
    )
    assert refused.status_code == 400


async def test_hugging_face_daily_papers(client: httpx.AsyncClient) -> None:
    url = "https://huggingface.co/api/daily_papers"
    recorded = load("huggingface/daily_papers.json")
    today = await client.get(url, params={"date": "2026-11-16", "limit": 100})
    assert today.json() == recorded
    assert (await client.get(url, params={"date": "2026-11-15"})).json() == []
    assert (await client.get(url, params={"p": 1})).json() == []
    paper = await client.get(f"https://huggingface.co/api/papers/{recorded[0]['paper']['id']}")
    assert paper.json() == recorded[0]["paper"]
    assert (await client.get("https://huggingface.co/api/papers/2606.99999")).status_code == 404


async def test_semantic_scholar_answers_in_request_order_with_nulls(
    client: httpx.AsyncClient,
) -> None:
    url = "https://api.semanticscholar.org/graph/v1/paper/batch"
    fields = "externalIds,citationCount,influentialCitationCount,title"
    requested = load("manifest.json")["semanticscholar_request_ids"]
    recorded = await client.post(url, params={"fields": fields}, json={"ids": requested})
    assert recorded.json() == load("semanticscholar/paper_batch.json")

    known = [item for item in recorded.json() if item is not None]
    ids = [
        "CorpusId:215416146",
        f"ARXIV:{known[1]['externalIds']['ArXiv']}",
        "ARXIV:2606.99999",
        f"arXiv:{known[0]['externalIds']['ArXiv']}",
    ]
    answer = (await client.post(url, params={"fields": "citationCount"}, json={"ids": ids})).json()
    assert answer[0] is None
    assert answer[2] is None
    assert answer[1] == {"paperId": known[1]["paperId"], "citationCount": known[1]["citationCount"]}
    assert answer[3]["paperId"] == known[0]["paperId"]
    assert (await client.post(url, json={"ids": []})).status_code == 400


# ---------------------------------------------------------------------------------------------
# The transport: what it does not know


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("GET", "https://example.org/anything"),
        ("GET", "https://rss.arxiv.org/atom/cs.LG"),
        ("GET", "https://api.semanticscholar.org/graph/v1/paper/batch"),
        ("POST", "https://hn.algolia.com/api/v1/search"),
    ],
)
async def test_unrecorded_urls_get_404(client: httpx.AsyncClient, method: str, url: str) -> None:
    response = await client.request(method, url)
    assert response.status_code == 404
    body = response.json()
    assert body["error"] == "not recorded"
    assert body["url"] == url


async def test_samples_dir_override_and_missing_file(tmp_path: Path) -> None:
    copy = tmp_path / "samples"
    shutil.copytree(SAMPLES, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "hackernews" / "search_by_date.json").unlink()
    hits = load("reddit/MachineLearning_new.json")
    hits["data"]["children"] = hits["data"]["children"][:1]
    (copy / "reddit" / "MachineLearning_new.json").write_text(json.dumps(hits))
    async with httpx.AsyncClient(transport=recorded_transport(copy)) as http:
        missing = await http.get("https://hn.algolia.com/api/v1/search_by_date")
        assert missing.status_code == 404
        assert "hackernews/search_by_date.json" in missing.json()["reason"]
        listing = (await http.get("https://www.reddit.com/r/MachineLearning/new.json")).json()
        assert len(listing["data"]["children"]) == 1
