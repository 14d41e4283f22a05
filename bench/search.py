"""Search latency at archive scale: SQLite FTS5 and PostgreSQL full text against a full scan.

Usage:
    python bench/search.py [--n 1000000] [--queries 1000] [--scan-queries 20]
                           [--postgres URL | env TP_TEST_POSTGRES_URL] [--no-postgres]

Builds a synthetic corpus of N papers whose vocabulary (word frequencies) and abstract lengths
are drawn from ``../shared/corpus/abstracts.jsonl`` when it exists (read here, at bench time
only; none of its text is stored in the repository), else from a built-in word list. Papers
are bulk-loaded straight into the ``paper`` table of a schema at revision 0001, then the
search migration indexes them all at once (the path a deployment with existing papers takes).

Runs the same mixed queries (words, phrases, prefixes, filters, sorts) through
``storage.search.search`` on each engine and prints p50/p95/p99 latency and the size of the
search index, then the ratio against the approach it replaces: arxiv-sanity-lite's search,
which scores every paper in Python (substring counts over title, authors and abstract,
weighted, here also weighted by idf) for each query, measured on a sample of the same
queries on the same corpus in the same run.

PostgreSQL runs in a dedicated schema that is dropped afterwards.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from storage.db import Database, normalize_url  # noqa: E402
from storage.migrate import upgrade  # noqa: E402
from storage.search import search  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpus" / "abstracts.jsonl"
NOW = datetime(2026, 11, 16, 12, 0, tzinfo=UTC)
CHUNK = 20_000
TARGET_P95_MS = 50.0

CATEGORIES = (
    ("cs.LG", 22), ("cs.CV", 14), ("cs.CL", 12), ("cs.AI", 8), ("stat.ML", 5), ("cs.RO", 4),
    ("math.OC", 3), ("quant-ph", 6), ("hep-th", 4), ("astro-ph.GA", 4), ("cond-mat.stat-mech", 3),
    ("math.PR", 3), ("eess.SP", 3), ("q-bio.BM", 2), ("physics.optics", 2), ("econ.EM", 1),
)  # fmt: skip
FORENAMES = (
    "Ana Bo Chen Dmitri Eve Farah Giulia Hiro Ines Jonas Kofi Lena Mei Nadia Omar Priya".split()
)
SURNAMES = (
    "Nguyen Smith Müller García Kowalski Tanaka Okafor Rossi Ivanova Haddad Novak Silva Kim "
    "Johansson Dubois Schölkopf Hinton Bengio Li Wang Zhang Patel Cohen Murphy Fischer Rahman"
).split()
# Fallback vocabulary: content words of the fields the bot serves plus the function words that
# make up most of any abstract; Zipf weights by position.
BUILTIN_WORDS = """
the of and a to in we is for that on with this by as are an be our from which can it model
models learning data results method methods show paper approach using based network networks
performance training proposed problem new neural two also these deep show such time framework
large language image images task tasks graph graphs distribution algorithm algorithms optimal
state quantum field energy theory analysis system systems information inference bayesian
diffusion transformer attention policy reward reinforcement agent agents robot control
optimization gradient stochastic convex kernel sampling posterior prior variational latent
representation representations embedding embeddings retrieval generation generative
adversarial segmentation detection classification regression clustering sparse dense low rank
matrix tensor spectral manifold geometry topology stability convergence bound bounds error
noise robust robustness privacy federated fairness causal uncertainty calibration benchmark
dataset datasets evaluation alignment reasoning planning memory compression pruning
quantization distillation protein molecule molecular chemistry materials physics galaxy
galaxies stellar dark matter black hole gravitational wave cosmological spin lattice phase
transition entanglement qubit qubits circuit circuits error correction topological
superconducting magnetic thermal fluid turbulence equation equations solution solutions
numerical simulation simulations experiment experimental observation observations signal
speech audio video text visual multimodal vision language models instruction tuning fine
pretraining scaling laws emergent capabilities hallucination safety interpretability sparse
autoencoder mechanistic circuits features probing linear nonlinear dynamics chaos random
walk markov chain monte carlo estimator estimation hypothesis testing regression survival
econometric market price forecasting temporal spatial point cloud mesh rendering neural
radiance fields physics informed operator learning partial differential
""".split()


# ---------------------------------------------------------------------------------------------
# Corpus


@dataclass
class Vocabulary:
    """Word frequencies, abstract lengths and word sequences to draw synthetic papers from."""

    words: np.ndarray
    probabilities: np.ndarray
    lengths: np.ndarray
    documents: list[list[str]]
    """Word sequences that seed the topics of synthetic papers."""
    source: str


_WORD = re.compile(r"[A-Za-z][A-Za-z-]*[A-Za-z]|[A-Za-z]")


def load_vocabulary(path: Path) -> Vocabulary:
    """Unigram frequencies, lengths and seed sequences from the shared abstracts, or the
    built-in list (whose "documents" are random topics of 40 words)."""
    if path.exists():
        counts: Counter[str] = Counter()
        lengths, documents = [], []
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                abstract = json.loads(line).get("abstract", "")
                words = [w.lower() for w in _WORD.findall(abstract)]
                if len(words) < 20:
                    continue
                counts.update(words)
                documents.append(words)
                lengths.append(len(abstract.split()))
        source = f"{path} ({len(documents)} abstracts, {len(counts):,} distinct words)"
    else:
        rng = random.Random(7)
        content = list(dict.fromkeys(BUILTIN_WORDS))
        documents = [
            [rng.choice(content[:40]) if rng.random() < 0.4 else rng.choice(topic)
             for _ in range(150)]
            for topic in (rng.sample(content[40:], 40) for _ in range(60))
        ]  # fmt: skip
        counts = Counter(w for d in documents for w in d)
        lengths = [int(x) for x in np.clip(np.random.default_rng(7).normal(170, 45, 500), 40, 400)]
        source = f"built-in word list ({len(counts)} words)"
    words, freqs = zip(*counts.most_common(), strict=True)
    probabilities = np.array(freqs, dtype=float)
    return Vocabulary(
        np.array(words, dtype=object), probabilities / probabilities.sum(), np.array(lengths),
        documents, source,
    )  # fmt: skip


@dataclass
class Doc:
    arxiv_id: str
    title: str
    abstract: str
    authors: list[str]
    categories: list[str]
    published: datetime


SEED_SHARE = 0.7
"""Share of a synthetic abstract copied in short runs from its seed abstract: papers have
topics, so a topical word is frequent in few papers rather than sprinkled over all of them."""


def generate(vocab: Vocabulary, n: int, seed: int) -> Iterator[list[Doc]]:
    """Chunks of synthetic papers; ids are unique new-style ids ordered by date.

    Each paper takes one seed abstract as its topic and mixes runs of 4–14 consecutive words
    from it (so real word pairs occur, for phrase queries) with words drawn from the overall
    word frequencies; its title is one such run.
    """
    rng = np.random.default_rng(seed)
    py = random.Random(seed)
    names, weights = zip(*CATEGORIES, strict=True)
    cat_p = np.array(weights, dtype=float) / sum(weights)
    start = datetime(2010, 1, 1, tzinfo=UTC)
    span = (NOW - start).total_seconds()
    per_month: Counter[str] = Counter()
    made = 0
    while made < n:
        size = min(CHUNK, n - made)
        lengths = rng.choice(vocab.lengths, size=size)
        background = list(rng.choice(vocab.words, size=int(lengths.sum()), p=vocab.probabilities))
        cursor = 0
        # Later papers are more numerous, as on arXiv.
        moments = np.sort(rng.power(2.0, size=size)) * span
        primaries = rng.choice(len(names), size=size, p=cat_p)
        chunk = []
        for i in range(size):
            topic = vocab.documents[py.randrange(len(vocab.documents))]
            words: list[str] = []
            while len(words) < lengths[i]:
                if py.random() < SEED_SHARE:
                    at = py.randrange(len(topic))
                    words.extend(topic[at : at + py.randint(4, 14)])
                else:
                    take = py.randint(2, 5)
                    words.extend(background[cursor : cursor + take])
                    cursor += take
            at = py.randrange(max(1, len(topic) - 14))
            title = " ".join(topic[at : at + py.randint(5, 14)])
            published = start + timedelta(seconds=float(moments[i]))
            month = f"{published:%y%m}"
            per_month[month] += 1
            primary = names[primaries[i]]
            extra = [names[k] for k in rng.choice(len(names), size=py.randint(0, 2), p=cat_p)]
            chunk.append(
                Doc(
                    arxiv_id=f"{month}.{per_month[month]:05d}",
                    title=title.capitalize(),
                    abstract=" ".join(words[: lengths[i]]) + ".",
                    authors=[
                        f"{py.choice(FORENAMES)} {py.choice(SURNAMES)}"
                        for _ in range(py.randint(1, 6))
                    ],
                    categories=list(dict.fromkeys([primary, *extra])),
                    published=published,
                )
            )
        made += size
        yield chunk


# ---------------------------------------------------------------------------------------------
# Loading


def _stamp(moment: datetime) -> str:
    # How SQLAlchemy stores DateTime on SQLite (naive UTC).
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def load_sqlite(
    path: Path, vocab: Vocabulary, n: int, seed: int
) -> tuple[Database, dict[str, float]]:
    """Schema at 0001, rows inserted directly, then the search migration indexes them."""
    url = f"sqlite:///{path}"
    db = Database(url)
    upgrade(db, "0001")
    db.dispose()
    timings = {}
    started = time.perf_counter()
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA synchronous=OFF")
    now = _stamp(NOW)
    for chunk in generate(vocab, n, seed):
        connection.executemany(
            "INSERT INTO paper (arxiv_id, version, title, abstract, authors, categories, "
            "primary_category, published, updated, withdrawn, first_seen_at, ingested_at) "
            "VALUES (?, 1, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)",
            [
                (
                    d.arxiv_id,
                    d.title,
                    d.abstract,
                    json.dumps(d.authors),
                    json.dumps(d.categories),
                    d.categories[0],
                    _stamp(d.published),
                    _stamp(d.published),
                    now,
                    now,
                )
                for d in chunk
            ],
        )
        connection.commit()
    connection.close()
    timings["load_s"] = time.perf_counter() - started
    started = time.perf_counter()
    db = Database(url)
    upgrade(db)
    with db.engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO paper_search_fts (paper_search_fts) VALUES ('optimize')")
    timings["index_s"] = time.perf_counter() - started
    return db, timings


def sqlite_index_bytes(db: Database) -> int:
    """Pages of every search table (FTS5 shadow tables and the document-id map)."""
    with db.engine.connect() as connection:
        rows = connection.exec_driver_sql(
            "SELECT sum(pgsize) FROM dbstat WHERE name LIKE 'paper_search%' "
            "OR name LIKE 'sqlite_autoindex_paper_search%'"
        ).scalar()
    return int(rows or 0)


def load_postgres(
    url: str, schema: str, vocab: Vocabulary, n: int, seed: int
) -> tuple[Database, dict[str, float]]:
    """A dedicated schema at 0001, rows COPYed in, then the search migration indexes them."""
    import psycopg

    plain = normalize_url(url).replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in url else "?"
    scoped = f"{normalize_url(url)}{separator}options=-csearch_path%3D{schema}"
    db = Database(scoped)
    upgrade(db, "0001")
    timings = {}
    started = time.perf_counter()
    with psycopg.connect(plain, options=f"-csearch_path={schema}") as connection:
        with (
            connection.cursor() as cursor,
            cursor.copy(
                "COPY paper (arxiv_id, version, title, abstract, authors, categories, "
                "primary_category, published, updated, withdrawn, first_seen_at, ingested_at) "
                "FROM STDIN"
            ) as copy,
        ):
            for chunk in generate(vocab, n, seed):
                for d in chunk:
                    copy.write_row(
                        (d.arxiv_id, 1, d.title, d.abstract, json.dumps(d.authors),
                         json.dumps(d.categories), d.categories[0], d.published, d.published,
                         False, NOW, NOW)
                    )  # fmt: skip
        connection.commit()
    timings["load_s"] = time.perf_counter() - started
    started = time.perf_counter()
    upgrade(db)
    with db.engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE")
    timings["index_s"] = time.perf_counter() - started
    return db, timings


def postgres_index_bytes(db: Database) -> int:
    """The tsvector table with its GIN index, and the vocabulary table."""
    with db.engine.connect() as connection:
        return int(
            connection.exec_driver_sql(
                "SELECT pg_total_relation_size('paper_search') "
                "+ pg_total_relation_size('paper_search_vocab')"
            ).scalar()
            or 0
        )


def drop_schema(url: str, schema: str) -> None:
    """Remove the benchmark's PostgreSQL schema."""
    import psycopg

    plain = normalize_url(url).replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as admin:
        admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def add_engagement(db: Database, n: int, seed: int) -> None:
    """Recent engagement snapshots for 1% of papers, so the trend prior has work to do."""
    from feeds.records import Signal
    from storage.engagement import add_snapshots

    rng = random.Random(seed)
    with db.engine.connect() as connection:
        ids = [row[0] for row in connection.exec_driver_sql(
            "SELECT arxiv_id FROM paper ORDER BY published DESC LIMIT 20000")]  # fmt: skip
    chosen = rng.sample(ids, min(len(ids), max(1, n // 100)))
    signals = [
        Signal(a, rng.choice(("hackernews", "reddit", "bluesky")), "points",
               float(rng.randint(1, 500)), NOW - timedelta(hours=rng.randint(1, 600)))
        for a in chosen
    ]  # fmt: skip
    add_snapshots(db, signals)


# ---------------------------------------------------------------------------------------------
# Queries


def make_queries(vocab: Vocabulary, count: int, seed: int) -> list[tuple[str, str]]:
    """(kind, query) pairs in a mix like people type: mostly 1–3 topical words, some phrases,
    prefixes and filters.

    Words are drawn by frequency from the vocabulary without stop words and without its 30
    most frequent words, so common words ("learning", "model") do come up.
    """
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    rng = random.Random(seed)
    ranked = [
        str(w) for w in vocab.words[30:5000]
        if len(str(w)) > 3 and str(w) not in ENGLISH_STOP_WORDS
    ]  # fmt: skip
    weights = [1.0 / math.sqrt(i + 1) for i in range(len(ranked))]

    def word() -> str:
        return rng.choices(ranked, weights)[0]

    def phrase() -> str:
        # Two words that follow each other in some abstract.
        document = rng.choice(vocab.documents)
        while True:
            at = rng.randrange(len(document) - 1)
            pair = document[at : at + 2]
            if not all(w in ENGLISH_STOP_WORDS for w in pair):
                return f'"{pair[0]} {pair[1]}"'

    kinds: list[tuple[str, float, Callable[[], str]]] = [
        ("1 word", 0.30, lambda: word()),
        ("2 words", 0.22, lambda: f"{word()} {word()}"),
        ("3 words", 0.10, lambda: f"{word()} {word()} {word()}"),
        ("phrase", 0.08, phrase),
        ("prefix*", 0.05, lambda: word()[:5] + "*"),
        ("cat:", 0.06, lambda: f"{word()} cat:{rng.choice(CATEGORIES)[0]}"),
        ("since:90d", 0.05, lambda: f"{word()} since:90d"),
        ("author:", 0.04, lambda: f"author:{rng.choice(SURNAMES)} {word()}"),
        ("sort:new", 0.04, lambda: f"{word()} {word()} sort:new"),
        ("-exclude", 0.03, lambda: f"{word()} -{word()}"),
        ("sort:trending", 0.03, lambda: f"{word()} sort:trending"),
    ]
    queries = []
    for _ in range(count):
        pick = rng.random()
        chosen = kinds[-1]
        for kind in kinds:
            pick -= kind[1]
            if pick <= 0:
                chosen = kind
                break
        queries.append((chosen[0], chosen[2]()))
    return queries


def time_queries(db: Database, queries: list[str]) -> list[float]:
    """Milliseconds per query through the public search function (warm cache)."""
    for query in queries[:20]:
        search(db, query, now=NOW)
    latencies = []
    for query in queries:
        started = time.perf_counter()
        search(db, query, now=NOW)
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


# ---------------------------------------------------------------------------------------------
# The baseline: arxiv-sanity-lite's search, scoring every paper in Python


class FullScan:
    """Every paper in memory; each query walks all of them and scores substring matches."""

    def __init__(self, db: Database) -> None:
        self.ids: list[str] = []
        self.titles: list[str] = []
        self.authors: list[str] = []
        self.abstracts: list[str] = []
        with db.engine.connect() as connection:
            for arxiv_id, title, abstract, authors in connection.exec_driver_sql(
                "SELECT arxiv_id, title, abstract, authors FROM paper"
            ):
                names = authors if isinstance(authors, list) else json.loads(authors)
                self.ids.append(arxiv_id)
                self.titles.append(title.lower())
                self.abstracts.append(abstract.lower())
                self.authors.append(" ".join(names).lower())
        self.idf: dict[str, float] = {}

    def _idf(self, word: str) -> float:
        if word not in self.idf:
            # Document frequency from a fixed sample keeps the baseline's setup cost out of
            # the per-query timing, as a precomputed idf table would.
            sample = self.abstracts[:: max(1, len(self.abstracts) // 20_000)]
            df = sum(1 for text in sample if word in text)
            self.idf[word] = math.log((len(sample) + 1) / (df + 1)) + 1
        return self.idf[word]

    def query(self, text: str, k: int = 5) -> list[str]:
        """Top k ids; the query's plain words only (no filters, like the original)."""
        words = [
            w.lower().strip('"*') for w in text.split() if ":" not in w and not w.startswith("-")
        ]
        words = [w for w in words if w]
        weights = [self._idf(w) for w in words]
        scored = []
        for i in range(len(self.ids)):
            title, authors, abstract = self.titles[i], self.authors[i], self.abstracts[i]
            score = 0.0
            for word, weight in zip(words, weights, strict=True):
                score += weight * (
                    20.0 * (word in title) + 10.0 * (word in authors)
                    + min(3, abstract.count(word))
                )  # fmt: skip
            if score > 0:
                scored.append((score, self.ids[i]))
        scored.sort(reverse=True)
        return [arxiv_id for _, arxiv_id in scored[:k]]


# ---------------------------------------------------------------------------------------------


def by_kind(name: str, kinds: list[str], latencies: list[float], queries: list[str]) -> None:
    """p50/p95 per kind of query, and the slowest queries."""
    groups: dict[str, list[float]] = {}
    for kind, latency in zip(kinds, latencies, strict=True):
        groups.setdefault(kind, []).append(latency)
    parts = [
        f"{kind} {percentile(values, 0.5):.0f}/{percentile(values, 0.95):.0f}"
        for kind, values in groups.items()
    ]
    print(f"  {name} p50/p95 ms by kind: " + ", ".join(parts))
    slowest = sorted(zip(latencies, queries, strict=True), reverse=True)[:5]
    print("  slowest: " + " | ".join(f"{q} ({ms:.0f} ms)" for ms, q in slowest))


def report(
    name: str, latencies: list[float], index_bytes: int, timings: dict[str, float]
) -> dict[str, float]:
    """Print one engine's figures and return them."""
    figures = {
        "p50": percentile(latencies, 0.50),
        "p95": percentile(latencies, 0.95),
        "p99": percentile(latencies, 0.99),
        "mean": statistics.fmean(latencies),
    }
    print(
        f"{name:<11} p50 {figures['p50']:7.1f} ms   p95 {figures['p95']:7.1f} ms   "
        f"p99 {figures['p99']:7.1f} ms   mean {figures['mean']:6.1f} ms   "
        f"index {index_bytes / 1e6:8.1f} MB   load {timings['load_s']:6.0f} s   "
        f"index build {timings['index_s']:6.0f} s"
    )
    return figures


def main() -> int:
    """Build the corpus, run the queries on each engine and the baseline, print figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="papers in the corpus")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--scan-queries", type=int, default=20, help="queries for the full scan")
    parser.add_argument("--postgres", default=os.environ.get("TP_TEST_POSTGRES_URL"))
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--workdir", type=Path, default=None, help="where temporary files go")
    parser.add_argument(
        "--sqlite-file", type=Path, default=None,
        help="keep the SQLite corpus here; reused (not rebuilt) when the file exists",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    vocab = load_vocabulary(args.corpus)
    print(f"{args.n:,} synthetic papers; vocabulary and lengths from {vocab.source}")
    pairs = make_queries(vocab, args.queries, args.seed)
    kinds = [kind for kind, _ in pairs]
    queries = [query for _, query in pairs]
    print(f"{len(queries)} queries, e.g. " + " | ".join(queries[:6]))

    results: dict[str, dict[str, float]] = {}
    latencies: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        path = args.sqlite_file or Path(tmp) / "bench.db"
        if args.sqlite_file and args.sqlite_file.exists():
            sqlite_db, timings = Database(f"sqlite:///{path}"), {"load_s": 0.0, "index_s": 0.0}
            print(f"reusing {path} (load and index times not measured)")
        else:
            sqlite_db, timings = load_sqlite(path, vocab, args.n, args.seed)
            add_engagement(sqlite_db, args.n, args.seed)
        latencies["SQLite FTS5"] = time_queries(sqlite_db, queries)
        results["SQLite FTS5"] = report(
            "SQLite FTS5", latencies["SQLite FTS5"], sqlite_index_bytes(sqlite_db), timings
        )
        by_kind("SQLite FTS5", kinds, latencies["SQLite FTS5"], queries)

        if args.postgres and not args.no_postgres:
            schema = f"tp_bench_{uuid.uuid4().hex[:10]}"
            try:
                pg_db, timings = load_postgres(args.postgres, schema, vocab, args.n, args.seed)
                add_engagement(pg_db, args.n, args.seed)
                latencies["PostgreSQL"] = time_queries(pg_db, queries)
                results["PostgreSQL"] = report(
                    "PostgreSQL", latencies["PostgreSQL"], postgres_index_bytes(pg_db), timings
                )
                by_kind("PostgreSQL", kinds, latencies["PostgreSQL"], queries)
                pg_db.dispose()
            finally:
                drop_schema(args.postgres, schema)
        else:
            print("PostgreSQL: skipped (give --postgres URL or set TP_TEST_POSTGRES_URL)")

        scan = FullScan(sqlite_db)
        sample = random.Random(args.seed).sample(
            range(len(queries)), min(args.scan_queries, len(queries))
        )
        scan_ms = []
        for index in sample:
            started = time.perf_counter()
            scan.query(queries[index])
            scan_ms.append((time.perf_counter() - started) * 1000)
        sqlite_db.dispose()

    scan_median = statistics.median(scan_ms)
    print(
        f"full scan   median {scan_median:9.0f} ms per query over {len(sample)} of the same "
        f"queries (arxiv-sanity-lite style: score every paper in Python)"
    )
    for name in results:
        same = statistics.median(latencies[name][i] for i in sample)
        print(
            f"  {name}: {scan_median / same:,.0f}× faster than the full scan (median, same queries)"
        )
    p95 = results["SQLite FTS5"]["p95"]
    verdict = "met" if p95 < TARGET_P95_MS else "missed"
    print(
        f"target p95 < {TARGET_P95_MS:.0f} ms on SQLite: {verdict} "
        f"({p95:.1f} ms at {args.n:,} papers)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
