"""Alembic migrations driven from code, so ``trending-papers db upgrade`` needs no ini file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.exc import SQLAlchemyError

from storage import search
from storage.db import Database
from storage.errors import StorageError

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
EXTERNAL_TABLES = frozenset({"slack_installations", "slack_bots", "slack_oauth_states"})
"""Created by migrations; their schema is slack_sdk's, so they are not in SQLModel.metadata."""


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """Alembic hook: leave the search index and the Slack tables out of comparisons."""
    if type_ == "table" and name in EXTERNAL_TABLES:
        return False
    return search.include_name(name, type_, parent_names)


def alembic_config(db: Database) -> Config:
    """An Alembic config pointing at our migrations and ``db``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # '%' would be read as interpolation by configparser.
    config.set_main_option("sqlalchemy.url", db.url.replace("%", "%%"))
    return config


def head_revision(db: Database) -> str | None:
    """The newest revision the code knows."""
    return ScriptDirectory.from_config(alembic_config(db)).get_current_head()


def current_revision(db: Database) -> str | None:
    """The revision the database is at (None for an empty database)."""
    try:
        with db.engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    except SQLAlchemyError as exc:
        raise StorageError("could not read the schema revision") from exc


def upgrade(db: Database, revision: str = "head") -> tuple[str | None, str | None]:
    """Migrate ``db`` to ``revision``; returns (before, after). A no-op when already there."""
    before = current_revision(db)
    config = alembic_config(db)
    try:
        with db.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    except SQLAlchemyError as exc:
        raise StorageError(f"migration to {revision} failed") from exc
    return before, current_revision(db)


def is_up_to_date(db: Database) -> bool:
    """True when the database schema is at the code's head revision."""
    return current_revision(db) == head_revision(db)
