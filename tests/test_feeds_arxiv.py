"""arXiv adapters: golden payloads in every real format, and the requests the fetchers send.

Golden files live in ``tests/data/arxiv/``: ``NAME.xml`` is a payload in arXiv's real format
(content written for these tests) and ``NAME.expected.json`` what it must parse to, or the
error it must raise. The file-name prefix picks the parser: ``rss_``/``atom_`` announcement
feeds, ``api_`` query API, ``oai_`` OAI-PMH. ``TP_REGEN_GOLDEN=1`` rewrites the expected files
from the current parser output; check every change by eye before committing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import os
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from feeds.arxiv import (
    ANNOUNCE_URL,
    API_URL,
    OAI_URL,
    ArxivAnnouncementSource,
    ArxivApiError,
    OaiError,
    PaperSource,
    fetch_announcements,
    fetch_by_ids,
    fetch_oai_page,
    merge_papers,
    parse_announcements,
    parse_api_feed,
    parse_oai,
)
from feeds.http import FetchError, MalformedPayload
from feeds.records import AnnounceType, PageInfo, Paper, PaperBatch

DATA = Path(__file__).parent / "data" / "arxiv"
# Read at import time: the conftest clears TP_* variables before each test runs.
REGENERATE = os.environ.get("TP_REGEN_GOLDEN") == "1"

PARSERS: dict[str, Callable[[bytes], PaperBatch]] = {
    "rss": parse_announcements,
    "atom": parse_announcements,
    "api": parse_api_feed,
    "oai": parse_oai,
}
ERRORS: dict[str, type[FetchError]] = {
    "MalformedPayload": MalformedPayload,
    "ArxivApiError": ArxivApiError,
    "OaiError": OaiError,
}
PAYLOADS = sorted(DATA.glob("*.xml"))


def _payload(name: str) -> bytes:
    return (DATA / name).read_bytes()


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value


def _batch_json(batch: PaperBatch) -> dict[str, Any]:
    result: dict[str, Any] = _jsonable(dataclasses.asdict(batch))
    return result


def _error_json(exc: FetchError) -> dict[str, Any]:
    reason = exc.reason
    if isinstance(exc, MalformedPayload):
        # Keep only our own prefix: the rest is the XML parser's wording.
        reason = reason.split(":", 1)[0]
    expected: dict[str, Any] = {"raises": type(exc).__name__, "reason_prefix": reason}
    if isinstance(exc, OaiError):
        expected["code"] = exc.code
    return expected


def _parse_golden(path: Path) -> dict[str, Any]:
    parser = PARSERS[path.name.split("_", 1)[0]]
    try:
        return _batch_json(parser(path.read_bytes()))
    except FetchError as exc:
        return _error_json(exc)


def test_every_payload_has_an_expected_file() -> None:
    assert PAYLOADS, "golden payloads missing"
    for path in PAYLOADS:
        assert path.name.split("_", 1)[0] in PARSERS, path.name
        assert path.with_suffix(".expected.json").exists() or REGENERATE, path.name


@pytest.mark.parametrize("path", PAYLOADS, ids=lambda path: path.stem)
def test_golden(path: Path) -> None:
    expected_path = path.with_suffix(".expected.json")
    actual = _parse_golden(path)
    if REGENERATE:
        text = json.dumps(actual, indent=2, ensure_ascii=False, sort_keys=False) + "\n"
        expected_path.write_text(text, encoding="utf-8")
    expected = json.loads(expected_path.read_text(encoding="utf-8"))
    if "raises" in expected:
        parser = PARSERS[path.name.split("_", 1)[0]]
        with pytest.raises(ERRORS[expected["raises"]]) as caught:
            parser(path.read_bytes())
        assert type(caught.value) is ERRORS[expected["raises"]]
        assert caught.value.reason.startswith(expected["reason_prefix"])
        if "code" in expected:
            assert isinstance(caught.value, OaiError)
            assert caught.value.code == expected["code"]
    else:
        assert actual == expected


# ---------------------------------------------------------------------------------------------
# Facts the golden files encode, pinned by name so a careless regeneration cannot hide them.


def _by_id(batch: PaperBatch) -> dict[str, Paper]:
    return {paper.arxiv_id: paper for paper in batch.papers}


def test_rss_announce_types_versions_and_dates() -> None:
    papers = _by_id(parse_announcements(_payload("rss_cs_LG_2025-07-01.xml")))
    announced = datetime(2025, 7, 1, 4, tzinfo=UTC)
    new = papers["2506.22631"]
    assert (new.version, new.announce_type, new.announced) == (1, AnnounceType.NEW, announced)
    assert new.published == new.updated == announced
    assert "$\\gamma < 1$" in new.abstract
    assert "costs & memory" in new.abstract
    assert papers["2506.22899"].announce_type is AnnounceType.CROSS
    assert papers["2506.22899"].primary_category == "cs.CV"
    assert papers["2506.22899"].authors[-1] == "Sabine Süsstrunk"
    replaced = papers["1412.6980"]
    assert (replaced.version, replaced.announce_type) == (10, AnnounceType.REPLACE)
    # The feed does not say when v1 appeared: the id's month is the documented lower bound.
    assert replaced.published == datetime(2014, 12, 1, tzinfo=UTC)
    assert replaced.updated == announced
    lora = papers["2106.09685"]
    assert lora.announce_type is AnnounceType.REPLACE_CROSS
    assert lora.title == "LoRA: Low-Rank Adaptation of Large Language Models"
    assert lora.authors[-2:] == ("Lu Wang", "Weizhu Chen")
    assert lora.doi == "10.5555/lora.2022.0001"


def test_atom_announcements_old_style_ids_and_entities() -> None:
    papers = _by_id(parse_announcements(_payload("atom_hep-ph+nucl-th_2025-07-02.xml")))
    assert set(papers) == {"2507.00118", "hep-ph/9411242", "nucl-ex/0408020", "0704.0039"}
    assert papers["2507.00118"].title.endswith("what's left to fix?")
    assert papers["2507.00118"].authors == ("Lena Marquardt", "Tomás Ibarra", "Priya Raman")
    assert papers["hep-ph/9411242"].published == datetime(1994, 11, 1, tzinfo=UTC)
    assert papers["nucl-ex/0408020"].announce_type is AnnounceType.REPLACE_CROSS
    assert papers["0704.0039"].journal_ref == "Phys.Lett.B651:139-146,2007"


def test_weekend_feed_is_empty_not_an_error() -> None:
    assert parse_announcements(_payload("rss_weekend_empty.xml")) == PaperBatch(papers=())


def test_api_current_format() -> None:
    batch = parse_api_feed(_payload("api_query_current.xml"))
    assert batch.page == PageInfo(total=1873, start=0, per_page=4)
    papers = _by_id(batch)
    pion = papers["0704.0039"]
    assert (pion.version, pion.doi, pion.primary_category) == (
        2,
        "10.1016/j.physletb.2007.06.023",
        "hep-ph",
    )
    assert "$s_1 < 4 m_K^2$" in pion.abstract
    assert "grows & so" in pion.abstract
    forecaster = papers["2506.22631"]
    assert forecaster.doi == "10.5555/vaw.2025.22631"  # only the rel="related" doi.org link
    assert forecaster.categories == ("cs.LG", "stat.ML")  # MSC classes are not categories
    assert papers["2507.01999"].withdrawn
    assert not pion.withdrawn
    assert papers["astro-ph/9904306"].published == datetime(1999, 4, 22, 15, 54, 59, tzinfo=UTC)


def test_api_old_format_skips_ghost_entries() -> None:
    batch = parse_api_feed(_payload("api_id_list_oldformat_ghosts.xml"))
    assert batch.page.total == 4
    assert [p.arxiv_id for p in batch.papers] == ["0704.0001", "hep-ph/9411242"]
    first = batch.papers[0]
    assert (
        first.title
        == "Calculation of prompt diphoton production cross sections at Tevatron and LHC energies"
    )
    assert first.doi == "10.1103/PhysRevD.76.013009"


def test_api_unversioned_entry_takes_version_from_pdf_link() -> None:
    (paper,) = parse_api_feed(_payload("api_legacy_unversioned_id.xml")).papers
    assert paper.version == 2
    assert paper.published == datetime(2007, 4, 2, 19, 18, 42, tzinfo=UTC)


@pytest.mark.parametrize("name", ["api_not_found_current.xml", "api_not_found_oldformat.xml"])
def test_api_not_found_is_empty(name: str) -> None:
    assert parse_api_feed(_payload(name)).papers == ()


def test_api_error_feed_raises() -> None:
    with pytest.raises(ArxivApiError) as caught:
        parse_api_feed(_payload("api_error_malformed_id.xml"))
    assert caught.value.message == "incorrect id format for 2513.00001"
    assert isinstance(caught.value, FetchError)


def test_oai_arxiv_format() -> None:
    batch = parse_oai(_payload("oai_listrecords_arXiv_page1.xml"))
    assert batch.page == PageInfo(resumption_token="7c1f0a52|physics:hep-ph|2025-07-02|1000")
    assert batch.deleted_ids == ("2507.01998",)
    papers = _by_id(batch)
    assert papers["0704.0039"].version == 2  # has <updated>: at least v2
    assert papers["0704.0039"].updated == datetime(2007, 4, 25, tzinfo=UTC)
    assert papers["astro-ph/9904306"].version == 1
    assert papers["2507.00118"].authors == (
        "Lena Marquardt",
        "Tomás Ibarra",
        "Priya Raman",
        "Samuel K. Whitfield Jr.",
        "NEXT Collaboration",
    )


def test_oai_arxiv_raw_version_history() -> None:
    (paper,) = parse_oai(_payload("oai_getrecord_arXivRaw.xml")).papers
    assert paper.version == 2
    assert paper.published == datetime(2007, 4, 2, 19, 18, 42, tzinfo=UTC)
    assert paper.updated == datetime(2007, 7, 24, 20, 10, 27, tzinfo=UTC)
    assert paper.authors == ("C. Bal\\'azs", "E. L. Berger", "P. M. Nadolsky", "C.-P. Yuan")


def test_oai_arxiv_raw_last_page() -> None:
    batch = parse_oai(_payload("oai_listrecords_arXivRaw_last_page.xml"))
    assert batch.page == PageInfo(total=1002, start=1000, resumption_token=None)
    papers = _by_id(batch)
    assert papers["2507.00118"].version == 3  # versions listed out of order
    assert papers["2507.00118"].authors == (
        "Lena Marquardt",
        "Tom\\'as Ibarra",
        "Priya Raman",
        "Samuel K. Whitfield Jr.",
    )
    assert papers["2507.01999"].withdrawn


def test_oai_no_records_match_is_empty() -> None:
    assert parse_oai(_payload("oai_no_records_match.xml")) == PaperBatch(papers=())


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("oai_bad_resumption_token.xml", "badResumptionToken"),
        ("oai_bad_argument.xml", "badArgument"),
    ],
)
def test_oai_errors_raise(name: str, code: str) -> None:
    with pytest.raises(OaiError) as caught:
        parse_oai(_payload(name))
    assert caught.value.code == code


def test_truncated_payload_is_malformed() -> None:
    with pytest.raises(MalformedPayload, match="malformed XML"):
        parse_announcements(_payload("rss_truncated.xml"))


@pytest.mark.parametrize(
    ("parser", "name"),
    [
        (parse_announcements, "oai_no_records_match.xml"),
        (parse_api_feed, "rss_cs_LG_2025-07-01.xml"),
        (parse_oai, "api_query_current.xml"),
    ],
)
def test_wrong_document_is_malformed(parser: Callable[[bytes], PaperBatch], name: str) -> None:
    with pytest.raises(MalformedPayload):
        parser(_payload(name))


def test_oai_parsing_leaves_the_garbage_collector_on() -> None:
    assert parse_oai(_payload("oai_listrecords_arXiv_page1.xml")).papers
    assert gc.isenabled()
    with pytest.raises(MalformedPayload):
        parse_oai(_payload("oai_listrecords_arXiv_page1.xml")[:-40])
    assert gc.isenabled()
    with pytest.raises(OaiError):
        parse_oai(_payload("oai_bad_argument.xml"))
    assert gc.isenabled()


_TEXT = st.lists(
    st.sampled_from(
        ["a", "Zz", "é", "$x < y$", " ", "  ", "\n", "\t", "\r", "\xa0", "\u2003", "&"]
    ),
    max_size=12,
).map("".join)


@given(title=_TEXT, abstract=_TEXT, keyname=_TEXT, forenames=_TEXT)
def test_oai_text_is_collapsed_exactly_like_str_split(
    title: str, abstract: str, keyname: str, forenames: str
) -> None:
    def tidy(text: str) -> str:
        return " ".join(text.split())

    def xml(text: str) -> str:
        return escape(text).replace("\r", "&#13;")  # a literal CR would become a newline

    record = (
        '<OAI-PMH xmlns="http://www.openarchives.org/OAI/2.0/"><ListRecords><record><metadata>'
        '<arXiv xmlns="http://arxiv.org/OAI/arXiv/"><id>2507.00001</id>'
        f"<created>2025-07-01</created><authors><author><keyname>{xml(keyname)}</keyname>"
        f"<forenames>{xml(forenames)}</forenames></author></authors><title>{xml(title)}</title>"
        f"<categories>cs.LG</categories><abstract>{xml(abstract)}</abstract></arXiv>"
        "</metadata></record></ListRecords></OAI-PMH>"
    )
    (paper,) = parse_oai(record.encode()).papers
    assert paper.title == tidy(title)
    assert paper.abstract == tidy(abstract)
    name = " ".join(f"{forenames} {keyname}".split())
    assert paper.authors == ((name,) if name else ())


@pytest.mark.parametrize("parser", [parse_announcements, parse_api_feed, parse_oai])
def test_empty_body_is_malformed(parser: Callable[[bytes], PaperBatch]) -> None:
    with pytest.raises(MalformedPayload):
        parser(b"")


@pytest.mark.parametrize("path", PAYLOADS, ids=lambda path: path.stem)
def test_every_truncation_is_a_clear_error(path: Path) -> None:
    parser = PARSERS[path.name.split("_", 1)[0]]
    payload = path.read_bytes()
    end = payload.rstrip().rfind(b"<")  # before the closing root tag nothing is complete
    for cut in range(0, end, 53):
        with pytest.raises(MalformedPayload):
            parser(payload[:cut])


@given(st.binary(max_size=300))
def test_garbage_never_escapes_as_another_exception(garbage: bytes) -> None:
    for parser in (parse_announcements, parse_api_feed, parse_oai):
        with contextlib.suppress(MalformedPayload):
            parser(garbage)


def test_rss_item_without_id_is_skipped() -> None:
    payload = _payload("rss_cs_CV_2025-07-01.xml").replace(
        b'<guid isPermaLink="false">oai:arXiv.org:2506.22504v1</guid>', b""
    )
    # The description still names the id.
    assert [p.arxiv_id for p in parse_announcements(payload).papers] == ["2506.22899", "2506.22504"]
    broken = payload.replace(b"arXiv:2506.22504v1 Announce", b"Announce")
    assert [p.arxiv_id for p in parse_announcements(broken).papers] == ["2506.22899"]


# ---------------------------------------------------------------------------------------------
# Merging


def _paper(arxiv_id: str, version: int, kind: AnnounceType, *categories: str) -> Paper:
    moment = datetime(2025, 7, 1, 4, tzinfo=UTC)
    return Paper(
        arxiv_id=arxiv_id,
        version=version,
        title="t",
        abstract="a",
        authors=("A",),
        categories=categories,
        primary_category=categories[0],
        published=moment,
        updated=moment,
        announce_type=kind,
        announced=moment,
    )


def test_merge_keeps_highest_version_and_unions_categories() -> None:
    old = _paper("2506.00001", 1, AnnounceType.NEW, "cs.LG")
    newer = _paper("2506.00001", 2, AnnounceType.REPLACE_CROSS, "cs.CL", "cs.AI")
    other = _paper("2506.00002", 1, AnnounceType.NEW, "cs.CV")
    merged = merge_papers([old, other, newer])
    assert [p.arxiv_id for p in merged] == ["2506.00001", "2506.00002"]
    assert merged[0].version == 2
    assert merged[0].categories == ("cs.CL", "cs.AI", "cs.LG")
    assert merge_papers([newer, old])[0].version == 2


def test_merge_prefers_primary_listing_over_cross_listing() -> None:
    cross = _paper("2506.00001", 1, AnnounceType.CROSS, "cs.CV", "cs.LG")
    primary = _paper("2506.00001", 1, AnnounceType.NEW, "cs.CV", "cs.LG")
    assert merge_papers([cross, primary])[0].announce_type is AnnounceType.NEW
    assert merge_papers([primary, cross])[0].announce_type is AnnounceType.NEW


# ---------------------------------------------------------------------------------------------
# Fetchers: the requests they send


Handler = Callable[[httpx.Request], httpx.Response]


def _client(handler: Handler) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


async def test_fetch_by_ids_batches_and_always_sends_max_results() -> None:
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        body = "api_query_current.xml" if len(requests) == 1 else "api_not_found_current.xml"
        return httpx.Response(200, content=_payload(body))

    ids = [
        "0704.0039v2",
        "arXiv:2506.22631",
        "2507.01999",
        "astro-ph/9904306",
        "2506.22631",
        "hep-th/9901001",
    ]
    async with _client(handler) as client:
        papers = await fetch_by_ids(client, ids, batch_size=2)
    assert len(papers) == 4
    assert [str(r.url.copy_with(query=None)) for r in requests] == [API_URL] * 3
    assert [r.url.params["id_list"] for r in requests] == [
        "0704.0039v2,2506.22631",
        "2507.01999,astro-ph/9904306",
        "hep-th/9901001",
    ]
    # The API applies its default max_results=10 to id_list queries too.
    assert {r.url.params["max_results"] for r in requests} == {"2"}
    assert {r.url.params["start"] for r in requests} == {"0"}


async def test_fetch_by_ids_default_batch_size_covers_a_hundred_ids() -> None:
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, content=_payload("api_not_found_current.xml"))

    ids = [f"2507.{number:05d}" for number in range(1, 151)]
    async with _client(handler) as client:
        assert await fetch_by_ids(client, ids) == []
    assert [len(r.url.params["id_list"].split(",")) for r in requests] == [100, 50]
    assert {r.url.params["max_results"] for r in requests} == {"100"}


async def test_fetch_by_ids_sends_nothing_for_no_ids() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no request expected")

    async with _client(handler) as client:
        assert await fetch_by_ids(client, []) == []


@pytest.mark.parametrize("batch_size", [0, 2001])
async def test_fetch_by_ids_rejects_impossible_batch_sizes(batch_size: int) -> None:
    async with _client(lambda request: httpx.Response(200)) as client:
        with pytest.raises(ValueError, match="batch_size"):
            await fetch_by_ids(client, ["2507.00118"], batch_size=batch_size)


async def test_fetch_by_ids_rejects_non_ids_before_any_request() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no request expected")

    async with _client(handler) as client:
        with pytest.raises(ValueError, match="not an arXiv identifier"):
            await fetch_by_ids(client, ["2507.00118", "not-an-id"])


@pytest.mark.parametrize("status", [200, 400])
async def test_fetch_by_ids_surfaces_the_api_error_message(status: int) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=_payload("api_error_malformed_id.xml"))

    async with _client(handler) as client:
        with pytest.raises(ArxivApiError) as caught:
            await fetch_by_ids(client, ["2507.00118"])
    assert caught.value.message == "incorrect id format for 2513.00001"
    assert caught.value.url.startswith(API_URL)
    assert caught.value.status == (400 if status == 400 else None)


async def test_fetch_by_ids_http_error_is_fetch_error() -> None:
    async with _client(lambda request: httpx.Response(500, text="oops")) as client:
        with pytest.raises(FetchError) as caught:
            await fetch_by_ids(client, ["2507.00118"])
    assert caught.value.status == 500


async def test_fetch_oai_first_page_sends_harvest_arguments() -> None:
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, content=_payload("oai_listrecords_arXiv_page1.xml"))

    async with _client(handler) as client:
        batch = await fetch_oai_page(client, from_date=date(2025, 7, 2), set_spec="physics:hep-ph")
    (request,) = requests
    assert str(request.url.copy_with(query=None)) == OAI_URL
    assert dict(request.url.params) == {
        "verb": "ListRecords",
        "metadataPrefix": "arXiv",
        "from": "2025-07-02",
        "set": "physics:hep-ph",
    }
    assert batch.page.resumption_token == "7c1f0a52|physics:hep-ph|2025-07-02|1000"


async def test_fetch_oai_with_token_sends_only_verb_and_token() -> None:
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, content=_payload("oai_listrecords_arXivRaw_last_page.xml"))

    token = "7c1f0a52|math:math:CA|2025-07-20|1000"
    async with _client(handler) as client:
        batch = await fetch_oai_page(
            client,
            from_date=date(2025, 7, 20),
            set_spec="math:math:CA",
            resumption_token=token,
            metadata_prefix="arXivRaw",
        )
    (request,) = requests
    assert dict(request.url.params) == {"verb": "ListRecords", "resumptionToken": token}
    assert batch.page.resumption_token is None


@pytest.mark.parametrize("status", [200, 400])
async def test_fetch_oai_expired_token_raises_oai_error(status: int) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=_payload("oai_bad_resumption_token.xml"))

    async with _client(handler) as client:
        with pytest.raises(OaiError) as caught:
            await fetch_oai_page(client, resumption_token="stale")
    assert caught.value.code == "badResumptionToken"
    assert caught.value.url.startswith(OAI_URL)


async def test_fetch_announcements_conditional_get_and_304() -> None:
    requests: list[httpx.Request] = []
    validators = {"ETag": '"feed-2025-07-01"', "Last-Modified": "Tue, 01 Jul 2025 04:00:09 GMT"}

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        if request.headers.get("If-None-Match") == validators["ETag"]:
            return httpx.Response(304)
        return httpx.Response(200, headers=validators, content=_payload("rss_cs_LG_2025-07-01.xml"))

    async with _client(handler) as client:
        first = await fetch_announcements(client, "cs.LG")
        second = await fetch_announcements(
            client, "cs.LG", etag=first.etag, last_modified=first.last_modified
        )
    assert str(requests[0].url) == ANNOUNCE_URL.format(category="cs.LG")
    assert "If-None-Match" not in requests[0].headers
    assert "If-Modified-Since" not in requests[0].headers
    assert not first.not_modified
    assert len(first.batch.papers) == 5
    assert (first.etag, first.last_modified) == (validators["ETag"], validators["Last-Modified"])
    assert requests[1].headers["If-None-Match"] == validators["ETag"]
    assert requests[1].headers["If-Modified-Since"] == validators["Last-Modified"]
    assert second.not_modified
    assert second.batch == PaperBatch(papers=())
    # A 304 without validators keeps the ones we sent.
    assert (second.etag, second.last_modified) == (validators["ETag"], validators["Last-Modified"])


async def test_fetch_announcements_http_error_and_bad_category() -> None:
    async with _client(lambda request: httpx.Response(503, text="busy")) as client:
        with pytest.raises(FetchError) as caught:
            await fetch_announcements(client, "cs.LG")
        assert caught.value.status == 503
        with pytest.raises(ValueError, match="category"):
            await fetch_announcements(client, "cs.LG/../../admin")


async def test_fetch_announcements_malformed_body() -> None:
    async with _client(
        lambda request: httpx.Response(200, content=_payload("rss_truncated.xml"))
    ) as client:
        with pytest.raises(MalformedPayload) as caught:
            await fetch_announcements(client, "cs.LG")
    assert caught.value.url == ANNOUNCE_URL.format(category="cs.LG")


class _Feeds:
    """A fake rss.arxiv.org: one payload per category, with ETags, and a switch to fail."""

    def __init__(self) -> None:
        self.payloads = {
            "cs.LG": _payload("rss_cs_LG_2025-07-01.xml"),
            "cs.CV": _payload("rss_cs_CV_2025-07-01.xml"),
        }
        self.failing: set[str] = set()
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        category = request.url.path.rsplit("/", 1)[-1]
        if category in self.failing:
            return httpx.Response(500)
        etag = f'"{category}"'
        if request.headers.get("If-None-Match") == etag:
            return httpx.Response(304, headers={"ETag": etag})
        return httpx.Response(200, headers={"ETag": etag}, content=self.payloads[category])


async def test_announcement_source_merges_categories() -> None:
    feeds = _Feeds()
    async with _client(feeds) as client:
        source: PaperSource = ArxivAnnouncementSource(client, ["cs.LG", "cs.CV", "cs.LG"])
        batch = await source.fetch_new()
        again = await source.fetch_new()
    ids = [paper.arxiv_id for paper in batch.papers]
    assert len(ids) == len(set(ids)) == 6
    automata = _by_id(batch)["2506.22899"]
    # Listed as a cross-list in cs.LG and as new in cs.CV: one paper, its primary listing.
    assert automata.announce_type is AnnounceType.NEW
    assert automata.categories == ("cs.CV", "cs.GR", "cs.LG", "cs.MA", "eess.IV")
    assert [r.url.path for r in feeds.requests[:2]] == ["/rss/cs.LG", "/rss/cs.CV"]
    assert again == PaperBatch(papers=())
    assert [r.headers.get("If-None-Match") for r in feeds.requests[2:]] == ['"cs.LG"', '"cs.CV"']


async def test_announcement_source_forgets_validators_after_a_failed_round() -> None:
    feeds = _Feeds()
    feeds.failing.add("cs.CV")
    async with _client(feeds) as client:
        source = ArxivAnnouncementSource(client, ["cs.LG", "cs.CV"])
        with pytest.raises(FetchError):
            await source.fetch_new()
        feeds.failing.clear()
        batch = await source.fetch_new()
    # cs.LG succeeded in the failed round, but its papers were never returned: no 304 now.
    assert "If-None-Match" not in feeds.requests[2].headers
    assert len(batch.papers) == 6


async def test_announcement_source_needs_categories() -> None:
    async with _client(_Feeds()) as client:
        with pytest.raises(ValueError, match="category"):
            ArxivAnnouncementSource(client, [])
