"""Hugging Face Daily Papers: upvotes from ``paper``, comments from the entry, one call per day."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, date, datetime
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feeds.engagement import EngagementSource
from feeds.http import FetchError, MalformedPayload
from feeds.huggingface import (
    HuggingFaceSource,
    days_between,
    fetch_daily_papers,
    parse_daily_papers,
)
from tests import golden

DATA = Path(__file__).parent / "data" / "huggingface"
assert_golden = partial(golden.assert_golden, DATA)
OBSERVED_AT = datetime(2025, 9, 8, 12, 0, tzinfo=UTC)


FUZZ_KEYS = ["paper", "id", "upvotes", "numComments", "submittedBy", "submittedOnDailyBy", "user"]
FUZZ_STRINGS = ["2509.04664", "2509.04664v2", "hf-user"]


def json_like() -> st.SearchStrategy[Any]:
    """Any JSON value whose objects use the keys this parser looks at."""
    return golden.json_like(FUZZ_KEYS, FUZZ_STRINGS)


def json_objects() -> st.SearchStrategy[dict[str, Any]]:
    """Objects where each key this parser reads may or may not be present, with any value."""
    return golden.json_objects(FUZZ_KEYS, FUZZ_STRINGS)


def test_daily_papers_match_golden() -> None:
    raw = (DATA / "daily_papers_2025-09-08.json").read_bytes()
    assert_golden("daily_papers_2025-09-08", parse_daily_papers(raw, OBSERVED_AT))


def test_upvotes_come_from_the_paper_and_comments_from_the_entry() -> None:
    signals = parse_daily_papers((DATA / "daily_papers_2025-09-08.json").read_bytes(), OBSERVED_AT)
    values = {(s.arxiv_id, s.metric): s.value for s in signals}
    assert values == {
        ("2509.04664", "upvotes"): 26.0,
        ("2509.04664", "comments"): 3.0,
        ("2509.02547", "upvotes"): 11.0,
        ("2509.02547", "comments"): 0.0,
        ("2509.01440", "upvotes"): 4.0,  # that entry has no numComments
    }
    first = signals[0]
    assert first.url == "https://huggingface.co/papers/2509.04664"
    assert first.actor == "taesiri"
    assert first.observed_at == OBSERVED_AT


def test_versioned_and_non_arxiv_ids() -> None:
    entries = [
        {"paper": {"id": "2401.04088v2", "upvotes": 5}, "numComments": 1},
        {"paper": {"id": "not-an-arxiv-paper", "upvotes": 9}},
        {"paper": {"upvotes": 9}},
    ]
    signals = parse_daily_papers(json.dumps(entries).encode(), OBSERVED_AT)
    assert [(s.arxiv_id, s.metric) for s in signals] == [
        ("2401.04088", "upvotes"),
        ("2401.04088", "comments"),
    ]
    assert signals[0].url == "https://huggingface.co/papers/2401.04088"
    assert signals[0].actor is None


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "empty JSON"),
        (b'{"error": "Invalid date"}', "expected a JSON array"),
        (b"[1]", "entry"),
        (b'[{"title": "x"}]', "'paper'"),
    ],
)
def test_malformed_payloads_raise_malformed_payload(raw: bytes, message: str) -> None:
    with pytest.raises(MalformedPayload, match=message):
        parse_daily_papers(raw, OBSERVED_AT)


async def test_fetch_asks_for_one_day_and_sends_a_token_only_when_given() -> None:
    seen: list[httpx.Request] = []
    raw = (DATA / "daily_papers_2025-09-08.json").read_bytes()

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=raw)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        anonymous = await fetch_daily_papers(client, date(2025, 9, 8), observed_at=OBSERVED_AT)
        await fetch_daily_papers(
            client, date(2025, 9, 8), token="hf_example", observed_at=OBSERVED_AT
        )
    assert len(anonymous) == 5
    assert f"{seen[0].url.scheme}://{seen[0].url.host}{seen[0].url.path}" == (
        "https://huggingface.co/api/daily_papers"
    )
    assert dict(seen[0].url.params) == {"date": "2025-09-08", "limit": "100"}
    assert "Authorization" not in seen[0].headers
    assert seen[1].headers["Authorization"] == "Bearer hf_example"


async def test_fetch_raises_on_http_errors() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"error": "Not found"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(FetchError) as raised:
            await fetch_daily_papers(client, date(2025, 9, 8))
    assert raised.value.status == 404


def test_days_between_is_inclusive_in_utc() -> None:
    start = datetime(2025, 9, 6, 23, 30, tzinfo=UTC)
    assert days_between(start, datetime(2025, 9, 8, 0, 5, tzinfo=UTC)) == [
        date(2025, 9, 6),
        date(2025, 9, 7),
        date(2025, 9, 8),
    ]
    assert days_between(start, datetime(2025, 9, 1, tzinfo=UTC)) == []


async def test_source_polls_each_recent_day_up_to_its_cap() -> None:
    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.params["date"])
        paper_id = f"2509.0{len(asked):04d}"
        return httpx.Response(
            200, json=[{"paper": {"id": paper_id, "upvotes": 1}, "numComments": 0}]
        )

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        source: EngagementSource = HuggingFaceSource(client, max_days=2)
        result = await source.poll(datetime(2025, 9, 1, tzinfo=UTC), OBSERVED_AT)
    assert asked == ["2025-09-07", "2025-09-08"]
    assert result.mentioned_ids == ("2509.00001", "2509.00002")
    assert source.name == "huggingface"


@settings(max_examples=80, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(json_objects(), max_size=4), json_like())
def test_any_shape_parses_or_raises_malformed_payload(entries: list[Any], other: Any) -> None:
    for body in (entries, other):
        with contextlib.suppress(MalformedPayload):
            parse_daily_papers(json.dumps(body).encode(), OBSERVED_AT)
