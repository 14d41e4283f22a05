"""Search on real SQLite (FTS5) and real PostgreSQL (tsvector): sync, ranking, language, safety."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, text, update
from sqlmodel import SQLModel

from feeds.records import Paper as PaperRecord
from feeds.records import Signal
from storage import search as search_module
from storage.db import Database
from storage.engagement import add_snapshots
from storage.errors import StorageError
from storage.migrate import alembic_config, upgrade
from storage.models import PAPERS
from storage.papers import upsert_papers
from storage.search import SearchHit, SearchPage, include_name, rebuild_index, search, segments

NOW = datetime(2026, 11, 16, 12, 0, tzinfo=UTC)


def paper(
    arxiv_id: str,
    title: str,
    abstract: str = "A study.",
    *,
    authors: tuple[str, ...] = ("Ada Lovelace",),
    categories: tuple[str, ...] = ("cs.LG",),
    days_old: float = 10,
    version: int = 1,
) -> PaperRecord:
    published = NOW - timedelta(days=days_old)
    return PaperRecord(
        arxiv_id=arxiv_id,
        version=version,
        title=title,
        abstract=abstract,
        authors=authors,
        categories=categories,
        primary_category=categories[0],
        published=published,
        updated=published,
    )


CORPUS = [
    paper(
        "2601.00001",
        "Denoising diffusion models for image synthesis",
        "We study denoising diffusion probabilistic models and large language models.",
        authors=("Bernhard Schölkopf", "Jonathan Ho"),
        categories=("cs.CV", "cs.LG"),
        days_old=400,
    ),
    paper(
        "2601.00002",
        "Attention is all you need",
        "The dominant sequence transduction models use recurrent networks; diffusion is absent.",
        authors=("Ashish Vaswani", "Noam Shazeer"),
        categories=("cs.CL",),
        days_old=3,
    ),
    paper(
        "2601.00003",
        "Graph neural networks at scale",
        "Message passing on graphs reaches state-of-the-art results on molecules.",
        authors=("Geoffrey E. Hinton",),
        categories=("cs.LG", "stat.ML"),
        days_old=30,
    ),
    paper(
        "2601.00004",
        "Spin glasses and statistical mechanics of learning",
        "A physics view of graphs and learning dynamics.",
        authors=("Giorgio Parisi",),
        categories=("cond-mat.stat-mech",),
        days_old=60,
    ),
]


@pytest.fixture
def corpus_db(db: Database) -> Database:
    upsert_papers(db, CORPUS, now=NOW)
    return db


def ids(page: SearchPage) -> list[str]:
    return [hit.arxiv_id for hit in page.hits]


def run(db: Database, query: str, **kwargs: object) -> SearchPage:
    return search(db, query, now=NOW, **kwargs)  # type: ignore[arg-type]


# --- the index follows the paper table ----------------------------------------------------


def test_insert_update_and_delete_keep_the_index_in_sync(db: Database) -> None:
    upsert_papers(db, [paper("2601.00010", "Quantum annealing schedules")], now=NOW)
    assert ids(run(db, "annealing")) == ["2601.00010"]

    # A new version with a new title replaces the old words, it does not add a second row.
    upsert_papers(db, [paper("2601.00010", "Photonic reservoir computing", version=2)], now=NOW)
    assert ids(run(db, "annealing")) == []
    assert ids(run(db, "photonic reservoir")) == ["2601.00010"]
    assert run(db, "photonic").total == 1

    # The same old version again changes nothing.
    upsert_papers(db, [paper("2601.00010", "Quantum annealing schedules")], now=NOW)
    assert ids(run(db, "annealing")) == []

    with db.engine.begin() as connection:
        connection.execute(
            update(PAPERS)
            .where(PAPERS.c.arxiv_id == "2601.00010")
            .values(abstract="Now about spiking neurons.", authors=["Émile Zola"])
        )
    assert ids(run(db, "spiking")) == ["2601.00010"]
    assert ids(run(db, "author:zola")) == ["2601.00010"]

    with db.engine.begin() as connection:
        connection.execute(delete(PAPERS).where(PAPERS.c.arxiv_id == "2601.00010"))
    assert run(db, "photonic").total == 0
    assert run(db, "sort:new").total == 0


WORDS = (
    "lattice", "gauge", "spinor", "boson", "kernel", "manifold", "tensor", "graph", "sparse",
    "bayesian", "photonic", "reservoir", "quantum", "annealing", "diffusion", "transformer",
)  # fmt: skip
AUTHORS = ("José Núñez", "Ada Lovelace", "Chen Wei", "Zoë Müller", "Kwame Mensah")


def _bulk_paper(n: int, version: int = 1, **changes: object) -> PaperRecord:
    words = [WORDS[(n * 7 + k * version) % len(WORDS)] for k in range(3)]
    record = paper(
        f"2601.{n:05d}",
        f"{words[0].title()} {words[1]} methods, take {version}",
        f"We relate {words[1]} to {words[2]} for {n}; this is {'new' if version > 1 else 'old'}.",
        authors=(AUTHORS[n % 5], AUTHORS[(n + version) % 5]),
        categories=(("cs.LG", "stat.ML"), ("hep-lat",), ("quant-ph", "cs.ET"))[(n + version) % 3],
        days_old=1 + n / 7,
        version=version,
    )
    return dataclasses.replace(record, **changes)  # type: ignore[arg-type]


def _index_contents(db: Database) -> tuple[list[Any], list[Any]]:
    """Everything the index holds, keyed by paper (document ids differ after a rebuild)."""
    with db.engine.connect() as connection:
        if db.dialect == "sqlite":
            documents = connection.exec_driver_sql(
                "SELECT arxiv_id, published, categories FROM paper_search ORDER BY arxiv_id"
            ).all()
            postings = connection.exec_driver_sql(
                "SELECT s.arxiv_id, i.term, i.col, i.offset FROM paper_search_instance AS i "
                "JOIN paper_search AS s ON s.docid = i.doc ORDER BY 1, 2, 3, 4"
            ).all()
            return documents, postings
        documents = connection.exec_driver_sql(
            "SELECT arxiv_id, document::text FROM paper_search ORDER BY arxiv_id"
        ).all()
        return documents, []


def test_bulk_upserts_leave_the_index_exactly_as_a_rebuild_would(db: Database) -> None:
    # Pages larger than one statement chunk; then new papers, new versions whose title,
    # abstract, authors and categories all change, late replays of old versions, and older
    # versions that only bring an announcement date, all in one call.
    upsert_papers(db, [_bulk_paper(n) for n in range(1, 1101)], now=NOW)
    upsert_papers(db, [_bulk_paper(n, announced=None) for n in range(1101, 1201)], now=NOW)
    mixed = [
        *(_bulk_paper(n) for n in range(1201, 1501)),
        *(_bulk_paper(n, version=2) for n in range(1, 1101, 3)),
        *(_bulk_paper(n) for n in range(2, 1101, 3)),
        *(_bulk_paper(n, announced=NOW) for n in range(1101, 1201, 2)),
    ]
    result = upsert_papers(db, mixed, now=NOW)
    assert (result.inserted, result.updated, result.unchanged) == (300, 367, 417)

    # Hits are compared for queries whose matches the ranking tells apart: among equal
    # matches it prefers the newest document id, and a rebuild renumbers documents by date.
    queries = ["lattice", "gauge spinor", "author:núñez", "cat:hep-lat", "photonic -reservoir",
               "kernel since:30d", "sort:new", '"bayesian methods"']  # fmt: skip
    results = {query: ids(run(db, query, per_page=50)) for query in queries}
    totals = {query: run(db, query).total for query in [*queries, "take 2", "new"]}
    stored = _index_contents(db)
    assert len(stored[0]) == 1500

    assert rebuild_index(db) == 1500
    assert _index_contents(db) == stored
    assert {query: ids(run(db, query, per_page=50)) for query in queries} == results
    assert {query: run(db, query).total for query in totals} == totals
    # And the index holds the new versions' words, not the old ones'.
    assert run(db, '"take 2"').total == 367
    assert run(db, '"take 1"').total == 1500 - 367


def test_the_migration_indexes_papers_stored_before_it(db: Database) -> None:
    config = alembic_config(db)
    with db.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0001")
    upsert_papers(db, CORPUS, now=NOW)
    upgrade(db)
    assert ids(run(db, "transduction")) == ["2601.00002"]
    assert rebuild_index(db) == len(CORPUS)
    assert ids(run(db, "transduction")) == ["2601.00002"]


def test_schema_comparison_ignores_the_search_objects(db: Database) -> None:
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"include_name": include_name})
        diff = compare_metadata(context, SQLModel.metadata)
    assert not [d for d in diff if "paper_search" in repr(d)]


# --- the query language on both engines --------------------------------------------------


def test_words_must_all_match_and_are_stemmed(corpus_db: Database) -> None:
    assert set(ids(run(corpus_db, "diffusion"))) == {"2601.00001", "2601.00002"}
    assert ids(run(corpus_db, "diffusion denoise")) == ["2601.00001"]
    assert ids(run(corpus_db, "Networks graph")) == ["2601.00003"]


def test_title_matches_outrank_abstract_matches(corpus_db: Database) -> None:
    page = run(corpus_db, "diffusion")
    assert ids(page) == ["2601.00001", "2601.00002"]
    assert page.hits[0].score > page.hits[1].score


def test_phrases_prefixes_exclusions_and_or(corpus_db: Database) -> None:
    assert ids(run(corpus_db, '"large language models"')) == ["2601.00001"]
    assert ids(run(corpus_db, '"language large models"')) == []
    assert set(ids(run(corpus_db, "transduc*"))) == {"2601.00002"}
    assert ids(run(corpus_db, "diffusion -recurrent")) == ["2601.00001"]
    assert ids(run(corpus_db, 'diffusion -"large language"')) == ["2601.00002"]
    assert set(ids(run(corpus_db, "attention OR glasses"))) == {"2601.00002", "2601.00004"}
    assert ids(run(corpus_db, "state-of-the-art")) == ["2601.00003"]


def test_author_filters_fold_accents_and_name_order(corpus_db: Database) -> None:
    assert ids(run(corpus_db, "author:scholkopf")) == ["2601.00001"]
    assert ids(run(corpus_db, 'author:"geoffrey hinton"')) == ["2601.00003"]
    assert ids(run(corpus_db, 'author:"hinton geoffrey"')) == ["2601.00003"]
    assert ids(run(corpus_db, "author:hinton graphs")) == ["2601.00003"]
    assert ids(run(corpus_db, "graphs -author:hinton")) == ["2601.00004"]
    # Plain words also find authors.
    assert ids(run(corpus_db, "vaswani")) == ["2601.00002"]


def test_category_filters(corpus_db: Database) -> None:
    assert ids(run(corpus_db, "diffusion cat:cs.CL")) == ["2601.00002"]
    assert set(ids(run(corpus_db, "cat:cs.LG"))) == {"2601.00001", "2601.00003"}
    assert set(ids(run(corpus_db, "cat:cs"))) == {"2601.00001", "2601.00002", "2601.00003"}
    # stat is the archive of stat.ML, not part of cond-mat.stat-mech.
    assert ids(run(corpus_db, "cat:stat")) == ["2601.00003"]
    assert ids(run(corpus_db, "cat:cond-mat.stat-mech")) == ["2601.00004"]
    assert set(ids(run(corpus_db, "cat:cs.CL,cs.CV"))) == {"2601.00001", "2601.00002"}
    assert ids(run(corpus_db, "graphs -cat:cs.LG")) == ["2601.00004"]
    # Category tokens never match an ordinary word of a title or abstract.
    assert ids(run(corpus_db, "cs")) == []


def test_date_filters(corpus_db: Database) -> None:
    assert ids(run(corpus_db, "models since:7d")) == ["2601.00002"]
    assert ids(run(corpus_db, "models before:2025-12-01")) == ["2601.00001"]
    since = (NOW - timedelta(days=45)).date().isoformat()
    assert ids(run(corpus_db, f"since:{since}")) == ["2601.00002", "2601.00003"]


def test_ids_and_urls_jump_to_the_paper(corpus_db: Database) -> None:
    assert ids(run(corpus_db, "2601.00003v2")) == ["2601.00003"]
    assert ids(run(corpus_db, "https://arxiv.org/abs/2601.00004")) == ["2601.00004"]
    assert ids(run(corpus_db, "id:2601.00001 diffusion")) == ["2601.00001"]
    missing = run(corpus_db, "2601.99999")
    assert missing.hits == [] and missing.message is not None
    assert "2601.99999" in missing.message and "not in the archive" in missing.message


def test_sort_new_and_trending(corpus_db: Database) -> None:
    assert ids(run(corpus_db, "graphs sort:new")) == ["2601.00003", "2601.00004"]
    add_snapshots(
        corpus_db,
        [
            Signal("2601.00004", "hackernews", "points", 50, NOW - timedelta(days=2)),
            Signal("2601.00004", "hackernews", "points", 240, NOW - timedelta(hours=2)),
            Signal("2601.00001", "reddit", "upvotes", 12, NOW - timedelta(days=1)),
            # Outside the trend window: does not count.
            Signal("2601.00002", "reddit", "upvotes", 9000, NOW - timedelta(days=90)),
        ],
    )
    trending = run(corpus_db, "sort:trending")
    assert ids(trending)[:2] == ["2601.00004", "2601.00001"]
    assert trending.total == len(CORPUS)
    assert ids(run(corpus_db, "models sort:trending"))[0] == "2601.00001"


def test_relevance_blends_in_recency_and_trend(db: Database) -> None:
    twins = [
        paper("2601.00021", "Sparse autoencoders", "Features.", days_old=700),
        paper("2601.00022", "Sparse autoencoders", "Features.", days_old=2),
        paper("2601.00023", "Sparse autoencoders", "Features.", days_old=700),
    ]
    upsert_papers(db, twins, now=NOW)
    # Same text: the recent one first.
    assert ids(run(db, "sparse autoencoders"))[0] == "2601.00022"
    add_snapshots(db, [Signal("2601.00023", "bluesky", "likes", 5000, NOW - timedelta(hours=3))])
    # Equal text: a lot of recent engagement counts a little more than being new.
    assert ids(run(db, "sparse autoencoders")) == ["2601.00023", "2601.00022", "2601.00021"]


def test_paging(db: Database) -> None:
    upsert_papers(
        db,
        [paper(f"2601.{i:05d}", f"Kernel methods part {i}", days_old=i) for i in range(1, 13)],
        now=NOW,
    )
    first = run(db, "kernel", per_page=5)
    third = run(db, "kernel", page=3, per_page=5)
    assert (first.total, first.pages, len(first.hits)) == (12, 3, 5)
    assert len(third.hits) == 2 and third.page == 3
    every = ids(first) + ids(run(db, "kernel", page=2, per_page=5)) + ids(third)
    assert len(set(every)) == 12
    past = run(db, "kernel", page=9, per_page=5)
    assert past.hits == [] and past.message is not None and "3 pages" in past.message
    newest = run(db, "kernel sort:new", page=2, per_page=5)
    assert ids(newest) == [f"2601.{i:05d}" for i in range(6, 11)]


def test_hits_carry_what_a_chat_needs(corpus_db: Database) -> None:
    hit = run(corpus_db, '"large language models" denoising').hits[0]
    assert isinstance(hit, SearchHit)
    assert hit.title == "Denoising diffusion models for image synthesis"
    assert hit.authors == ("Bernhard Schölkopf", "Jonathan Ho")
    assert hit.primary_category == "cs.CV"
    assert hit.published == NOW - timedelta(days=400)
    marked = [piece for piece, highlighted in hit.snippet if highlighted]
    assert "large language models" in marked
    assert any(piece.lower().startswith("denois") for piece in marked)
    assert "".join(piece for piece, _ in hit.snippet).startswith("We study")
    # Without words to match, the snippet is the start of the abstract, unmarked.
    plain = run(corpus_db, "author:parisi").hits[0]
    assert plain.snippet == (("A physics view of graphs and learning dynamics.", False),)


def test_segments_merge_phrases_and_collapse_space() -> None:
    assert segments("a \x02b\x03 \x02c\x03  d\n e") == (
        ("a ", False),
        ("b c", True),
        (" d e", False),
    )
    assert segments("\x02x\x03") == (("x", True),)
    assert segments("") == ()


# --- no results -------------------------------------------------------------------------


def test_did_you_mean_from_the_index_vocabulary(corpus_db: Database) -> None:
    page = run(corpus_db, "difusion")
    assert page.hits == [] and page.total == 0
    assert page.message is not None and "diffusion" in page.message
    assert page.suggestion == "diffusion"
    assert run(corpus_db, page.suggestion).total == 2
    swapped = run(corpus_db, "transfromer")  # not in the corpus at all: no suggestion
    assert swapped.suggestion is None and swapped.message is not None
    assert "No papers match" in swapped.message
    typo_in_name = run(corpus_db, "graph vaswnai")
    assert typo_in_name.suggestion is None or run(corpus_db, typo_in_name.suggestion).total


def test_no_results_suggests_dropping_filters(corpus_db: Database) -> None:
    page = run(corpus_db, "attention cat:math.AG since:2020")
    assert page.total == 0 and page.message is not None
    assert "Without cat:math.AG since:2020-01-01" in page.message
    assert page.suggestion == "attention"


def test_empty_and_exclusion_only_queries_get_help(corpus_db: Database) -> None:
    for query in ("", "   ", "🎉", "-diffusion"):
        page = run(corpus_db, query)
        assert page.hits == [] and page.message and "\n" not in page.message


# --- nothing breaks it ------------------------------------------------------------------

HOSTILE = [
    '"unbalanced',
    'NEAR("a" "b", 2)',
    "diffusion NEAR/3 models",
    "title:^diffusion",
    "a:b:c::",
    "*",
    "**diffusion**",
    "diffus**",
    "- - - -",
    '"""',
    "' OR 1=1; --",
    "'); DROP TABLE paper; --",
    "Robert'); DROP TABLE students;--",
    "\\",
    "\\'",
    "x" * 10_000,
    "word " * 2_000,
    "\x00diffusion\x00",
    "🎉🔥 diffusion 🚀",
    "مرحبا diffusion שלום",
    "\u202ediffusion\u202c",
    "ＤＩＦＦＵＳＩＯＮ",
    "diffusion\ud800",
    "author:'",
    "cat:*",
    "since:99999999d",
    "before:0000-00-00",
    "id:../../etc/passwd",
    "sort:; DROP",
    "%_%",
    "$1 $$ ${x}",
    "to_tsquery('x')",
    "!!!!",
    "()()((",
    "{title}: x",
    "AND OR NOT",
    "the of and",
]


@pytest.mark.parametrize("query", HOSTILE)
def test_hostile_input_gets_results_or_one_line(corpus_db: Database, query: str) -> None:
    page = run(corpus_db, query)
    assert isinstance(page, SearchPage)
    assert page.hits or page.message
    if page.message:
        assert "\n" not in page.message and len(page.message) < 400
        assert "Error" not in page.message and "SELECT" not in page.message


@given(
    st.one_of(
        st.text(max_size=200),
        st.lists(
            st.one_of(
                st.sampled_from(
                    [
                        '"',
                        "-",
                        "*",
                        "OR",
                        "NOT",
                        "NEAR",
                        "author:",
                        "cat:",
                        "since:",
                        "id:",
                        "sort:",
                        "^",
                        ":",
                        "(",
                        "diffusion",
                        "graph*",
                        "cs.LG",
                        "7d",
                        "\x00",
                        "'",
                        ";",
                        "\\",
                        "🎉",
                        "$$",
                    ]
                ),
                st.text(max_size=8),
            ),
            max_size=20,
        ).map(" ".join),
    ),
    st.integers(min_value=-3, max_value=200),
)
@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
def test_fuzzed_queries_never_reach_the_engine_as_syntax(
    corpus_db: Database, query: str, page: int
) -> None:
    result = run(corpus_db, query, page=page)
    assert result.hits or result.message
    assert result.page >= 1 and result.pages >= 0 and result.total >= 0


# --- faults -----------------------------------------------------------------------------


def test_database_faults_are_storage_errors(tmp_path: object) -> None:
    db = Database("sqlite:///:memory:")  # never migrated: no index
    with pytest.raises(StorageError) as caught:
        search(db, "diffusion", now=NOW)
    assert caught.value.__cause__ is not None
    db.dispose()


def test_a_runaway_sqlite_query_is_cut_off(
    sqlite_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    upsert_papers(sqlite_db, CORPUS, now=NOW)
    monkeypatch.setattr(search_module, "QUERY_TIMEOUT_SECONDS", -1.0)
    monkeypatch.setattr(search_module, "_PROGRESS_STEPS", 1)
    page = run(sqlite_db, "diffusion")
    assert page.hits == [] and page.message is not None and "too long" in page.message


@pytest.mark.postgres
def test_a_runaway_postgres_query_is_cut_off(
    pg_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(search_module, "QUERY_TIMEOUT_SECONDS", 0.05)

    def slow(self: object, query: object, cap: int) -> int:
        self.connection.execute(text("SELECT pg_sleep(2)"))  # type: ignore[attr-defined]
        return 1

    monkeypatch.setattr(search_module._Postgres, "count", slow)
    page = run(pg_db, "graph sort:new")
    assert page.hits == [] and page.message is not None and "too long" in page.message


def test_page_arguments_are_clamped(corpus_db: Database) -> None:
    page = run(corpus_db, "graphs", page=0, per_page=10_000)
    assert page.page == 1 and len(page.hits) == 2
    assert dataclasses.is_dataclass(page) and dataclasses.fields(page)[0].name == "hits"


# --- command line -----------------------------------------------------------------------


def test_the_search_command_prints_highlighted_results(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    import typer
    from typer.testing import CliRunner

    from bot.cli_search import register

    url = f"sqlite:///{tmp_path}/cli.db"
    db = Database(url)
    upgrade(db)
    upsert_papers(db, CORPUS, now=NOW)
    db.dispose()
    monkeypatch.setenv("TP_DATABASE_URL", url)
    app = typer.Typer()
    register(app)
    runner = CliRunner()

    found = runner.invoke(app, ["search", "diffusion", "--per-page", "1", "--page", "2"])
    assert found.exit_code == 0, found.output
    assert "page 2/2" in found.output and "2. Attention is all you need" in found.output
    assert "https://arxiv.org/abs/2601.00002" in found.output

    typo = runner.invoke(app, ["search", "difusion"])
    assert typo.exit_code == 0 and "Did you mean" in typo.output
    assert "trending-papers search 'diffusion'" in typo.output

    hostile = runner.invoke(app, ["search", '"; DROP TABLE paper; -- [bold]'])
    assert hostile.exit_code == 0 and "No papers match" in hostile.output


def test_a_broad_query_is_ranked_among_the_newest_matches_and_counted_to_a_cap(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ingested in time order, as the archive grows (SQLite's "newest" is the newest indexed).
    upsert_papers(
        db, [paper("2601.00099", "Optics optics optics", "Optics of lenses.", days_old=500)]
    )
    upsert_papers(
        db,
        [
            paper(f"2601.{i:05d}", f"Optics note {i}", "Lenses.", days_old=100 - i)
            for i in range(1, 21)
        ],
        now=NOW,
    )
    assert ids(run(db, "optics"))[0] == "2601.00099"  # the best match, though the oldest
    monkeypatch.setattr(search_module, "SCORE_POOL", 8)
    monkeypatch.setattr(search_module, "COUNT_CAP", 12)
    page = run(db, "optics", per_page=5)
    assert page.total == 12 and page.message is not None and "Over 12 papers" in page.message
    # Only the newest matches were scored: all of them recent, none of the old one.
    assert "2601.00099" not in ids(page)
    assert set(ids(page)) <= {f"2601.{i:05d}" for i in range(13, 21)}
    # Narrowing with before: reaches the older paper again.
    assert ids(run(db, "optics before:2026-01-01")) == ["2601.00099"]
    newest = run(db, "optics sort:new", page=3, per_page=5)
    assert newest.pages == 3 and len(newest.hits) == 2


def test_common_words_are_ranked_by_title_then_priors_without_bm25(
    sqlite_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    upsert_papers(
        sqlite_db,
        [
            paper("2601.00031", "Lattice gauge theory", "Results on lattices.", days_old=40),
            paper("2601.00032", "Quarks", "Lattice results, new.", days_old=1),
            paper("2601.00033", "Gluons", "Lattice results, older.", days_old=20),
        ],
        now=NOW,
    )
    monkeypatch.setattr(search_module, "BM25_BUDGET", 0)  # every query counts as common
    page = run(sqlite_db, "lattice")
    # The title match first, then the others newest first.
    assert ids(page) == ["2601.00031", "2601.00032", "2601.00033"]
    assert page.total == 3
    assert run(sqlite_db, "lattice cat:cs.LG -gluons").total == 2


def test_date_filters_stay_exact_when_old_papers_are_indexed_late(db: Database) -> None:
    upsert_papers(db, [paper("2601.00041", "Tensor sketches now", days_old=2)], now=NOW)
    # A backfill adds an old paper afterwards: its document id is the newest.
    upsert_papers(db, [paper("1901.00042", "Tensor sketches then", days_old=3000)], now=NOW)
    assert ids(run(db, "tensor since:30d")) == ["2601.00041"]
    assert ids(run(db, "tensor before:2020-01-01")) == ["1901.00042"]
    assert ids(run(db, "tensor since:2010 before:2030 sort:new")) == ["2601.00041", "1901.00042"]
    empty = run(db, "tensor since:2030-01-01")
    assert empty.total == 0 and empty.suggestion == "tensor"


def test_prefix_matches_are_highlighted(corpus_db: Database) -> None:
    hit = run(corpus_db, "transduc*").hits[0]
    assert ("transduction", True) in hit.snippet
    assert "".join(piece for piece, _ in hit.snippet).startswith("The dominant sequence")


def test_an_empty_archive_says_so(db: Database) -> None:
    page = run(db, "diffusion")
    assert (
        page.hits == [] and page.message is not None and "No papers are stored yet" in page.message
    )
