"""The trend score: each piece of the formula, the trend line, the trending list, the CLI."""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from bot import trend
from bot.cli_trend import parse_since, register
from bot.engagement import poll_engagement
from bot.trend import TrendConfig, format_count, format_line, sparkline
from feeds.hackernews import HackerNewsSource
from feeds.http import HttpPolicy, build_client
from feeds.records import Paper as PaperRecord
from feeds.records import Signal
from feeds.replay import recorded_transport
from storage import cursors, papers
from storage.db import Database
from storage.engagement import add_snapshots
from storage.engagement_frames import snapshot_frame

NOW = datetime(2026, 11, 16, 12, 0, tzinfo=UTC)
# Velocity and decay switched off, so a test sees exactly one piece of the formula.
LEVEL_ONLY = TrendConfig(velocity_weight=0.0, half_life_hours=1e12, scale_floor=0.0)


def paper(arxiv_id: str, *, age: timedelta = timedelta(0), **changes: object) -> PaperRecord:
    base = PaperRecord(
        arxiv_id=arxiv_id,
        version=1,
        title=f"Paper {arxiv_id}",
        abstract="About things.",
        authors=("Ada Lovelace",),
        categories=("cs.LG",),
        primary_category="cs.LG",
        published=NOW - age,
        updated=NOW - age,
        announced=NOW - age,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def signal(
    arxiv_id: str,
    value: float,
    *,
    source: str = "hackernews",
    metric: str = "points",
    at: datetime = NOW,
    post: str | None = None,
    weight: float = 1.0,
    actor: str | None = None,
) -> Signal:
    url = post or f"https://example.org/{source}/{arxiv_id}"
    return Signal(arxiv_id, source, metric, value, at, url=url, actor=actor, weight=weight)


def x_of(score: float) -> float:
    """Undo the squash: ``x = -log(1 - trend)``."""
    return -math.log1p(-score)


def test_level_is_log1p_scaled_by_the_sources_90th_percentile(sqlite_db: Database) -> None:
    add_snapshots(sqlite_db, [signal(f"2611.{n:05d}", float(n)) for n in range(1, 11)])
    table = trend.table(sqlite_db, NOW, LEVEL_ONLY)
    p90 = float(np.percentile(np.log1p(np.arange(1, 11)), 90))
    assert table.scale[table.sources.index("hackernews")] == pytest.approx(p90)
    scores = table.scores(["2611.00003", "2611.00010", "2611.99999"])
    assert x_of(scores["2611.00003"]) == pytest.approx(math.log1p(3) / p90)
    assert x_of(scores["2611.00010"]) == pytest.approx(math.log1p(10) / p90)
    assert scores["2611.99999"] == 0.0


def test_each_source_is_scaled_by_its_own_percentile(sqlite_db: Database) -> None:
    # Citations run in tens, HN points in hundreds: the top of each counts the same.
    add_snapshots(sqlite_db, [signal(f"2611.{n:05d}", n * 100.0) for n in range(1, 11)])
    add_snapshots(
        sqlite_db,
        [signal(f"2611.{n:05d}", (n - 10) * 2.0, source="semanticscholar", metric="citations")
         for n in range(11, 21)],
    )  # fmt: skip
    equal = dataclasses.replace(LEVEL_ONLY, weights={"hackernews": 1.0, "semanticscholar": 1.0})
    table = trend.table(sqlite_db, NOW, equal)
    scores = table.scores(["2611.00010", "2611.00020"])
    hn, s2 = (x_of(scores[i]) for i in ("2611.00010", "2611.00020"))
    p90 = dict(zip(table.sources, table.scale, strict=True))
    assert hn == pytest.approx(math.log1p(1000) / p90["hackernews"])
    assert s2 == pytest.approx(math.log1p(20) / p90["semanticscholar"])
    assert math.log1p(1000) / math.log1p(20) > 2  # raw, citations would hardly count
    assert s2 == pytest.approx(hn, rel=0.05)  # scaled, the top of each source counts alike


def test_scale_has_a_floor_so_a_quiet_source_does_not_inflate(sqlite_db: Database) -> None:
    add_snapshots(sqlite_db, [signal("2611.00001", 2.0, source="bluesky", metric="likes")])
    floored = dataclasses.replace(LEVEL_ONLY, scale_floor=10.0)
    table = trend.table(sqlite_db, NOW, floored)
    assert table.scale[0] == pytest.approx(math.log1p(10))
    assert x_of(table.scores(["2611.00001"])["2611.00001"]) == pytest.approx(
        math.log1p(2) / math.log1p(10)
    )


def test_zero_everywhere_guards_the_scale(sqlite_db: Database) -> None:
    add_snapshots(sqlite_db, [signal("2611.00001", 0.0), signal("2611.00002", -3.0)])
    scores = trend.table(sqlite_db, NOW, LEVEL_ONLY).scores(["2611.00001", "2611.00002"])
    assert scores == {"2611.00001": 0.0, "2611.00002": 0.0}


def test_latest_value_per_post_summed_over_posts(sqlite_db: Database) -> None:
    # Two HN stories about one paper; each story's older snapshots do not add up.
    add_snapshots(sqlite_db, [signal("2611.00001", 10, post="s1", at=NOW - timedelta(hours=5))])
    add_snapshots(sqlite_db, [signal("2611.00001", 40, post="s1", at=NOW - timedelta(hours=1))])
    add_snapshots(sqlite_db, [signal("2611.00001", 7, post="s2", at=NOW - timedelta(hours=2))])
    add_snapshots(sqlite_db, [signal("2611.00001", 5, metric="comments", post="s2")])
    table = trend.table(sqlite_db, NOW, LEVEL_ONLY)
    row = table.row["2611.00001"]
    assert table.engagement[row].sum() == 40 + 7 + 5
    assert table.counts("2611.00001") == {"hackernews.points": 47.0, "hackernews.comments": 5.0}


def test_snapshots_after_now_or_before_the_window_are_ignored(db: Database) -> None:
    add_snapshots(db, [signal("2611.00001", 5, at=NOW - timedelta(days=8))])
    add_snapshots(db, [signal("2611.00001", 9, at=NOW)])  # exactly now: counted
    add_snapshots(db, [signal("2611.00001", 500, at=NOW + timedelta(minutes=1))])
    table = trend.table(db, NOW, LEVEL_ONLY)
    assert table.counts("2611.00001") == {"hackernews.points": 9.0}
    assert len(snapshot_frame(db, NOW - timedelta(days=7), NOW)) == 1


def test_bluesky_posts_count_with_their_authors_reach(sqlite_db: Database) -> None:
    add_snapshots(
        sqlite_db,
        [
            signal("2611.00001", 10, source="bluesky", metric="likes", post="a", weight=2.0),
            signal("2611.00002", 10, source="bluesky", metric="likes", post="b", weight=0.5),
        ],
    )
    table = trend.table(sqlite_db, NOW, LEVEL_ONLY)
    assert table.engagement[table.row["2611.00001"]].sum() == 20
    assert table.engagement[table.row["2611.00002"]].sum() == 5
    # The line shows what people actually did, not the weighted sum.
    assert table.counts("2611.00001") == {"bluesky.likes": 10.0}


def test_decay_halves_the_level_every_half_life(sqlite_db: Database) -> None:
    papers.upsert_papers(
        sqlite_db,
        [paper("2611.00001"), paper("2611.00002", age=timedelta(hours=36)),
         paper("2611.00003", age=timedelta(hours=72))],
    )  # fmt: skip
    add_snapshots(sqlite_db, [signal(f"2611.{n:05d}", 50) for n in (1, 2, 3)])
    config = dataclasses.replace(LEVEL_ONLY, half_life_hours=36.0)
    scores = trend.table(sqlite_db, NOW, config).scores(["2611.00001", "2611.00002", "2611.00003"])
    fresh, day_and_half, three_days = (x_of(scores[f"2611.{n:05d}"]) for n in (1, 2, 3))
    assert day_and_half / fresh == pytest.approx(0.5)
    assert three_days / fresh == pytest.approx(0.25)


def test_a_paper_not_stored_yet_ages_from_its_first_mention(sqlite_db: Database) -> None:
    add_snapshots(sqlite_db, [signal("2611.00001", 50, at=NOW - timedelta(hours=36))])
    add_snapshots(sqlite_db, [signal("2611.00002", 50, post="other")])
    config = dataclasses.replace(LEVEL_ONLY, half_life_hours=36.0)
    scores = trend.table(sqlite_db, NOW, config).scores(["2611.00001", "2611.00002"])
    assert x_of(scores["2611.00001"]) / x_of(scores["2611.00002"]) == pytest.approx(0.5)


def test_velocity_counts_growth_over_the_last_24_hours(sqlite_db: Database) -> None:
    earlier = NOW - timedelta(hours=30)
    add_snapshots(
        sqlite_db, [signal("2611.00001", 100, at=earlier), signal("2611.00002", 10, at=earlier)]
    )
    add_snapshots(sqlite_db, [signal("2611.00001", 100), signal("2611.00002", 100)])
    config = dataclasses.replace(LEVEL_ONLY, velocity_weight=0.5)
    table = trend.table(sqlite_db, NOW, config)
    steady, rising = table.scores(["2611.00001", "2611.00002"]).values()
    scale = table.scale[0]
    assert x_of(steady) == pytest.approx(math.log1p(100) / scale)
    assert x_of(rising) == pytest.approx((math.log1p(100) + 0.5 * math.log1p(90)) / scale)
    assert table.growth[table.row["2611.00002"]].sum() == 90


def test_a_post_first_seen_today_counts_as_growth(sqlite_db: Database) -> None:
    add_snapshots(sqlite_db, [signal("2611.00001", 30, at=NOW - timedelta(hours=2))])
    config = dataclasses.replace(LEVEL_ONLY, velocity_weight=1.0)
    table = trend.table(sqlite_db, NOW, config)
    assert table.growth[table.row["2611.00001"]].sum() == 30
    assert x_of(table.scores(["2611.00001"])["2611.00001"]) == pytest.approx(
        2 * math.log1p(30) / table.scale[0]
    )


def test_source_weights_multiply_their_contribution(sqlite_db: Database) -> None:
    add_snapshots(sqlite_db, [signal("2611.00001", 20, source="reddit", metric="score")])
    add_snapshots(sqlite_db, [signal("2611.00002", 20)])
    base = trend.trend_scores(sqlite_db, ["2611.00001"], NOW, weights={"reddit": 1.0})
    doubled = trend.trend_scores(sqlite_db, ["2611.00001"], NOW, weights={"reddit": 2.0})
    muted = trend.trend_scores(sqlite_db, ["2611.00001"], NOW, weights={"reddit": 0.0})
    assert x_of(doubled["2611.00001"]) == pytest.approx(2 * x_of(base["2611.00001"]))
    assert muted["2611.00001"] == 0.0
    unlisted = trend.table(sqlite_db, NOW, TrendConfig(weights={})).scores(["2611.00002"])
    assert unlisted["2611.00002"] > 0  # a source nobody weighted still counts (weight 1)


def test_squash_stays_in_unit_interval_and_keeps_order(sqlite_db: Database) -> None:
    add_snapshots(sqlite_db, [signal(f"2611.{n:05d}", 10.0**n) for n in range(8)])
    scores = trend.table(sqlite_db, NOW).scores([f"2611.{n:05d}" for n in range(8)])
    values = list(scores.values())
    assert all(0.0 <= v < 1.0 for v in values)
    assert values == sorted(values)


def test_vectorised_table_matches_a_direct_computation(sqlite_db: Database) -> None:
    # A random history, checked against the formula written out one paper at a time.
    rng = np.random.default_rng(3)
    ids = [f"2611.{n:05d}" for n in range(30)]
    papers.upsert_papers(
        sqlite_db, [paper(i, age=timedelta(hours=float(rng.uniform(0, 90)))) for i in ids[:20]]
    )
    sources = ("hackernews", "reddit", "bluesky")
    history: list[Signal] = []
    for arxiv_id in ids:
        for source in sources:
            for hours in sorted(rng.choice(100, size=4, replace=False))[::-1]:
                history.append(
                    signal(arxiv_id, float(rng.integers(0, 300)), source=source,
                           at=NOW - timedelta(hours=int(hours)), weight=float(rng.uniform(0.5, 2)))
                )  # fmt: skip
    for item in sorted(history, key=lambda s: s.observed_at):
        add_snapshots(sqlite_db, [item])
    config = TrendConfig()
    table = trend.table(sqlite_db, NOW, config)
    stored = papers.get_papers(sqlite_db, ids)
    scale = dict(zip(table.sources, table.scale, strict=True))
    for arxiv_id in ids:
        mine = [s for s in history if s.arxiv_id == arxiv_id]
        born = (
            stored[arxiv_id].announced if arxiv_id in stored else min(s.observed_at for s in mine)
        )
        decay = 0.5 ** ((NOW - born).total_seconds() / 3600 / config.half_life_hours)
        x = 0.0
        for source in sources:

            def total(moment: datetime, source: str = source, mine: list[Signal] = mine) -> float:
                seen = [s for s in mine if s.source == source and s.observed_at <= moment]
                if not seen:
                    return 0.0
                last = max(seen, key=lambda s: s.observed_at)
                return max(last.value, 0) * last.weight

            now_total, before = total(NOW), total(NOW - timedelta(hours=24))
            x += config.weights[source] * (
                decay * math.log1p(now_total) / scale[source]
                + config.velocity_weight * math.log1p(max(now_total - before, 0)) / scale[source]
            )
        assert table.scores([arxiv_id])[arxiv_id] == pytest.approx(1 - math.exp(-x), abs=1e-9)


async def test_re_polling_is_idempotent_and_keeps_the_score(db: Database) -> None:
    policy = HttpPolicy(host_intervals={}, max_retries=0)
    async with build_client(policy, transport=recorded_transport()) as client:
        sources = [HackerNewsSource(client)]
        first = await poll_engagement(db, client, sources, NOW, link_missing=False)
        ids = list(trend.table(db, NOW).paper_ids)
        before = trend.trend_scores(db, ids, NOW)
        lines = trend.trend_lines(db, ids, NOW)
        second = await poll_engagement(db, client, sources, NOW, link_missing=False)
    assert first.stored > 0 and second.stored == 0
    assert trend.trend_scores(db, ids, NOW) == before
    assert trend.trend_lines(db, ids, NOW) == lines
    assert cursors.get(db, "hackernews").last_success_at == NOW


def test_trend_line_shows_each_sources_headline_with_a_sparkline(sqlite_db: Database) -> None:
    for day, points in enumerate((20, 60, 180, 312)):
        at = NOW - timedelta(days=3 - day)
        add_snapshots(sqlite_db, [signal("2611.00001", points, at=at)])
    add_snapshots(
        sqlite_db,
        [
            signal("2611.00001", 88, source="reddit", metric="score"),
            signal("2611.00001", 45, source="bluesky", metric="reposts", weight=1.7),
            signal("2611.00001", 160, source="bluesky", metric="likes", weight=1.7),
            signal("2611.00001", 88, source="huggingface", metric="upvotes"),
            signal("2611.00001", 1, source="semanticscholar", metric="citations"),
        ],
    )
    line = trend.trend_lines(sqlite_db, ["2611.00001", "2611.00002"], NOW)
    assert set(line) == {"2611.00001"}  # nobody talked about the other one
    text = line["2611.00001"]
    assert text.startswith(
        "🔥 HN 312 pts · Reddit 88 · Bluesky 45 reposts · HF 88 ▲ · S2 1 citation "
    )
    spark = text.rsplit(" ", 1)[1]
    assert len(spark) == trend.SPARK_DAYS and spark[-1] == "█"


def test_format_line_pieces() -> None:
    assert format_line({}, [0, 0], 0.9) == ""
    assert format_line({"hackernews.comments": 3}, [], 0.1) == "HN 3 comments"
    assert format_line({"bluesky.likes": 1, "mastodon.boosts": 4}, [0, 2], 0.2) == (
        "Bluesky 1 like · mastodon 4 boosts ▁█"
    )
    assert format_count(312) == "312"
    assert format_count(1520) == "1.5k"
    assert format_count(2000) == "2k"
    assert format_count(45_600) == "46k"
    assert format_count(2_300_000) == "2.3M"


def test_sparkline_scales_to_its_maximum() -> None:
    assert sparkline([0, 0, 0]) == ""
    assert sparkline([1, 3, 6, 12]) == "▂▄▅█"
    assert sparkline([12, 0, 1]) == "█▁▂"  # any growth shows above a day without any


def test_trending_lists_stored_recent_papers_best_first(db: Database) -> None:
    papers.upsert_papers(
        db,
        [
            paper("2611.00001"),
            paper("2611.00002", categories=("cs.CL",), primary_category="cs.CL"),
            paper("2611.00003", age=timedelta(days=5)),
            paper("2611.00004", withdrawn=True),
        ],
    )
    add_snapshots(
        db,
        [signal("2611.00001", 50), signal("2611.00002", 300), signal("2611.00003", 900),
         signal("2611.00004", 900), signal("2611.00099", 900)],
    )  # fmt: skip
    listed = trend.trending(db, NOW)
    assert [p.arxiv_id for p in listed] == ["2611.00002", "2611.00001"]
    top = listed[0]
    assert top.title == "Paper 2611.00002" and top.primary_category == "cs.CL"
    assert top.counts == {"hackernews.points": 300.0}
    assert top.line == "HN 300 pts ▁▁▁█"  # one source, no 🔥
    assert 0 < listed[1].score < top.score < 1
    assert [p.arxiv_id for p in trend.trending(db, NOW, category="cs.LG")] == ["2611.00001"]
    # Five days old, the most-discussed paper has decayed below the fresh ones.
    older = trend.trending(db, NOW, since=timedelta(days=7))
    assert [p.arxiv_id for p in older] == ["2611.00002", "2611.00001", "2611.00003"]
    assert len(trend.trending(db, NOW, since=timedelta(days=7), limit=2)) == 2
    assert trend.trending(db, NOW - timedelta(days=30)) == []


@pytest.mark.parametrize(
    ("text", "hours"), [("3d", 72), ("36h", 36), ("1w", 168), ("2", 48), (" 1.5D ", 36)]
)
def test_parse_since(text: str, hours: float) -> None:
    assert parse_since(text) == timedelta(hours=hours)


@pytest.mark.parametrize("text", ["", "soon", "-3d", "0h", "400d", "3 days"])
def test_parse_since_rejects_nonsense(text: str) -> None:
    with pytest.raises(ValueError, match=r"duration|range"):
        parse_since(text)


def test_cli_trending_and_sources(sqlite_db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    moment = datetime.now(UTC)
    papers.upsert_papers(sqlite_db, [paper("2611.00001", announced=moment, published=moment)])
    add_snapshots(sqlite_db, [signal("2611.00001", 77, at=moment - timedelta(minutes=5))])
    cursors.record_success(sqlite_db, "hackernews", now=moment)
    cursors.record_failure(
        sqlite_db,
        "reddit",
        "server error after retries (https://www.reddit.com/r/x/new.json, HTTP 503)",
        now=moment,
    )
    cursors.record_success(sqlite_db, "circle:1", now=moment, cursor="[]")
    monkeypatch.setenv("TP_DATABASE_URL", sqlite_db.url)
    app = typer.Typer()
    register(app)
    runner = CliRunner()

    listed = runner.invoke(app, ["trending", "--since", "1d"])
    assert listed.exit_code == 0, listed.output
    assert "Paper 2611.00001" in listed.output and "HN 77 pts" in listed.output
    empty = runner.invoke(app, ["trending", "--category", "q-bio.NC"])
    assert empty.exit_code == 0 and "No paper" in empty.output
    bad = runner.invoke(app, ["trending", "--since", "forever"])
    assert bad.exit_code == 1 and "use e.g. 3d" in bad.output and "Traceback" not in bad.output

    health = runner.invoke(app, ["sources"])
    assert health.exit_code == 0, health.output
    assert "failing (1 in a row)" in health.output and "HTTP 503" in health.output
    assert "never polled" in health.output  # configured sources that never ran are listed
    assert "circle:1" not in health.output


def test_scores_and_lines_come_from_one_computation(sqlite_db: Database) -> None:
    add_snapshots(sqlite_db, [signal("2611.00001", 12), signal("2611.00002", 0)])
    scores, lines = trend.scores_and_lines(sqlite_db, ["2611.00001", "2611.00002"], NOW)
    assert scores == trend.trend_scores(sqlite_db, ["2611.00001", "2611.00002"], NOW)
    assert lines == trend.trend_lines(sqlite_db, ["2611.00001", "2611.00002"], NOW)
    assert set(lines) == {"2611.00001"} and scores["2611.00002"] == 0.0


def test_sparklines_are_read_only_for_the_lines_asked_for(db: Database) -> None:
    for day, points in enumerate((20, 60, 180, 312)):
        add_snapshots(db, [signal("2611.00001", points, at=NOW - timedelta(days=3 - day))])
    add_snapshots(db, [signal("2611.00002", 5, at=NOW - timedelta(days=2))])
    scored = trend.table(db, NOW)
    assert scored.counts("2611.00001") == {"hackernews.points": 312.0}
    with pytest.raises(ValueError, match="lines_for"):
        scored.line("2611.00001")
    assert scored.line("2611.00099") == ""  # nobody talked about it: no line to compute
    lined = trend.with_lines(db, scored, ["2611.00001", "2611.00099"], NOW)
    assert lined.line("2611.00001") == "HN 312 pts ▃▄▇█"  # growth 20, 40, 120, 132
    assert np.array_equal(lined.score, scored.score)
    with pytest.raises(ValueError, match="lines_for"):
        lined.line("2611.00002")
    both = trend.table(db, NOW, lines_for=["2611.00001", "2611.00002"])
    assert both.line("2611.00001") == lined.line("2611.00001")
    assert both.line("2611.00002") == "HN 5 pts ▁█▁▁"


def test_config_from_settings_keeps_defaults_for_missing_fields() -> None:
    from types import SimpleNamespace

    config = TrendConfig.from_settings(
        SimpleNamespace(trend_weights={"reddit": 0.1}, trend_half_life_hours=12)
    )
    assert config.weights["reddit"] == 0.1 and config.weights["hackernews"] == 1.0
    assert config.half_life_hours == 12 and config.velocity_weight == trend.DEFAULT_VELOCITY_WEIGHT
    assert config.window == trend.DEFAULT_WINDOW
