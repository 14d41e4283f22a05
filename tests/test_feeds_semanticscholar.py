"""Semantic Scholar batches: nulls and stubs, position vs externalIds, chunking and pacing."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feeds.http import MalformedPayload
from feeds.semanticscholar import fetch_citations, parse_paper_batch
from tests import golden

DATA = Path(__file__).parent / "data" / "semanticscholar"
assert_golden = partial(golden.assert_golden, DATA)
OBSERVED_AT = datetime(2025, 7, 21, 14, 0, tzinfo=UTC)
# The ids batch_with_null.json answers, in request order: unknown, known, stub, known, known
# without an ArXiv external id (matched by position only).
REQUESTED = ["2401.99999", "1706.03762v7", "2106.15928", "1810.04805", "arXiv:2005.14165"]


FUZZ_KEYS = ["paperId", "externalIds", "ArXiv", "citationCount", "influentialCitationCount"]
FUZZ_STRINGS = ["1706.03762", "arXiv:1706.03762v7", "204e3073870fae3d05bcbc2f6a8e263d9b72e776"]


def json_like() -> st.SearchStrategy[Any]:
    """Any JSON value whose objects use the keys this parser looks at."""
    return golden.json_like(FUZZ_KEYS, FUZZ_STRINGS)


def json_objects() -> st.SearchStrategy[dict[str, Any]]:
    """Objects where each key this parser reads may or may not be present, with any value."""
    return golden.json_objects(FUZZ_KEYS, FUZZ_STRINGS)


def test_batch_matches_golden() -> None:
    raw = (DATA / "batch_with_null.json").read_bytes()
    assert_golden("batch_with_null", parse_paper_batch(raw, REQUESTED, OBSERVED_AT))


def test_nulls_and_stubs_are_skipped_and_positions_fill_gaps() -> None:
    signals = parse_paper_batch(
        (DATA / "batch_with_null.json").read_bytes(), REQUESTED, OBSERVED_AT
    )
    values = {(s.arxiv_id, s.metric): s.value for s in signals}
    assert values == {
        ("1706.03762", "citations"): 151234.0,
        ("1706.03762", "influential_citations"): 17012.0,
        ("1810.04805", "citations"): 98765.0,
        ("1810.04805", "influential_citations"): 20110.0,
        ("2005.14165", "citations"): 40321.0,
        ("2005.14165", "influential_citations"): 3210.0,
    }
    assert signals[0].url == (
        "https://www.semanticscholar.org/paper/204e3073870fae3d05bcbc2f6a8e263d9b72e776"
    )
    assert all(s.source == "semanticscholar" and s.actor is None for s in signals)


def test_external_arxiv_id_beats_position() -> None:
    swapped = [
        {"paperId": "b", "externalIds": {"ArXiv": "1810.04805"}, "citationCount": 2},
        {"paperId": "a", "externalIds": {"ArXiv": "1706.03762"}, "citationCount": 1},
    ]
    signals = parse_paper_batch(
        json.dumps(swapped).encode(), ["1706.03762", "1810.04805"], OBSERVED_AT
    )
    assert [(s.arxiv_id, s.value) for s in signals] == [("1810.04805", 2.0), ("1706.03762", 1.0)]


def test_positions_are_not_trusted_when_the_lengths_differ() -> None:
    short = [
        {"paperId": "a", "externalIds": {"DOI": "10.1/x"}, "citationCount": 1},
        {"paperId": "b", "externalIds": {"ArXiv": "1810.04805"}, "citationCount": 2},
    ]
    signals = parse_paper_batch(
        json.dumps(short).encode(), ["1706.03762", "1810.04805", "2106.15928"], OBSERVED_AT
    )
    assert [(s.arxiv_id, s.value) for s in signals] == [("1810.04805", 2.0)]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"<html>Bad Gateway</html>", "malformed JSON"),
        (b'{"error": "No valid paper ids given"}', "expected a JSON array"),
        (b'["1706.03762"]', "S2 paper"),
    ],
)
def test_malformed_payloads_raise_malformed_payload(raw: bytes, message: str) -> None:
    with pytest.raises(MalformedPayload, match=message):
        parse_paper_batch(raw, ["1706.03762"], OBSERVED_AT)


class Recorder:
    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.sleeps: list[float] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        ids = json.loads(request.content)["ids"]
        body = [
            {
                "paperId": f"p{n}",
                "externalIds": {"ArXiv": arxiv.removeprefix("ARXIV:")},
                "citationCount": n,
                "influentialCitationCount": 0,
            }
            for n, arxiv in enumerate(ids)
        ]
        return httpx.Response(200, json=body)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def _ids(count: int) -> list[str]:
    return [f"2507.{n:05d}v1" for n in range(1, count + 1)]


async def test_fetch_chunks_by_500_and_paces_anonymous_calls() -> None:
    recorder = Recorder()
    wanted = [*_ids(1203), "2507.00001", "not an id"]
    async with httpx.AsyncClient(transport=httpx.MockTransport(recorder.handler)) as client:
        signals = await fetch_citations(
            client, wanted, observed_at=OBSERVED_AT, sleep=recorder.sleep
        )
    assert [len(json.loads(r.content)["ids"]) for r in recorder.requests] == [500, 500, 203]
    first = recorder.requests[0]
    assert first.method == "POST"
    assert f"{first.url.scheme}://{first.url.host}{first.url.path}" == (
        "https://api.semanticscholar.org/graph/v1/paper/batch"
    )
    assert dict(first.url.params) == {
        "fields": "externalIds,citationCount,influentialCitationCount"
    }
    assert json.loads(first.content)["ids"][:2] == ["ARXIV:2507.00001", "ARXIV:2507.00002"]
    assert all("x-api-key" not in r.headers for r in recorder.requests)
    assert recorder.sleeps == [3.0, 3.0]
    assert all(pause >= 1 for pause in recorder.sleeps)
    assert len({s.arxiv_id for s in signals}) == 1203


async def test_fetch_sends_the_api_key_and_keeps_one_request_per_second() -> None:
    recorder = Recorder()
    async with httpx.AsyncClient(transport=httpx.MockTransport(recorder.handler)) as client:
        await fetch_citations(client, _ids(1001), api_key="s2-key", sleep=recorder.sleep)
    assert [r.headers["x-api-key"] for r in recorder.requests] == ["s2-key"] * 3
    assert recorder.sleeps == [1.0, 1.0]


async def test_fetch_with_no_ids_makes_no_request() -> None:
    recorder = Recorder()
    async with httpx.AsyncClient(transport=httpx.MockTransport(recorder.handler)) as client:
        assert await fetch_citations(client, [], sleep=recorder.sleep) == ()
    assert recorder.requests == []
    assert recorder.sleeps == []


@settings(max_examples=80, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.none() | json_objects(), max_size=4),
    json_like(),
    st.lists(st.sampled_from(["1706.03762", "2106.15928", "junk"]), max_size=4),
)
def test_any_shape_parses_or_raises_malformed_payload(
    items: list[Any], other: Any, requested: list[str]
) -> None:
    for body in (items, other):
        with contextlib.suppress(MalformedPayload):
            parse_paper_batch(json.dumps(body).encode(), requested, OBSERVED_AT)
