"""Offline ranking quality on labelled data: does the scorer find what a subscriber would pick?

Usage:
    python bench/quality.py               # evaluate (abstracts too when the corpus is here)
    python bench/quality.py --users 60    # a quicker run
    python bench/quality.py --blend       # also compare ways to blend relevance and trend
    python bench/quality.py --build-data  # regenerate tests/data/quality/ from the corpus

The data (``tests/data/quality/``) is synthetic people over real papers:

- ``papers.jsonl``: real arXiv ids, titles and categories, a topic label (k-means over the
  TF-IDF of title and abstract, 40 topics), a latent popularity and the trend score a
  subscriber would observe (popularity plus noise, zero for papers nobody talked about), and
  whether the paper belongs to the *history* (rated in the past) or the *test* pool (the
  candidates of the digest being evaluated).
- ``users.jsonl``: each user likes one to three topics. They type keywords naming only their
  first topic and pick its main category (boost). They like an on-topic paper with
  probability 0.3 + 0.7 × popularity and an off-topic one with probability 0.04 ×
  popularity (the rare "everybody is talking about it" pick). Their rating stream over
  history papers alternates 👍 on liked papers and 👎 on papers off their topics that they
  were shown (mostly near misses from their category); on-topic papers they did not like go
  unrated, as in a real digest.

Held-out positives are the liked papers of the test pool. Every method ranks the whole test
pool for every user; the table reports precision@10, nDCG@10 and ROC AUC averaged over users.
Abstracts are never shipped: with the corpus present (``/work/shared/corpus`` or
``--corpus``) papers are ranked on title and abstract, otherwise on titles alone.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy.stats import rankdata

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bot.learning import eligible, fit_model  # noqa: E402
from bot.ranking import (  # noqa: E402
    DEFAULT_WEIGHTS,
    Candidate,
    PaperIndex,
    ProfileQuery,
    RatedSet,
    Weights,
    document_tokens,
    hashed_features,
    prepare,
    rank,
    score_chunk,
)
from bot.text import analyze  # noqa: E402

DATA_DIR = ROOT / "tests" / "data" / "quality"
CORPUS = Path("/work/shared/corpus/arxiv_metadata_sample.jsonl")
TOPICS = 40
USERS = 200
RATINGS = (5, 20, 50)
K = 10
SEED = 7


# --- data -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalPaper:
    """One paper of the evaluation set."""

    arxiv_id: str
    title: str
    abstract: str
    categories: tuple[str, ...]
    published: datetime
    topic: int
    trend: float
    history: bool


@dataclass(frozen=True)
class EvalUser:
    """One synthetic subscriber."""

    user: int
    topics: tuple[int, ...]
    keywords: tuple[str, ...]
    categories: tuple[str, ...]
    liked: frozenset[str]
    ratings: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class Dataset:
    """Papers and users, and whether abstracts were available."""

    papers: list[EvalPaper]
    users: list[EvalUser]
    with_abstracts: bool


def build_data(corpus: Path, out: Path, *, seed: int = SEED) -> None:
    """Derive the labelled set from the corpus: topics, popularity, users, rating streams."""
    from sklearn.cluster import KMeans
    from sklearn.feature_extraction.text import TfidfVectorizer

    rows = [json.loads(line) for line in corpus.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get("title") and r.get("abstract")]
    vectorizer = TfidfVectorizer(analyzer=analyze, sublinear_tf=True, min_df=2, max_df=0.3)
    matrix = vectorizer.fit_transform(f"{r['title']} {r['title']} {r['abstract']}" for r in rows)
    kmeans = KMeans(TOPICS, n_init=10, random_state=0).fit(matrix)
    labels = kmeans.labels_
    terms = np.array(vectorizer.get_feature_names_out())
    topic_terms = [list(terms[np.argsort(-c)[:6]]) for c in kmeans.cluster_centers_]
    rng = np.random.default_rng(seed)
    popularity = rng.beta(0.6, 2.5, size=len(rows))
    noisy = np.clip(popularity + rng.normal(0, 0.08, size=len(rows)), 0, 1)
    trend = np.where(popularity < 0.2, 0.0, noisy)
    history = np.zeros(len(rows), dtype=bool)
    history[rng.permutation(len(rows))[: int(0.6 * len(rows))]] = True
    sizes = np.bincount(labels, minlength=TOPICS)
    usable = np.flatnonzero(sizes >= 15)
    main_category = {
        t: Counter(rows[i]["primary_category"] for i in np.flatnonzero(labels == t)).most_common(1)[
            0
        ][0]
        for t in usable
    }
    users = []
    while len(users) < USERS:
        count = int(rng.choice([1, 2, 3], p=[0.35, 0.45, 0.2]))
        topics = [
            int(t)
            for t in rng.choice(usable, count, replace=False, p=sizes[usable] / sizes[usable].sum())
        ]
        on_topic = np.isin(labels, topics)
        chance = np.where(on_topic, 0.3 + 0.7 * popularity, 0.04 * popularity)
        liked = rng.random(len(rows)) < chance
        if (liked & ~history).sum() < 3 or (liked & history).sum() < 5:
            continue
        first = topics[0]
        phrase = next((t for t in topic_terms[first] if " " in t), topic_terms[first][0])
        single = next(t for t in topic_terms[first] if t not in phrase.split())
        categories = (main_category[first],)
        # 👎 goes to papers off their topics: near misses from their category, and some others.
        unwanted = history & ~liked & ~on_topic
        near = np.flatnonzero(
            unwanted & np.array([main_category[first] in r["categories"] for r in rows])
        )
        far = np.flatnonzero(unwanted)
        positives = list(rng.permutation(np.flatnonzero(history & liked)))
        negatives = list(rng.permutation(near))[:35] + list(rng.permutation(far))[:15]
        negatives = list(dict.fromkeys(int(x) for x in rng.permutation(negatives)))
        stream: list[tuple[str, int]] = []
        while len(stream) < max(RATINGS) and (positives or negatives):
            for pool, value in ((positives, 1), (negatives, -1)):
                if pool and len(stream) < max(RATINGS):
                    stream.append((rows[int(pool.pop(0))]["id"], value))
        users.append(
            {
                "user": len(users),
                "topics": topics,
                "keywords": [phrase, single],
                "categories": list(categories),
                "liked": [rows[i]["id"] for i in np.flatnonzero(liked)],
                "ratings": stream,
            }
        )
    out.mkdir(parents=True, exist_ok=True)
    with (out / "papers.jsonl").open("w") as handle:
        for i, r in enumerate(rows):
            record = {
                "id": r["id"],
                "title": " ".join(r["title"].split()),
                "categories": r["categories"],
                "published": r["published"],
                "topic": int(labels[i]),
                "popularity": round(float(popularity[i]), 4),
                "trend": round(float(trend[i]), 4),
                "split": "history" if history[i] else "test",
            }
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    with (out / "users.jsonl").open("w") as handle:
        for user in users:
            handle.write(json.dumps(user, ensure_ascii=False) + "\n")
    (out / "topics.json").write_text(
        json.dumps({str(t): topic_terms[t] for t in range(TOPICS)}, indent=1, ensure_ascii=False)
    )


def load_data(data: Path = DATA_DIR, corpus: Path | None = CORPUS) -> Dataset:
    """The shipped labelled set, with abstracts joined in from the corpus when it is present."""
    abstracts: dict[str, str] = {}
    if corpus is not None and corpus.exists():
        for line in corpus.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                abstracts[record["id"]] = record.get("abstract") or ""
    papers = []
    for line in (data / "papers.jsonl").read_text().splitlines():
        r = json.loads(line)
        papers.append(
            EvalPaper(
                arxiv_id=r["id"],
                title=r["title"],
                abstract=abstracts.get(r["id"], ""),
                categories=tuple(r["categories"]),
                published=datetime.fromisoformat(r["published"]).replace(tzinfo=UTC),
                topic=r["topic"],
                trend=r["trend"],
                history=r["split"] == "history",
            )
        )
    users = []
    for line in (data / "users.jsonl").read_text().splitlines():
        u = json.loads(line)
        users.append(
            EvalUser(
                user=u["user"],
                topics=tuple(u["topics"]),
                keywords=tuple(u["keywords"]),
                categories=tuple(u["categories"]),
                liked=frozenset(u["liked"]),
                ratings=tuple((x, int(v)) for x, v in u["ratings"]),
            )
        )
    return Dataset(papers, users, with_abstracts=bool(abstracts))


# --- metrics ----------------------------------------------------------------------------------


def precision_at(top: Sequence[int], relevant: np.ndarray, k: int = K) -> float:
    """Share of the first ``k`` picks that are relevant (a short list counts as misses)."""
    return float(sum(relevant[c] for c in top[:k] if c >= 0)) / k


def ndcg_at(top: Sequence[int], relevant: np.ndarray, k: int = K) -> float:
    """Binary-gain nDCG of the first ``k`` picks."""
    gains = [1.0 / np.log2(i + 2) for i, c in enumerate(top[:k]) if c >= 0 and relevant[c]]
    ideal = sum(1.0 / np.log2(i + 2) for i in range(min(k, int(relevant.sum()))))
    return float(sum(gains) / ideal) if ideal else 0.0


def auc(scores: np.ndarray, relevant: np.ndarray) -> float:
    """ROC AUC from ranks (ties averaged; papers a method refuses to show rank lowest)."""
    positives = int(relevant.sum())
    negatives = len(relevant) - positives
    if not positives or not negatives:
        return float("nan")
    finite = np.where(
        np.isfinite(scores), scores, np.nanmin(np.where(np.isfinite(scores), scores, np.inf)) - 1.0
    )
    ranks = rankdata(finite)
    return float(
        (ranks[relevant].sum() - positives * (positives + 1) / 2) / (positives * negatives)
    )


def _top_of(scores: np.ndarray, k: int = K) -> list[int]:
    order = np.argsort(-np.where(np.isfinite(scores), scores, -np.inf), kind="stable")[:k]
    return [int(c) if np.isfinite(scores[c]) else -1 for c in order]


# --- evaluation -------------------------------------------------------------------------------


@dataclass
class Setup:
    """The candidate pool and the rated papers, embedded once for every method."""

    data: Dataset
    index: PaperIndex
    rated: RatedSet
    history_hashed: sp.csr_matrix
    history_ids: list[str]
    trend: dict[str, float]
    relevant: dict[int, np.ndarray]


def setup(data: Dataset) -> Setup:
    """Index the test pool and embed the history (rated) papers."""
    test = [p for p in data.papers if not p.history]
    history = [p for p in data.papers if p.history]
    index = PaperIndex.build([_candidate(p) for p in test])
    rated = index.rated_set(_candidate(p) for p in history)
    hashed = hashed_features(
        [document_tokens(p.title, p.abstract) for p in history], [() for _ in history]
    )
    relevant = {
        u.user: np.array([c.arxiv_id in u.liked for c in index.candidates]) for u in data.users
    }
    return Setup(
        data=data,
        index=index,
        rated=rated,
        history_hashed=hashed,
        history_ids=[p.arxiv_id for p in history],
        trend={p.arxiv_id: p.trend for p in test},
        relevant=relevant,
    )


def _candidate(p: EvalPaper) -> Candidate:
    return Candidate(p.arxiv_id, p.title, p.abstract, (), p.categories, p.published)


def queries_after(
    s: Setup, ratings: int, *, learn: bool = True, seed: int = SEED
) -> list[ProfileQuery]:
    """Each user's profile after their first ``ratings`` ratings (a model once eligible)."""
    rows = {x: i for i, x in enumerate(s.history_ids)}
    rng = np.random.default_rng(seed)
    queries = []
    for u in s.data.users:
        given = dict(u.ratings[:ratings])
        model = None
        if learn and eligible(given):
            positive = [rows[x] for x, v in given.items() if v > 0]
            negative = [rows[x] for x, v in given.items() if v < 0]
            unrated = np.array([i for x, i in rows.items() if x not in given])
            sample = rng.choice(unrated, min(200, len(unrated)), replace=False)
            h = s.history_hashed
            model = fit_model(h[positive], h[negative], h[sample])
        queries.append(
            ProfileQuery(
                subscriber_id=u.user,
                keywords=u.keywords,
                categories=u.categories,
                liked=tuple(x for x, v in given.items() if v > 0),
                disliked=tuple(x for x, v in given.items() if v < 0),
                model=model,
            )
        )
    return queries


@dataclass
class Row:
    """Averaged metrics of one method."""

    name: str
    precision: float
    ndcg: float
    auc: float


def _average(name: str, results: list[tuple[float, float, float]]) -> Row:
    array = np.array(results, dtype=float)
    return Row(name, *np.nanmean(array, axis=0))


def evaluate_scores(s: Setup, name: str, scores_of: Callable[[int, int], np.ndarray]) -> Row:
    """A baseline given as a score vector per user."""
    results = []
    for row, u in enumerate(s.data.users):
        scores = scores_of(row, u.user)
        relevant = s.relevant[u.user]
        top = _top_of(scores)
        results.append((precision_at(top, relevant), ndcg_at(top, relevant), auc(scores, relevant)))
    return _average(name, results)


def full_scores(s: Setup, queries: list[ProfileQuery], weights: Weights) -> np.ndarray:
    """users × papers final scores (before diversity), for AUC."""
    prep = prepare(s.index, queries, s.trend, s.rated, weights)
    return score_chunk(prep, queries).score


def evaluate_model(
    s: Setup, name: str, queries: list[ProfileQuery], weights: Weights = DEFAULT_WEIGHTS
) -> Row:
    """The production ranking: top-k with diversity for precision/nDCG, full scores for AUC."""
    result = rank(s.index, queries, s.trend, rated=s.rated, k=K, weights=weights)
    scores = full_scores(s, queries, weights)
    results = []
    for row, u in enumerate(s.data.users):
        relevant = s.relevant[u.user]
        top = [int(c) for c in result.columns[row]]
        results.append(
            (precision_at(top, relevant), ndcg_at(top, relevant), auc(scores[row], relevant))
        )
    return _average(name, results)


def evaluate_fusion(
    s: Setup,
    name: str,
    queries: list[ProfileQuery],
    weights: Weights,
    trend_weight: float,
    k: float = 60.0,
) -> Row:
    """Reciprocal rank fusion of the relevance ranking and the trend ranking, for comparison."""
    prep = prepare(s.index, queries, s.trend, s.rated, weights)
    chunk = score_chunk(prep, queries)
    trend = np.array([s.trend.get(c.arxiv_id, 0.0) for c in s.index.candidates])
    trend_rank = rankdata(-trend, method="average")
    results = []
    for row, u in enumerate(s.data.users):
        allowed = np.isfinite(chunk.score[row])
        relevance_rank = rankdata(-chunk.relevance[row], method="average")
        fused = 1.0 / (k + relevance_rank) + trend_weight / (k + trend_rank)
        fused = np.where(allowed, fused, -np.inf)
        relevant = s.relevant[u.user]
        top = _top_of(fused)
        results.append((precision_at(top, relevant), ndcg_at(top, relevant), auc(fused, relevant)))
    return _average(name, results)


def baselines(s: Setup, seed: int = SEED) -> list[Row]:
    """(a) random, (b) recency, (c) trend only, (d) keyword TF-IDF."""
    rng = np.random.default_rng(seed)
    n = len(s.index)
    jitter = rng.random((len(s.data.users), n)) * 1e-6
    published = np.array([c.announced.timestamp() for c in s.index.candidates])
    recency = (published - published.min()) / max(np.ptp(published), 1.0)
    trend = np.array([s.trend.get(c.arxiv_id, 0.0) for c in s.index.candidates])
    keyword_queries = [ProfileQuery(u.user, keywords=u.keywords) for u in s.data.users]
    keyword = full_scores(s, keyword_queries, replace(DEFAULT_WEIGHTS, trend_boost=0.0))
    return [
        evaluate_scores(s, "(a) random", lambda row, _: rng.random(n)),
        evaluate_scores(s, "(b) recency", lambda row, _: recency + jitter[row]),
        evaluate_scores(s, "(c) trend only", lambda row, _: trend + jitter[row]),
        evaluate_scores(s, "(d) keyword TF-IDF", lambda row, _: keyword[row]),
    ]


def main_table(s: Setup, weights: Weights = DEFAULT_WEIGHTS) -> list[Row]:
    """The baselines and the full model after 5, 20 and 50 ratings."""
    rows = baselines(s)
    for n in RATINGS:
        rows.append(evaluate_model(s, f"(e) full model, {n} ratings", queries_after(s, n), weights))
    return rows


def blend_table(s: Setup) -> list[Row]:
    """How relevance and trend are combined, averaged over 5, 20 and 50 ratings."""
    per_n = {n: queries_after(s, n) for n in RATINGS}
    variants: list[tuple[str, Callable[[list[ProfileQuery]], Row]]] = []
    for a in (0.5, 1.0, 2.0):
        for b in (0.0, 0.5, 1.0, 2.0, 4.0):
            w = replace(DEFAULT_WEIGHTS, relevance_power=a, trend_boost=b)
            variants.append(
                (f"product a={a:g} b={b:g}", lambda q, w=w: evaluate_model(s, "", q, w))
            )
    for tw in (0.25, 0.5, 1.0):
        variants.append(
            (
                f"RRF k=60 trend×{tw:g}",
                lambda q, tw=tw: evaluate_fusion(s, "", q, DEFAULT_WEIGHTS, tw),
            )
        )
    rows = []
    for name, run in variants:
        results = [run(per_n[n]) for n in RATINGS]
        rows.append(Row(name, *np.mean([[r.precision, r.ndcg, r.auc] for r in results], axis=0)))
    return rows


def ablation_table(s: Setup) -> list[Row]:
    """What each learned part adds, after 20 ratings."""
    full = queries_after(s, 20)
    no_model = [replace(q, model=None) for q in full]
    no_ratings = [replace(q, liked=(), disliked=(), model=None) for q in full]
    return [
        evaluate_model(s, "explicit profile + trend", no_ratings),
        evaluate_model(s, "+ Rocchio", no_model),
        evaluate_model(s, "+ Rocchio + logistic regression", full),
        evaluate_model(
            s, "  same, no diversity (MMR off)", full, replace(DEFAULT_WEIGHTS, mmr_lambda=1.0)
        ),
    ]


def print_table(title: str, rows: list[Row]) -> None:
    """A fixed-width table."""
    print(f"\n{title}")
    print(f"{'method':<34} {'P@10':>6} {'nDCG@10':>8} {'AUC':>6}")
    for r in rows:
        print(f"{r.name:<34} {r.precision:6.3f} {r.ndcg:8.3f} {r.auc:6.3f}")


def main() -> None:
    """Evaluate and print the tables."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--build-data", action="store_true", help="regenerate the labelled set from the corpus"
    )
    parser.add_argument(
        "--corpus", type=Path, default=CORPUS, help="arXiv metadata JSONL with abstracts"
    )
    parser.add_argument(
        "--titles-only", action="store_true", help="ignore abstracts even if the corpus is here"
    )
    parser.add_argument("--users", type=int, default=USERS, help="evaluate the first N users")
    parser.add_argument(
        "--blend", action="store_true", help="also compare ways to blend relevance and trend"
    )
    args = parser.parse_args()
    if args.build_data:
        build_data(args.corpus, DATA_DIR)
        print(f"wrote {DATA_DIR}")
        return
    started = time.perf_counter()
    data = load_data(DATA_DIR, None if args.titles_only else args.corpus)
    data = replace(data, users=data.users[: args.users])
    s = setup(data)
    heldout = np.mean([s.relevant[u.user].sum() for u in data.users])
    print(
        f"{len(data.users)} users, {len(s.index)} candidate papers, {len(s.history_ids)} history "
        f"papers, {heldout:.1f} held-out positives per user; text: "
        f"{'title + abstract' if data.with_abstracts else 'titles only'}"
    )
    print_table("Ranking quality (averaged over users)", main_table(s))
    print_table("Learned parts, after 20 ratings", ablation_table(s))
    if args.blend:
        print_table("Blending relevance and trend (mean over 5/20/50 ratings)", blend_table(s))
    print(f"\n{time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
