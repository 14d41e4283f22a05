"""Digests on real databases: every ranking rule, learning that moves the ranking, and the CLI."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from bot.circle import store_follows
from bot.cli_rank import paper_from_json, read_jsonl, register
from bot.digest import DigestItem, build_and_record, items_from_payload, payload, rank_for
from bot.learning import train_all
from feeds.records import Paper as PaperRecord
from feeds.records import Signal
from storage import deliveries, feedback, learned, papers, subscribers
from storage.db import Database
from storage.engagement import add_snapshots
from storage.models import InterestKind, Platform, Subscriber

NOW = datetime(2026, 11, 16, 12, 0, tzinfo=UTC)
DATA = Path(__file__).parent / "data"


def record(
    arxiv_id: str,
    title: str,
    abstract: str = "",
    *,
    authors: tuple[str, ...] = ("Jane Doe",),
    categories: tuple[str, ...] = ("cs.LG",),
    age: timedelta = timedelta(hours=6),
    version: int = 1,
) -> PaperRecord:
    return PaperRecord(
        arxiv_id=arxiv_id,
        version=version,
        title=title,
        abstract=abstract or title,
        authors=authors,
        categories=categories,
        primary_category=categories[0],
        published=NOW - age,
        updated=NOW - age,
        announced=NOW - age,
    )


def subscriber(db: Database, chat: str = "alice", size: int = 5, **settings: object) -> Subscriber:
    sub, _ = subscribers.get_or_create(db, Platform.CONSOLE, chat, digest_size=size, **settings)
    return sub


def keywords(
    db: Database, sub: Subscriber, *values: str, kind: InterestKind = InterestKind.KEYWORD
) -> None:
    assert sub.id is not None
    subscribers.add_interests(db, sub.id, kind, values)


def ranked_ids(db: Database, sub: Subscriber, **kw: object) -> list[str]:
    assert sub.id is not None
    fresh = subscribers.get(db, sub.id)
    assert fresh is not None
    return [item.arxiv_id for item in rank_for(db, [fresh], NOW, **kw)[sub.id]]  # type: ignore[arg-type]


TOPICAL = [
    record("2611.00001", "Video diffusion models with temporal attention",
           "We generate videos with a latent diffusion model and temporal attention layers."),
    record("2611.00002", "Diffusion models for protein backbone design",
           "A denoising diffusion model designs protein backbones and binders."),
    record("2611.00003", "Scaling laws for large language model pretraining",
           "We study how large language models improve with data and compute."),
    record("2611.00004", "Offline reinforcement learning with conservative value estimates",
           "Conservative Q-learning for offline reinforcement learning from logged data."),
    record("2611.00005", "Graph neural networks for molecular property prediction",
           "Message passing graph neural networks predict properties of molecules.",
           authors=("Yann LeCun", "Ada Smith"), categories=("cs.LG", "q-bio.BM")),
]  # fmt: skip


def test_freshness_window(db: Database) -> None:
    papers.upsert_papers(
        db,
        [
            record("2611.00010", "Diffusion models for audio", age=timedelta(days=1)),
            record("2611.00011", "Diffusion models for text", age=timedelta(days=5)),
        ],
    )
    sub = subscriber(db)
    keywords(db, sub, "diffusion models")
    assert ranked_ids(db, sub) == ["2611.00010"]
    assert set(ranked_ids(db, sub, freshness_days=7)) == {"2611.00010", "2611.00011"}


def test_never_repeat_across_digests(db: Database) -> None:
    papers.upsert_papers(db, TOPICAL)
    sub = subscriber(db, size=1)
    keywords(db, sub, "diffusion")
    first = build_and_record(db, [sub], NOW)[0]
    second = build_and_record(db, [sub], NOW)[0]
    third = build_and_record(db, [sub], NOW)[0]
    sent = [i.arxiv_id for o in (first, second) for i in o.items]
    assert sorted(sent) == ["2611.00001", "2611.00002"]
    assert third.items == () and third.recorded is None
    assert sub.id is not None
    assert deliveries.delivered_ids(db, [sub.id])[sub.id] == set(sent)


def test_muted_terms_are_never_shown(db: Database) -> None:
    papers.upsert_papers(db, TOPICAL)
    sub = subscriber(db)
    keywords(db, sub, "diffusion")
    keywords(db, sub, "protein", kind=InterestKind.MUTED)
    assert ranked_ids(db, sub) == ["2611.00001"]


def test_new_version_and_same_title_under_another_id_collapse(db: Database) -> None:
    title = "Sparse mixture of experts for language models"
    papers.upsert_papers(db, [record("2611.00020", title, version=1)])
    papers.upsert_papers(db, [record("2611.00020", title, version=2)])  # a new version
    # The same paper submitted again under a new id, title cased and punctuated differently.
    papers.upsert_papers(db, [record("2611.00021", f" {title.upper()}.", age=timedelta(hours=1))])
    papers.upsert_papers(db, [record("2611.00022", "Dense experts for language models")])
    sub = subscriber(db)
    keywords(db, sub, "experts")
    assert sorted(ranked_ids(db, sub)) == ["2611.00021", "2611.00022"]
    # Once any copy was delivered, no other copy ever comes.
    assert sub.id is not None
    deliveries.record_digest(db, sub.id, [deliveries.DigestEntry("2611.00020", 1, 1.0)])
    assert ranked_ids(db, sub) == ["2611.00022"]


def test_diversity_keeps_one_subtopic_from_crowding_the_rest(db: Database) -> None:
    crowd = [
        record(f"2611.001{i:02d}",
               f"Sparse attention for long context language models, variant {word}",
               "Sparse attention makes long context language models cheaper to run.")
        for i, word in enumerate("alpha beta gamma delta epsilon zeta eta theta iota kappa".split())
    ]  # fmt: skip
    others = [
        record("2611.00200", "Aligning language models with human feedback",
               "Preference optimisation aligns language models with what people want."),
        record("2611.00201", "Language models as tool-using agents",
               "Agents built on language models call tools and plan."),
    ]  # fmt: skip
    papers.upsert_papers(db, crowd + others)
    sub = subscriber(db, size=5)
    keywords(db, sub, "language models", "sparse attention")
    plain = ranked_ids(db, sub, weights=_weights(mmr_lambda=1.0))
    assert set(plain) <= {p.arxiv_id for p in crowd}  # by score alone: five of the crowd
    diverse = ranked_ids(db, sub)
    assert {"2611.00200", "2611.00201"} & set(diverse)
    assert len(set(diverse) & {p.arxiv_id for p in crowd}) >= 2  # still the best match first
    assert diverse[0] == plain[0]


def _weights(**changes: float) -> object:
    from bot.ranking import DEFAULT_WEIGHTS

    return dataclasses.replace(DEFAULT_WEIGHTS, **changes)


def test_followed_author_matches_across_initials_and_accents(db: Database) -> None:
    papers.upsert_papers(
        db,
        [
            *TOPICAL,
            record("2611.00040", "Kernel methods revisited", authors=("Bernhard Schölkopf",)),
        ],
    )
    sub = subscriber(db)
    keywords(db, sub, "Y. LeCun", "LeCun, Yann", "B. Scholkopf", kind=InterestKind.AUTHOR)
    items = rank_for(db, [sub], NOW)[sub.id or 0]
    assert {i.arxiv_id for i in items} == {"2611.00005", "2611.00040"}
    assert any("by Yann LeCun" in i.why for i in items)
    assert any("by Bernhard Schölkopf" in i.why for i in items)


def test_cold_start_like_seeds_the_profile(db: Database) -> None:
    liked = record("1706.03762", "Attention is all you need",
                   "The Transformer relies on attention mechanisms, dispensing with recurrence.",
                   age=timedelta(days=3000))  # fmt: skip
    fresh = [
        record("2611.00050", "Linear attention transformers for long sequences",
               "An efficient attention mechanism for the Transformer on long sequences."),
        *TOPICAL,
    ]  # fmt: skip
    papers.upsert_papers(db, [liked, *fresh])
    sub = subscriber(db)
    assert sub.id is not None
    before = rank_for(db, [sub], NOW)[sub.id]  # no interests yet: the newest papers
    assert not any("similar to" in item.why for item in before)
    feedback.set_rating(db, sub.id, "1706.03762", 1)  # what /like 1706.03762 records
    items = rank_for(db, [sub], NOW)[sub.id]
    assert items[0].arxiv_id == "2611.00050"
    assert "similar to “Attention is all you need”" in items[0].why


def test_empty_profile_gets_trending_in_its_categories(db: Database) -> None:
    papers.upsert_papers(db, TOPICAL)
    sub = subscriber(db)
    trend = {"2611.00003": 0.9, "2611.00004": 0.5, "2611.00005": 0.7}
    assert ranked_ids(db, sub, trend=trend)[:3] == ["2611.00003", "2611.00005", "2611.00004"]
    keywords(db, sub, "q-bio.BM", kind=InterestKind.CATEGORY)
    assert ranked_ids(db, sub, trend=trend) == ["2611.00005"]


def test_dislikes_sink_a_topic_in_the_next_digest(db: Database) -> None:
    video = [
        record(f"2611.003{i:02d}", f"Video diffusion {word} for text to video generation",
               f"A video diffusion model generates clips; {word} keeps frames consistent.")
        for i, word in enumerate("transformers flows adapters caches tokenizers".split())
    ]  # fmt: skip
    image = [
        record(f"2611.004{i:02d}", f"Image diffusion {word} for photo editing",
               f"An image diffusion model edits photos; {word} keeps identity.")
        for i, word in enumerate("guidance inversion masks priors".split())
    ]  # fmt: skip
    papers.upsert_papers(db, video + image)
    sub = subscriber(db, size=9)
    keywords(db, sub, "diffusion")
    before = ranked_ids(db, sub)
    assert sub.id is not None
    for p in video[:3]:
        feedback.set_rating(db, sub.id, p.arxiv_id, -1)
    after = ranked_ids(db, sub)
    video_ids = {p.arxiv_id for p in video}
    assert not video_ids & set(after[:4])  # every image paper now ranks above every video one
    remaining = [x for x in before if x in video_ids and x in after]
    assert all(after.index(x) > before.index(x) for x in remaining if x in before)


def test_a_like_lifts_that_authors_new_paper(db: Database) -> None:
    old = record("2601.00001", "Robust estimation under heavy tails",
                 authors=("Kiri Wagstaff", "Ilya Novak"), age=timedelta(days=200))  # fmt: skip
    new = [
        record(f"2611.005{i:02d}", f"Robust estimation for {topic}",
               f"Robust estimation methods for {topic}.", authors=(author,))
        for i, (topic, author) in enumerate(
            [("regression", "Mara Lind"), ("bandits", "Ilya Novak"), ("streams", "Tom Berg")]
        )
    ]  # fmt: skip
    papers.upsert_papers(db, [old, *new])
    sub = subscriber(db, size=3)
    keywords(db, sub, "robust estimation")
    assert sub.id is not None
    before = ranked_ids(db, sub)
    feedback.set_saved(db, sub.id, "2601.00001", True)  # a 🔖 counts as 👍
    items = rank_for(db, [sub], NOW)[sub.id]
    assert items[0].arxiv_id == "2611.00501"
    assert before.index("2611.00501") > 0
    assert "Ilya Novak" in items[0].why


def _rated_world(db: Database, sub: Subscriber) -> tuple[list[PaperRecord], list[PaperRecord]]:
    """Twelve liked graph papers and twelve disliked vision papers, older than the window."""
    liked = [
        record(f"2605.01{i:03d}", f"Graph neural network {w} for molecules",
               f"Message passing graph neural networks with {w} predict molecular properties.",
               age=timedelta(days=60))
        for i, w in enumerate("pooling attention readout equivariance sampling transformers "
                              "kernels spectra motifs coarsening rewiring curvature".split())
    ]  # fmt: skip
    disliked = [
        record(f"2605.02{i:03d}", f"Image segmentation with {w}",
               f"Semantic segmentation of street images using {w}.", age=timedelta(days=60))
        for i, w in enumerate("transformers masks prompts queries adapters priors scribbles "
                              "boxes points depth clicks edges".split())
    ]  # fmt: skip
    papers.upsert_papers(db, liked + disliked)
    assert sub.id is not None
    for p in liked:
        feedback.set_rating(db, sub.id, p.arxiv_id, 1)
    for p in disliked:
        feedback.set_rating(db, sub.id, p.arxiv_id, -1)
    return liked, disliked


def test_trained_model_is_applied_at_digest_time(db: Database) -> None:
    sub = subscriber(db, size=2)
    _rated_world(db, sub)
    papers.upsert_papers(
        db,
        [
            record("2611.00600", "Graph neural networks for crystal structures",
                   "Message passing on crystal graphs predicts material properties."),
            record("2611.00601", "Instance segmentation of aerial images",
                   "Segmentation of buildings in aerial images."),
        ],
    )  # fmt: skip
    report = train_all(db, NOW)
    assert report.trained == 1 and sub.id is not None
    assert learned.load_models(db, [sub.id])[sub.id].positives == 12
    from bot.digest import plan

    ranked = plan(db, [sub], NOW).ranked(sub.id)
    assert ranked[0].arxiv_id == "2611.00600"
    assert dict(ranked[0].parts)["learned"] > 0.5
    # The segmentation paper is what this subscriber 👎: learned and Rocchio both push it out.
    assert "2611.00601" not in [r.arxiv_id for r in ranked]


def test_min_score_withholds_a_weak_digest(db: Database) -> None:
    papers.upsert_papers(db, TOPICAL)
    sub = subscriber(db, min_score=5.0)
    keywords(db, sub, "diffusion")
    assert ranked_ids(db, sub) == []
    assert sub.id is not None
    subscribers.update(db, sub.id, min_score=0.01)
    assert len(ranked_ids(db, sub)) == 2


def test_circle_and_crowd_lines_explain_an_item(db: Database) -> None:
    papers.upsert_papers(db, TOPICAL)
    sub = subscriber(db, bluesky_handle="me.bsky.social")
    keywords(db, sub, "diffusion")
    assert sub.id is not None
    store_follows(db, sub.id, ["did:plc:ann", "did:plc:bo"], NOW, handle="me.bsky.social")
    add_snapshots(
        db,
        [
            Signal(
                "2611.00001", "bluesky", "likes", 4.0, NOW, url=f"https://bsky.app/{who}", actor=who
            )
            for who in ("did:plc:ann", "did:plc:bo", "did:plc:stranger")
        ],
    )
    lines = {"2611.00001": "🔥 12 likes on Bluesky"}
    items = {i.arxiv_id: i for i in rank_for(db, [sub], NOW, trend_lines=lines)[sub.id]}
    assert (
        items["2611.00001"].trend_line
        == "🔥 12 likes on Bluesky · 👥 2 people you follow posted this"
    )
    assert items["2611.00002"].trend_line == ""
    assert items["2611.00001"].why == "matches “diffusion”"
    # A caller that already added the circle note (the demo does) does not get it twice.
    noted = {"2611.00001": "👥 2 people you follow posted this"}
    items = {i.arxiv_id: i for i in rank_for(db, [sub], NOW, trend_lines=noted)[sub.id]}
    assert items["2611.00001"].trend_line == noted["2611.00001"]


def test_payload_round_trip_keeps_the_why() -> None:
    item = DigestItem("2611.00001", "T", ("A", "B"), "cs.LG", "u", "matches “x”", "🔥 line", 0.5)
    assert items_from_payload(payload([item], heading="h")) == [item]


# --- CLI -----------------------------------------------------------------------------------


@pytest.fixture
def cli(db: Database, monkeypatch: pytest.MonkeyPatch) -> typer.Typer:
    monkeypatch.setenv("TP_DATABASE_URL", db.url)
    app = typer.Typer()
    register(app)

    @app.callback()
    def _root() -> None:
        """Commands under test."""

    return app


def test_cli_import_jsonl_then_rank_with_explanations(
    db: Database, cli: typer.Typer, tmp_path: Path
) -> None:
    lines = [
        {"id": "2611.00701v2", "title": "Diffusion policies for robot manipulation",
         "abstract": "A diffusion model outputs robot actions.", "authors": "Ann Lee, Bo Chen",
         "categories": "cs.RO cs.LG", "published": "2026-11-15"},
        {"id": "2611.00702", "title": "Contrastive learning of speech",
         "published": "2026-11-15T10:00:00Z", "categories": ["eess.AS"]},
        {"id": "not-an-id", "title": "x"},
        "just a string",
    ]  # fmt: skip
    source = tmp_path / "papers.jsonl"
    source.write_text("\n".join(json.dumps(x) for x in lines) + "\n{broken\n")
    runner = CliRunner()
    result = runner.invoke(cli, ["import", "--file", str(source)])
    assert result.exit_code == 0, result.output
    assert "2 papers read from papers.jsonl: 2 new" in result.output
    assert "line 3:" in result.stderr and "line 5: not valid JSON" in result.stderr
    stored = papers.get_paper(db, "2611.00701")
    assert stored is not None and stored.version == 2 and stored.authors == ["Ann Lee", "Bo Chen"]

    sub = subscriber(db)
    keywords(db, sub, "diffusion")
    result = runner.invoke(
        cli,
        ["rank", "--subscriber", str(sub.id), "--explain", "--days", "30", "--now", "2026-11-16"],
    )
    assert result.exit_code == 0, result.output
    assert "2611.00701" in result.output and "keyword" in result.output
    assert "why: matches “diffusion”" in result.output
    assert "2611.00702" not in result.output


def test_cli_import_arxiv_api_atom(db: Database, cli: typer.Typer, tmp_path: Path) -> None:
    source = tmp_path / "papers.atom"
    source.write_bytes((DATA / "arxiv" / "api_query_current.xml").read_bytes())
    result = CliRunner().invoke(cli, ["import", "--file", str(source)])
    assert result.exit_code == 0, result.output
    assert papers.count_papers(db) >= 1
    assert "new" in result.output


def test_cli_errors_are_short_and_clear(db: Database, cli: typer.Typer, tmp_path: Path) -> None:
    runner = CliRunner()
    empty = tmp_path / "empty.jsonl"
    empty.write_text("{}\n")
    result = runner.invoke(cli, ["import", "--file", str(empty)])
    assert result.exit_code == 1 and "no usable papers" in result.stderr
    wrong = tmp_path / "papers.csv"
    wrong.write_text("id,title\n")
    result = runner.invoke(cli, ["import", "--file", str(wrong)])
    assert result.exit_code == 1 and "use .atom/.xml" in result.stderr
    broken = tmp_path / "broken.atom"
    broken.write_text("<feed")
    result = runner.invoke(cli, ["import", "--file", str(broken)])
    assert result.exit_code == 1 and "could not read" in result.stderr
    result = runner.invoke(cli, ["rank", "--subscriber", "999"])
    assert result.exit_code == 1 and "no subscriber with id 999" in result.stderr
    result = runner.invoke(cli, ["rank", "--subscriber", "1", "--now", "yesterday"])
    assert result.exit_code == 1 and "cannot read" in result.stderr
    assert "Traceback" not in result.output + result.stderr


def test_cli_train(db: Database, cli: typer.Typer) -> None:
    sub = subscriber(db)
    _rated_world(db, sub)
    result = CliRunner().invoke(cli, ["train", "--now", "2026-11-16"])
    assert result.exit_code == 0, result.output
    assert "Trained 1 models (1 subscribers" in result.output


def test_jsonl_records_are_validated() -> None:
    paper = paper_from_json(
        {"id": "arXiv:2611.00001v3", "title": " A  title ", "primary_category": "cs.CL"}, NOW
    )
    assert (paper.arxiv_id, paper.version, paper.title) == ("2611.00001", 3, "A title")
    assert paper.categories == ("cs.CL",) and paper.published == NOW
    found, problems = read_jsonl('{"id": "2611.1", "title": "t"}\n{"title": "t"}\n', NOW)
    assert not found
    assert [p.reason for p in problems] == [
        "not an arXiv identifier: '2611.1'",
        "missing id",
    ]
    with pytest.raises(ValueError, match="published must be an ISO date"):
        paper_from_json({"id": "2611.00001", "title": "t", "published": 5}, NOW)


def test_index_is_reused_until_the_candidates_change() -> None:
    from datetime import UTC, datetime

    from bot.digest import index_for
    from storage.models import Paper

    when = datetime(2026, 11, 16, tzinfo=UTC)
    fresh = [
        Paper(arxiv_id=f"2611.{i:05d}", version=1, title=f"Diffusion {i}", abstract="Diffusion.",
              authors=["A. B"], categories=["cs.LG"], primary_category="cs.LG",
              published=when, updated=when, announced=when)
        for i in range(3)
    ]  # fmt: skip
    first = index_for(fresh, 2)
    assert index_for(list(fresh), 2) is first
    assert index_for(fresh, 3) is not first  # another title weight
    again = index_for(fresh, 2)
    assert index_for(fresh, 2) is again
    bumped = [fresh[0].model_copy(update={"version": 2}), *fresh[1:]]
    assert index_for(bumped, 2) is not again  # a new version changes the candidate set


def test_candidates_are_reused_until_a_paper_in_the_window_changes(db: Database) -> None:
    from bot.digest import candidates

    papers.upsert_papers(db, TOPICAL[:3], now=NOW)
    first = candidates(db, NOW, 3)
    assert [p.arxiv_id for p in first] == [p.arxiv_id for p in papers.recent_papers(
        db, NOW - timedelta(days=3))]  # fmt: skip
    assert all(a is b for a, b in zip(candidates(db, NOW, 3), first, strict=True))  # reused

    papers.upsert_papers(db, [TOPICAL[3]], now=NOW)  # a new paper
    assert {p.arxiv_id for p in candidates(db, NOW, 3)} == {p.arxiv_id for p in TOPICAL[:4]}

    revised = dataclasses.replace(TOPICAL[0], version=2, title="Video diffusion, revised")
    papers.upsert_papers(db, [revised], now=NOW)  # a new version, same ingest time
    titles = {p.arxiv_id: p.title for p in candidates(db, NOW, 3)}
    assert titles["2611.00001"] == "Video diffusion, revised"

    undated = dataclasses.replace(record("2611.00009", "Latent video diffusion"), announced=None)
    papers.upsert_papers(db, [undated], now=NOW)
    announced = dataclasses.replace(undated, announced=NOW - timedelta(days=5))
    papers.upsert_papers(db, [announced], now=NOW)  # the announcement date arrives later
    assert "2611.00009" not in {p.arxiv_id for p in candidates(db, NOW, 3)}

    later = NOW + timedelta(days=3, hours=-2)  # the oldest papers leave the window
    assert [p.arxiv_id for p in candidates(db, later, 3)] == [
        p.arxiv_id for p in papers.recent_papers(db, later - timedelta(days=3))
    ]


def test_concurrent_digests_load_and_index_the_candidates_once(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from bot import digest
    from bot.ranking import PaperIndex

    papers.upsert_papers(db, TOPICAL, now=NOW)
    subs = [subscriber(db, f"reader{n}") for n in range(8)]
    for sub in subs:
        keywords(db, sub, "diffusion models")
    loads, builds = [], []
    load, build = papers.recent_papers, PaperIndex.build
    monkeypatch.setattr(papers, "recent_papers", lambda *a, **k: loads.append(1) or load(*a, **k))
    monkeypatch.setattr(
        PaperIndex, "build", classmethod(lambda cls, *a, **k: builds.append(1) or build(*a, **k))
    )
    monkeypatch.setattr(digest, "_LAST_INDEX", None)  # no index left over from other tests
    start = threading.Barrier(len(subs))

    def rank_one(sub: Subscriber) -> list[str]:
        start.wait()
        assert sub.id is not None
        return [item.arxiv_id for item in rank_for(db, [sub], NOW)[sub.id]]

    with ThreadPoolExecutor(len(subs)) as pool:
        results = list(pool.map(rank_one, subs))
    assert len(loads) == 1 and len(builds) == 1
    assert all(result == results[0] for result in results)
    assert set(results[0][:2]) == {"2611.00001", "2611.00002"}  # the two diffusion papers
