"""Search over every stored paper: SQLite FTS5 (BM25) or PostgreSQL full text, one function.

``search(db, "diffusion author:ho since:2024")`` parses the query with
:mod:`storage.search_query` (the user's text never reaches the engine as syntax: words are
quoted one by one and passed as bind parameters), runs it on whichever engine ``db`` is, and
returns a :class:`SearchPage` of hits with highlighted snippets, or a one-line explanation.

Ranking (default): engine relevance (BM25 on SQLite with the title weighted 4×, authors 2×;
``ts_rank_cd`` on PostgreSQL with weights title A, authors B, abstract C), normalised to the
best match, plus a small recency prior and a small trend prior (recent engagement summed in
SQL). ``sort:new`` orders by publication date, ``sort:trending`` by recent engagement.

Work per query is bounded, so an archive of a million papers answers in tens of milliseconds:

- Relevance is computed for the newest :data:`SCORE_POOL` matches (every match of a narrower
  query); older papers stay reachable with more words or a filter (``before:``, ``cat:``…).
- On SQLite, FTS5 counts every document of every query word to compute BM25. When the words
  are that common (estimated from the newest documents, :data:`BM25_BUDGET`), papers are
  ranked by whether their title has the words, then by the priors, without BM25.
- ``since:``/``before:`` become a document-id range FTS5 seeks to; counts stop at
  :data:`COUNT_CAP` ("over 10,000 papers match").
- Statements are cut off after :data:`QUERY_TIMEOUT_SECONDS` with a friendly message.

The index is kept in step with the ``paper`` table by triggers created in migration 0002; this
module only reads it (and :func:`rebuild_index` recreates it after bulk loads).
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, func, select, text
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.sql.elements import TextClause

from storage.db import Database
from storage.errors import StorageError
from storage.models import PAPERS, SNAPSHOTS
from storage.search_query import (
    MAX_TERMS,
    Atom,
    Phrase,
    Query,
    Sort,
    Word,
    category_token,
    clean,
    fold,
    parse,
)
from storage.types import UTCDateTime, utcnow

logger = logging.getLogger(__name__)

RESULT_WINDOW = 200
"""Relevance-ranked matches that are re-ranked with the priors; the deepest reachable result."""
SCORE_POOL = 5000
"""Matches scored per query: all of them when fewer, else the newest this many. Bounds the work
of a broad query at archive scale; words and filters (before:, cat:, author:) reach further."""
BM25_BUDGET = 200_000
"""Postings BM25 may count per query on SQLite (FTS5 counts each phrase's documents anew on
every query); above it, a query of common words is ranked by title match and priors."""
BROAD_POOL = 2000
"""Newest matches taken for a query of common words (they are ranked without BM25)."""
BROAD_TITLE, BROAD_OTHER = 1.0, 0.6
PROBE_WINDOW = 20_000
"""Newest documents sampled to estimate how common the words of a query are."""
BOUND_SCAN = 200_000
"""A since:/before: range of up to this many papers is turned into a document-id range."""
_NO_DOCUMENT = 2**62
COUNT_CAP = 10_000
"""Matches are counted up to here; a broader query says "over 10,000"."""
MAX_PER_PAGE = 50
TREND_WINDOW = timedelta(days=30)
RECENCY_WEIGHT = 0.15
RECENCY_HALF_LIFE_DAYS = 180.0
TREND_WEIGHT = 0.15
TREND_SCALE = math.log1p(1000.0)
"""Recent engagement of 1000 (summed points, likes, upvotes…) gives the full trend prior."""
SNIPPET_TOKENS = 32
QUERY_TIMEOUT_SECONDS = 5.0
_PROGRESS_STEPS = 20_000
"""SQLite virtual-machine steps between two looks at the clock."""
SEARCH_OBJECT_PREFIX = "paper_search"
"""Every table, view, trigger and function of the search index starts with this."""

_OPEN, _CLOSE = "\x02", "\x03"
_ELLIPSIS = "…"


@dataclass(frozen=True)
class SearchHit:
    """One matching paper; ``snippet`` is (text, highlighted) segments of its abstract."""

    arxiv_id: str
    title: str
    authors: tuple[str, ...]
    primary_category: str
    published: datetime
    snippet: tuple[tuple[str, bool], ...]
    score: float


@dataclass(frozen=True)
class SearchPage:
    """One page of results; ``message`` explains an empty, odd or adjusted search in one line.

    ``suggestion`` is a broader or corrected query worth offering as a button, when there is one.
    """

    hits: list[SearchHit]
    total: int
    page: int
    pages: int
    message: str | None
    suggestion: str | None = None


def include_name(name: str | None, type_: str, parent_names: Mapping[Any, Any]) -> bool:
    """Alembic ``include_name`` hook: the search index is managed by migration 0002 by hand,
    so autogenerate and schema comparisons must not see (or try to drop) its objects."""
    return not (type_ == "table" and name is not None and name.startswith(SEARCH_OBJECT_PREFIX))


# ---------------------------------------------------------------------------------------------
# Public entry point


def search(
    db: Database,
    query: str,
    *,
    page: int = 1,
    per_page: int = 5,
    now: datetime | None = None,
) -> SearchPage:
    """Run a user's search; never raises for any input. Database faults raise ``StorageError``."""
    now = now or utcnow()
    page = max(1, page)
    per_page = min(max(1, per_page), MAX_PER_PAGE)
    parsed = parse(query, now=now)
    notes = " ".join(parsed.notes) or None
    if parsed.is_empty and parsed.sort is Sort.RELEVANCE:
        return SearchPage(
            [], 0, page, 0,
            _join(notes, "Type what to look for, e.g. “diffusion transformer”, author:hinton, "
                  "cat:cs.LG, since:30d or an arXiv id."),
        )  # fmt: skip
    if not (parsed.has_text or parsed.has_filters) and parsed.excluded:
        return SearchPage(
            [], 0, page, 0, _join(notes, "Add a word to look for; a search can't only exclude.")
        )
    try:
        with _reading(db, now) as (connection, engine):
            return _Search(engine, connection, parsed, now, page, per_page, notes).run(query)
    except _TooSlow:
        return SearchPage(
            [], 0, page, 0,
            _join(notes, "That search took too long; add a more specific word or a filter."),
        )  # fmt: skip


def rebuild_index(db: Database) -> int:
    """Re-index every paper from scratch (after a bulk load or a restore); returns the count."""
    try:
        with db.engine.begin() as connection:
            if db.dialect == "sqlite":
                for statement in (
                    "INSERT INTO paper_search_fts (paper_search_fts) VALUES ('delete-all')",
                    "DELETE FROM paper_search",
                    "INSERT INTO paper_search (arxiv_id, published, categories) "
                    "SELECT arxiv_id, published, "
                    "coalesce((SELECT ' ' || group_concat(lower(c.value) || ' ' || lower("
                    "CASE WHEN instr(c.value, '.') > 0 THEN substr(c.value, 1, "
                    "instr(c.value, '.') - 1) ELSE c.value END), ' ') || ' ' "
                    "FROM json_each(paper.categories) AS c), ' ') "
                    "FROM paper ORDER BY published, arxiv_id",
                    "INSERT INTO paper_search_fts (paper_search_fts) VALUES ('rebuild')",
                    "INSERT INTO paper_search_fts (paper_search_fts) VALUES ('optimize')",
                ):
                    connection.exec_driver_sql(statement)
                count = connection.exec_driver_sql("SELECT count(*) FROM paper_search").scalar()
            else:
                for statement in (
                    "DELETE FROM paper_search",
                    "INSERT INTO paper_search (arxiv_id, document) SELECT arxiv_id, "
                    "paper_search_document(title, abstract, authors, categories) FROM paper",
                    "DELETE FROM paper_search_vocab",
                    "INSERT INTO paper_search_vocab (word) SELECT word "
                    "FROM ts_stat('SELECT document FROM paper_search', 'ABC') "
                    "WHERE word ~ '^[[:alpha:]]{3,}$'",
                ):
                    connection.exec_driver_sql(statement)
                count = connection.exec_driver_sql("SELECT count(*) FROM paper_search").scalar()
    except SQLAlchemyError as exc:
        raise StorageError("could not rebuild the search index") from exc
    return int(count or 0)


# ---------------------------------------------------------------------------------------------
# Connections, time limits, errors


class _TooSlow(Exception):
    """The engine gave up after QUERY_TIMEOUT_SECONDS."""


@contextmanager
def _reading(db: Database, now: datetime) -> Iterator[tuple[Connection, _Engine]]:
    try:
        with db.engine.connect() as connection:
            engine: _Engine
            if db.dialect == "postgresql":
                # A search is many short statements: JIT compilation and parallel workers
                # cost more to start than they save.
                for setting in (
                    f"statement_timeout = {int(QUERY_TIMEOUT_SECONDS * 1000)}",
                    "jit = off",
                    "max_parallel_workers_per_gather = 0",
                ):
                    connection.exec_driver_sql(f"SET LOCAL {setting}")
                engine = _Postgres(connection, now)
            else:
                engine = _Sqlite(connection, now)
            with _sqlite_deadline(connection, db.dialect):
                yield connection, engine
            connection.rollback()
    except OperationalError as exc:
        if _is_timeout(exc):
            logger.warning("search timed out after %.1f s", QUERY_TIMEOUT_SECONDS)
            raise _TooSlow from exc
        raise StorageError(_failure(exc)) from exc
    except SQLAlchemyError as exc:
        raise StorageError(_failure(exc)) from exc


def _failure(exc: SQLAlchemyError) -> str:
    # The driver's message only: SQLAlchemy's own adds the statement and the user's words.
    cause = getattr(exc, "orig", None) or exc
    return f"search failed: {type(cause).__name__}: {str(cause).strip()[:300]}"


def _is_timeout(exc: OperationalError) -> bool:
    message = str(exc.orig).lower()
    return "statement timeout" in message or "interrupted" in message


@contextmanager
def _sqlite_deadline(connection: Connection, dialect: str) -> Iterator[None]:
    """Interrupt a runaway SQLite statement (the progress handler runs every N VM steps)."""
    if dialect != "sqlite":
        yield
        return
    raw = connection.connection.driver_connection
    deadline = time.monotonic() + QUERY_TIMEOUT_SECONDS
    raw.set_progress_handler(lambda: int(time.monotonic() > deadline), _PROGRESS_STEPS)  # type: ignore[union-attr]
    try:
        yield
    finally:
        raw.set_progress_handler(None, 0)  # type: ignore[union-attr]


def _join(*parts: str | None) -> str | None:
    text_ = " ".join(part for part in parts if part)
    return text_ or None


# ---------------------------------------------------------------------------------------------
# Engines: each turns a parsed Query into its own syntax and SQL.
#
# SQL is assembled from fixed fragments of this module only (hence the S608 exemptions);
# everything the user typed reaches the database as a bind parameter.


@dataclass(frozen=True)
class _Match:
    """A matching paper with what the ranking needs, all computed in SQL."""

    arxiv_id: str
    relevance: float
    age_days: float
    trend: float


class _Engine(ABC):
    """What the search needs from a database; implemented for SQLite and PostgreSQL."""

    def __init__(self, connection: Connection, now: datetime) -> None:
        self.connection = connection
        self.now = now
        self.trend_since = now - TREND_WINDOW

    def rows(self, statement: TextClause, params: dict[str, Any]) -> list[Any]:
        """Every row of a statement."""
        return list(self.connection.execute(statement, params).all())

    def matches(self, sql: str, params: dict[str, Any]) -> list[_Match]:
        """Run a statement selecting (id, relevance, age in days, trend) into matches."""
        params = {**params, "now": self.now, "trend_since": self.trend_since}
        return [
            _Match(arxiv_id, float(relevance or 0.0), float(age or 0.0), float(trend or 0.0))
            for arxiv_id, relevance, age, trend in self.rows(_typed(sql, params), params)
        ]

    @abstractmethod
    def best(self, query: Query, limit: int) -> tuple[list[_Match], int | None]:
        """The best relevance matches (without words: the newest), and the exact number of
        matches when every match was scored."""

    @abstractmethod
    def newest(self, query: Query, offset: int, limit: int) -> list[str]:
        """Matching ids, newest first."""

    @abstractmethod
    def count(self, query: Query, cap: int) -> int:
        """How many papers match, counting no further than ``cap``."""

    @abstractmethod
    def among(self, query: Query, arxiv_ids: Sequence[str]) -> list[_Match]:
        """Which of these papers match, with their relevance."""

    @abstractmethod
    def snippets(self, query: Query, arxiv_ids: Sequence[str]) -> dict[str, str]:
        """Abstract snippets with highlight markers, by id."""

    @abstractmethod
    def known(self, word: str) -> bool:
        """True when the index has this word."""

    @abstractmethod
    def close_words(self, word: str) -> list[str]:
        """Index words within two edits of this one, best first."""


# Recent engagement of one paper: the highest value of every (source, metric, post) seen in the
# trend window, summed. Snapshots are cumulative counters, so the highest is the latest.
_TREND = (
    "(SELECT coalesce(sum(per_post.v), 0) FROM ("
    "SELECT max(e.value * e.weight) AS v FROM engagement_snapshot AS e "
    "WHERE e.arxiv_id = {id} AND e.observed_at >= :trend_since AND e.observed_at <= :now "
    "GROUP BY e.source, e.metric, coalesce(e.url, '')) AS per_post)"
)


def _date_filters(query: Query, column: str) -> tuple[list[str], dict[str, Any]]:
    where, params = [], {}
    if query.since is not None:
        where.append(f"{column} >= :since")
        params["since"] = query.since
    if query.before is not None:
        where.append(f"{column} < :before")
        params["before"] = query.before
    return where, params


def _typed(sql: str, params: Mapping[str, Any]) -> TextClause:
    """A text() statement whose datetimes and id lists are bound with the right types."""
    statement = text(sql)
    binds = []
    for name, value in params.items():
        if isinstance(value, datetime):
            binds.append(bindparam(name, type_=UTCDateTime()))
        elif isinstance(value, (list, tuple)):
            binds.append(bindparam(name, expanding=True))
    return statement.bindparams(*binds) if binds else statement


def _where(terms: Sequence[str]) -> str:
    return ("WHERE " + " AND ".join(terms)) if terms else ""


# -- SQLite FTS5 ------------------------------------------------------------------------------


def _fts_string(words: Sequence[str]) -> str:
    # Our words hold letters and digits only; doubling quotes keeps that true for any input.
    return '"' + " ".join(w.replace('"', '""') for w in words) + '"'


def _fts_atom(atom: Atom) -> str:
    if isinstance(atom, Phrase):
        return _fts_string(atom.words)
    return _fts_string([atom.text]) + (" *" if atom.prefix else "")


def _fts_author(words: tuple[str, ...]) -> str:
    if len(words) == 1:
        return f"{{authors}} : {_fts_string(words)}"
    # Any order, a middle name or initial in between: "geoffrey hinton", "hinton, geoffrey e".
    return f"{{authors}} : NEAR({' '.join(_fts_string([w]) for w in words)}, 2)"


def fts5_expression(query: Query) -> tuple[str | None, str | None]:
    """(what must match, what must not match) as FTS5 query syntax, or None for either.

    Words match in any column (a column filter would make FTS5 decode every position list of
    a common word); categories are not in the index but filtered in SQL.
    """
    positive = []
    if query.groups:
        positive.append(
            " AND ".join(
                "(" + " OR ".join(_fts_atom(atom) for atom in group) + ")" for group in query.groups
            )
        )
    positive += [_fts_author(words) for words in query.authors]
    negative = [_fts_atom(atom) for atom in query.excluded]
    negative += [_fts_author(words) for words in query.excluded_authors]
    return (
        " AND ".join(f"({part})" for part in positive) or None,
        " OR ".join(f"({part})" for part in negative) or None,
    )


def _category_key(category: str) -> str:
    # paper_search.categories holds " cs.lg cs stat.ml stat ".
    return f" {category.lower()} "


class _Sqlite(_Engine):
    _AGE = "julianday(:now) - julianday(s.published)"

    def __init__(self, connection: Connection, now: datetime) -> None:
        super().__init__(connection, now)
        self._docid_bounds: dict[tuple[str, datetime], int | None] = {}

    def _plan(self, query: Query) -> tuple[str | None, list[str], dict[str, Any]]:
        """(the FTS5 expression that must match, extra WHERE terms, parameters).

        The WHERE terms use ``s`` (paper_search) only.
        """
        positive, negative = fts5_expression(query)
        where, params = _date_filters(query, "s.published")
        if positive is not None:
            params["match"] = positive if negative is None else f"({positive}) NOT ({negative})"
        elif negative is not None:
            where.append(
                "s.docid NOT IN (SELECT rowid FROM paper_search_fts "
                "WHERE paper_search_fts MATCH :exclude)"
            )
            params["exclude"] = negative
        if query.categories:
            names = [f":category_{i}" for i in range(len(query.categories))]
            where.append("(" + " OR ".join(f"instr(s.categories, {n}) > 0" for n in names) + ")")
            params.update(
                {n[1:]: _category_key(c) for n, c in zip(names, query.categories, strict=True)}
            )
        for i, category in enumerate(query.excluded_categories):
            where.append(f"instr(s.categories, :not_category_{i}) = 0")
            params[f"not_category_{i}"] = _category_key(category)
        if query.ids:
            where.append("s.arxiv_id IN :ids")
            params["ids"] = list(query.ids)
        return params.get("match"), where, params

    def _bounds(self, query: Query) -> tuple[list[str], dict[str, Any]]:
        """Document-id limits implied by since:/before:, for FTS5 to seek to.

        Every paper published since a day has a document id at least as high as the lowest
        id among them, so FTS5 can skip all lower ids instead of testing the date of every
        older match (and likewise for before:).
        """
        terms: list[str] = []
        params: dict[str, Any] = {}
        for name, moment, operator, pick in (
            ("since", query.since, ">=", "min"),
            ("before", query.before, "<", "max"),
        ):
            if moment is None:
                continue
            key = (name, moment)
            if key not in self._docid_bounds:
                self._docid_bounds[key] = self._bound(moment, operator, pick)
            bound = self._docid_bounds[key]
            if bound is not None:
                terms.append(f"f.rowid {'>=' if name == 'since' else '<='} :{name}_docid")
                params[f"{name}_docid"] = bound
        return terms, params

    def _bound(self, moment: datetime, operator: str, pick: str) -> int | None:
        """The lowest (or highest) id of the papers on that side of ``moment``; None when
        they are too many for it to pay off (then the date test alone fills the pool fast)."""
        params = {"moment": moment, "scan": BOUND_SCAN + 1}
        # One walk over the (published, docid) index range, stopped after BOUND_SCAN rows.
        sql = (
            f"SELECT count(*), {pick}(docid) FROM (SELECT docid FROM paper_search "  # noqa: S608
            f"WHERE published {operator} :moment LIMIT :scan)"
        )
        counted, found = self.connection.execute(_typed(sql, params), params).one()
        if counted > BOUND_SCAN:
            return None
        if counted == 0:
            return _NO_DOCUMENT if pick == "min" else -1
        return int(found)

    def _recent(
        self, query: Query, where: list[str], *, ranked: bool, below: bool = False
    ) -> tuple[str, dict[str, Any]]:
        """The matches, newest-indexed first (document ids grow with ingestion), at most
        :pool of them. CROSS JOIN keeps FTS5 the outer loop: one cursor walks the matches
        (an inner FTS5 cursor per row would recount BM25's statistics on every row)."""
        rank = ", f.rank AS rank" if ranked else ""
        source = "paper_search_fts AS f"
        if where:
            source += " CROSS JOIN paper_search AS s ON s.docid = f.rowid"
        bounds, params = self._bounds(query)
        if below:
            bounds = [*bounds, "f.rowid < :oldest"]
        sql = (
            f"SELECT f.rowid AS docid{rank} FROM {source} "  # noqa: S608
            f"WHERE {' AND '.join(['paper_search_fts MATCH :match', *bounds, *where])} "
            "ORDER BY f.rowid DESC LIMIT :pool"
        )
        return sql, params

    def postings(self, query: Query) -> int:
        """About how many postings BM25 would count: FTS5 walks the whole document list of
        every phrase of the query on each search to get its document frequency.

        Estimated from the newest PROBE_WINDOW documents (FTS5 keeps no document frequencies;
        its vocabulary table counts them by walking the lists too). A prefix expands to every
        word that starts with it, so it always counts as a lot.
        """
        atoms = [*[a for group in query.groups for a in group], *query.excluded]
        if any(isinstance(a, Word) and a.prefix for a in atoms):
            return BM25_BUDGET + 1
        words = [w for a in atoms if isinstance(a, Phrase) for w in a.words]
        words += [a.text for a in atoms if isinstance(a, Word)]
        words += [w for name in (*query.authors, *query.excluded_authors) for w in name]
        newest = self.connection.exec_driver_sql("SELECT max(docid) FROM paper_search").scalar()
        if not newest or not words:
            return 0
        low = max(0, int(newest) - PROBE_WINDOW)
        probe = text(
            "SELECT count(*) FROM paper_search_fts WHERE paper_search_fts MATCH :word "
            "AND rowid > :low"
        )
        seen = sum(
            int(self.connection.execute(probe, {"word": _fts_string([w]), "low": low}).scalar_one())
            for w in dict.fromkeys(words)
        )
        return seen * int(newest) // max(1, int(newest) - low)

    def best(self, query: Query, limit: int) -> tuple[list[_Match], int | None]:
        match, where, params = self._plan(query)
        if match is None:
            return self.among(query, self.newest(query, 0, limit)), None
        if self.postings(query) > BM25_BUDGET:
            return self._broad(query, limit)
        # BM25 over the newest SCORE_POOL matches (all of them for a narrower query): FTS5
        # computes it per row, so scoring every match of a common word would not scale.
        recent, bounds = self._recent(query, where, ranked=True)
        sql = (
            f"WITH pool AS MATERIALIZED ({recent}) "  # noqa: S608
            "SELECT docid, -rank, (SELECT count(*) FROM pool), (SELECT min(docid) FROM pool) "
            "FROM pool ORDER BY rank LIMIT :limit"
        )
        params = {**params, **bounds, "pool": SCORE_POOL, "limit": limit}
        rows = self.rows(_typed(sql, params), params)
        if not rows:
            return [], 0
        scored, oldest = int(rows[0][2]), int(rows[0][3])
        relevance = {docid: float(score) for docid, score, _, _ in rows}
        return self._details(relevance), self._total(query, scored, SCORE_POOL, oldest)

    def _total(self, query: Query, found: int, pool: int, oldest: int) -> int:
        """Matches in all: the pool's count when it was not full, else counted on from where
        the pool stopped, up to COUNT_CAP + 1."""
        if found < pool:
            return found
        _, where, params = self._plan(query)
        recent, bounds = self._recent(query, where, ranked=False, below=True)
        params = {**params, **bounds, "oldest": oldest, "pool": max(0, COUNT_CAP + 1 - found)}
        sql = f"SELECT count(*) FROM ({recent})"  # noqa: S608
        return found + int(self.connection.execute(_typed(sql, params), params).scalar_one())

    def _broad(self, query: Query, limit: int) -> tuple[list[_Match], int | None]:
        """A query of common words: BM25 would read millions of postings, so rank by whether
        the title has the words (then by the priors: recent and talked-about first)."""
        match, where, params = self._plan(query)
        recent, bounds = self._recent(query, where, ranked=False)
        params = {**params, **bounds, "pool": BROAD_POOL}
        pool = [docid for (docid,) in self.rows(_typed(recent, params), params)]
        if not pool:
            return [], 0
        titled: set[int] = set()
        prefixed = any(isinstance(a, Word) and a.prefix for g in query.groups for a in g)
        # A prefix is expanded again by every FTS5 query: no second pass for titles then.
        if query.groups and not prefixed:
            groups = " AND ".join(
                "(" + " OR ".join(_fts_atom(atom) for atom in group) + ")" for group in query.groups
            )
            in_title = {
                "match": f"({{title}} : ({groups})) AND ({match})",
                "low": pool[-1],
                "pool": BROAD_POOL,
            }
            titled = {
                docid
                for (docid,) in self.rows(
                    text(
                        "SELECT rowid FROM paper_search_fts WHERE paper_search_fts MATCH :match "
                        "AND rowid >= :low ORDER BY rowid DESC LIMIT :pool"
                    ),
                    in_title,
                )
            }
        first = [docid for docid in pool if docid in titled][:limit]
        rest = [docid for docid in pool if docid not in titled][:limit]
        relevance = {**{d: BROAD_TITLE for d in first}, **{d: BROAD_OTHER for d in rest}}
        return self._details(relevance), self._total(query, len(pool), BROAD_POOL, pool[-1])

    def _details(self, relevance: dict[int, float]) -> list[_Match]:
        if not relevance:
            return []
        sql = (
            f"SELECT s.docid, s.arxiv_id, {self._AGE}, {_TREND.format(id='s.arxiv_id')} "  # noqa: S608
            "FROM json_each(:docids) AS j CROSS JOIN paper_search AS s ON s.docid = j.value"
        )
        params = {
            "docids": json.dumps(list(relevance)),
            "now": self.now,
            "trend_since": self.trend_since,
        }
        return [
            _Match(arxiv_id, relevance[docid], float(age or 0.0), float(trend or 0.0))
            for docid, arxiv_id, age, trend in self.rows(_typed(sql, params), params)
        ]

    def newest(self, query: Query, offset: int, limit: int) -> list[str]:
        match, where, params = self._plan(query)
        source = "paper_search AS s"
        if match is not None:
            # Ordering every match of a broad query by date would touch them all: order the
            # newest-indexed SCORE_POOL matches (all of them when there are fewer).
            recent, bounds = self._recent(query, where, ranked=False)
            source = f"({recent}) AS c JOIN paper_search AS s ON s.docid = c.docid"
            where = []
            params = {**params, **bounds, "pool": max(SCORE_POOL, offset + limit)}
        sql = (
            f"SELECT s.arxiv_id FROM {source} {_where(where)} "  # noqa: S608
            "ORDER BY s.published DESC, s.arxiv_id DESC LIMIT :limit OFFSET :offset"
        )
        rows = self.rows(_typed(sql, params), {**params, "limit": limit, "offset": offset})
        return [arxiv_id for (arxiv_id,) in rows]

    def count(self, query: Query, cap: int) -> int:
        match, where, params = self._plan(query)
        if match is not None:
            recent, bounds = self._recent(query, where, ranked=False)
            sql = f"SELECT count(*) FROM ({recent})"  # noqa: S608
            params = {**params, **bounds, "pool": cap}
        else:
            sql = (
                "SELECT count(*) FROM (SELECT 1 FROM paper_search AS s "  # noqa: S608
                f"{_where(where)} LIMIT :cap)"
            )
            params = {**params, "cap": cap}
        return int(self.connection.execute(_typed(sql, params), params).scalar_one())

    def among(self, query: Query, arxiv_ids: Sequence[str]) -> list[_Match]:
        if not arxiv_ids:
            return []
        match, where, params = self._plan(query)
        # Driven by the id list (CROSS JOIN fixes the loop order), so FTS5 only tests these
        # documents; their relevance is left at 0 (used for trending, where trend decides).
        source = "json_each(:among) AS j CROSS JOIN paper_search AS s ON s.arxiv_id = j.value"
        if match is not None:
            source += " CROSS JOIN paper_search_fts AS f ON f.rowid = s.docid"
            where = ["paper_search_fts MATCH :match", *where]
        sql = (
            f"SELECT s.arxiv_id, 0.0, {self._AGE}, "  # noqa: S608
            f"{_TREND.format(id='s.arxiv_id')} FROM {source} {_where(where)}"
        )
        return self.matches(sql, {**params, "among": json.dumps(list(arxiv_ids))})

    def snippets(self, query: Query, arxiv_ids: Sequence[str]) -> dict[str, str]:
        # Any positive word or phrase, ORed: a document matching any of them gets a snippet
        # with all of them marked. Prefixes are marked in Python (see _mark_prefixes): FTS5
        # would expand them again for every document.
        atoms = [
            atom
            for group in query.groups
            for atom in group
            if not (isinstance(atom, Word) and atom.prefix)
        ]
        if not atoms or not arxiv_ids:
            return {}
        positive = " OR ".join(_fts_atom(atom) for atom in dict.fromkeys(atoms))
        # One FTS5 lookup per listed document (CROSS JOIN keeps the list as the outer loop).
        sql = (
            "SELECT s.arxiv_id, snippet(paper_search_fts, 1, :open, :close, :ellipsis, :tokens) "
            "FROM json_each(:ids) AS j CROSS JOIN paper_search AS s ON s.arxiv_id = j.value "
            "CROSS JOIN paper_search_fts AS f ON f.rowid = s.docid "
            "WHERE paper_search_fts MATCH :match"
        )
        params = {
            "match": positive,
            "ids": json.dumps(list(arxiv_ids)),
            "open": _OPEN,
            "close": _CLOSE,
            "ellipsis": _ELLIPSIS,
            "tokens": SNIPPET_TOKENS,
        }
        return {arxiv_id: snippet for arxiv_id, snippet in self.rows(text(sql), params)}

    def known(self, word: str) -> bool:
        sql = "SELECT 1 FROM paper_search_fts WHERE paper_search_fts MATCH :match LIMIT 1"
        params = {"match": _fts_string([word])}
        return self.connection.execute(text(sql), params).first() is not None

    def _stemmer(self) -> None:
        """A scratch FTS5 table with the index's tokenizer: its vocabulary shows how the index
        stores a word (Python has no porter stemmer of its own here)."""
        for statement in (
            "CREATE VIRTUAL TABLE IF NOT EXISTS temp.search_stemmer USING fts5("
            "word, tokenize='porter unicode61 remove_diacritics 2')",
            "CREATE VIRTUAL TABLE IF NOT EXISTS temp.search_stemmer_terms "
            "USING fts5vocab(temp, search_stemmer, 'row')",
            "DELETE FROM temp.search_stemmer",
        ):
            self.connection.exec_driver_sql(statement)

    def _stem(self, word: str) -> str | None:
        """The word as the index stores it."""
        self._stemmer()
        self.connection.execute(
            text("INSERT INTO temp.search_stemmer (word) VALUES (:w)"), {"w": word}
        )
        stems = [
            row[0]
            for row in self.connection.exec_driver_sql("SELECT term FROM temp.search_stemmer_terms")
        ]
        self.connection.exec_driver_sql("DELETE FROM temp.search_stemmer")
        return stems[0] if len(stems) == 1 else None

    def close_words(self, word: str) -> list[str]:
        stem = self._stem(word)
        if not stem:
            return []
        rows = self.rows(
            text("SELECT term, doc FROM paper_search_vocab WHERE term >= :low AND term < :high"),
            {"low": stem[0], "high": chr(ord(stem[0]) + 1)},
        )
        ranked = _closest(stem, ((term, int(docs)) for term, docs in rows))
        words = []
        for term in ranked[:3]:
            surface = self._surface(term)
            if surface and surface != word:
                words.append(surface)
        return words

    def _surface(self, term: str) -> str | None:
        """A word as written in some paper that the index stores as ``term``."""
        found = self.connection.execute(
            text(
                "SELECT i.doc, i.col, i.offset FROM paper_search_instance AS i "
                "WHERE i.term = :term LIMIT 1"
            ),
            {"term": term},
        ).first()
        if found is None:
            return None
        doc, column, offset = found
        statement = _CONTENT_COLUMN.get(column)
        if statement is None:
            return None
        content = self.connection.execute(statement, {"doc": doc}).scalar()
        tokens = _WORDS.findall(fold(content or ""))
        if offset >= len(tokens):
            return None
        surface = str(tokens[offset])
        return surface if self._stem(surface) == term else None


_CONTENT_COLUMN = {
    "title": text("SELECT title FROM paper_search_content WHERE docid = :doc"),
    "abstract": text("SELECT abstract FROM paper_search_content WHERE docid = :doc"),
    "authors": text("SELECT authors FROM paper_search_content WHERE docid = :doc"),
}


# -- PostgreSQL -------------------------------------------------------------------------------


def _ts_lexeme(word: str, weights: str = "", prefix: bool = False) -> str:
    # Quoted, with quotes and backslashes escaped, so nothing in a word is tsquery syntax.
    escaped = word.replace("\\", "\\\\").replace("'", "''")
    label = ("*" if prefix else "") + weights
    return f"'{escaped}':{label}" if label else f"'{escaped}'"


def _ts_atom(atom: Atom, weights: str = "") -> str:
    if isinstance(atom, Phrase):
        return "(" + " <-> ".join(_ts_lexeme(w, weights) for w in atom.words) + ")"
    return _ts_lexeme(atom.text, weights, atom.prefix)


def _ts_author(words: tuple[str, ...]) -> str:
    if len(words) == 2:
        first, second = (_ts_lexeme(w, "B") for w in words)
        # Either order, optionally one initial in between (like FTS5 NEAR(…, 2)).
        return (
            f"({first} <-> {second} | {first} <2> {second} | {first} <3> {second}"
            f" | {second} <-> {first} | {second} <2> {first} | {second} <3> {first})"
        )
    return "(" + " & ".join(_ts_lexeme(w, "B") for w in words) + ")"


def tsquery_expressions(query: Query) -> tuple[str | None, str | None, str | None]:
    """(text tsquery for the 'english' configuration, category tsquery for 'simple',
    excluded categories for 'simple'); None where there is nothing to say.

    Words carry no weight label: a labelled query forces a recheck of every matching row."""
    parts = ["(" + " | ".join(_ts_atom(atom) for atom in group) + ")" for group in query.groups]
    parts += [_ts_author(words) for words in query.authors]
    parts += ["!" + _ts_atom(atom) for atom in query.excluded]
    parts += ["!" + _ts_author(words) for words in query.excluded_authors]
    categories = " | ".join(_ts_lexeme(category_token(c)) for c in query.categories)
    excluded = " | ".join(_ts_lexeme(category_token(c)) for c in query.excluded_categories)
    return (" & ".join(parts) or None, categories or None, excluded or None)


class _Postgres(_Engine):
    _AGE = "extract(epoch FROM (:now - p.published)) / 86400.0"
    _RANK = "ts_rank_cd('{0, 0.2, 0.5, 1.0}', s.document, q.ranking, 1)"

    def _plan(self, query: Query) -> tuple[str, list[str], dict[str, Any], bool]:
        """(FROM clause over ``s``, ``p`` and ``q``, WHERE terms, parameters, whether words or
        filters must match in the index)."""
        words, categories, excluded = tsquery_expressions(query)
        params: dict[str, Any] = {}
        where: list[str] = []
        has_positive = bool(query.groups or query.authors or query.categories)
        pieces = []
        if words is not None:
            pieces.append("to_tsquery('english', :words)")
            params["words"] = words
        if categories is not None:
            pieces.append("to_tsquery('simple', :categories)")
            params["categories"] = categories
        if excluded is not None:
            pieces.append("!! to_tsquery('simple', :excluded_categories)")
            params["excluded_categories"] = excluded
        from_sql = "paper_search AS s JOIN paper AS p ON p.arxiv_id = s.arxiv_id"
        if pieces:
            tsquery = " && ".join(pieces)
            # Rank by the words alone: a category token (weight D = 0) in a cover zeroes it.
            ranking = pieces[0] if words is not None else tsquery
            from_sql += f" CROSS JOIN (SELECT {tsquery} AS query, {ranking} AS ranking) AS q"
            if has_positive:
                where.append("s.document @@ q.query")
            else:
                # A stop-word-only exclusion leaves an empty query, which must exclude nothing.
                where.append("(numnode(q.query) = 0 OR s.document @@ q.query)")
        date_where, date_params = _date_filters(query, "p.published")
        where += date_where
        params.update(date_params)
        if query.ids:
            where.append("s.arxiv_id IN :ids")
            params["ids"] = list(query.ids)
        return from_sql, where, params, has_positive

    def best(self, query: Query, limit: int) -> tuple[list[_Match], int | None]:
        from_sql, where, params, driven = self._plan(query)
        if not driven:
            return self.among(query, self.newest(query, 0, limit)), None
        # The newest POOL matches first, ranked afterwards: ts_rank_cd reads each document,
        # so it runs on the pool only, never on every match of a common word.
        sql = (
            "WITH pool AS MATERIALIZED (SELECT s.arxiv_id, p.published, q.ranking "  # noqa: S608
            f"FROM {from_sql} {_where(where)} ORDER BY p.published DESC LIMIT :pool), "
            "best AS (SELECT pool.arxiv_id, pool.published, "
            "ts_rank_cd('{0, 0.2, 0.5, 1.0}', d.document, pool.ranking, 1) AS r "
            "FROM pool JOIN paper_search AS d ON d.arxiv_id = pool.arxiv_id "
            "ORDER BY r DESC, pool.arxiv_id DESC LIMIT :limit) "
            "SELECT arxiv_id, r, extract(epoch FROM (:now - published)) / 86400.0, "
            f"{_TREND.format(id='best.arxiv_id')}, (SELECT count(*) FROM pool) FROM best"
        )
        # ts_rank_cd costs more per document than FTS5's BM25: half the pool.
        pool = max(1, SCORE_POOL // 2)
        params = {
            **params, "pool": pool, "limit": limit, "now": self.now,
            "trend_since": self.trend_since,
        }  # fmt: skip
        rows = self.rows(_typed(sql, params), params)
        scored = int(rows[0][4]) if rows else 0
        matches = [
            _Match(a, float(r or 0.0), float(age or 0.0), float(trend or 0.0))
            for a, r, age, trend, _ in rows
        ]
        return matches, (scored if scored < pool else None)

    def newest(self, query: Query, offset: int, limit: int) -> list[str]:
        from_sql, where, params, _ = self._plan(query)
        sql = (
            f"SELECT p.arxiv_id FROM {from_sql} {_where(where)} "  # noqa: S608
            "ORDER BY p.published DESC, p.arxiv_id DESC LIMIT :limit OFFSET :offset"
        )
        rows = self.rows(_typed(sql, params), {**params, "limit": limit, "offset": offset})
        return [arxiv_id for (arxiv_id,) in rows]

    def count(self, query: Query, cap: int) -> int:
        from_sql, where, params, _ = self._plan(query)
        if not (query.since or query.before):
            from_sql = from_sql.replace(" JOIN paper AS p ON p.arxiv_id = s.arxiv_id", "")
        sql = f"SELECT count(*) FROM (SELECT 1 FROM {from_sql} {_where(where)} LIMIT :cap) AS m"  # noqa: S608
        params = {**params, "cap": cap}
        return int(self.connection.execute(_typed(sql, params), params).scalar_one())

    def among(self, query: Query, arxiv_ids: Sequence[str]) -> list[_Match]:
        if not arxiv_ids:
            return []
        from_sql, where, params, driven = self._plan(query)
        where.append("s.arxiv_id IN :among")
        relevance = self._RANK if driven else "0.0"
        sql = (
            f"SELECT s.arxiv_id, {relevance}, {self._AGE}, "  # noqa: S608
            f"{_TREND.format(id='s.arxiv_id')} FROM {from_sql} {_where(where)}"
        )
        return self.matches(sql, {**params, "among": list(arxiv_ids)})

    def snippets(self, query: Query, arxiv_ids: Sequence[str]) -> dict[str, str]:
        # Every positive word, ORed and without weights: phrases then read as runs of marks
        # (ts_headline's own phrase handling marks only some of their words).
        words = [
            word
            for group in query.groups
            for atom in group
            for word in (atom.words if isinstance(atom, Phrase) else (atom.text,))
        ]
        if not words or not arxiv_ids:
            return {}
        lexemes = " | ".join(_ts_lexeme(word) for word in dict.fromkeys(words))
        prefixes = {w.text for w in query.words() if w.prefix}
        if prefixes:
            lexemes += " | " + " | ".join(_ts_lexeme(w, prefix=True) for w in prefixes)
        sql = (
            "SELECT p.arxiv_id, ts_headline('english', p.abstract, "
            "to_tsquery('english', :words), :options) FROM paper AS p WHERE p.arxiv_id IN :ids"
        )
        params = {
            "words": lexemes,
            "options": f"StartSel={_OPEN}, StopSel={_CLOSE}, HighlightAll=true",
            "ids": list(arxiv_ids),
        }
        return {
            arxiv_id: _window(marked) for arxiv_id, marked in self.rows(_typed(sql, params), params)
        }

    def _stem(self, word: str) -> str | None:
        lexemes = self.connection.execute(
            text("SELECT ts_lexize('english_stem', :w)"), {"w": word}
        ).scalar()
        return lexemes[0] if lexemes else None

    def known(self, word: str) -> bool:
        stem = self._stem(word)
        if stem is None:
            return True  # a stop word: never the reason for no results
        found = self.connection.execute(
            text("SELECT 1 FROM paper_search_vocab WHERE word = :w"), {"w": stem}
        ).first()
        return found is not None

    def close_words(self, word: str) -> list[str]:
        stem = self._stem(word)
        if not stem:
            return []
        rows = self.rows(
            text(
                "SELECT word FROM paper_search_vocab WHERE word >= :low AND word < :high "
                "AND length(word) BETWEEN :shortest AND :longest"
            ),
            {
                "low": stem[0],
                "high": chr(ord(stem[0]) + 1),
                "shortest": len(stem) - 2,
                "longest": len(stem) + 2,
            },
        )
        candidates = [term for (term,) in rows]
        by_distance = _closest(stem, ((term, 0) for term in candidates))[:5]
        frequency = {term: self._frequency(term) for term in by_distance}
        ranked = sorted(
            (term for term in by_distance if frequency[term] > 0),
            key=lambda term: (_distance(stem, term, 2), -frequency[term], term),
        )
        words = []
        for term in ranked[:3]:
            surface = self._surface(term)
            if surface and surface != word:
                words.append(surface)
        return words

    def _frequency(self, lexeme: str) -> int:
        sql = (
            "SELECT count(*) FROM (SELECT 1 FROM paper_search "
            "WHERE document @@ to_tsquery('simple', :q) LIMIT 1000) AS hits"
        )
        return int(
            self.connection.execute(text(sql), {"q": _ts_lexeme(lexeme, "ABC")}).scalar_one()
        )

    def _surface(self, lexeme: str) -> str | None:
        sql = (
            "SELECT ts_headline('english', p.title || ' . ' || p.abstract, "
            "to_tsquery('simple', :q), :options) FROM paper_search AS s "
            "JOIN paper AS p ON p.arxiv_id = s.arxiv_id "
            "WHERE s.document @@ to_tsquery('simple', :q) LIMIT 1"
        )
        options = f"StartSel={_OPEN}, StopSel={_CLOSE}, MaxWords=8, MinWords=2"
        headline = self.connection.execute(
            text(sql), {"q": _ts_lexeme(lexeme, "AC"), "options": options}
        ).scalar()
        if not headline:
            return None
        marked = re.search(f"{_OPEN}(.*?){_CLOSE}", headline)
        if marked is None:
            return None
        words = _WORDS.findall(fold(marked.group(1)))
        return words[0] if len(words) == 1 else None


_WORDS = re.compile(r"[^\W_]+")


def _window(marked: str, size: int = SNIPPET_TOKENS) -> str:
    """The ``size`` words of a fully highlighted text that hold the most highlights."""
    chunks = marked.split()
    if len(chunks) <= size:
        return " ".join(chunks)
    flags = [_OPEN in chunk for chunk in chunks]
    best_start, best = 0, sum(flags[:size])
    current = best
    for start in range(1, len(chunks) - size + 1):
        current += flags[start + size - 1] - flags[start - 1]
        if current > best:
            best_start, best = start, current
    # A little context before the first highlight reads better than starting on it.
    first = next((i for i in range(best_start, best_start + size) if flags[i]), best_start)
    start = max(0, min(best_start, first - 3))
    end = min(len(chunks), start + size)
    text_ = " ".join(chunks[start:end])
    return (
        (f"{_ELLIPSIS} " if start else "") + text_ + (f" {_ELLIPSIS}" if end < len(chunks) else "")
    )


# ---------------------------------------------------------------------------------------------
# Did-you-mean


def _distance(a: str, b: str, limit: int) -> int:
    """Optimal string alignment distance (a transposition counts once), capped at limit + 1."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i] + [0] * len(b)
        best = current[0]
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            value = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                value = min(value, previous2[j - 2] + 1)
            current[j] = value
            best = min(best, value)
        if best > limit:
            return limit + 1
        previous2, previous = previous, current
    return min(previous[-1], limit + 1)


def _closest(stem: str, terms: Iterable[tuple[str, int]], limit: int = 2) -> list[str]:
    """Vocabulary terms within ``limit`` edits of ``stem``: nearest first, then most frequent."""
    scored = []
    for term, docs in terms:
        if term == stem or not term.isalpha() or abs(len(term) - len(stem)) > limit:
            continue
        distance = _distance(stem, term, limit)
        if distance <= limit:
            scored.append((distance, -docs, term))
    scored.sort()
    return [term for _, _, term in scored]


# ---------------------------------------------------------------------------------------------
# The search itself


class _Search:
    def __init__(
        self,
        engine: _Engine,
        connection: Connection,
        query: Query,
        now: datetime,
        page: int,
        per_page: int,
        notes: str | None,
    ) -> None:
        self.engine = engine
        self.connection = connection
        self.query = query
        self.now = now
        self.page = page
        self.per_page = per_page
        self.notes = notes

    def run(self, raw: str) -> SearchPage:
        query = self.query
        offset = (self.page - 1) * self.per_page
        scores: dict[str, float] = {}
        if query.sort is Sort.NEW or (not query.has_text and query.sort is Sort.RELEVANCE):
            total = self.engine.count(query, COUNT_CAP + 1)
            reachable = min(total, COUNT_CAP)
            page_ids = (
                self.engine.newest(query, offset, min(self.per_page, reachable - offset))
                if offset < reachable
                else []
            )
        else:
            candidates, exact = self.engine.best(query, RESULT_WINDOW)
            if query.sort is Sort.TRENDING:
                candidates = self._with_trending(candidates)
                exact = None
            total = exact if exact is not None else self.engine.count(query, COUNT_CAP + 1)
            scores = self._blend(candidates)
            ordered = sorted(scores, key=lambda a: (scores[a], a), reverse=True)
            reachable = len(ordered)
            page_ids = ordered[offset : offset + self.per_page]
        if total > COUNT_CAP:
            total = COUNT_CAP
            self.notes = _join(
                self.notes, f"Over {COUNT_CAP:,} papers match; add a word or a filter to narrow it."
            )
        pages = math.ceil(reachable / self.per_page) if reachable else 0
        if total == 0:
            return self._nothing(raw)
        if not page_ids:
            return SearchPage(
                [], total, self.page, pages,
                _join(self.notes, f"There {'is' if pages == 1 else 'are'} only {pages} "
                      f"page{'s' if pages != 1 else ''} of results."),
            )  # fmt: skip
        hits = self._hits(page_ids, scores)
        return SearchPage(hits, total, self.page, pages, self.notes)

    # -- ranking -------------------------------------------------------------------------------

    def _trending_ids(self, limit: int) -> list[str]:
        """The papers with the most recent engagement, most first."""
        since = self.now - TREND_WINDOW
        per_post = (
            select(
                SNAPSHOTS.c.arxiv_id,
                func.max(SNAPSHOTS.c.value * SNAPSHOTS.c.weight).label("value"),
            )
            .where(SNAPSHOTS.c.observed_at >= since, SNAPSHOTS.c.observed_at <= self.now)
            .group_by(
                SNAPSHOTS.c.arxiv_id,
                SNAPSHOTS.c.source,
                SNAPSHOTS.c.metric,
                func.coalesce(SNAPSHOTS.c.url, ""),
            )
            .subquery()
        )
        total = func.sum(per_post.c.value)
        statement = (
            select(per_post.c.arxiv_id)
            .group_by(per_post.c.arxiv_id)
            .having(total > 0)
            .order_by(total.desc(), per_post.c.arxiv_id.desc())
            .limit(limit)
        )
        return [arxiv_id for (arxiv_id,) in self.connection.execute(statement)]

    def _with_trending(self, candidates: list[_Match]) -> list[_Match]:
        seen = {match.arxiv_id for match in candidates}
        extra = [a for a in self._trending_ids(RESULT_WINDOW * 2) if a not in seen]
        return candidates + self.engine.among(self.query, extra)

    def _blend(self, candidates: list[_Match]) -> dict[str, float]:
        """Relevance normalised to the best match, plus the recency and trend priors."""
        top = max((match.relevance for match in candidates), default=0.0)
        scores = {}
        for match in candidates:
            relevance = match.relevance / top if top > 0 else 0.0
            trend = min(1.0, math.log1p(max(0.0, match.trend)) / TREND_SCALE)
            recency = 0.5 ** (max(0.0, match.age_days) / RECENCY_HALF_LIFE_DAYS)
            if self.query.sort is Sort.TRENDING:
                # Trend first; relevance and recency only order equally quiet papers.
                score = trend + 0.01 * relevance + 0.001 * recency
            else:
                score = relevance + RECENCY_WEIGHT * recency + TREND_WEIGHT * trend
            scores[match.arxiv_id] = round(score, 6)
        return scores

    # -- rendering -----------------------------------------------------------------------------

    def _hits(self, page_ids: list[str], scores: dict[str, float]) -> list[SearchHit]:
        columns = (
            PAPERS.c.arxiv_id, PAPERS.c.title, PAPERS.c.authors, PAPERS.c.primary_category,
            PAPERS.c.published, PAPERS.c.abstract,
        )  # fmt: skip
        rows = {
            row.arxiv_id: row
            for row in self.connection.execute(
                select(*columns).where(PAPERS.c.arxiv_id.in_(page_ids))
            ).all()
        }
        snippets = self.engine.snippets(self.query, page_ids)
        prefixes = tuple(
            atom.text
            for group in self.query.groups
            for atom in group
            if isinstance(atom, Word) and atom.prefix
        )
        hits = []
        for arxiv_id in page_ids:
            row = rows.get(arxiv_id)
            if row is None:
                continue
            marked = snippets.get(arxiv_id)
            hits.append(
                SearchHit(
                    arxiv_id=arxiv_id,
                    title=row.title,
                    authors=tuple(row.authors or ()),
                    primary_category=row.primary_category,
                    published=row.published,
                    snippet=_mark_prefixes(
                        segments(marked) if marked else _lead(row.abstract), prefixes
                    ),
                    score=scores.get(arxiv_id, 0.0),
                )
            )
        return hits

    # -- no results ----------------------------------------------------------------------------

    def _nothing(self, raw: str) -> SearchPage:
        query = self.query
        shown = clean(raw)
        shown = shown if len(shown) <= 60 else shown[:57] + "…"
        lead = f"No papers match “{shown}”."
        if self.connection.execute(select(PAPERS.c.arxiv_id).limit(1)).first() is None:
            return SearchPage(
                [], 0, self.page, 0,
                _join(self.notes, "No papers are stored yet; search covers them once they are "
                      "ingested (trending-papers ingest or backfill)."),
            )  # fmt: skip
        if query.ids and not query.has_text:
            missing = ", ".join(query.ids[:3])
            lead = f"arXiv:{missing} is not in the archive (yet)."
        corrected = self._corrected()
        if corrected is not None:
            fixed, count = corrected
            return SearchPage(
                [], 0, self.page, 0,
                _join(self.notes, lead, f"Did you mean “{fixed}”? ({_papers(count)})"), fixed,
            )  # fmt: skip
        if query.has_filters and (query.has_text or query.excluded):
            broader = query.without_filters()
            count = self.engine.count(broader, COUNT_CAP)
            if count:
                return SearchPage(
                    [], 0, self.page, 0,
                    _join(self.notes, lead, f"Without {query.filter_text()} there are "
                          f"{_papers(count)}."),
                    broader.render(),
                )  # fmt: skip
        advice = "Try fewer or more general words." if query.has_text else None
        return SearchPage([], 0, self.page, 0, _join(self.notes, lead, advice))

    def _corrected(self) -> tuple[str, int] | None:
        query = self.query
        fixed = query
        changed = False
        for word in query.words()[:MAX_TERMS]:
            if word.prefix or len(word.text) < 3 or not word.text.isalpha():
                continue
            if self.engine.known(word.text):
                continue
            for option in self.engine.close_words(word.text):
                fixed = fixed.replace_word(word.text, option)
                changed = True
                break
        if not changed:
            return None
        count = self.engine.count(fixed, COUNT_CAP)
        if count == 0 and fixed.has_filters:
            fixed = fixed.without_filters()
            count = self.engine.count(fixed, COUNT_CAP)
        return (fixed.render(), count) if count else None


def _papers(count: int) -> str:
    return f"{count} paper{'s' if count != 1 else ''}"


def segments(marked: str) -> tuple[tuple[str, bool], ...]:
    """Split engine output with highlight markers into (text, highlighted) segments.

    Whitespace is collapsed, and highlights separated only by a space become one, so a
    matched phrase reads as one mark.
    """
    pieces = [
        (re.sub(r"\s+", " ", piece), index % 2 == 1)
        for index, piece in enumerate(re.split(f"[{_OPEN}{_CLOSE}]", marked))
    ]
    pieces = [(piece, highlighted) for piece, highlighted in pieces if piece]
    merged: list[tuple[str, bool]] = []
    for index, (piece, highlighted) in enumerate(pieces):
        bridge = (
            not highlighted
            and piece == " "
            and bool(merged)
            and merged[-1][1]
            and index + 1 < len(pieces)
            and pieces[index + 1][1]
        )
        if bridge or (merged and merged[-1][1] == highlighted):
            merged[-1] = (merged[-1][0] + piece, merged[-1][1])
        else:
            merged.append((piece, highlighted))
    if merged:
        merged[0] = (merged[0][0].lstrip(), merged[0][1])
        merged[-1] = (merged[-1][0].rstrip(), merged[-1][1])
    return tuple((piece, highlighted) for piece, highlighted in merged if piece)


def _mark_prefixes(
    parts: tuple[tuple[str, bool], ...], prefixes: tuple[str, ...]
) -> tuple[tuple[str, bool], ...]:
    """Mark the words that start with one of ``prefixes`` (folded, as the index compares)."""
    if not prefixes:
        return parts
    marked: list[tuple[str, bool]] = []
    for piece, highlighted in parts:
        if highlighted:
            marked.append((piece, True))
            continue
        for token in re.split(r"([^\W_]+)", piece):
            if token:
                marked.append(
                    (token, bool(_WORDS.fullmatch(token)) and fold(token).startswith(prefixes))
                )
    merged: list[tuple[str, bool]] = []
    for piece, highlighted in marked:
        if merged and merged[-1][1] == highlighted:
            merged[-1] = (merged[-1][0] + piece, highlighted)
        else:
            merged.append((piece, highlighted))
    return tuple(merged)


def _lead(abstract: str, words: int = SNIPPET_TOKENS) -> tuple[tuple[str, bool], ...]:
    parts = abstract.split()
    head = " ".join(parts[:words]) + (f" {_ELLIPSIS}" if len(parts) > words else "")
    return ((head, False),) if head else ()
