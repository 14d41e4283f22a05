"""Ranking: relevance for all subscribers at once, bonuses, masks, top-k, and the why."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.ranking import (
    DEFAULT_WEIGHTS,
    Candidate,
    LinearModel,
    PaperIndex,
    ProfileQuery,
    _mmr,
    _prune_rows,
    hashed_features,
    rank,
    score_all,
)
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


# --- learning parts, diversity and the vectorised machinery -----------------------------------


def test_rocchio_likes_pull_and_dislikes_push() -> None:
    index = PaperIndex.build(PAPERS)
    rated = index.rated_set(
        [
            paper("old1", "Video diffusion with temporal layers", "Diffusion for video clips."),
            paper("old2", "Offline reinforcement learning benchmarks", "Q-learning offline."),
        ]
    )
    likes = score_all(index, [ProfileQuery(1, liked=("old1",))], rated=rated, k=2)[1]
    assert likes[0].arxiv_id == "5" and likes[0].similar_to.startswith("Video diffusion")
    assert "similar to “Video diffusion with temporal layers”" in likes[0].why
    # Only dislikes: still the trending fallback, but the disliked topic goes to the bottom.
    trend = {p.arxiv_id: 0.5 for p in PAPERS}
    plain = score_all(index, [ProfileQuery(2)], trend, rated=rated, k=5)[2]
    disliked = score_all(index, [ProfileQuery(2, disliked=("old2",))], trend, rated=rated, k=5)[2]
    plain_ids = [r.arxiv_id for r in plain]
    assert plain_ids.index("3") < len(plain_ids) - 1
    assert [r.arxiv_id for r in disliked][-1] == "3"


def test_learned_weights_are_applied_as_one_product() -> None:
    index = PaperIndex.build(PAPERS)
    target = hashed_features([index.documents[2]], [PAPERS[2].authors])
    model = LinearModel(
        indices=target.indices.astype(np.uint32),
        weights=np.full(target.nnz, 8.0, dtype=np.float32),
        intercept=-2.0,
    )
    result = score_all(index, [ProfileQuery(1, model=model)], k=2)[1]
    assert result[0].arxiv_id == "3"
    parts = dict(result[0].parts)
    assert parts["learned"] > 0.5 and parts["keyword"] == 0.0
    foreign = dataclasses.replace(model, space="other-space")
    assert score_all(index, [ProfileQuery(1, model=foreign)], k=2)[1] == []


def test_score_parts_add_up_to_the_relevance() -> None:
    index = PaperIndex.build(PAPERS)
    rated = index.rated_set([paper("old", "Graph neural networks", authors=("Ann Smith",))])
    query = ProfileQuery(
        1, keywords=("graph", "molecules"), authors=("Y. LeCun",), categories=("q-bio.BM",),
        liked=("old",),
    )  # fmt: skip
    for item in score_all(index, [query], {"4": 0.5}, rated=rated, k=5)[1]:
        parts = dict(item.parts)
        total = sum(parts[p] for p in ("keyword", "author", "category", "rocchio", "liked_author"))
        assert np.isclose(item.relevance, total, atol=1e-3)
        expected = item.relevance * (1 + DEFAULT_WEIGHTS.trend_boost * item.trend)
        assert np.isclose(item.score, expected, atol=2e-3)


def test_top_k_without_diversity_is_the_sorted_order() -> None:
    rng = np.random.default_rng(3)
    many = [
        paper(str(i), f"{rng.choice(['diffusion', 'graph', 'language'])} study {i}", age=i)
        for i in range(60)
    ]
    index = PaperIndex.build(many)
    queries = [ProfileQuery(i, keywords=("diffusion", "graph")) for i in range(3)]
    result = rank(index, queries, k=7, diversify=False)
    scores = result.parts["score"]
    assert np.all(np.diff(scores, axis=1) <= 1e-6)
    assert (result.columns >= 0).all()


def _reference_mmr(
    scores: np.ndarray, pool: np.ndarray, pair: np.ndarray, k: int, lam: float
) -> list[list[int]]:
    out = []
    for row in range(scores.shape[0]):
        values = scores[row, pool[row]]
        finite = np.isfinite(values)
        top = values[finite].max() if finite.any() else 0.0
        scale = abs(top) if finite.any() and top != 0 else 1.0
        chosen: list[int] = []
        for _ in range(min(k, pool.shape[1])):
            best, best_gain = -1, -np.inf
            for j in range(pool.shape[1]):
                if not finite[j] or j in chosen:
                    continue
                closest = max((pair[row, j, c] for c in chosen), default=0.0)
                gain = lam * values[j] / scale - (1 - lam) * max(closest, 0.0)
                if gain > best_gain:
                    best, best_gain = j, gain
            if best < 0:
                break
            chosen.append(best)
        out.append([int(pool[row, j]) for j in chosen] + [-1] * (k - len(chosen)))
    return out


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 4), st.integers(2, 9), st.integers(1, 5), st.floats(0.1, 1.0),
    st.integers(0, 2**31 - 1),
)  # fmt: skip
def test_vectorised_mmr_matches_a_plain_loop(
    rows: int, width: int, k: int, lam: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    scores = rng.random((rows, width)).astype(np.float32) + 0.01
    scores[rng.random((rows, width)) < 0.2] = -np.inf
    pool = np.argsort(-scores, axis=1, kind="stable")
    features = rng.random((width, 4)).astype(np.float32)
    similarity = features @ features.T / 4
    pair = similarity[pool[:, :, None], pool[:, None, :]]
    got = _mmr(scores, pool, pair, k, lam)
    assert got.tolist() == _reference_mmr(scores, pool, pair, k, lam)


def test_prune_rows_keeps_the_strongest_terms() -> None:
    matrix = sp.csr_matrix(
        np.array(
            [[0.1, -0.9, 0.5, 0.0, 0.2], [0.0, 0.0, 0.3, 0.0, 0.0], [0, 0, 0, 0, 0]], np.float32
        )
    )
    pruned = _prune_rows(matrix, 2).toarray()
    assert pruned.tolist() == [
        [0.0, np.float32(-0.9), np.float32(0.5), 0.0, 0.0],
        [0.0, 0.0, np.float32(0.3), 0.0, 0.0],
        [0.0, 0.0, 0.0, 0.0, 0.0],
    ]


def test_near_duplicate_titles_collapse_in_the_index() -> None:
    index = PaperIndex.build(
        [
            paper("a", "Scaling Laws of Large Language Models", age=5),
            paper("b", "scaling laws of large language models.", age=1),
            paper("c", "Something else entirely"),
        ]
    )
    assert [c.arxiv_id for c in index.candidates] == ["b", "c"]
    assert index.position["a"] == index.position["b"] == 0
    assert index.duplicates == {"b": ("a",)}
    result = score_all(
        index, [ProfileQuery(1, keywords=("scaling laws",), exclude=frozenset({"a"}))]
    )
    assert result[1] == []


def test_forked_workers_give_the_same_ranking(monkeypatch: pytest.MonkeyPatch) -> None:
    import bot.ranking as ranking

    rng = np.random.default_rng(5)
    words = "diffusion graph language protein robot vision speech kernel".split()
    many = [
        paper(f"p{i}", " ".join(rng.choice(words, 4)), " ".join(rng.choice(words, 12)), age=i % 9)
        for i in range(80)
    ]
    rated_papers = [paper(f"r{i}", " ".join(rng.choice(words, 5))) for i in range(10)]
    queries = [
        ProfileQuery(
            i,
            keywords=(str(rng.choice(words)),),
            liked=(f"r{i % 10}",),
            disliked=(f"r{(i + 3) % 10}",),
        )
        for i in range(40)
    ]
    monkeypatch.setattr(ranking, "SUBSCRIBER_CHUNK", 7)
    index = PaperIndex.build(many)
    alone = rank(index, queries, rated=index.rated_set(rated_papers), k=5)
    forked = rank(index, queries, rated=index.rated_set(rated_papers, workers=2), k=5, workers=2)
    assert np.array_equal(alone.columns, forked.columns)
    for name, values in alone.parts.items():
        assert np.allclose(values, forked.parts[name]), name


def test_trend_weight_is_more_personal_or_more_trending() -> None:
    index = PaperIndex.build(PAPERS)
    trend = {"5": 1.0}
    personal = ProfileQuery(1, keywords=("diffusion protein",), trend_weight=0.0)
    trending = dataclasses.replace(personal, subscriber_id=2, trend_weight=4.0)
    result = score_all(index, [personal, trending], trend, k=2, diversify=False)
    assert [r.arxiv_id for r in result[1]] == ["1", "5"]  # relevance alone
    assert [r.arxiv_id for r in result[2]] == ["5", "1"]  # the trending match climbs


KEYWORDS = st.sampled_from(
    ["diffusion", "graph neural networks", "protein design", "Transformers", "nothing here", "x"]
)


@settings(max_examples=60, deadline=None)
@given(batches=st.lists(st.lists(KEYWORDS, max_size=6), min_size=1, max_size=4))
def test_keywords_embedded_once_per_index_give_the_same_rows(batches: list[list[str]]) -> None:
    index = PaperIndex.build(PAPERS)
    for keywords in batches:  # later batches reuse rows embedded by earlier ones
        cached, fresh = index.embed_keywords(keywords), index.embed(keywords)
        assert cached.shape == fresh.shape
        assert np.array_equal(cached.toarray(), fresh.toarray())


def test_a_keyword_is_embedded_once(monkeypatch: pytest.MonkeyPatch) -> None:
    index = PaperIndex.build(PAPERS)
    embedded: list[list[str]] = []
    embed = index.embed

    def counting(texts: list[str]) -> sp.csr_matrix:
        embedded.append(list(texts))
        return embed(texts)

    monkeypatch.setattr(index, "embed", counting)
    index.embed_keywords(["diffusion", "graph neural networks", "diffusion"])
    index.embed_keywords(["graph neural networks", "protein design"])
    assert embedded == [["diffusion", "graph neural networks"], ["protein design"]]
