"""OAI-PMH backfill against a scripted arXiv (MockTransport) and a real database."""

from __future__ import annotations

from datetime import date
from xml.sax.saxutils import escape

import httpx
import pytest

from bot.backfill import (
    MAX_RATE_LIMIT_WAITS,
    BackfillProgress,
    backfill,
    cursor_key,
    parse_day,
    set_spec_for,
)
from feeds.arxiv import OaiError
from feeds.http import FetchError, HttpPolicy, RateLimited, build_client
from storage import cursors
from storage.db import Database
from storage.papers import count_papers, get_paper
from storage.search import search

OAI_NS = "http://www.openarchives.org/OAI/2.0/"


class FakeTime:
    """A clock that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 5000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def record(number: int, *, updated: str | None = None, deleted: bool = False) -> str:
    arxiv_id = f"2401.{number:05d}"
    if deleted:
        return (
            f'<record><header status="deleted"><identifier>oai:arXiv.org:{arxiv_id}</identifier>'
            "<datestamp>2024-02-01</datestamp></header></record>"
        )
    updated_tag = f"<updated>{updated}</updated>" if updated else ""
    return (
        f"<record><header><identifier>oai:arXiv.org:{arxiv_id}</identifier>"
        "<datestamp>2024-02-01</datestamp><setSpec>cs</setSpec></header><metadata>"
        '<arXiv xmlns="http://arxiv.org/OAI/arXiv/">'
        f"<id>{arxiv_id}</id><created>2024-01-{number % 28 + 1:02d}</created>{updated_tag}"
        "<authors><author><keyname>Okafor</keyname><forenames>Ada</forenames></author></authors>"
        f"<title>{escape(f'Tensor sketching number {number}')}</title>"
        "<categories>cs.LG stat.ML</categories>"
        f"<abstract>Randomised sketches for record {number} &amp; friends.</abstract>"
        "</arXiv></metadata></record>"
    )


def page(records: list[str], token: str | None, *, size: int | None = None) -> bytes:
    attributes = f' completeListSize="{size}"' if size is not None else ""
    token_xml = (
        f"<resumptionToken{attributes}>{token}</resumptionToken>"
        if token
        else f"<resumptionToken{attributes}/>"
    )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><OAI-PMH xmlns="{OAI_NS}">'
        "<responseDate>2024-02-02T00:00:00Z</responseDate>"
        '<request verb="ListRecords">https://oaipmh.arxiv.org/oai</request>'
        f"<ListRecords>{''.join(records)}{token_xml}</ListRecords></OAI-PMH>"
    ).encode()


def oai_error(code: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><OAI-PMH xmlns="{OAI_NS}">'
        "<responseDate>2024-02-02T00:00:00Z</responseDate>"
        '<request verb="ListRecords">https://oaipmh.arxiv.org/oai</request>'
        f'<error code="{code}">Token unknown or expired.</error></OAI-PMH>'
    ).encode()


class FakeOai:
    """Three pages of four records: tokens t1, t2, then the last page."""

    def __init__(self, *, size: int | None = None) -> None:
        self.pages = {
            None: page([record(n) for n in range(1, 5)], "t1", size=size),
            "t1": page([record(n) for n in range(5, 9)], "t2", size=size),
            "t2": page(
                [record(n) for n in range(9, 12)] + [record(99, deleted=True)], None, size=size
            ),
        }
        self.requests: list[httpx.Request] = []
        self.expired: set[str] = set()
        self.busy: list[httpx.Response] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.busy:
            return self.busy.pop(0)
        token = request.url.params.get("resumptionToken")
        if token in self.expired:
            self.expired.discard(token)
            return httpx.Response(200, content=oai_error("badResumptionToken"))
        return httpx.Response(200, content=self.pages[token])

    def client(self, fake: FakeTime, **policy: object) -> httpx.AsyncClient:
        return build_client(
            HttpPolicy(**policy),  # type: ignore[arg-type]
            transport=httpx.MockTransport(self.handler),
            sleep=fake.sleep,
            clock=fake.clock,
        )

    def tokens(self) -> list[str | None]:
        return [r.url.params.get("resumptionToken") for r in self.requests]


FROM = date(2024, 1, 1)


async def test_multi_page_harvest_stores_everything_and_is_searchable(db: Database) -> None:
    oai, fake = FakeOai(), FakeTime()
    seen: list[BackfillProgress] = []
    async with oai.client(fake) as client:
        report = await backfill(
            db, client, from_date=FROM, set_spec="cs", progress=seen.append,
            sleep=fake.sleep, clock=fake.clock,
        )  # fmt: skip
    assert report.complete and report.pages == 3 and report.records == 11
    assert report.stored.inserted == 11 and report.deleted == 1
    assert count_papers(db) == 11
    first = oai.requests[0].url.params
    assert first["metadataPrefix"] == "arXiv" and first["from"] == "2024-01-01"
    assert first["set"] == "cs"
    # Continuations carry only the token, as OAI-PMH requires.
    assert dict(oai.requests[1].url.params) == {"verb": "ListRecords", "resumptionToken": "t1"}
    # The shared client paced arXiv: 3 s between requests.
    assert fake.sleeps == [3.0, 3.0]
    assert [p.records for p in seen] == [4, 8, 11]
    assert seen[-1].rate > 0 and seen[-1].fraction is not None
    cursor = cursors.get(db, cursor_key("cs"))
    assert cursor.resumption_token is None and cursor.last_success_at is not None
    assert search(db, "tensor sketching number 7").hits[0].arxiv_id == "2401.00007"


async def test_kill_and_resume_continues_from_the_stored_token(db: Database) -> None:
    oai, fake = FakeOai(), FakeTime()
    async with oai.client(fake) as client:
        first = await backfill(
            db, client, from_date=FROM, max_pages=2, sleep=fake.sleep, clock=fake.clock
        )
    assert not first.complete and first.pages == 2 and count_papers(db) == 8
    assert cursors.get(db, cursor_key(None)).resumption_token == "t2"

    oai.requests.clear()
    async with oai.client(fake) as client:
        second = await backfill(db, client, from_date=FROM, sleep=fake.sleep, clock=fake.clock)
    assert second.resumed and second.complete and second.pages == 1
    assert oai.tokens() == ["t2"]
    assert second.stored.inserted == 3 and count_papers(db) == 11


async def test_a_kill_between_storing_and_saving_the_token_repeats_one_page_harmlessly(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    oai, fake = FakeOai(), FakeTime()
    real = cursors.record_success
    calls = 0

    def dies_on_second_save(*args: object, **kwargs: object) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise KeyboardInterrupt  # the process is killed after page 2 was stored
        real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(cursors, "record_success", dies_on_second_save)
    async with oai.client(fake) as client:
        with pytest.raises(KeyboardInterrupt):
            await backfill(db, client, from_date=FROM, sleep=fake.sleep, clock=fake.clock)
    monkeypatch.setattr(cursors, "record_success", real)
    assert count_papers(db) == 8

    oai.requests.clear()
    async with oai.client(fake) as client:
        report = await backfill(db, client, from_date=FROM, sleep=fake.sleep, clock=fake.clock)
    assert oai.tokens() == ["t1", "t2"]  # page 2 fetched again, then the last page
    assert report.stored.unchanged == 4 and report.stored.inserted == 3
    assert count_papers(db) == 11


async def test_an_expired_token_restarts_from_the_from_date(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    oai, fake = FakeOai(), FakeTime()
    async with oai.client(fake) as client:
        await backfill(db, client, from_date=FROM, max_pages=1, sleep=fake.sleep, clock=fake.clock)
    oai.expired.add("t1")
    oai.requests.clear()
    async with oai.client(fake) as client:
        report = await backfill(db, client, from_date=FROM, sleep=fake.sleep, clock=fake.clock)
    assert report.restarts == 1 and report.complete
    assert oai.tokens() == ["t1", None, "t1", "t2"]
    assert oai.requests[1].url.params["from"] == "2024-01-01"
    assert count_papers(db) == 11
    assert any(
        "expired" in r.getMessage() and "2024-01-01" in r.getMessage() for r in caplog.records
    )


async def test_a_token_that_keeps_expiring_stops_the_harvest(db: Database) -> None:
    oai, fake = FakeOai(), FakeTime()

    def always_expired(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("resumptionToken"):
            return httpx.Response(200, content=oai_error("badResumptionToken"))
        return httpx.Response(200, content=oai.pages[None])

    client = build_client(
        HttpPolicy(), transport=httpx.MockTransport(always_expired), sleep=fake.sleep,
        clock=fake.clock,
    )  # fmt: skip
    async with client:
        with pytest.raises(OaiError):
            await backfill(db, client, from_date=FROM, sleep=fake.sleep, clock=fake.clock)
    assert cursors.get(db, cursor_key(None)).consecutive_failures == 1


async def test_503_retry_after_is_waited_out_by_the_client(db: Database) -> None:
    oai, fake = FakeOai(), FakeTime()
    oai.busy = [httpx.Response(503, headers={"Retry-After": "20"})]
    async with oai.client(fake) as client:
        report = await backfill(db, client, from_date=FROM, sleep=fake.sleep, clock=fake.clock)
    assert report.complete and report.rate_limit_waits == 0
    assert 20.0 in fake.sleeps and count_papers(db) == 11


async def test_a_long_retry_after_pauses_the_harvest_then_it_goes_on(db: Database) -> None:
    oai, fake = FakeOai(), FakeTime()
    oai.busy = [httpx.Response(503, headers={"Retry-After": "600"})]
    waits: list[float] = []
    async with oai.client(fake, max_retry_after=120.0) as client:
        report = await backfill(
            db, client, from_date=FROM, sleep=fake.sleep, clock=fake.clock,
            progress=lambda p: waits.append(p.waiting),
        )  # fmt: skip
    assert report.complete and report.rate_limit_waits == 1
    assert 600.0 in fake.sleeps and 600.0 in waits
    assert count_papers(db) == 11


async def test_endless_rate_limits_stop_the_harvest_resumably(db: Database) -> None:
    oai, fake = FakeOai(), FakeTime()
    async with oai.client(fake) as client:
        await backfill(db, client, from_date=FROM, max_pages=1, sleep=fake.sleep, clock=fake.clock)
    oai.busy = [
        httpx.Response(503, headers={"Retry-After": "900"}) for _ in range(MAX_RATE_LIMIT_WAITS + 1)
    ]
    async with oai.client(fake, max_retry_after=60.0) as client:
        with pytest.raises(RateLimited):
            await backfill(db, client, from_date=FROM, sleep=fake.sleep, clock=fake.clock)
    cursor = cursors.get(db, cursor_key(None))
    assert cursor.resumption_token == "t1" and cursor.consecutive_failures == 1
    async with oai.client(fake) as client:
        report = await backfill(db, client, from_date=FROM, sleep=fake.sleep, clock=fake.clock)
    assert report.resumed and report.complete and count_papers(db) == 11


async def test_other_fetch_errors_are_recorded_and_raised(db: Database) -> None:
    oai, fake = FakeOai(), FakeTime()
    oai.busy = [httpx.Response(500) for _ in range(10)]
    async with oai.client(fake, max_retries=1) as client:
        with pytest.raises(FetchError):
            await backfill(db, client, from_date=FROM, sleep=fake.sleep, clock=fake.clock)
    cursor = cursors.get(db, cursor_key(None))
    assert cursor.consecutive_failures == 1 and cursor.last_error


async def test_a_different_harvest_does_not_reuse_a_stored_token(db: Database) -> None:
    oai, fake = FakeOai(), FakeTime()
    async with oai.client(fake) as client:
        await backfill(db, client, from_date=FROM, max_pages=1, sleep=fake.sleep, clock=fake.clock)
    oai.requests.clear()
    async with oai.client(fake) as client:
        report = await backfill(
            db, client, from_date=date(2024, 1, 15), sleep=fake.sleep, clock=fake.clock
        )
    assert not report.resumed and oai.tokens()[0] is None
    assert oai.requests[0].url.params["from"] == "2024-01-15"


async def test_until_keeps_only_papers_up_to_that_day(db: Database) -> None:
    oai, fake = FakeOai(), FakeTime()
    oai.pages[None] = page(
        [record(1, updated="2024-03-05"), record(2, updated="2024-01-20"), record(3)], None
    )
    async with oai.client(fake) as client:
        report = await backfill(
            db, client, from_date=FROM, until=date(2024, 2, 1), sleep=fake.sleep, clock=fake.clock
        )
    assert report.skipped == 1 and count_papers(db) == 2
    assert get_paper(db, "2401.00001") is None
    with pytest.raises(ValueError, match="before"):
        await backfill(db, client, from_date=FROM, until=date(2023, 1, 1))


async def test_progress_uses_the_list_size_when_the_server_sends_one(db: Database) -> None:
    oai, fake = FakeOai(size=11), FakeTime()
    seen: list[BackfillProgress] = []
    async with oai.client(fake) as client:
        await backfill(
            db, client, from_date=FROM, progress=seen.append, sleep=fake.sleep, clock=fake.clock
        )
    assert [p.total for p in seen] == [11, 11, 11]
    assert seen[0].fraction == pytest.approx(4 / 11)
    assert seen[1].eta == pytest.approx(3.0 * 3 / 8) and seen[-1].eta == 0.0


def test_progress_rate_and_eta() -> None:
    from storage.papers import UpsertResult

    halfway = BackfillProgress(
        pages=2, records=500, harvested=500, stored=UpsertResult(), elapsed=100.0,
        total=None, fraction=0.5,
    )  # fmt: skip
    assert halfway.rate == 5.0 and halfway.eta == pytest.approx(100.0)
    unknown = BackfillProgress(1, 10, 10, UpsertResult(), 0.0, None, None)
    assert unknown.rate == 0.0 and unknown.eta is None


@pytest.mark.parametrize(
    ("category", "expected"),
    [
        ("cs", "cs"),
        ("cs.LG", "cs:cs:LG"),
        ("math.AG", "math:math:AG"),
        ("hep-th", "physics:hep-th"),
        ("cond-mat.stat-mech", "physics:cond-mat:stat-mech"),
        ("physics:hep-ph", "physics:hep-ph"),
    ],
)
def test_set_specs(category: str, expected: str) -> None:
    assert set_spec_for(category) == expected


@pytest.mark.parametrize("bad", ["", "cs LG", "cs.LG;x", "1cs", "a:b:c:d"])
def test_bad_categories_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="not an"):
        set_spec_for(bad)


def test_parse_day() -> None:
    assert parse_day(" 2024-01-31 ") == date(2024, 1, 31)
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        parse_day("31/01/2024")


def test_the_backfill_command_shows_progress_and_resumes(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    import typer
    from typer.testing import CliRunner

    import bot.cli_search as cli_search

    url = f"sqlite:///{tmp_path}/cli.db"
    monkeypatch.setenv("TP_DATABASE_URL", url)
    oai, fake = FakeOai(), FakeTime()
    monkeypatch.setattr(cli_search, "build_client", lambda policy: oai.client(fake))
    app = typer.Typer()
    cli_search.register(app)
    runner = CliRunner()

    paused = runner.invoke(
        app, ["backfill", "--from", "2024-01-01", "-c", "cs", "--max-pages", "2"]
    )
    assert paused.exit_code == 0, paused.output
    assert "8 records" in paused.output and "paused" in paused.output
    assert oai.requests[0].url.params["set"] == "cs"

    done = runner.invoke(app, ["backfill", "--from", "2024-01-01", "--category", "cs"])
    assert done.exit_code == 0, done.output
    assert "Backfill complete: 3 records" in done.output and "11 records" in done.output

    for bad in (["--from", "yesterday"], ["--from", "2024-01-01", "-c", "cs LG"],
                ["--from", "2024-02-01", "--until", "2024-01-01"]):  # fmt: skip
        refused = runner.invoke(app, ["backfill", *bad])
        assert refused.exit_code == 1 and "error" in refused.output
