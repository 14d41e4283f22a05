"""Move a whole database: copy it to another URL, or export and import it as JSON Lines.

Everything works on the tables of ``SQLModel.metadata`` in foreign-key order, so a table added
to the models is carried along without touching this module. Tables the database holds beyond
the models are left out on purpose: the full-text search index (and SQLite's FTS shadow
tables) is derived data that the target's own triggers rebuild as papers arrive, and
``alembic_version`` belongs to the target, which is migrated to the code's head first.

Reads happen in one snapshot (``REPEATABLE READ`` on PostgreSQL, one read transaction on
SQLite), so a copy taken while the bot runs is still consistent; writes happen in one
transaction, so a failed copy or import leaves the target as it was. Afterwards PostgreSQL
sequences are moved past the copied ids and every table's row count is checked.

The export format is one JSON object per line: a header (format, schema revision, table
order), then ``{"table": …, "row": {…}}`` per row in foreign-key order, then a trailer with
the row count of every table, so a truncated file is recognised. A ``.gz`` suffix compresses.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Column, Table, func, inspect, literal, select
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.types import TypeDecorator
from sqlmodel import SQLModel

from storage.db import Database, normalize_url, redact_url
from storage.errors import StorageError
from storage.migrate import current_revision, head_revision, upgrade

EXPORT_FORMAT = "trending-papers-export"
EXPORT_VERSION = 1
DEFAULT_CHUNK_SIZE = 1000

OnTable = Callable[["TableCount"], None]


class TransferError(StorageError):
    """A copy, export or import was refused or failed; the target is left unchanged."""


@dataclass(frozen=True)
class TableCount:
    """Rows of one table carried over (and found in the target afterwards)."""

    table: str
    rows: int


@dataclass(frozen=True)
class CopyReport:
    """What a copy, export or import moved, table by table."""

    source: str
    """The source: a database URL with its password hidden, or a file path."""
    target: str
    """The target: a database URL with its password hidden, or a file path."""
    revision: str | None
    """The schema revision of the data."""
    tables: tuple[TableCount, ...]
    skipped: tuple[str, ...] = ()
    """Tables in the source database that are not part of the models (derived data)."""

    @property
    def total_rows(self) -> int:
        """Rows moved across all tables."""
        return sum(count.rows for count in self.tables)


def model_tables() -> list[Table]:
    """The application's tables, parents before children."""
    import storage.models  # noqa: F401  (importing it registers the tables on the metadata)

    return list(SQLModel.metadata.sorted_tables)


# --------------------------------------------------------------------------------------------
# Copy between databases


def copy_database(
    source: Database,
    target_url: str,
    *,
    force: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    on_table: OnTable | None = None,
) -> CopyReport:
    """Copy every model table of ``source`` into the database at ``target_url``.

    The target is migrated to the head revision first. A target that already holds rows is
    refused unless ``force``, which deletes them first (inside the same transaction as the
    copy). Raises ``TransferError`` when refused or when the counts do not match afterwards.
    """
    target_url = normalize_url(target_url)
    try:
        make_url(target_url)
    except ArgumentError as exc:
        raise TransferError(f"not a database URL: {redact_url(target_url)}") from exc
    if same_database(source.url, target_url):
        raise TransferError("the source and the target are the same database")
    revision = _require_head(source, "source database")
    tables = model_tables()
    target = Database(target_url)
    try:
        upgrade(target)
        counts: list[TableCount] = []
        with source.snapshot() as reader, target.engine.begin() as writer:
            _clear_or_refuse(writer, tables, force)
            for table in tables:
                copied = 0
                try:
                    for chunk in _read_chunks(reader, table, chunk_size):
                        writer.execute(table.insert(), chunk)
                        copied += len(chunk)
                except SQLAlchemyError as exc:
                    raise TransferError(
                        f"copying table {table.name} failed after {copied} rows: "
                        f"{type(exc).__name__}: {_first_line(exc)}"
                    ) from exc
                counts.append(TableCount(table.name, copied))
                if on_table is not None:
                    on_table(counts[-1])
            _reset_sequences(writer, tables)
            _verify_counts(writer, tables, counts, "target")
            _verify_counts(reader, tables, counts, "source")
        skipped = _unmodelled_tables(source, tables)
    except SQLAlchemyError as exc:
        raise TransferError(
            f"copy to {redact_url(target_url)} failed: {type(exc).__name__}: {_first_line(exc)}"
        ) from exc
    finally:
        target.dispose()
    return CopyReport(
        source=redact_url(source.url),
        target=redact_url(target_url),
        revision=revision,
        tables=tuple(counts),
        skipped=skipped,
    )


def same_database(first: str, second: str) -> bool:
    """True when two URLs name the same database (same SQLite file, or same server and db)."""
    a, b = make_url(normalize_url(first)), make_url(normalize_url(second))
    if a.get_backend_name() != b.get_backend_name():
        return False
    if a.get_backend_name() == "sqlite":
        if a.database in (None, "", ":memory:") or b.database in (None, "", ":memory:"):
            return False
        return Path(a.database or "").expanduser().resolve() == (
            Path(b.database or "").expanduser().resolve()
        )

    # The password does not make it another database; the query may (search_path).
    def identity(url: URL) -> tuple[object, ...]:
        return (url.username, url.host, url.port, url.database, dict(url.query))

    return identity(a) == identity(b)


# --------------------------------------------------------------------------------------------
# Export and import as JSON Lines


def export_database(
    db: Database,
    path: Path,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    on_table: OnTable | None = None,
) -> CopyReport:
    """Write every model table of ``db`` to ``path`` as JSON Lines (gzip when it ends in .gz).

    The file is written beside ``path`` and renamed into place when complete, readable by its
    owner only: it holds every subscriber's profile.
    """
    revision = _require_head(db, "database")
    tables = model_tables()
    counts: list[TableCount] = []
    partial = path.with_name(path.name + ".partial")
    try:
        with db.snapshot() as reader, _open_for_writing(partial) as out:
            header = {
                "format": EXPORT_FORMAT,
                "version": EXPORT_VERSION,
                "revision": revision,
                "tables": [table.name for table in tables],
                "exported_at": datetime.now(UTC).isoformat(),
                "dialect": db.dialect,
            }
            out.write(json.dumps(header) + "\n")
            for table in tables:
                written = 0
                for chunk in _read_chunks(reader, table, chunk_size):
                    for row in chunk:
                        record = {"table": table.name, "row": _encode_row(row)}
                        out.write(json.dumps(record, ensure_ascii=False) + "\n")
                    written += len(chunk)
                counts.append(TableCount(table.name, written))
                if on_table is not None:
                    on_table(counts[-1])
            _verify_counts(reader, tables, counts, "database")
            trailer = {"end": True, "counts": {count.table: count.rows for count in counts}}
            out.write(json.dumps(trailer) + "\n")
        os.replace(partial, path)
    except SQLAlchemyError as exc:
        raise TransferError(f"export failed: {type(exc).__name__}: {_first_line(exc)}") from exc
    except OSError as exc:
        raise TransferError(f"could not write {path}: {exc.strerror or exc}") from exc
    finally:
        partial.unlink(missing_ok=True)
    return CopyReport(
        source=redact_url(db.url),
        target=str(path),
        revision=revision,
        tables=tuple(counts),
        skipped=_unmodelled_tables(db, tables),
    )


def import_database(
    db: Database,
    path: Path,
    *,
    force: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    on_table: OnTable | None = None,
) -> CopyReport:
    """Load an export written by ``export_database`` into ``db`` (migrated to head first).

    The export must be of the same schema revision as this version of the code. A database
    that already holds rows is refused unless ``force``, which deletes them first. Nothing is
    written unless the whole file loads and its counts match.
    """
    head = head_revision(db)
    tables = {table.name: table for table in model_tables()}
    try:
        with _open_for_reading(path) as lines:
            header = _read_header(path, next(lines, ""), head, set(tables))
            counts = {name: 0 for name in header["tables"]}
            upgrade(db)
            with db.engine.begin() as writer:
                _clear_or_refuse(writer, list(tables.values()), force)
                trailer = _load_rows(path, lines, writer, tables, counts, chunk_size, on_table)
                if trailer is None:
                    raise TransferError(
                        f"{path} ends before its last line: the export is truncated"
                    )
                if trailer.get("counts") != counts:
                    raise TransferError(
                        f"{path} declares {trailer.get('counts')} rows per table but holds {counts}"
                    )
                ordered = [tables[name] for name in header["tables"]]
                _reset_sequences(writer, ordered)
                expected = [TableCount(name, rows) for name, rows in counts.items()]
                _verify_counts(writer, ordered, expected, "target")
    except SQLAlchemyError as exc:
        raise TransferError(f"import failed: {type(exc).__name__}: {_first_line(exc)}") from exc
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise TransferError(f"could not read {path}: {exc}") from exc
    return CopyReport(
        source=str(path),
        target=redact_url(db.url),
        revision=head,
        tables=tuple(TableCount(name, rows) for name, rows in counts.items()),
    )


def _read_header(path: Path, line: str, head: str | None, known: set[str]) -> dict[str, Any]:
    try:
        header = json.loads(line) if line.strip() else None
    except json.JSONDecodeError:
        header = None
    if not isinstance(header, dict) or header.get("format") != EXPORT_FORMAT:
        raise TransferError(f"{path} is not a trending-papers export (its first line says so)")
    if header.get("version") != EXPORT_VERSION:
        raise TransferError(
            f"{path} is export format version {header.get('version')}; "
            f"this version reads version {EXPORT_VERSION}"
        )
    if header.get("revision") != head:
        raise TransferError(
            f"{path} holds schema revision {header.get('revision')}, this version's is {head}: "
            "import it with the version that exported it, upgrade, and export again"
        )
    listed = header.get("tables")
    if not isinstance(listed, list) or set(listed) != known or len(listed) != len(known):
        raise TransferError(f"{path} lists other tables than this version's schema: {listed}")
    return header


def _load_rows(
    path: Path,
    lines: Iterator[str],
    writer: Connection,
    tables: dict[str, Table],
    counts: dict[str, int],
    chunk_size: int,
    on_table: OnTable | None,
) -> dict[str, Any] | None:
    """Insert the rows of an export in file order; returns the trailer (None if missing)."""
    pending: list[dict[str, Any]] = []
    current: Table | None = None

    def flush() -> None:
        if current is not None and pending:
            writer.execute(current.insert(), pending)
            counts[current.name] = counts.get(current.name, 0) + len(pending)
            pending.clear()

    def finish_table() -> None:
        flush()
        if current is not None and on_table is not None:
            on_table(TableCount(current.name, counts.get(current.name, 0)))

    for number, line in enumerate(lines, start=2):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TransferError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
        if not isinstance(record, dict):
            raise TransferError(f"{path}:{number}: expected a JSON object")
        if record.get("end") is True:
            finish_table()
            if any(rest.strip() for rest in lines):
                raise TransferError(f"{path}:{number}: lines after the end of the export")
            return record
        table = tables.get(str(record.get("table")))
        if table is None:
            raise TransferError(
                f"{path}:{number}: table {record.get('table')!r} is not in this version's schema"
            )
        if table is not current:
            finish_table()
            current = table
        pending.append(_decode_row(table, record.get("row"), f"{path}:{number}"))
        if len(pending) >= chunk_size:
            flush()
    finish_table()
    return None


def _encode_value(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, Decimal):
        return str(value)
    return value


def _encode_row(row: dict[str, Any]) -> dict[str, Any]:
    return {key: _encode_value(value) for key, value in row.items()}


def _python_type(column: Column[Any]) -> type | None:
    column_type = column.type
    if isinstance(column_type, TypeDecorator):
        # A decorator names no Python type of its own; the type it stores does.
        column_type = column_type.impl_instance
    try:
        return column_type.python_type
    except NotImplementedError:
        return None


def _decode_value(column: Column[Any], value: Any) -> Any:
    if value is None:
        return None
    kind = _python_type(column)
    # datetime before date: a datetime is a date too.
    if kind is datetime:
        return datetime.fromisoformat(value)
    if kind is date:
        return date.fromisoformat(value)
    if kind is bytes:
        return base64.b64decode(value)
    if kind is Decimal:
        return Decimal(value)
    return value


def _decode_row(table: Table, row: object, where: str) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise TransferError(f"{where}: the row of table {table.name} is not a JSON object")
    columns = {column.key: column for column in table.columns}
    if set(row) != set(columns):
        unknown, missing = sorted(set(row) - set(columns)), sorted(set(columns) - set(row))
        raise TransferError(
            f"{where}: columns of table {table.name} do not match this version's schema "
            f"(unknown: {unknown or 'none'}, missing: {missing or 'none'})"
        )
    try:
        return {key: _decode_value(columns[key], value) for key, value in row.items()}
    except (TypeError, ValueError) as exc:
        raise TransferError(f"{where}: a value of table {table.name} is malformed: {exc}") from exc


# --------------------------------------------------------------------------------------------
# Shared steps


def _require_head(db: Database, what: str) -> str | None:
    current, head = current_revision(db), head_revision(db)
    if current != head:
        raise TransferError(
            f"the {what} is at schema revision {current or 'none'}, this version's is {head}: "
            "run `trending-papers db upgrade` on it first"
        )
    return current


def _read_chunks(connection: Connection, table: Table, size: int) -> Iterator[list[dict[str, Any]]]:
    order = list(table.primary_key.columns) or list(table.columns)
    result = connection.execution_options(yield_per=size).execute(select(table).order_by(*order))
    for part in result.mappings().partitions(size):
        yield [dict(row) for row in part]


def _count(connection: Connection, table: Table) -> int:
    return int(connection.execute(select(func.count()).select_from(table)).scalar_one())


def _clear_or_refuse(writer: Connection, tables: list[Table], force: bool) -> None:
    occupied = [
        table
        for table in tables
        if writer.execute(select(literal(1)).select_from(table).limit(1)).first() is not None
    ]
    if not occupied:
        return
    if not force:
        listed = ", ".join(f"{table.name} ({_count(writer, table)} rows)" for table in occupied)
        raise TransferError(
            f"the target database is not empty: {listed}; use --force to replace its contents"
        )
    for table in reversed(tables):
        writer.execute(table.delete())


def _reset_sequences(writer: Connection, tables: Iterable[Table]) -> None:
    """Move PostgreSQL sequences past the copied ids, so the next insert gets a fresh one."""
    if writer.dialect.name != "postgresql":
        # SQLite takes max(rowid) + 1, and AUTOINCREMENT's counter follows explicit ids too.
        return
    preparer = writer.dialect.identifier_preparer
    for table in tables:
        column = table.autoincrement_column
        if column is None:
            continue
        sequence = func.pg_get_serial_sequence(preparer.format_table(table), column.name)
        next_id = func.coalesce(select(func.max(column)).scalar_subquery(), 0) + 1
        writer.execute(select(func.setval(sequence, next_id, False)))


def _verify_counts(
    connection: Connection, tables: list[Table], expected: list[TableCount], where: str
) -> None:
    wanted = {count.table: count.rows for count in expected}
    wrong = [
        f"{table.name}: {found} rows, expected {wanted[table.name]}"
        for table in tables
        if table.name in wanted and (found := _count(connection, table)) != wanted[table.name]
    ]
    if wrong:
        raise TransferError(f"row counts in the {where} do not match: {'; '.join(wrong)}")


def _unmodelled_tables(db: Database, tables: list[Table]) -> tuple[str, ...]:
    known = {table.name for table in tables} | {"alembic_version"}
    with db.engine.connect() as connection:
        present = inspect(connection).get_table_names()
    return tuple(sorted(name for name in present if name not in known))


@contextmanager
def _open_for_writing(path: Path) -> Iterator[IO[str]]:
    with ExitStack() as stack:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        raw = stack.enter_context(os.fdopen(descriptor, "wb"))
        if path.name.removesuffix(".partial").endswith(".gz"):
            # GzipFile leaves the file it wraps open; the stack closes both, inner first.
            compressed = stack.enter_context(gzip.GzipFile(fileobj=raw, mode="wb"))
            yield stack.enter_context(io.TextIOWrapper(compressed, encoding="utf-8", newline="\n"))
        else:
            yield stack.enter_context(io.TextIOWrapper(raw, encoding="utf-8", newline="\n"))


@contextmanager
def _open_for_reading(path: Path) -> Iterator[Iterator[str]]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as stream:
        yield iter(stream)


def _first_line(exc: BaseException) -> str:
    detail = str(getattr(exc, "orig", None) or exc)
    return detail.strip().splitlines()[0] if detail.strip() else type(exc).__name__
