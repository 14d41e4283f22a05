"""Ingest throughput: parse N synthetic OAI-PMH records, then parse and store them in SQLite.

Usage: python bench/ingest.py [N]        (default 50,000)

Prints records/s for parse alone and parse+store (wall clock, the figures the targets are
for), the same two rates over this process's CPU time (on a busy machine the wall clock also
counts the time spent waiting for a CPU or the disk), and the ratio of the bulk upsert against
the naive way it replaces (one ORM lookup and write per paper, one commit per paper),
measured in the same run on a sample.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from xml.sax.saxutils import escape

from feeds.arxiv import parse_oai
from feeds.records import Paper as PaperRecord
from storage.db import Database
from storage.migrate import upgrade
from storage.models import Paper
from storage.papers import upsert_papers

PAGE_SIZE = 1000
WORDS = """
learning model network graph diffusion language transformer attention policy reward
optimization gradient kernel bayesian inference sampling protein molecule vision image
video speech robot control theory bound convergence sparse dense embedding retrieval
benchmark dataset evaluation alignment reasoning agent planning uncertainty causal
""".split()
CATEGORIES = ("cs.LG", "cs.CL", "cs.CV", "cs.AI", "stat.ML", "math.OC", "q-bio.BM", "cs.RO")
SURNAMES = ("Nguyen", "Smith", "Müller", "García", "Kowalski", "Tanaka", "Okafor", "Rossi")
FORENAMES = ("Ana", "Bo", "Chen", "Dmitri", "Eve", "Farah", "Giulia", "Hiro")


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def synthetic_page(start: int, count: int, rng: random.Random, *, last: bool) -> bytes:
    """One ``ListRecords`` page in arXiv's ``arXiv`` metadata format."""
    records = []
    for number in range(start, start + count):
        arxiv_id = f"25{(number // 90000) % 12 + 1:02d}.{number % 90000 + 10000:05d}"
        cats = " ".join(rng.sample(CATEGORIES, rng.randint(1, 3)))
        authors = "".join(
            f"<author><keyname>{rng.choice(SURNAMES)}</keyname>"
            f"<forenames>{rng.choice(FORENAMES)}</forenames></author>"
            for _ in range(rng.randint(1, 6))
        )
        updated = "<updated>2025-03-02</updated>" if number % 4 == 0 else ""
        records.append(
            f"<record><header><identifier>oai:arXiv.org:{arxiv_id}</identifier>"
            f"<datestamp>2025-03-03</datestamp><setSpec>cs</setSpec></header><metadata>"
            f'<arXiv xmlns="http://arxiv.org/OAI/arXiv/">'
            f"<id>{arxiv_id}</id><created>2025-02-01</created>{updated}"
            f"<authors>{authors}</authors>"
            f"<title>{escape(_words(rng, rng.randint(6, 14)).title())}</title>"
            f"<categories>{cats}</categories>"
            f"<comments>{rng.randint(5, 40)} pages</comments>"
            f"<license>http://creativecommons.org/licenses/by/4.0/</license>"
            f"<abstract>{escape(_words(rng, rng.randint(120, 220)))} with $O(n &lt; m)$.</abstract>"
            f"</arXiv></metadata></record>"
        )
    token = "" if last else f"<resumptionToken>token{start + count}</resumptionToken>"
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<OAI-PMH xmlns="http://www.openarchives.org/OAI/2.0/">'
        f"<responseDate>2025-03-03T00:00:00Z</responseDate>"
        '<request verb="ListRecords">https://oaipmh.arxiv.org/oai</request>'
        f"<ListRecords>{''.join(records)}{token}</ListRecords></OAI-PMH>"
    ).encode()


def naive_store(db: Database, records: list[PaperRecord]) -> None:
    """The baseline: look each paper up through the ORM and commit it on its own."""
    for record in records:
        with db.session() as session:
            row = session.get(Paper, record.arxiv_id)
            if row is None:
                row = Paper(
                    arxiv_id=record.arxiv_id,
                    version=record.version,
                    title=record.title,
                    abstract=record.abstract,
                    authors=list(record.authors),
                    categories=list(record.categories),
                    primary_category=record.primary_category,
                    published=record.published,
                    updated=record.updated,
                    comment=record.comment,
                )
            elif record.version > row.version:
                row.version, row.title, row.abstract = record.version, record.title, record.abstract
            session.add(row)


def main() -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=50_000, help="number of records")
    parser.add_argument("--baseline-sample", type=int, default=2_000)
    args = parser.parse_args()
    rng = random.Random(42)
    pages = [
        synthetic_page(start, min(PAGE_SIZE, args.n - start), rng, last=start + PAGE_SIZE >= args.n)
        for start in range(0, args.n, PAGE_SIZE)
    ]
    size_mb = sum(len(p) for p in pages) / 1e6
    print(f"{args.n:,} synthetic OAI-PMH records in {len(pages)} pages ({size_mb:.1f} MB)")

    started, cpu_started = time.perf_counter(), time.process_time()
    parsed = [paper for page in pages for paper in parse_oai(page).papers]
    parse_seconds = time.perf_counter() - started
    parse_cpu_seconds = time.process_time() - cpu_started
    assert len(parsed) == args.n, f"parsed {len(parsed)} of {args.n}"

    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite:///{Path(tmp) / 'bench.db'}")
        upgrade(db)
        now = datetime.now(UTC)
        started, cpu_started = time.perf_counter(), time.process_time()
        stored = 0
        for page in pages:
            result = upsert_papers(db, parse_oai(page).papers, now=now)
            stored += result.inserted
        store_seconds = time.perf_counter() - started
        store_cpu_seconds = time.process_time() - cpu_started
        assert stored == args.n, f"stored {stored} of {args.n}"
        db.dispose()

        sample = parsed[: args.baseline_sample]
        naive_db = Database(f"sqlite:///{Path(tmp) / 'naive.db'}")
        upgrade(naive_db)
        started = time.perf_counter()
        naive_store(naive_db, sample)
        naive_rate = len(sample) / (time.perf_counter() - started)
        bulk_db = Database(f"sqlite:///{Path(tmp) / 'bulk.db'}")
        upgrade(bulk_db)
        started = time.perf_counter()
        upsert_papers(bulk_db, sample, now=now)
        bulk_rate = len(sample) / (time.perf_counter() - started)
        naive_db.dispose()
        bulk_db.dispose()

    parse_rate = args.n / parse_seconds
    store_rate = args.n / store_seconds
    print(f"parse alone:        {parse_rate:>10,.0f} records/s  (target ≥ 20,000)")
    print(f"parse + store:      {store_rate:>10,.0f} records/s  (target ≥ 5,000, SQLite WAL)")
    print(
        f"per CPU second:     {args.n / parse_cpu_seconds:>10,.0f} parse alone, "
        f"{args.n / store_cpu_seconds:,.0f} parse + store"
    )
    print(
        f"store only, {len(sample):,} records: bulk upsert {bulk_rate:,.0f}/s vs naive per-row "
        f"ORM {naive_rate:,.0f}/s → {bulk_rate / naive_rate:.1f}× faster"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
