"""full-text search over papers

SQLite: an FTS5 index (porter stemming, unicode61 with diacritics removed) over title,
abstract and authors. The index reads its text from a view over ``paper`` through
``paper_search``, which gives every paper a stable integer document id (the implicit rowid of
``paper`` is not stable: VACUUM may renumber it) and holds its publication date and
categories for filtering.
``paper_search_vocab`` exposes the index vocabulary for "did you mean".

PostgreSQL: ``paper_search`` holds one weighted ``tsvector`` per paper (title A, authors B,
abstract C, category tokens D) with a GIN index; ``paper_search_vocab`` lists every lexeme.

On both, triggers on ``paper`` keep the index in step with inserts, updates and deletes, and
the upgrade indexes the papers already stored.

NOTE for later migrations: on SQLite, ``batch_alter_table("paper")`` rebuilds the table and
drops its triggers; such a migration must re-create the three ``paper_search_*`` triggers.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 12:00:00
"""

import unicodedata
from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# ---------------------------------------------------------------------------------------------
# SQLite

# JSON arrays are read with a recursive CTE, not json_each(): FTS5 cannot read an external
# content view that uses a table-valued function ("SQL logic error" on rebuild and snippet()).
_SQLITE_AUTHORS = """coalesce((WITH RECURSIVE i(n) AS (
        SELECT 0 UNION ALL SELECT n + 1 FROM i WHERE n + 1 < json_array_length({row}.authors))
    SELECT group_concat(value, ' ; ') FROM (
        SELECT json_extract({row}.authors, '$[' || n || ']') AS value FROM i)
    WHERE value IS NOT NULL), '')"""
# Categories are a filter, not text: " cs.lg cs stat.ml stat " (each category and its archive,
# space-delimited) in paper_search, tested with instr(). As an FTS5 phrase a common category
# would make BM25 count every paper of it on each query.
_SQLITE_CATEGORIES = """coalesce((SELECT ' ' || group_concat(
        lower(c.value) || ' ' || lower(CASE WHEN instr(c.value, '.') > 0
                                           THEN substr(c.value, 1, instr(c.value, '.') - 1)
                                           ELSE c.value END), ' ') || ' '
    FROM json_each({row}.categories) AS c), ' ')"""


def _sqlite_columns(row: str) -> str:
    return f"{row}.title, {row}.abstract, {_SQLITE_AUTHORS.format(row=row)}"


_SQLITE_UP = [
    """CREATE TABLE paper_search (
        docid INTEGER PRIMARY KEY,
        arxiv_id VARCHAR(64) NOT NULL UNIQUE,
        published DATETIME NOT NULL,
        categories TEXT NOT NULL DEFAULT ' '
    )""",
    # Date filters turn into a document-id range through this index (see storage.search).
    "CREATE INDEX paper_search_published ON paper_search (published, docid)",
    f"""CREATE VIEW paper_search_content AS
        SELECT s.docid AS docid, p.title AS title, p.abstract AS abstract,
               {_SQLITE_AUTHORS.format(row="p")} AS authors
        FROM paper_search AS s JOIN paper AS p ON p.arxiv_id = s.arxiv_id""",
    """CREATE VIRTUAL TABLE paper_search_fts USING fts5(
        title, abstract, authors,
        content='paper_search_content', content_rowid='docid',
        tokenize='porter unicode61 remove_diacritics 2'
    )""",
    # BM25 with the title counting four times the abstract, authors twice.
    "INSERT INTO paper_search_fts (paper_search_fts, rank) VALUES ('rank', 'bm25(4.0, 1.0, 2.0)')",
    "CREATE VIRTUAL TABLE paper_search_vocab USING fts5vocab(paper_search_fts, 'row')",
    "CREATE VIRTUAL TABLE paper_search_instance USING fts5vocab(paper_search_fts, 'instance')",
    f"""CREATE TRIGGER paper_search_ai AFTER INSERT ON paper BEGIN
        INSERT INTO paper_search (arxiv_id, published, categories)
            VALUES (new.arxiv_id, new.published, {_SQLITE_CATEGORIES.format(row="new")});
        INSERT INTO paper_search_fts (rowid, title, abstract, authors)
            SELECT s.docid, {_sqlite_columns("new")}
            FROM paper_search AS s WHERE s.arxiv_id = new.arxiv_id;
    END""",
    f"""CREATE TRIGGER paper_search_ad AFTER DELETE ON paper BEGIN
        INSERT INTO paper_search_fts (paper_search_fts, rowid, title, abstract, authors)
            SELECT 'delete', s.docid, {_sqlite_columns("old")}
            FROM paper_search AS s WHERE s.arxiv_id = old.arxiv_id;
        DELETE FROM paper_search WHERE arxiv_id = old.arxiv_id;
    END""",
    f"""CREATE TRIGGER paper_search_au
        AFTER UPDATE OF arxiv_id, title, abstract, authors, categories, published ON paper BEGIN
        INSERT INTO paper_search_fts (paper_search_fts, rowid, title, abstract, authors)
            SELECT 'delete', s.docid, {_sqlite_columns("old")}
            FROM paper_search AS s WHERE s.arxiv_id = old.arxiv_id;
        UPDATE paper_search
            SET arxiv_id = new.arxiv_id, published = new.published,
                categories = {_SQLITE_CATEGORIES.format(row="new")}
            WHERE arxiv_id = old.arxiv_id;
        INSERT INTO paper_search_fts (rowid, title, abstract, authors)
            SELECT s.docid, {_sqlite_columns("new")}
            FROM paper_search AS s WHERE s.arxiv_id = new.arxiv_id;
    END""",
    # Index what is already stored: oldest first, so document ids roughly follow time.
    f"""INSERT INTO paper_search (arxiv_id, published, categories)
        SELECT arxiv_id, published, {_SQLITE_CATEGORIES.format(row="paper")} FROM paper
        ORDER BY published, arxiv_id""",
    "INSERT INTO paper_search_fts (paper_search_fts) VALUES ('rebuild')",
]

_SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS paper_search_au",
    "DROP TRIGGER IF EXISTS paper_search_ad",
    "DROP TRIGGER IF EXISTS paper_search_ai",
    "DROP TABLE IF EXISTS paper_search_instance",
    "DROP TABLE IF EXISTS paper_search_vocab",
    "DROP TABLE IF EXISTS paper_search_fts",
    "DROP VIEW IF EXISTS paper_search_content",
    "DROP TABLE IF EXISTS paper_search",
]


# ---------------------------------------------------------------------------------------------
# PostgreSQL


def _fold_table() -> tuple[str, str]:
    """Accented Latin letters (Latin-1 and Latin Extended-A) and their bare forms, for
    translate(); the unaccent extension is not always installable. translate() costs time
    in proportion to this table, hence the two blocks that cover European names."""
    accented, bare = [], []
    for code in range(0x00C0, 0x0180):
        char = chr(code)
        decomposed = unicodedata.normalize("NFKD", char)
        base = "".join(c for c in decomposed if not unicodedata.combining(c))
        if len(base) == 1 and base.isascii() and base.isalpha() and base != char:
            accented.append(char)
            bare.append(base)
    return "".join(accented), "".join(bare)


_ACCENTED, _BARE = _fold_table()

_PG_UP = [
    f"""CREATE FUNCTION paper_search_fold(value text) RETURNS text
        LANGUAGE sql IMMUTABLE PARALLEL SAFE
        AS $$
        SELECT CASE WHEN value IS NULL THEN ''
                    WHEN value ~ '^[[:ascii:]]*$' THEN value
                    ELSE translate(value, '{_ACCENTED}', '{_BARE}') END
        $$""",
    # plpgsql, not sql: an inlined sql function would evaluate the JSON subqueries once per
    # use of its argument inside paper_search_fold.
    """CREATE FUNCTION paper_search_document(
            title text, abstract text, authors json, categories json) RETURNS tsvector
        LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
        AS $$
        DECLARE
            names text := coalesce(
                (SELECT string_agg(a, ' ; ') FROM json_array_elements_text(authors) AS a), '');
            tokens text := coalesce(
                (SELECT string_agg(
                     'cat' || regexp_replace(lower(c), '[^a-z0-9]', '', 'g') || ' cat'
                     || regexp_replace(lower(split_part(c, '.', 1)), '[^a-z0-9]', '', 'g'),
                     ' ')
                 FROM json_array_elements_text(categories) AS c), '');
        BEGIN
            RETURN setweight(to_tsvector('english', paper_search_fold(title)), 'A')
                || setweight(to_tsvector('english', paper_search_fold(names)), 'B')
                || setweight(to_tsvector('english', paper_search_fold(abstract)), 'C')
                || setweight(to_tsvector('simple', tokens), 'D');
        END
        $$""",
    """CREATE TABLE paper_search (
        arxiv_id VARCHAR(64) PRIMARY KEY
            REFERENCES paper (arxiv_id) ON DELETE CASCADE ON UPDATE CASCADE,
        document tsvector NOT NULL
    )""",
    "CREATE TABLE paper_search_vocab (word text PRIMARY KEY)",
    # Lexemes of the text (not the category tokens), sorted so that concurrent writers take
    # their row locks in the same order.
    """CREATE FUNCTION paper_search_sync() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            fresh tsvector := paper_search_document(
                NEW.title, NEW.abstract, NEW.authors, NEW.categories);
        BEGIN
            INSERT INTO paper_search (arxiv_id, document) VALUES (NEW.arxiv_id, fresh)
                ON CONFLICT (arxiv_id) DO UPDATE SET document = EXCLUDED.document;
            INSERT INTO paper_search_vocab (word)
                SELECT u.lexeme FROM unnest(fresh) AS u
                WHERE u.weights <> ARRAY['D']::text[] AND u.lexeme ~ '^[[:alpha:]]{3,}$'
                ORDER BY u.lexeme
                ON CONFLICT (word) DO NOTHING;
            RETURN NULL;
        END
        $$""",
    """CREATE TRIGGER paper_search_sync
        AFTER INSERT OR UPDATE OF arxiv_id, title, abstract, authors, categories ON paper
        FOR EACH ROW EXECUTE FUNCTION paper_search_sync()""",
    """INSERT INTO paper_search (arxiv_id, document)
        SELECT arxiv_id, paper_search_document(title, abstract, authors, categories) FROM paper""",
    # Built after the bulk insert: one sorted build is far faster than row-by-row updates.
    "CREATE INDEX paper_search_document_idx ON paper_search USING gin (document)",
    # ts_stat with weights ABC: the words of titles, authors and abstracts, not categories.
    """INSERT INTO paper_search_vocab (word)
        SELECT word FROM ts_stat('SELECT document FROM paper_search', 'ABC')
        WHERE word ~ '^[[:alpha:]]{3,}$'
        ON CONFLICT (word) DO NOTHING""",
]

_PG_DOWN = [
    "DROP TRIGGER IF EXISTS paper_search_sync ON paper",
    "DROP FUNCTION IF EXISTS paper_search_sync()",
    "DROP TABLE IF EXISTS paper_search_vocab",
    "DROP TABLE IF EXISTS paper_search",
    "DROP FUNCTION IF EXISTS paper_search_document(text, text, json, json)",
    "DROP FUNCTION IF EXISTS paper_search_fold(text)",
]


def _statements(up: bool) -> list[str]:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        return _SQLITE_UP if up else _SQLITE_DOWN
    if dialect == "postgresql":
        return _PG_UP if up else _PG_DOWN
    raise RuntimeError(f"full-text search supports SQLite and PostgreSQL, not {dialect}")


def _run(statements: list[str]) -> None:
    # Straight to the driver: SQLAlchemy's text() would read ":alpha:" as a bind parameter.
    connection = op.get_bind()
    for statement in statements:
        connection.exec_driver_sql(statement)


def upgrade() -> None:
    _run(_statements(up=True))


def downgrade() -> None:
    _run(_statements(up=False))
