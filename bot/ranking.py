"""Relevance × trend scoring for every subscriber at once.

Papers live in two sparse spaces built from the same analysed text (title counted
``title_weight`` times, unigrams and bigrams, light stemming):

- a TF-IDF space fitted on the day's candidates (:class:`TermSpace`: terms are hashed ids,
  kept when a candidate uses them), where explicit keywords and the Rocchio centroid of a
  subscriber's 👍/👎 papers are matched by cosine;
- a fixed hashed space (:data:`FEATURE_SPACE`: words, bigrams and full author names hashed
  into 2^18 features, sublinear tf, L2), where learned per-subscriber models live. Hashing
  makes stored weights independent of any vocabulary, so a model trained last night applies
  to papers announced this morning.

For a chunk of subscribers every part is one sparse product against the paper matrix —
keywords, followed authors, categories, muted phrases, Rocchio centroids, learned weights —
combined into ``relevance^a × (1 + b × w × trend)`` (``w``: the subscriber's trend weight;
a product beat reciprocal rank fusion in ``bench/quality.py``, and a paper nobody asked for
stays out however much it trends). A vectorised MMR pass over the best
``mmr_pool`` papers of each row keeps near-identical papers from crowding a digest; the top
``k`` of each row comes from ``argpartition``. No Python loop runs over subscriber × paper
pairs: loops run over subscribers (to assemble their sparse rows) or over the ``k`` MMR steps.
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any, TypeVar

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import HashingVectorizer

from bot.text import analyze, fold, name_key, tokens

T = TypeVar("T")
V = TypeVar("V")

FEATURE_SPACE = "hash18-v1"
"""Name of the hashed feature space; stored models from another space are ignored."""
HASH_FEATURES = 2**18
SUBSCRIBER_CHUNK = 512
MIN_BIGRAM_DF = 2
SIMILARITY_PRECOMPUTE_LIMIT = 8000
KEYWORD_CACHE_SIZE = 100_000
"""Embedded keywords kept per index (a few hundred bytes each); past it the cache restarts."""
"""Up to this many candidates, paper × paper similarity is computed once for all chunks."""
_AUTHOR_PREFIX = "author:"


@dataclass(frozen=True)
class Weights:
    """How the parts of a score are combined (defaults chosen with ``bench/quality.py``)."""

    other_keywords_share: float = 0.25
    """A subscriber's best keyword counts fully, the others this much."""
    author_bonus: float = 0.5
    """Added when a followed author wrote the paper."""
    category_bonus: float = 0.1
    """Added for a paper in one of the subscriber's categories (boost mode)."""
    rocchio: float = 2.0
    """Weight of the Rocchio cosine once a subscriber has many ratings."""
    rocchio_ramp: float = 3.0
    """Ratings at which the Rocchio weight reaches half of ``rocchio``."""
    rocchio_negative: float = 0.5
    """Weight of the 👎 centroid against the 👍 centroid."""
    rocchio_terms: int = 32
    """Terms kept per Rocchio centroid (the strongest by absolute weight)."""
    rated_terms: int = 32
    """Terms kept per rated paper before averaging (keeps centroids cheap to build)."""
    liked_author: float = 0.3
    """Added per net 👍 on papers by the same (full-name) author, capped at one."""
    learned: float = 0.6
    """Weight of the learned model's probability when a subscriber has one."""
    learned_offset: float = 0.0
    """Subtracted from that probability first, so unlikely papers lose relevance."""
    relevance_power: float = 1.0
    """``a`` in ``relevance^a × (1 + b × w × trend)``."""
    trend_boost: float = 0.5
    """``b`` in ``relevance^a × (1 + b × w × trend)``."""
    min_relevance: float = 0.02
    """Below this a personal match is noise (e.g. sharing only the word "learning")."""
    mmr_lambda: float = 0.5
    """MMR trade-off: 1 = pure score, lower = more diversity."""
    mmr_pool: int = 30
    """Papers per subscriber that MMR re-ranks."""


DEFAULT_WEIGHTS = Weights()


@dataclass(frozen=True)
class Candidate:
    """A paper that may go into digests."""

    arxiv_id: str
    title: str
    abstract: str
    authors: tuple[str, ...]
    categories: tuple[str, ...]
    announced: datetime
    version: int = 1


@dataclass(frozen=True, eq=False)
class LinearModel:
    """A learned per-subscriber model: sparse weights over :data:`FEATURE_SPACE`."""

    indices: np.ndarray
    weights: np.ndarray
    intercept: float
    space: str = FEATURE_SPACE


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
    liked: tuple[str, ...] = ()
    """Papers rated 👍 or saved (they also seed cold-start profiles: ``/like``)."""
    disliked: tuple[str, ...] = ()
    """Papers rated 👎."""
    model: LinearModel | None = None

    @property
    def is_empty(self) -> bool:
        """Nothing personal to match: fall back to what is trending."""
        return not (self.keywords or self.authors or self.liked or self.model is not None)


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
    similar_to: str = ""
    """Title of the liked paper this one is closest to, when that explains it."""
    parts: tuple[tuple[str, float], ...] = ()
    """Named components of the relevance, for ``rank --explain``."""


def _pre_analyzed(document: list[str]) -> list[str]:
    """Identity analyzer: documents are analysed once and reused by every vectorizer."""
    return document


def normalized_title(title: str) -> str:
    """A title reduced to lower-case letters and digits, for near-duplicate detection."""
    return " ".join(re.findall(r"[a-z0-9]+", fold(title)))


def author_feature(name: str) -> str:
    """The hashed-space token of a full author name ("Schölkopf, B." ≠ "Bernhard Schölkopf")."""
    surname, _ = name_key(name)
    given = " ".join(p for p in re.findall(r"[a-z0-9]+", fold(name)) if p != surname)
    return f"{_AUTHOR_PREFIX}{surname} {given}".strip()


def document_tokens(title: str, abstract: str, title_weight: int = 2) -> list[str]:
    """The analysed text of a paper: title ``title_weight`` times, then the abstract."""
    return analyze(f"{(title + ' ') * title_weight}{abstract}")


_HASHER = HashingVectorizer(
    n_features=HASH_FEATURES,
    analyzer=_pre_analyzed,
    alternate_sign=False,
    norm=None,
    dtype=np.float32,
)


def hashed_features(
    documents: Sequence[list[str]], authors: Sequence[Sequence[str]]
) -> sp.csr_matrix:
    """Rows in :data:`FEATURE_SPACE`: text tokens plus full author names, sublinear tf, L2."""
    combined = [
        list(doc) + [author_feature(a) for a in names]
        for doc, names in zip(documents, authors, strict=True)
    ]
    if not combined:
        return sp.csr_matrix((0, HASH_FEATURES), dtype=np.float32)
    matrix = sp.csr_matrix(_HASHER.transform(combined), dtype=np.float32)
    np.log1p(matrix.data, out=matrix.data)
    return _l2_rows(matrix)


def _l2_rows(matrix: sp.csr_matrix) -> sp.csr_matrix:
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    return sp.csr_matrix(sp.diags(1.0 / norms).astype(np.float32) @ matrix, dtype=np.float32)


_FORKED_TASK: Callable[[int], Any] | None = None


def _run_forked(item: int) -> Any:
    """Entry point of a forked worker: the task was inherited with the parent's memory."""
    assert _FORKED_TASK is not None
    return _FORKED_TASK(item)


def _map(task: Callable[[int], T], items: Iterable[int], workers: int) -> list[T]:
    """``task`` over ``items``, in ``workers`` forked processes when more than one is asked.

    Fork shares the index, profiles and rated papers copy-on-write, so nothing big is pickled
    on the way in; only results come back. Where fork is unavailable, it runs in-process.
    """
    global _FORKED_TASK
    jobs = list(items)
    if workers <= 1 or len(jobs) <= 1 or "fork" not in mp.get_all_start_methods():
        return [task(i) for i in jobs]
    _FORKED_TASK = task
    try:
        with mp.get_context("fork").Pool(min(workers, len(jobs))) as pool:
            return pool.map(_run_forked, jobs, chunksize=1)
    finally:
        _FORKED_TASK = None


def _split(values: Sequence[V], parts: int) -> list[Sequence[V]]:
    """``values`` cut into ``parts`` nearly equal consecutive slices."""
    parts = max(1, min(parts, len(values)))
    bounds = np.linspace(0, len(values), parts + 1).astype(int)
    return [values[a:b] for a, b in itertools.pairwise(bounds)]


_TERM_BITS = 24
_HASHER_TERMS = HashingVectorizer(
    n_features=2**_TERM_BITS, analyzer=_pre_analyzed, alternate_sign=False, norm=None,
    dtype=np.float32,
)  # fmt: skip


def _term_counts(documents: Sequence[list[str]]) -> sp.csr_matrix:
    """Raw term counts over hashed ids: words in [0, 2^24), bigrams in [2^24, 2^25).

    At 2^24 ids per half, two of a day's ~100,000 distinct terms share an id with odds of
    about 1 in 170 per term, so ids behave like a vocabulary; hashing runs in compiled code,
    where a vocabulary lookup is a Python loop per token.
    """
    if not documents:
        return sp.csr_matrix((0, 2 ** (_TERM_BITS + 1)), dtype=np.float32)
    words = [[t for t in document if " " not in t] for document in documents]
    pairs = [[t for t in document if " " in t] for document in documents]
    return sp.csr_matrix(
        sp.hstack([_HASHER_TERMS.transform(words), _HASHER_TERMS.transform(pairs)])
    )


@dataclass(frozen=True)
class TermSpace:
    """The TF-IDF space of one day's candidates: the term ids they use, and their IDF.

    Every word counts; a bigram only when at least two candidates share it (a bigram seen once
    relates that paper to nothing else, and such bigrams are about 13 in 14 of the bigrams of
    real abstracts). Text embedded later (keywords, rated papers) keeps only these terms.
    """

    ids: np.ndarray
    """Sorted hashed term ids; a term's column is its position here."""
    idf: np.ndarray

    @classmethod
    def fit(cls, counts: sp.csr_matrix) -> TermSpace:
        """The space of these candidates' term counts."""
        # A row holds each id once, so counting ids counts documents.
        ids, frequency = np.unique(counts.indices, return_counts=True)
        keep = (ids < 2**_TERM_BITS) | (frequency >= MIN_BIGRAM_DF)
        ids, frequency = ids[keep], frequency[keep]
        n = counts.shape[0]
        # Smoothed IDF, as scikit-learn's TfidfTransformer computes it.
        idf = (np.log((1.0 + n) / (1.0 + frequency)) + 1.0).astype(np.float32)
        return cls(ids=ids.astype(np.int64), idf=idf)

    def __len__(self) -> int:
        return len(self.ids)

    def tfidf(self, counts: sp.csr_matrix) -> sp.csr_matrix:
        """Counts → rows over this space: sublinear tf × idf, L2-normalised; others dropped."""
        counts = sp.csr_matrix(counts)
        column = np.searchsorted(self.ids, counts.indices)
        column = np.minimum(column, max(len(self.ids) - 1, 0))
        known = self.ids[column] == counts.indices if len(self.ids) else np.zeros(counts.nnz, bool)
        lengths = np.bincount(
            np.repeat(np.arange(counts.shape[0]), np.diff(counts.indptr))[known],
            minlength=counts.shape[0],
        )
        data = (1.0 + np.log(counts.data[known])) * self.idf[column[known]]
        matrix = sp.csr_matrix(
            (data.astype(np.float32), column[known], np.r_[0, np.cumsum(lengths)]),
            shape=(counts.shape[0], len(self.ids)),
        )
        matrix.sort_indices()
        return _l2_rows(matrix)

    def embed(self, documents: Sequence[list[str]]) -> sp.csr_matrix:
        """Analysed documents as TF-IDF rows of this space."""
        return self.tfidf(_term_counts(documents))


def _vocabulary_matrix(rows: Sequence[Iterable[str]], vocabulary: dict[str, int]) -> sp.csr_matrix:
    """Binary rows × vocabulary, growing ``vocabulary`` with unseen keys."""
    indptr = [0]
    indices: list[int] = []
    for keys in rows:
        seen = {vocabulary.setdefault(key, len(vocabulary)) for key in keys}
        indices.extend(sorted(seen))
        indptr.append(len(indices))
    data = np.ones(len(indices), dtype=np.float32)
    return sp.csr_matrix((data, indices, indptr), shape=(len(indptr) - 1, len(vocabulary)))


@dataclass
class PaperIndex:
    """The candidate papers in TF-IDF space plus the lookups ranking needs.

    Papers with the same normalised title (a re-submission under a new id) collapse into
    one: the newest is kept, and every id of the group points at it, so a delivery or a
    rating of any copy counts for all.
    """

    candidates: list[Candidate]
    terms: TermSpace
    matrix: sp.csr_matrix
    """papers × terms, TF-IDF, rows L2-normalised."""
    documents: list[list[str]]
    position: dict[str, int]
    """Every known id (including collapsed duplicates) → row."""
    title_weight: int = 2
    author_keys: dict[tuple[str, str], int] = field(default_factory=dict)
    author_matrix: sp.csr_matrix = field(default_factory=lambda: sp.csr_matrix((0, 0)))
    """papers × (surname, initial) keys, plus (surname, "") for followed names without one."""
    fullname_keys: dict[str, int] = field(default_factory=dict)
    fullname_matrix: sp.csr_matrix = field(default_factory=lambda: sp.csr_matrix((0, 0)))
    category_keys: dict[str, int] = field(default_factory=dict)
    category_matrix: sp.csr_matrix = field(default_factory=lambda: sp.csr_matrix((0, 0)))
    duplicates: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Kept id → ids collapsed into it."""

    @classmethod
    def build(cls, candidates: Sequence[Candidate], *, title_weight: int = 2) -> PaperIndex:
        """Collapse near-duplicates, fit the term space on the candidates and index them."""
        groups: dict[str, list[Candidate]] = {}
        for paper in candidates:
            key = normalized_title(paper.title) or paper.arxiv_id
            groups.setdefault(key, []).append(paper)
        papers: list[Candidate] = []
        position: dict[str, int] = {}
        duplicates: dict[str, tuple[str, ...]] = {}
        for group in groups.values():
            keep = max(group, key=lambda p: (p.announced, p.version, p.arxiv_id))
            for paper in group:
                position[paper.arxiv_id] = len(papers)
            if len(group) > 1:
                duplicates[keep.arxiv_id] = tuple(
                    p.arxiv_id for p in group if p.arxiv_id != keep.arxiv_id
                )
            papers.append(keep)
        documents = [document_tokens(p.title, p.abstract, title_weight) for p in papers]
        counts = _term_counts(documents)
        terms = TermSpace.fit(counts)
        matrix = terms.tfidf(counts)
        author_keys: dict[tuple[str, str], int] = {}
        author_rows = []
        for paper in papers:
            keys = set()
            for author in paper.authors:
                surname, initial = name_key(author)
                keys.update({(surname, initial), (surname, "")})
            author_rows.append(keys)
        author_matrix = _vocabulary_matrix(author_rows, author_keys)  # type: ignore[arg-type]
        fullname_keys: dict[str, int] = {}
        fullname_matrix = _vocabulary_matrix(
            [[author_feature(a) for a in p.authors] for p in papers], fullname_keys
        )
        category_keys: dict[str, int] = {}
        category_matrix = _vocabulary_matrix([p.categories for p in papers], category_keys)
        return cls(
            candidates=papers,
            terms=terms,
            matrix=matrix,
            documents=documents,
            position=position,
            title_weight=title_weight,
            author_keys=author_keys,
            author_matrix=author_matrix,
            fullname_keys=fullname_keys,
            fullname_matrix=fullname_matrix,
            category_keys=category_keys,
            category_matrix=category_matrix,
            duplicates=duplicates,
        )

    def __len__(self) -> int:
        return len(self.candidates)

    def embed(self, texts: Sequence[str]) -> sp.csr_matrix:
        """Texts (keywords, phrases) in the candidates' TF-IDF space, rows L2-normalised."""
        return self.terms.embed([analyze(t) for t in texts])

    def embed_keywords(self, keywords: Sequence[str]) -> sp.csr_matrix:
        """``embed(keywords)``, computing each keyword's row once for this index.

        Interests stay the same for weeks and popular ones are shared, while every scheduler
        tick and every ``/digest`` ranks against the same candidates until the next
        announcement. Rows are embedded independently, so a row kept from an earlier call is
        the row ``embed`` would compute now.
        """
        known = self._keyword_rows
        missing = [k for k in dict.fromkeys(keywords) if k not in known]
        if missing:
            if len(known) + len(missing) > KEYWORD_CACHE_SIZE:
                known.clear()
            embedded = self.embed(missing)
            for row, keyword in enumerate(missing):
                start, end = embedded.indptr[row], embedded.indptr[row + 1]
                known[keyword] = (embedded.indices[start:end], embedded.data[start:end])
        rows = [known.get(k) or self._embedded_row(k) for k in keywords]
        indptr = np.cumsum([0] + [len(indices) for indices, _ in rows])
        return sp.csr_matrix(
            (
                np.concatenate([data for _, data in rows]) if rows else np.zeros(0, np.float32),
                np.concatenate([indices for indices, _ in rows]) if rows else np.zeros(0, int),
                indptr,
            ),
            shape=(len(keywords), len(self.terms)),
        )

    def _embedded_row(self, keyword: str) -> tuple[np.ndarray, np.ndarray]:
        """One keyword's row, when the cache was cleared by another thread meanwhile."""
        row = self.embed([keyword])
        return row.indices, row.data

    @cached_property
    def _keyword_rows(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Keyword → (term columns, weights) of its embedded row."""
        return {}

    @cached_property
    def matrix_t(self) -> sp.csr_matrix:
        """terms × papers (the right-hand side of every product, built once)."""
        return sp.csr_matrix(self.matrix.T)

    @cached_property
    def author_matrix_t(self) -> sp.csr_matrix:
        """author keys × papers."""
        return sp.csr_matrix(self.author_matrix.T)

    @cached_property
    def fullname_matrix_t(self) -> sp.csr_matrix:
        """full author names × papers."""
        return sp.csr_matrix(self.fullname_matrix.T)

    @cached_property
    def category_matrix_t(self) -> sp.csr_matrix:
        """categories × papers."""
        return sp.csr_matrix(self.category_matrix.T)

    @cached_property
    def hashed(self) -> sp.csr_matrix:
        """papers × :data:`FEATURE_SPACE`, for learned models."""
        return hashed_features(self.documents, [p.authors for p in self.candidates])

    @cached_property
    def hashed_t(self) -> sp.csr_matrix:
        """:data:`FEATURE_SPACE` × papers."""
        return sp.csr_matrix(self.hashed.T)

    @cached_property
    def announced_order(self) -> np.ndarray:
        """A tiny newest-first tie-breaker that never outweighs a real signal."""
        stamps = np.array([p.announced.timestamp() for p in self.candidates])
        recency = np.empty(len(self), dtype=np.float32)
        recency[np.argsort(stamps, kind="stable")] = np.linspace(0.0, 1e-3, num=len(self))
        return recency

    @cached_property
    def token_sets(self) -> list[frozenset[str]]:
        """The words of each paper (for explanations and muted phrases)."""
        return [frozenset(t for t in doc if " " not in t) for doc in self.documents]

    @cached_property
    def similarity(self) -> np.ndarray:
        """papers × papers cosine (TF-IDF), dense float32."""
        return np.asarray((self.matrix @ self.matrix_t).toarray(), dtype=np.float32)

    def author_rows(self, name: str) -> list[int]:
        """Rows with an author matching ``name`` (initials, accents and order tolerated)."""
        column = self.author_keys.get(name_key(name))
        if column is None:
            return []
        return [int(r) for r in self.author_matrix_t[column].indices]

    def rows_with_all_tokens(self, phrase: str) -> list[int]:
        """Rows whose text contains every content token of ``phrase``."""
        return [int(r) for r in self.phrase_matrix([phrase]).indices]

    @cached_property
    def token_rows(self) -> dict[str, np.ndarray]:
        """Word → rows containing it (exact, for muted phrases; built on first use)."""
        found: dict[str, list[int]] = {}
        for row, have in enumerate(self.token_sets):
            for token in have:
                found.setdefault(token, []).append(row)
        return {token: np.array(rows) for token, rows in found.items()}

    def phrase_matrix(self, phrases: Sequence[str]) -> sp.csr_matrix:
        """phrases × papers, 1 where the paper contains every content token of the phrase."""
        matched: list[np.ndarray] = []
        for phrase in phrases:
            wanted = set(tokens(phrase))
            postings = [self.token_rows.get(t, np.array([], dtype=np.int64)) for t in wanted]
            rows = postings[0] if postings else np.array([], dtype=np.int64)
            for more in postings[1:]:
                rows = np.intersect1d(rows, more, assume_unique=True)
            matched.append(np.sort(rows))
        return _selector([r.tolist() for r in matched], len(self))

    def rated_set(self, papers: Iterable[Candidate], *, workers: int = 1) -> RatedSet:
        """Rated papers (any age) in this index's spaces, for Rocchio and "similar to".

        ``workers`` > 1 embeds them in that many forked processes (batch runs only); only
        the sparse rows travel back.
        """
        unique = list({p.arxiv_id: p for p in papers}.values())
        if not unique:
            return self._no_ratings
        return self._embed_rated(unique, workers)

    @cached_property
    def _no_ratings(self) -> RatedSet:
        """The empty rated set (most rankings of one subscriber have no ratings), built once."""
        return self._embed_rated([], 1)

    def _embed_rated(self, unique: list[Candidate], workers: int) -> RatedSet:
        width = self.matrix.shape[1]
        parts = _split(unique, workers)

        def embed(part: int) -> sp.csr_matrix:
            batch = parts[part]
            if not batch or not width:
                return sp.csr_matrix((len(batch), width), dtype=np.float32)
            documents = [document_tokens(p.title, p.abstract, self.title_weight) for p in batch]
            return self.terms.embed(documents)

        matrices = _map(embed, range(len(parts)), workers)
        matrix = sp.csr_matrix(sp.vstack(matrices), dtype=np.float32) if matrices else None
        keys = self.fullname_keys
        # Names that wrote no candidate cannot lift one: only the index's columns are kept.
        authors = _selector(
            [
                sorted({c for a in p.authors if (c := keys.get(author_feature(a))) is not None})
                for p in unique
            ],
            len(keys),
        )
        return RatedSet(
            ids=[p.arxiv_id for p in unique],
            titles=[p.title for p in unique],
            matrix=matrix if matrix is not None else sp.csr_matrix((0, width), dtype=np.float32),
            authors=authors,
            position={p.arxiv_id: i for i, p in enumerate(unique)},
        )


@dataclass
class RatedSet:
    """The papers subscribers rated, embedded in a :class:`PaperIndex`'s spaces."""

    ids: list[str]
    titles: list[str]
    matrix: sp.csr_matrix
    """rated papers × the index's terms (TF-IDF, L2)."""
    authors: sp.csr_matrix
    """rated papers × the index's full-name author keys."""
    position: dict[str, int]

    @classmethod
    def empty(cls, index: PaperIndex) -> RatedSet:
        """No rated papers."""
        return index.rated_set([])


@dataclass
class RankResult:
    """The top ``k`` of every query, with the parts of each score (rows follow ``queries``)."""

    index: PaperIndex
    queries: list[ProfileQuery]
    rated: RatedSet
    columns: np.ndarray
    """queries × k paper rows, -1 where a row has fewer than k papers."""
    parts: dict[str, np.ndarray]
    """Name → queries × k values: score, relevance, trend, keyword, author, category,
    rocchio, liked_author, learned."""

    @cached_property
    def _rows(self) -> dict[int, int]:
        return {query.subscriber_id: row for row, query in enumerate(self.queries)}

    def row_of(self, subscriber_id: int) -> int:
        """The row of a subscriber in this result (``KeyError`` when not ranked)."""
        return self._rows[subscriber_id]

    def items(self, row: int) -> list[Ranked]:
        """The ranked papers of one row, best first, each with its explanation."""
        query = self.queries[row]
        slots = [(slot, int(col)) for slot, col in enumerate(self.columns[row]) if col >= 0]
        liked = _LikedContext.of(self, query, [col for _, col in slots])
        keywords = [(k, frozenset(tokens(k))) for k in query.keywords]
        followed = [name_key(a) for a in query.authors]
        return [
            _explain(self, query, row, slot, col, liked, keywords, followed) for slot, col in slots
        ]

    def ids(self, row: int) -> list[str]:
        """Just the paper ids of one row, best first (no explanations built)."""
        return [self.index.candidates[int(c)].arxiv_id for c in self.columns[row] if c >= 0]


_PART_NAMES = (
    "score", "relevance", "trend", "keyword", "author", "category", "rocchio", "liked_author",
    "learned",
)  # fmt: skip


@dataclass
class Prepared:
    """Things computed once per ranking pass and shared by every chunk."""

    index: PaperIndex
    rated: RatedSet
    trend: np.ndarray
    weights: Weights
    keyword_rows: dict[str, int]
    keyword_matrix: sp.csr_matrix
    muted_rows: dict[str, int]
    muted_matrix: sp.csr_matrix
    """muted phrases × papers, 1 = contains the phrase."""
    rated_matrix: sp.csr_matrix
    """The rated papers' vectors, each cut to its ``rated_terms`` strongest terms."""


def prepare(
    index: PaperIndex,
    queries: Sequence[ProfileQuery],
    trend: Mapping[str, float] | None,
    rated: RatedSet | None,
    weights: Weights,
) -> Prepared:
    """Per-pass state shared by every chunk: keyword and muted-phrase matrices, trend vector."""
    keywords = list(dict.fromkeys(k for q in queries for k in q.keywords))
    muted = list(dict.fromkeys(m for q in queries for m in q.muted))
    trend = trend or {}
    rated = rated if rated is not None else RatedSet.empty(index)
    return Prepared(
        index=index,
        rated=rated,
        rated_matrix=_prune_rows(rated.matrix, weights.rated_terms),
        trend=np.array(
            [float(trend.get(p.arxiv_id, 0.0)) for p in index.candidates], dtype=np.float32
        )
        if trend
        else np.zeros(len(index), dtype=np.float32),
        weights=weights,
        keyword_rows={k: i for i, k in enumerate(keywords)},
        keyword_matrix=index.embed_keywords(keywords),
        muted_rows={m: i for i, m in enumerate(muted)},
        muted_matrix=index.phrase_matrix(muted),
    )


def _selector(
    rows: Sequence[Sequence[int]], columns: int, values: Sequence[Sequence[float]] | None = None
) -> sp.csr_matrix:
    """A sparse chunk × columns matrix from per-row column lists (and values)."""
    indptr = np.cumsum([0] + [len(r) for r in rows])
    indices = np.fromiter((c for r in rows for c in r), dtype=np.int64, count=int(indptr[-1]))
    data = (
        np.fromiter((v for r in values for v in r), dtype=np.float32, count=int(indptr[-1]))
        if values is not None
        else np.ones(int(indptr[-1]), dtype=np.float32)
    )
    return sp.csr_matrix((data, indices, indptr), shape=(len(rows), columns))


def _keyword_part(prep: Prepared, chunk: Sequence[ProfileQuery]) -> np.ndarray:
    """chunk × papers: the best keyword's cosine plus a share of the other keywords'.

    Each keyword is embedded on its own, so a subscriber with several unrelated interests
    gets the best paper of each instead of papers diluted towards the average of them all.
    The per-keyword product is sparse; best and total are scattered into the dense result.
    """
    out = np.zeros((len(chunk), len(prep.index)), dtype=np.float32)
    rows = [[prep.keyword_rows[k] for k in q.keywords] for q in chunk]
    owners = np.array([i for i, r in enumerate(rows) for _ in r], dtype=np.int64)
    if not len(owners):
        return out
    flat = np.array([k for r in rows for k in r], dtype=np.int64)
    hits = sp.csr_matrix(prep.keyword_matrix[flat] @ prep.index.matrix_t)
    owner = owners[np.repeat(np.arange(hits.shape[0]), np.diff(hits.indptr))]
    share = prep.weights.other_keywords_share
    np.maximum.at(out, (owner, hits.indices), hits.data)
    if share:
        total = np.zeros_like(out)
        np.add.at(total, (owner, hits.indices), hits.data)
        out *= 1.0 - share
        out += share * total
    return out


def _matches(
    selected: Sequence[Sequence[int]], columns: int, papers_t: sp.csr_matrix
) -> sp.csr_matrix:
    """chunk × papers, 1 where a paper has any of a row's selected keys (authors, categories)."""
    hits = sp.csr_matrix(_selector(selected, columns) @ papers_t)
    hits.data = np.minimum(hits.data, 1.0)
    return hits


def _author_part(prep: Prepared, chunk: Sequence[ProfileQuery]) -> sp.csr_matrix:
    """chunk × papers, 1 where a followed author wrote the paper."""
    keys = prep.index.author_keys
    rows = [
        sorted({c for a in q.authors if (c := keys.get(name_key(a))) is not None}) for q in chunk
    ]
    return _matches(rows, len(keys), prep.index.author_matrix_t)


def _category_part(prep: Prepared, chunk: Sequence[ProfileQuery]) -> sp.csr_matrix:
    """chunk × papers, 1 where the paper is in one of the subscriber's categories."""
    keys = prep.index.category_keys
    rows = [sorted({c for x in q.categories if (c := keys.get(x)) is not None}) for q in chunk]
    return _matches(rows, len(keys), prep.index.category_matrix_t)


def _blocked(prep: Prepared, chunk: Sequence[ProfileQuery]) -> sp.coo_matrix:
    """chunk × papers, nonzero where a muted phrase matches or the paper was already seen."""
    index = prep.index
    position = index.position
    muted = _selector([[prep.muted_rows[m] for m in q.muted] for q in chunk], len(prep.muted_rows))
    by_phrase = sp.csr_matrix(muted @ prep.muted_matrix)
    seen_rows = [
        [r for i in (*q.exclude, *q.liked, *q.disliked) if (r := position.get(i)) is not None]
        for q in chunk
    ]
    return sp.coo_matrix(by_phrase + _selector(seen_rows, len(index)))


@dataclass
class _Rocchio:
    """Rocchio cosine for the chunk rows that rated anything, and liked-author affinity."""

    rows: np.ndarray
    """Chunk rows with ratings."""
    cosine: np.ndarray
    """len(rows) × papers, already weighted."""
    affinity: sp.csr_matrix
    """chunk × papers, already weighted."""


def _rocchio_part(prep: Prepared, chunk: Sequence[ProfileQuery]) -> _Rocchio | None:
    """Liked-minus-disliked centroids of the raters in ``chunk``, matched against the papers."""
    rated, weights = prep.rated, prep.weights
    raters: list[int] = []
    rows: list[list[int]] = []
    values: list[list[float]] = []
    signed: list[list[float]] = []
    ramp: list[float] = []
    for i, q in enumerate(chunk):
        if not (q.liked or q.disliked):
            continue
        liked = [r for x in q.liked if (r := rated.position.get(x)) is not None]
        liked_set = set(liked)
        disliked = [
            r for x in q.disliked if (r := rated.position.get(x)) is not None and r not in liked_set
        ]
        if not (liked or disliked):
            continue
        raters.append(i)
        rows.append(liked + disliked)
        negative = -weights.rocchio_negative
        values.append(
            [1.0 / max(len(liked), 1)] * len(liked)
            + [negative / max(len(disliked), 1)] * len(disliked)
        )
        signed.append([1.0] * len(liked) + [negative] * len(disliked))
        count = len(liked) + len(disliked)
        ramp.append(weights.rocchio * count / (count + weights.rocchio_ramp))
    if not raters:
        return None
    mixer = _selector(rows, len(rated.ids), values)
    centroids = _l2_rows(
        _prune_rows(sp.csr_matrix(mixer @ prep.rated_matrix), weights.rocchio_terms)
    )
    cosine = (centroids @ prep.index.matrix_t).toarray()
    cosine *= np.array(ramp, dtype=np.float32)[:, None]
    keys = sp.csr_matrix(_selector(rows, len(rated.ids), signed) @ rated.authors)
    affinity = sp.csr_matrix(keys @ prep.index.fullname_matrix_t)
    affinity.data = np.clip(affinity.data, -1.0, 1.0) * weights.liked_author
    affinity.eliminate_zeros()
    spread = sp.csr_matrix(
        (np.ones(len(raters), dtype=np.float32), (raters, np.arange(len(raters)))),
        shape=(len(chunk), len(raters)),
    )
    return _Rocchio(np.array(raters), cosine, sp.csr_matrix(spread @ affinity))


def _prune_rows(matrix: sp.csr_matrix, keep: int) -> sp.csr_matrix:
    """Keep the ``keep`` entries of largest magnitude in each row (vectorised over rows)."""
    lengths = np.diff(matrix.indptr)
    if not matrix.nnz or lengths.max() <= keep:
        return matrix
    row_of = np.repeat(np.arange(matrix.shape[0]), lengths)
    slot = np.arange(matrix.nnz) - np.repeat(matrix.indptr[:-1], lengths)
    magnitude = np.abs(matrix.data)
    padded = np.zeros((matrix.shape[0], int(lengths.max())), dtype=np.float32)
    padded[row_of, slot] = magnitude
    kth = -np.partition(-padded, keep - 1, axis=1)[:, keep - 1]
    mask = (magnitude >= kth[row_of]) & (magnitude > 0)
    indptr = np.r_[0, np.cumsum(np.bincount(row_of[mask], minlength=matrix.shape[0]))]
    return sp.csr_matrix((matrix.data[mask], matrix.indices[mask], indptr), shape=matrix.shape)


@dataclass
class _Learned:
    """Learned-model probabilities for the chunk rows that have a usable model."""

    rows: np.ndarray
    probability: np.ndarray
    """len(rows) × papers."""


def _learned_part(prep: Prepared, chunk: Sequence[ProfileQuery]) -> _Learned | None:
    """Every usable model of the chunk applied at once: one sparse product, then a sigmoid."""
    usable = [
        (i, q.model)
        for i, q in enumerate(chunk)
        if q.model is not None and q.model.space == FEATURE_SPACE and len(q.model.indices)
    ]
    if not usable:
        return None
    indptr = np.cumsum([0] + [len(m.indices) for _, m in usable])
    weights = sp.csr_matrix(
        (
            np.concatenate([m.weights for _, m in usable]).astype(np.float32),
            np.concatenate([m.indices for _, m in usable]).astype(np.int64),
            indptr,
        ),
        shape=(len(usable), HASH_FEATURES),
    )
    logits = (weights @ prep.index.hashed_t).toarray()
    logits += np.array([m.intercept for _, m in usable], dtype=np.float32)[:, None]
    probability = 1.0 / (1.0 + np.exp(-np.clip(logits, -30.0, 30.0)))
    return _Learned(np.array([i for i, _ in usable]), probability.astype(np.float32))


@dataclass
class ChunkScores:
    """One chunk of subscribers against every candidate (for ranking and evaluation)."""

    score: np.ndarray
    """Final score, dense chunk × papers; -inf where a paper may not be shown."""
    relevance: np.ndarray
    keyword: np.ndarray
    author: sp.csr_matrix
    category: sp.csr_matrix
    rocchio: _Rocchio | None
    learned: _Learned | None
    trend: np.ndarray

    def parts_at(self, columns: np.ndarray) -> dict[str, np.ndarray]:
        """Every named part at chunk × k ``columns`` (-1 = none, gives 0)."""
        rows = np.broadcast_to(np.arange(columns.shape[0])[:, None], columns.shape)
        valid = columns >= 0
        cols = np.where(valid, columns, 0)

        def dense(values: np.ndarray) -> np.ndarray:
            return np.where(valid, values[rows, cols], 0.0).astype(np.float32)

        def sparse(matrix: sp.csr_matrix) -> np.ndarray:
            if not matrix.nnz:
                return np.zeros(columns.shape, dtype=np.float32)
            found = np.asarray(matrix[rows.ravel(), cols.ravel()]).reshape(columns.shape)
            return np.where(valid, found, 0.0).astype(np.float32)

        def subset(part_rows: np.ndarray | None, values: np.ndarray | None) -> np.ndarray:
            out = np.zeros(columns.shape, dtype=np.float32)
            if part_rows is None or values is None or not len(part_rows):
                return out
            local = np.arange(len(part_rows))[:, None]
            picked = values[local, cols[part_rows]]
            out[part_rows] = np.where(valid[part_rows], picked, 0.0)
            return out

        roc, learned = self.rocchio, self.learned
        return {
            "score": dense(self.score),
            "relevance": dense(self.relevance),
            "trend": np.where(valid, self.trend[cols], 0.0).astype(np.float32),
            "keyword": dense(self.keyword),
            "author": sparse(self.author),
            "category": sparse(self.category),
            "rocchio": subset(roc.rows if roc else None, roc.cosine if roc else None),
            "liked_author": sparse(roc.affinity) if roc else np.zeros(columns.shape, np.float32),
            "learned": subset(
                learned.rows if learned else None, learned.probability if learned else None
            ),
        }


def _scatter_add(target: np.ndarray, matrix: sp.csr_matrix, scale: float = 1.0) -> None:
    """``target += scale × matrix`` touching only the sparse entries."""
    if matrix.nnz:
        coo = matrix.tocoo()
        np.add.at(target, (coo.row, coo.col), scale * coo.data)


def score_chunk(prep: Prepared, chunk: Sequence[ProfileQuery]) -> ChunkScores:
    """Every score part for a chunk of subscribers against every candidate."""
    w = prep.weights
    index = prep.index
    keyword = _keyword_part(prep, chunk)
    relevance = keyword.copy()
    author = _author_part(prep, chunk)
    author.data *= w.author_bonus
    _scatter_add(relevance, author)
    category = _category_part(prep, chunk)
    filters = np.array([q.categories_filter and bool(q.categories) for q in chunk])
    boost = sp.csr_matrix(sp.diags((~filters).astype(np.float32)) @ category)
    boost.data *= w.category_bonus
    _scatter_add(relevance, boost)
    rocchio = _rocchio_part(prep, chunk)
    if rocchio is not None:
        relevance[rocchio.rows] += rocchio.cosine
        _scatter_add(relevance, rocchio.affinity)
    learned = _learned_part(prep, chunk)
    if learned is not None:
        relevance[learned.rows] += w.learned * (learned.probability - w.learned_offset)
    empty = np.array([q.is_empty for q in chunk])
    weights = np.array([q.trend_weight for q in chunk], dtype=np.float32)
    score = np.maximum(relevance, 0.0)
    if w.relevance_power != 1.0:
        np.power(score, w.relevance_power, out=score)
    score *= 1.0 + (w.trend_boost * weights)[:, None] * prep.trend[None, :]
    if empty.any():
        # No personal signal: trending first (a dislike can still sink a paper).
        score[empty] = relevance[empty] + np.maximum(weights[empty], 0.1)[:, None] * prep.trend
    # A personal profile must actually match: zero relevance is not a recommendation.
    score[(relevance < w.min_relevance) & ~empty[:, None]] = -np.inf
    score += index.announced_order[None, :]
    # Category filter, and an empty profile with categories: only papers in those categories.
    restrict = filters | (empty & np.array([bool(q.categories) for q in chunk]))
    if restrict.any():
        allowed = np.zeros(score.shape, dtype=bool)
        coo = category.tocoo()
        allowed[coo.row, coo.col] = True
        score[restrict[:, None] & ~allowed] = -np.inf
    blocked = _blocked(prep, chunk)
    if blocked.nnz:
        score[blocked.row, blocked.col] = -np.inf
    return ChunkScores(
        score=score,
        relevance=relevance,
        keyword=keyword,
        author=author,
        category=boost,
        rocchio=rocchio,
        learned=learned,
        trend=prep.trend,
    )


def _mmr(score: np.ndarray, pool: np.ndarray, pair: np.ndarray, k: int, lam: float) -> np.ndarray:
    """Maximal marginal relevance over each row's ``pool``; returns chunk × k columns (-1 pad).

    ``pair`` is chunk × pool × pool similarity. Vectorised across rows: the loop runs over
    the ``k`` picks, never over subscribers.
    """
    rows = np.arange(score.shape[0])
    pool_scores = score[rows[:, None], pool]
    valid = np.isfinite(pool_scores)
    top = np.where(valid, pool_scores, -np.inf).max(axis=1, initial=-np.inf)
    scale = np.where(np.isfinite(top) & (np.abs(top) > 0), np.abs(top), 1.0)
    relevance = np.where(valid, pool_scores / scale[:, None], -np.inf)
    closest = np.zeros(pool.shape, dtype=np.float32)
    chosen = np.full((score.shape[0], k), -1, dtype=np.int64)
    taken = ~valid
    for step in range(min(k, pool.shape[1])):
        gain = np.where(taken, -np.inf, lam * relevance - (1.0 - lam) * closest)
        pick = gain.argmax(axis=1)
        ok = np.isfinite(gain[rows, pick])
        if not ok.any():
            break
        chosen[ok, step] = pool[rows[ok], pick[ok]]
        taken[rows[ok], pick[ok]] = True
        closest = np.maximum(closest, pair[rows, pick])
    return chosen


def _pool(score: np.ndarray, size: int) -> np.ndarray:
    """The ``size`` best columns of each row, best first."""
    size = min(size, score.shape[1])
    part = np.argpartition(-score, size - 1, axis=1)[:, :size]
    rows = np.arange(score.shape[0])[:, None]
    return part[rows, np.argsort(-score[rows, part], axis=1, kind="stable")]


def _pair_similarity(index: PaperIndex, pool: np.ndarray) -> np.ndarray:
    """chunk × pool × pool cosine between each row's pooled papers."""
    if len(index) <= SIMILARITY_PRECOMPUTE_LIMIT:
        return index.similarity[pool[:, :, None], pool[:, None, :]]
    # Too many candidates for a full matrix: only the papers some row pooled.
    union, local = np.unique(pool, return_inverse=True)
    local = local.reshape(pool.shape)
    rows = index.matrix[union]
    small = np.asarray((rows @ rows.T).toarray(), dtype=np.float32)
    return small[local[:, :, None], local[:, None, :]]


def _rank_chunk(
    prep: Prepared, chunk: Sequence[ProfileQuery], k: int, diversify: bool
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    scores = score_chunk(prep, chunk)
    if diversify:
        pool = _pool(scores.score, max(k, prep.weights.mmr_pool))
        pair = _pair_similarity(prep.index, pool)
        top = _mmr(scores.score, pool, pair, k, prep.weights.mmr_lambda)
    else:
        pool = _pool(scores.score, k)
        local = np.arange(len(chunk))[:, None]
        top = np.where(np.isfinite(scores.score[local, pool]), pool, -1)
    return top, scores.parts_at(top)


def rank(
    index: PaperIndex,
    queries: Sequence[ProfileQuery],
    trend: Mapping[str, float] | None = None,
    *,
    rated: RatedSet | None = None,
    k: int = 10,
    weights: Weights = DEFAULT_WEIGHTS,
    diversify: bool = True,
    workers: int = 1,
) -> RankResult:
    """The top ``k`` papers of every query in one pass, chunk by chunk of subscribers.

    ``trend`` maps paper ids to a trend score in [0, 1]; ``rated`` holds the papers named in
    the queries' ``liked``/``disliked`` (from :meth:`PaperIndex.rated_set`). With
    ``workers`` > 1, chunks run in that many forked processes (for batch runs; a process
    with other threads, like the bot's event loop, should keep the default of one).
    """
    queries = list(queries)
    prep = prepare(index, queries, trend, rated, weights)
    n = len(index)
    k = max(0, min(k, n))
    columns = np.full((len(queries), k), -1, dtype=np.int64)
    parts = {name: np.zeros((len(queries), k), dtype=np.float32) for name in _PART_NAMES}
    if not n or not queries or not k:
        return RankResult(index, queries, prep.rated, columns, parts)
    # Shared lazily-built matrices are made once here, before workers inherit them.
    shared = [index.matrix_t, index.author_matrix_t, index.category_matrix_t]
    shared += [index.fullname_matrix_t, index.announced_order]
    if any(q.model is not None for q in queries):
        shared.append(index.hashed_t)
    if diversify and n <= SIMILARITY_PRECOMPUTE_LIMIT:
        shared.append(index.similarity)
    starts = list(range(0, len(queries), SUBSCRIBER_CHUNK))

    def run(start: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        return _rank_chunk(prep, queries[start : start + SUBSCRIBER_CHUNK], k, diversify)

    for start, (top, found) in zip(starts, _map(run, starts, workers), strict=True):
        rows = slice(start, start + len(top))
        columns[rows] = top
        for name, values in found.items():
            parts[name][rows] = values
    return RankResult(index, queries, prep.rated, columns, parts)


def score_all(
    index: PaperIndex,
    queries: Sequence[ProfileQuery],
    trend: Mapping[str, float] | None = None,
    *,
    rated: RatedSet | None = None,
    k: int = 10,
    weights: Weights = DEFAULT_WEIGHTS,
    diversify: bool = True,
) -> dict[int, list[Ranked]]:
    """The top ``k`` papers for every query, each with its explanation, by subscriber id."""
    result = rank(index, queries, trend, rated=rated, k=k, weights=weights, diversify=diversify)
    return {q.subscriber_id: result.items(row) for row, q in enumerate(result.queries)}


def _quote(text: str, limit: int = 70) -> str:
    text = " ".join(text.split())
    return f"“{text if len(text) <= limit else text[: limit - 1].rstrip() + '…'}”"


@dataclass
class _LikedContext:
    """What a subscriber's 👍 say about their chosen papers, computed once per subscriber."""

    closest: dict[int, str]
    """Chosen column → title of the most similar liked paper (when close enough)."""
    author_keys: frozenset[int]
    """Full-name author keys of the liked papers."""

    @classmethod
    def of(cls, result: RankResult, query: ProfileQuery, columns: list[int]) -> _LikedContext:
        """Similarities between the liked papers and the chosen ones, in one product."""
        rated = result.rated
        rows = [r for x in query.liked if (r := rated.position.get(x)) is not None]
        if not rows or not columns:
            return cls({}, frozenset())
        similarity = (rated.matrix[rows] @ result.index.matrix[columns].T).toarray()
        best = similarity.argmax(axis=0)
        closest = {
            col: rated.titles[rows[int(best[i])]]
            for i, col in enumerate(columns)
            if similarity[best[i], i] >= 0.05
        }
        keys = frozenset(int(k) for k in rated.authors[rows].indices)
        return cls(closest, keys)


def _followed(key: tuple[str, str], followed: list[tuple[str, str]]) -> bool:
    """``bot.text.same_person`` on precomputed name keys."""
    surname, initial = key
    return bool(surname) and any(
        surname == other and (not initial or not other_initial or initial == other_initial)
        for other, other_initial in followed
    )


def _explain(
    result: RankResult,
    query: ProfileQuery,
    row: int,
    slot: int,
    col: int,
    liked: _LikedContext,
    keywords: list[tuple[str, frozenset[str]]],
    followed: list[tuple[str, str]],
) -> Ranked:
    index = result.index
    paper = index.candidates[col]
    have = index.token_sets[col]
    value = {name: float(result.parts[name][row, slot]) for name in _PART_NAMES}
    matched = tuple(k for k, t in keywords if t and t <= have)
    related = () if matched else tuple(k for k, t in keywords if t & have)
    authors = (
        tuple(a for a in paper.authors if _followed(name_key(a), followed)) if followed else ()
    )
    categories = tuple(c for c in paper.categories if c in query.categories)
    similar = ""
    if value["rocchio"] > 0 or value["learned"] > 0.5 or value["liked_author"] > 0:
        similar = liked.closest.get(col, "")
    liked_authors: tuple[str, ...] = ()
    if value["liked_author"] > 0:
        keys = index.fullname_keys
        liked_authors = tuple(
            a for a in paper.authors if keys.get(author_feature(a)) in liked.author_keys
        )
    parts = []
    if matched:
        parts.append("matches " + ", ".join(f"“{k}”" for k in matched))
    elif related:
        parts.append("related to " + ", ".join(f"“{k}”" for k in related))
    if authors:
        parts.append("by " + ", ".join(authors))
    if liked_authors and not authors:
        parts.append("by " + ", ".join(liked_authors) + ", whose work you liked")
    if similar:
        parts.append("similar to " + _quote(similar))
    if categories and not parts:
        parts.append("in " + ", ".join(categories))
    if not parts:
        parts.append("trending now" if value["trend"] > 0 else "new in your categories")
    return Ranked(
        arxiv_id=paper.arxiv_id,
        score=value["score"],
        relevance=value["relevance"],
        trend=value["trend"],
        matched_keywords=matched,
        matched_authors=authors,
        matched_categories=categories,
        why="; ".join(parts),
        similar_to=similar,
        parts=tuple((name, round(value[name], 4)) for name in _PART_NAMES),
    )
