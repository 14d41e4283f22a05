"""Engine and sessions: SQLite (WAL, foreign keys, busy timeout) or PostgreSQL from one URL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import StaticPool
from sqlmodel import Session, create_engine

from storage.errors import StorageError

SQLITE_BUSY_TIMEOUT_MS = 10_000


def normalize_url(url: str) -> str:
    """Use the psycopg 3 driver for plain ``postgresql://`` URLs."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def redact_url(url: str) -> str:
    """The URL with its password hidden, for logs and messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable database URL>"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode=WAL")
    # WAL makes NORMAL durable across application crashes; only power loss can lose the tail.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def create_db_engine(url: str, *, echo: bool = False) -> Engine:
    """Build an engine for ``url``; a SQLite file's directory is created if missing."""
    url = normalize_url(url)
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise StorageError(f"invalid database URL: {redact_url(url)}") from exc
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        in_memory = database in ("", ":memory:")
        if not in_memory:
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        # An in-memory database lives only as long as its one connection. A file database
        # reuses the connection used last: it has the warmest page cache, where a FIFO pool
        # would rotate through cold ones (worker threads on bench/telegram_commands.py: 3.3 →
        # 2.8 ms of CPU per command).
        pooling: dict[str, Any] = (
            {"poolclass": StaticPool} if in_memory else {"pool_use_lifo": True}
        )
        engine = create_engine(
            url,
            echo=echo,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            **pooling,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, echo=echo, pool_pre_ping=True, pool_size=5, max_overflow=10)


class Database:
    """The application's handle on its database: one engine, short sessions, wrapped errors."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = normalize_url(url)
        self.engine = create_db_engine(self.url, echo=echo)

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success, rolls back on error, raises ``StorageError``."""
        session = Session(self.engine, expire_on_commit=False)
        try:
            yield session
            session.commit()
        except SQLAlchemyError as exc:
            session.rollback()
            raise StorageError(f"database operation failed: {type(exc).__name__}: {exc}") from exc
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A Core connection in one transaction: commits on success, raises ``StorageError``.

        For the hot paths (every command reads its subscriber): prebuilt Core statements
        skip both building a statement per call and the ORM's unit of work.
        """
        try:
            with self.engine.begin() as connection:
                yield connection
        except SQLAlchemyError as exc:
            raise StorageError(f"database operation failed: {type(exc).__name__}: {exc}") from exc

    @contextmanager
    def snapshot(self) -> Iterator[Connection]:
        """A connection whose reads all see the same committed state."""
        if self.dialect == "postgresql":
            with self.engine.connect() as connection:
                reader = connection.execution_options(isolation_level="REPEATABLE READ")
                with reader.begin():
                    yield reader
            return
        with self.engine.connect() as connection:
            # pysqlite opens a transaction only before a write, so every SELECT would read the
            # newest state; an explicit BEGIN pins one WAL snapshot until the rollback on close.
            connection.exec_driver_sql("BEGIN")
            try:
                yield connection
            finally:
                connection.rollback()

    def ping(self) -> None:
        """Check that the database answers; raise ``StorageError`` if not."""
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            raise StorageError(f"database unreachable at {redact_url(self.url)}") from exc

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()
