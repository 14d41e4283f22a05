"""Relevance × trend scoring for every subscriber at once.

Papers and subscriber profiles live in one TF-IDF space (title counted ``title_weight``
times, unigrams and bigrams, light stemming). Relevance is the cosine between a profile and a
paper, computed for all subscribers as one sparse matrix product; followed authors and
categories add fixed bonuses; muted terms and already-delivered papers are masked out; the
top ``k`` of each row is taken with ``argpartition``. No Python loop runs over
subscriber × paper pairs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer

from bot.text import analyze, name_key, tokens

AUTHOR_BONUS = 0.5
CATEGORY_BONUS = 0.1
OTHER_KEYWORDS_SHARE = 0.25
MIN_RELEVANCE = 0.02
"""Below this a personal match is noise (e.g. sharing only the word "learning")."""
SUBSCRIBER_CHUNK = 512


@dataclass(frozen=True)
class Candidate:
    """A paper that may go into digests."""

    arxiv_id: str
    title: str
    abstract: str
    authors: tuple[str, ...]
    categories: tuple[str, ...]
    announced: datetime


@dataclass(frozen=True)
class ProfileQuery:
    """What ranking needs to know about one subscriber."""

    subscriber_id: int
    keywords: tuple[str, ...] = ()
    authors: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    muted: tuple[str, ...] = ()
    categories_filter: bool = False
    """True: only papers in ``categories``; False: those papers get a bonus."""
    exclude: frozenset[str] = frozenset()
    """Paper ids never to rank (already delivered)."""
    trend_weight: float = 1.0

    @property
    def is_empty(self) -> bool:
        """No keywords and no authors: fall back to what is trending."""
        return not (self.keywords or self.authors)


@dataclass(frozen=True)
class Ranked:
    """One paper chosen for one subscriber, with the parts of its score."""

    arxiv_id: str
    score: float
    relevance: float
    trend: float
    matched_keywords: tuple[str, ...] = ()
    matched_authors: tuple[str, ...] = ()
    matched_categories: tuple[str, ...] = ()
    why: str = ""


@dataclass
class PaperIndex:
    """The candidate papers in TF-IDF space plus the lookups ranking needs."""

    candidates: list[Candidate]
    vectorizer: TfidfVectorizer
    matrix: sp.csr_matrix
    """papers × vocabulary, rows L2-normalised."""
    token_sets: list[frozenset[str]]
    author_index: dict[tuple[str, str], list[int]]
    category_index: dict[str, list[int]]
    position: dict[str, int] = field(default_factory=dict)

    @classmethod
    def build(cls, candidates: Sequence[Candidate], *, title_weight: int = 2) -> PaperIndex:
        """Fit the vocabulary on the candidates and index them."""
        papers = list(candidates)
        documents = [f"{(p.title + ' ') * title_weight}{p.abstract}" for p in papers]
        vectorizer = TfidfVectorizer(analyzer=analyze, sublinear_tf=True, dtype=np.float32)
        matrix = (
            vectorizer.fit_transform(documents)
            if papers
            else sp.csr_matrix((0, 0), dtype=np.float32)
        )
        author_index: dict[tuple[str, str], list[int]] = defaultdict(list)
        category_index: dict[str, list[int]] = defaultdict(list)
        for row, paper in enumerate(papers):
            for author in paper.authors:
                surname, initial = name_key(author)
                author_index[(surname, initial)].append(row)
                author_index[(surname, "")].append(row)
            for category in paper.categories:
                category_index[category].append(row)
        return cls(
            candidates=papers,
            vectorizer=vectorizer,
            matrix=sp.csr_matrix(matrix),
            token_sets=[frozenset(tokens(d)) for d in documents],
            author_index=dict(author_index),
            category_index=dict(category_index),
            position={p.arxiv_id: i for i, p in enumerate(papers)},
        )

    def __len__(self) -> int:
        return len(self.candidates)

    def rows_with_all_tokens(self, phrase: str) -> list[int]:
        """Rows whose text contains every content token of ``phrase``."""
        wanted = set(tokens(phrase))
        if not wanted:
            return []
        return [row for row, have in enumerate(self.token_sets) if wanted <= have]

    def author_rows(self, name: str) -> list[int]:
        """Rows with an author matching ``name`` (initials, accents and order tolerated)."""
        surname, initial = name_key(name)
        return self.author_index.get((surname, initial) if initial else (surname, ""), [])


def keyword_relevance(index: PaperIndex, queries: Sequence[ProfileQuery]) -> np.ndarray:
    """subscribers × papers: the best keyword's cosine plus a share of the other keywords'.

    Each keyword is embedded on its own, so a subscriber with several unrelated interests gets
    the best paper of each instead of papers diluted towards the average of all of them.
    """
    relevance = np.zeros((len(queries), len(index)), dtype=np.float32)
    texts = [keyword for query in queries for keyword in query.keywords]
    if not texts or not len(index):
        return relevance
    owners = np.array([row for row, q in enumerate(queries) for _ in q.keywords])
    starts = np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]])
    keyword_matrix = sp.csr_matrix(index.vectorizer.transform(texts), dtype=np.float32)
    per_keyword = np.asarray((keyword_matrix @ index.matrix.T).todense(), dtype=np.float32)
    best = np.maximum.reduceat(per_keyword, starts, axis=0)
    total = np.add.reduceat(per_keyword, starts, axis=0)
    relevance[owners[starts]] = best + OTHER_KEYWORDS_SHARE * (total - best)
    return relevance


def _bonus_and_mask(
    index: PaperIndex, queries: Sequence[ProfileQuery]
) -> tuple[sp.csr_matrix, sp.csr_matrix, sp.csr_matrix]:
    """Sparse author/category bonus, category-filter allow list, and exclusion mask."""
    bonus_rows, bonus_cols, bonus_vals = [], [], []
    allow_rows, allow_cols = [], []
    block_rows, block_cols = [], []
    for i, query in enumerate(queries):
        for author in query.authors:
            for col in index.author_rows(author):
                bonus_rows.append(i)
                bonus_cols.append(col)
                bonus_vals.append(AUTHOR_BONUS)
        in_categories = {col for c in query.categories for col in index.category_index.get(c, [])}
        for col in in_categories:
            if query.categories_filter:
                allow_rows.append(i)
                allow_cols.append(col)
            else:
                bonus_rows.append(i)
                bonus_cols.append(col)
                bonus_vals.append(CATEGORY_BONUS)
        for term in query.muted:
            for col in index.rows_with_all_tokens(term):
                block_rows.append(i)
                block_cols.append(col)
        for arxiv_id in query.exclude:
            position = index.position.get(arxiv_id)
            if position is not None:
                block_rows.append(i)
                block_cols.append(position)
    shape = (len(queries), len(index))
    bonus = sp.coo_matrix((bonus_vals, (bonus_rows, bonus_cols)), shape=shape, dtype=np.float32)
    allow = sp.coo_matrix(
        (np.ones(len(allow_rows), dtype=np.float32), (allow_rows, allow_cols)), shape=shape
    )
    block = sp.coo_matrix(
        (np.ones(len(block_rows), dtype=np.float32), (block_rows, block_cols)), shape=shape
    )
    # Duplicates (an author matched twice) are summed by tocsr; cap bonuses below.
    return bonus.tocsr(), allow.tocsr(), block.tocsr()


def score_all(
    index: PaperIndex,
    queries: Sequence[ProfileQuery],
    trend: Mapping[str, float] | None = None,
    *,
    k: int = 10,
    relevance_power: float = 1.0,
    trend_boost: float = 1.0,
) -> dict[int, list[Ranked]]:
    """The top ``k`` papers for every query: ``relevance^a × (1 + b × w × trend)``.

    ``trend`` maps paper ids to a trend score in [0, 1]; ``w`` is each subscriber's
    ``trend_weight``. A subscriber with an empty profile gets the papers with the highest
    trend (then the newest), restricted to their categories when they filter by category.
    """
    results: dict[int, list[Ranked]] = {}
    if not len(index) or not queries:
        return {q.subscriber_id: [] for q in queries}
    trend_vector = np.array(
        [float((trend or {}).get(p.arxiv_id, 0.0)) for p in index.candidates], dtype=np.float32
    )
    # Newest first among equals, as a tiny tie-breaker that never outweighs a real signal.
    order = np.argsort([p.announced.timestamp() for p in index.candidates])
    recency = np.empty(len(index), dtype=np.float32)
    recency[order] = np.linspace(0.0, 1e-3, num=len(index), dtype=np.float32)
    for start in range(0, len(queries), SUBSCRIBER_CHUNK):
        chunk = queries[start : start + SUBSCRIBER_CHUNK]
        bonus, allow, block = _bonus_and_mask(index, chunk)
        relevance = keyword_relevance(index, chunk)
        relevance += np.minimum(np.asarray(bonus.todense()), AUTHOR_BONUS + CATEGORY_BONUS)
        weights = np.array([q.trend_weight for q in chunk], dtype=np.float32)[:, None]
        empty = np.array([q.is_empty for q in chunk])[:, None]
        personal = np.power(np.maximum(relevance, 0.0), relevance_power) * (
            1.0 + trend_boost * weights * trend_vector[None, :]
        )
        fallback = relevance + trend_vector[None, :] * np.maximum(weights, 0.1)
        scores = np.where(empty, fallback, personal) + recency[None, :]
        filters = np.array([q.categories_filter and bool(q.categories) for q in chunk])
        if filters.any():
            allowed = np.asarray(allow.todense()) > 0
            scores = np.where(filters[:, None] & ~allowed, -np.inf, scores)
        scores[np.asarray(block.todense()) > 0] = -np.inf
        # A personal profile must actually match: zero relevance is not a recommendation.
        scores = np.where(~empty & (relevance < MIN_RELEVANCE), -np.inf, scores)
        top = _top_k(scores, k)
        for row, query in enumerate(chunk):
            results[query.subscriber_id] = [
                _explain(index, query, col, float(scores[row, col]), float(relevance[row, col]),
                         float(trend_vector[col]))
                for col in top[row]
            ]  # fmt: skip
    return results


def _top_k(scores: np.ndarray, k: int) -> list[list[int]]:
    """Column indices of the ``k`` best finite scores per row, best first."""
    k = min(k, scores.shape[1])
    if k <= 0:
        return [[] for _ in range(scores.shape[0])]
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    rows = np.arange(scores.shape[0])[:, None]
    ordered = part[rows, np.argsort(-scores[rows, part], axis=1)]
    return [[int(c) for c in line if np.isfinite(scores[r, c])] for r, line in enumerate(ordered)]


def _explain(
    index: PaperIndex, query: ProfileQuery, col: int, score: float, relevance: float, trend: float
) -> Ranked:
    paper = index.candidates[col]
    have = index.token_sets[col]
    keywords = tuple(k for k in query.keywords if (t := set(tokens(k))) and t <= have)
    authors = tuple(
        author for author in paper.authors
        if any(col in index.author_rows(f) for f in query.authors)
        and any(name_key(author)[0] == name_key(f)[0] for f in query.authors)
    )  # fmt: skip
    categories = tuple(c for c in paper.categories if c in query.categories)
    related = () if keywords else tuple(k for k in query.keywords if set(tokens(k)) & have)
    parts = []
    if keywords:
        parts.append("matches " + ", ".join(f"“{k}”" for k in keywords))
    elif related:
        parts.append("related to " + ", ".join(f"“{k}”" for k in related))
    if authors:
        parts.append("by " + ", ".join(authors))
    if categories and not keywords and not authors:
        parts.append("in " + ", ".join(categories))
    if not parts:
        parts.append("trending now" if trend > 0 else "new in your categories")
    return Ranked(
        arxiv_id=paper.arxiv_id,
        score=score,
        relevance=relevance,
        trend=trend,
        matched_keywords=keywords,
        matched_authors=authors,
        matched_categories=categories,
        why="; ".join(parts),
    )
