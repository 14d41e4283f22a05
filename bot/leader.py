"""Who runs the scheduler when several replicas share a database.

On PostgreSQL the leader holds a session-level advisory lock (keyed by the schema the tables
live in) on a dedicated connection; if
its process dies, the server ends the session and frees the lock, and a follower that keeps
trying takes over. On SQLite (one machine) an exclusive ``flock`` on a file next to the
database plays the same role.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from pathlib import Path
from typing import IO

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.engine import make_url as parse_url
from sqlalchemy.exc import SQLAlchemyError

from storage.db import Database

log = logging.getLogger(__name__)

LOCK_KEY_SQL = "hashtextextended('trending-papers:' || current_schema(), 0)"
"""The advisory lock's key: one per schema, so deployments (or test runs) that keep their tables
in different schemas of one database do not take each other's scheduler lock."""


class LeaderLock:
    """Try to become leader now and then; ``is_leader`` says whether we are."""

    def __init__(self, db: Database, *, retry_seconds: float = 10.0) -> None:
        self.db = db
        self.retry_seconds = retry_seconds
        self.is_leader = False
        self._connection: Connection | None = None
        self._file: IO[str] | None = None
        self._task: asyncio.Task[None] | None = None

    def try_acquire(self) -> bool:
        """One attempt (and a liveness check when already leader)."""
        try:
            if self.db.dialect == "postgresql":
                self._try_postgres()
            else:
                self._try_file()
        except (SQLAlchemyError, OSError) as exc:
            if self.is_leader:
                log.warning("lost scheduler leadership: %s", exc)
            self._drop()
        return self.is_leader

    def _try_postgres(self) -> None:
        if self._connection is not None:
            self._connection.execute(text("SELECT 1"))  # still holding the session
            return
        connection = self.db.engine.connect()
        got = connection.execute(text(f"SELECT pg_try_advisory_lock({LOCK_KEY_SQL})")).scalar()
        connection.commit()
        if got:
            self._connection = connection
            self._become_leader()
        else:
            connection.close()

    def _try_file(self) -> None:
        if self._file is not None:
            return
        database = parse_url(self.db.url).database or ""
        path = Path(f"{database}.leader") if database not in ("", ":memory:") else None
        if path is None:
            self._become_leader()  # an in-memory database has only this process
            return
        handle = path.open("w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return
        handle.write(str(os.getpid()))
        handle.flush()
        self._file = handle
        self._become_leader()

    def _become_leader(self) -> None:
        if not self.is_leader:
            log.info("this replica now runs the scheduler (pid %s)", os.getpid())
        self.is_leader = True

    def _drop(self) -> None:
        self.is_leader = False
        if self._connection is not None:
            with contextlib.suppress(SQLAlchemyError):
                self._connection.close()
            self._connection = None
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None

    async def keep_trying(self) -> None:
        """Retry every ``retry_seconds`` until cancelled (also re-checks a held lock)."""
        while True:
            await asyncio.to_thread(self.try_acquire)
            await asyncio.sleep(self.retry_seconds)

    def start(self) -> None:
        """Begin the background attempts on the running loop."""
        self._task = asyncio.get_running_loop().create_task(self.keep_trying())

    async def release(self) -> None:
        """Stop trying and give up leadership (on shutdown)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._connection is not None:
            with contextlib.suppress(SQLAlchemyError):
                self._connection.execute(text(f"SELECT pg_advisory_unlock({LOCK_KEY_SQL})"))
        self._drop()
