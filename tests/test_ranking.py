"""Ranking: relevance for all subscribers at once, bonuses, masks, top-k, and the why."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.ranking import Candidate, PaperIndex, ProfileQuery, score_all
from bot.text import name_key, same_person, stem, tokens

NOW = datetime(2026, 11, 16, tzinfo=UTC)


def paper(arxiv_id: str, title: str, abstract: str = "", **kw: object) -> Candidate:
    return Candidate(
        arxiv_id=arxiv_id,
        title=title,
        abstract=abstract or title,
        authors=tuple(kw.get("authors", ("Jane Doe",))),  # type: ignore[arg-type]
        categories=tuple(kw.get("categories", ("cs.LG",))),  # type: ignore[arg-type]
        announced=NOW - timedelta(hours=float(kw.get("age", 1))),  # type: ignore[arg-type]
    )


PAPERS = [
    paper("1", "Denoising diffusion models for protein design", "Diffusion generates proteins."),
    paper("2", "Scaling laws of large language models", "We train large language models."),
    paper("3", "Offline reinforcement learning with value regularisation", "Q-learning offline."),
    paper("4", "Graph neural networks for molecules", "Message passing on molecular graphs.",
          authors=("Yann LeCun", "Ann Smith"), categories=("cs.LG", "q-bio.BM")),
    paper("5", "Latent diffusion for video", "A video diffusion model.", categories=("cs.CV",)),
]  # fmt: skip


def test_relevance_ranks_matching_papers_first_for_everyone_at_once() -> None:
    index = PaperIndex.build(PAPERS)
    queries = [
        ProfileQuery(1, keywords=("diffusion model",)),
        ProfileQuery(2, keywords=("language model",)),
        ProfileQuery(3, keywords=("reinforcement learning",)),
    ]
    result = score_all(index, queries, k=3)
    assert {r.arxiv_id for r in result[1][:2]} == {"1", "5"}
    assert result[1][2].why == "related to “diffusion model”"  # shares only "model"
    assert result[2][0].arxiv_id == "2"
    assert [r.arxiv_id for r in result[3]] == ["3"]  # zero relevance is not a recommendation
    assert result[1][0].why.startswith("matches “diffusion model”")


def test_plural_and_accent_insensitive_tokens() -> None:
    assert stem("models") == "model" and stem("queries") == "query" and stem("loss") == "loss"
    assert tokens("Schölkopf's Diffusion MODELS") == ["scholkopf", "diffusion", "model"]


def test_author_names_match_across_initials_accents_and_order() -> None:
    assert name_key("Yann LeCun") == name_key("Y. LeCun") == name_key("LeCun, Yann")
    assert same_person("Bernhard Schölkopf", "B. Scholkopf")
    assert not same_person("Yann LeCun", "X. LeCun")
    index = PaperIndex.build(PAPERS)
    result = score_all(index, [ProfileQuery(1, authors=("Y. LeCun",))], k=2)
    assert [r.arxiv_id for r in result[1]] == ["4"]
    assert "by Yann LeCun" in result[1][0].why


def test_muted_terms_and_exclusions_are_masked() -> None:
    index = PaperIndex.build(PAPERS)
    query = ProfileQuery(1, keywords=("diffusion",), muted=("video",), exclude=frozenset({"1"}))
    assert score_all(index, [query], k=5)[1] == []


def test_category_filter_and_boost() -> None:
    index = PaperIndex.build(PAPERS)
    filtered = ProfileQuery(
        1, keywords=("diffusion",), categories=("cs.CV",), categories_filter=True
    )
    assert [r.arxiv_id for r in score_all(index, [filtered], k=5)[1]] == ["5"]
    boosted = ProfileQuery(2, keywords=("diffusion",), categories=("cs.CV",))
    assert score_all(index, [boosted], k=5)[2][0].arxiv_id == "5"


def test_empty_profile_gets_trending_then_newest() -> None:
    index = PaperIndex.build(PAPERS)
    result = score_all(index, [ProfileQuery(9)], {"3": 0.9, "2": 0.4}, k=3)
    assert [r.arxiv_id for r in result[9]][:2] == ["3", "2"]
    assert result[9][0].why == "trending now"


def test_trend_lifts_a_relevant_paper_but_never_an_irrelevant_one() -> None:
    index = PaperIndex.build(PAPERS)
    query = ProfileQuery(1, keywords=("diffusion",))
    plain = [r.arxiv_id for r in score_all(index, [query], k=5)[1]]
    trending = score_all(index, [query], {plain[-1]: 1.0, "2": 1.0}, k=5)[1]
    assert trending[0].arxiv_id == plain[-1]
    assert "2" not in {r.arxiv_id for r in trending}


def test_many_subscribers_in_chunks_give_the_same_answer(monkeypatch: object) -> None:
    import bot.ranking as ranking

    index = PaperIndex.build(PAPERS)
    queries = [
        ProfileQuery(i, keywords=(("diffusion", "graph", "language")[i % 3],)) for i in range(50)
    ]
    whole = score_all(index, queries, k=2)
    monkeypatch.setattr(ranking, "SUBSCRIBER_CHUNK", 7)  # type: ignore[attr-defined]
    chunked = score_all(index, queries, k=2)
    assert whole == chunked


def test_no_papers_or_no_queries() -> None:
    assert score_all(PaperIndex.build([]), [ProfileQuery(1, keywords=("x",))]) == {1: []}
    assert score_all(PaperIndex.build(PAPERS), []) == {}
