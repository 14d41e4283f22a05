"""The shared HTTP client: retries, Retry-After, pacing, size cap, safe parsing."""

from __future__ import annotations

import gc
import random
import socket
from datetime import UTC, datetime

import httpx
import pytest

from feeds.http import (
    FetchError,
    HttpPolicy,
    MalformedPayload,
    RateLimited,
    ResponseTooLarge,
    backoff_delay,
    build_client,
    conditional_headers,
    cycle_collection_paused,
    parse_json,
    parse_xml,
    raise_for_status,
    retry_after_seconds,
)


class FakeTime:
    """A clock that advances only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def scripted(
    responses: list[httpx.Response | Exception],
) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        item = responses.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    return httpx.MockTransport(handler), seen


def client_for(
    transport: httpx.MockTransport, fake: FakeTime, **policy: object
) -> httpx.AsyncClient:
    return build_client(
        HttpPolicy(**policy), transport=transport, sleep=fake.sleep, clock=fake.clock
    )  # type: ignore[arg-type]


async def test_retry_after_seconds_is_honoured_then_succeeds() -> None:
    fake = FakeTime()
    transport, seen = scripted(
        [httpx.Response(429, headers={"Retry-After": "7"}), httpx.Response(200, text="ok")]
    )
    async with client_for(transport, fake) as client:
        response = await client.get("https://hn.algolia.com/api/v1/search")
    assert response.text == "ok"
    assert len(seen) == 2
    assert fake.sleeps == [7.0]


async def test_retry_after_http_date() -> None:
    now = datetime(2026, 11, 16, 12, 0, tzinfo=UTC)
    assert retry_after_seconds("Mon, 16 Nov 2026 12:00:30 GMT", now) == 30.0
    assert retry_after_seconds("garbage") is None
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("-5") == 0.0


async def test_oai_503_with_retry_after_date_is_waited_out() -> None:
    fake = FakeTime()
    later = "Wed, 21 Oct 2099 07:28:00 GMT"
    transport, _ = scripted([httpx.Response(503, headers={"Retry-After": later})])
    async with client_for(transport, fake) as client:
        with pytest.raises(RateLimited) as caught:
            await client.get("https://oaipmh.arxiv.org/oai?verb=ListRecords")
    assert caught.value.retry_after > 120
    assert fake.sleeps == []  # too long to block a poll: surfaced instead


async def test_5xx_backs_off_exponentially_then_gives_up() -> None:
    fake = FakeTime()
    transport, seen = scripted([httpx.Response(502) for _ in range(4)])
    async with client_for(transport, fake, max_retries=3, backoff_base=2.0) as client:
        with pytest.raises(FetchError) as caught:
            await client.get("https://huggingface.co/api/daily_papers")
    assert caught.value.status == 502
    assert len(seen) == 4
    assert [round(s) >= 1 for s in fake.sleeps] == [True] * 3
    assert fake.sleeps[2] > fake.sleeps[0]


async def test_network_errors_are_retried_and_wrapped() -> None:
    fake = FakeTime()
    transport, seen = scripted(
        [httpx.ConnectTimeout("slow"), httpx.ReadTimeout("slower"), httpx.Response(200, text="x")]
    )
    async with client_for(transport, fake) as client:
        assert (await client.get("https://www.reddit.com/r/x/new.json")).text == "x"
    assert len(seen) == 3

    transport, _ = scripted([httpx.ConnectError("down")] * 3)
    async with client_for(transport, fake, max_retries=2) as client:
        with pytest.raises(FetchError, match="ConnectError") as caught:
            await client.get("https://www.reddit.com/r/x/new.json")
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


async def test_arxiv_requests_are_spaced_three_seconds() -> None:
    fake = FakeTime()
    transport, _ = scripted([httpx.Response(200) for _ in range(3)])
    async with client_for(transport, fake) as client:
        for _ in range(3):
            await client.get("https://export.arxiv.org/api/query")
            fake.now += 0.5  # parsing takes a little time between calls
    assert fake.sleeps == [2.5, 2.5]


async def test_other_hosts_are_not_paced() -> None:
    fake = FakeTime()
    transport, _ = scripted([httpx.Response(200) for _ in range(3)])
    async with client_for(transport, fake) as client:
        for _ in range(3):
            await client.get("https://hn.algolia.com/api/v1/search")
    assert fake.sleeps == []


async def test_size_cap_by_header_and_by_stream() -> None:
    fake = FakeTime()
    transport, _ = scripted([httpx.Response(200, content=b"x" * 2000)])
    async with client_for(transport, fake, max_bytes=1000) as client:
        with pytest.raises(ResponseTooLarge):
            await client.get("https://huggingface.co/api/daily_papers")

    async def endless() -> object:
        for _ in range(100):
            yield b"y" * 100

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=endless())

    async with client_for(httpx.MockTransport(handler), fake, max_bytes=1000) as client:
        with pytest.raises(ResponseTooLarge):
            await client.get("https://huggingface.co/api/daily_papers")


async def test_user_agent_and_conditional_get() -> None:
    fake = FakeTime()
    transport, seen = scripted([httpx.Response(304)])
    async with client_for(transport, fake, user_agent="tp-test (+mailto:a@b.c)") as client:
        response = await client.get(
            "https://rss.arxiv.org/rss/cs.LG", headers=conditional_headers('"abc"', "Mon, 1 Jan")
        )
    raise_for_status(response)  # 304 is not an error
    assert seen[0].headers["User-Agent"] == "tp-test (+mailto:a@b.c)"
    assert seen[0].headers["If-None-Match"] == '"abc"'
    assert seen[0].headers["If-Modified-Since"] == "Mon, 1 Jan"
    assert conditional_headers(None, None) == {}


async def test_raise_for_status_carries_url_and_status() -> None:
    request = httpx.Request("GET", "https://example.test/x")
    with pytest.raises(FetchError) as caught:
        raise_for_status(httpx.Response(404, text="nope", request=request))
    assert caught.value.status == 404
    assert "example.test" in str(caught.value)


def test_backoff_is_bounded_and_jittered() -> None:
    policy = HttpPolicy(backoff_base=1.0, backoff_cap=10.0)
    rng = random.Random(1)
    delays = [backoff_delay(n, policy, rng) for n in range(10)]
    assert all(0 < d <= 10.0 for d in delays)
    assert delays[-1] >= 5.0


def test_safe_parsers_reject_garbage_and_entity_bombs() -> None:
    assert parse_xml(b"<a><b>1</b></a>").find("b").text == "1"  # type: ignore[union-attr]
    with pytest.raises(MalformedPayload):
        parse_xml(b"<a><b>")
    with pytest.raises(MalformedPayload):
        parse_xml(b"")
    bomb = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;">]><x>&b;</x>'
    with pytest.raises(MalformedPayload):
        parse_xml(bomb)
    # In UTF-16 the declaration is spelled with other bytes; it must not slip past.
    for encoding in ("utf-16", "utf-16-le", "utf-16-be"):
        declared = "UTF-16" if encoding == "utf-16" else encoding.upper()
        wide = f'<?xml version="1.0" encoding="{declared}"?>{bomb.decode()[21:]}'
        with pytest.raises(MalformedPayload):
            parse_xml(wide.encode(encoding))
    assert parse_xml("<a>ü</a>".encode("utf-16")).text == "ü"
    assert parse_json(b'{"a": 1}') == {"a": 1}
    with pytest.raises(MalformedPayload):
        parse_json(b"{not json")
    with pytest.raises(MalformedPayload):
        parse_json(b"  ")


def test_a_collection_pause_restores_the_collector_as_it_found_it() -> None:
    assert gc.isenabled()
    with cycle_collection_paused():
        assert not gc.isenabled()
        with cycle_collection_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the inner pause found it off and leaves it off
    assert gc.isenabled()
    with pytest.raises(MalformedPayload), cycle_collection_paused():
        parse_xml(b"<a><b>")
    assert gc.isenabled()
    gc.disable()
    try:
        with cycle_collection_paused():
            pass
        assert not gc.isenabled()  # never switched on behind the back of whoever paused it
    finally:
        gc.enable()


def test_real_network_is_blocked_in_tests() -> None:
    with pytest.raises(RuntimeError, match="network"):
        socket.create_connection(("192.0.2.1", 80), timeout=1)
    with pytest.raises(RuntimeError, match="network"):
        socket.getaddrinfo("arxiv.org", 443)
