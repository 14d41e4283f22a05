"""Learned per-subscriber relevance models: store, load and drop them.

A model is a sparse weight vector over a hashed feature space plus an intercept. Weights are
packed as little-endian float32 and indices as uint32, both base64, so a row is a few
kilobytes and reads the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from sqlalchemy import bindparam, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from storage.db import Database
from storage.errors import StorageError
from storage.models import LEARNED
from storage.types import utcnow

_CHUNK = 500
_ID_CHUNK = 900
"""Ids per IN list: under SQLite's historical 999-parameter limit."""


@dataclass(frozen=True, eq=False)
class StoredModel:
    """One subscriber's learned model as stored."""

    subscriber_id: int
    space: str
    intercept: float
    indices: np.ndarray
    """Feature indices (uint32), unique."""
    weights: np.ndarray
    """One float32 weight per index."""
    positives: int = 0
    negatives: int = 0
    trained_at: datetime = field(default_factory=utcnow)

    def __post_init__(self) -> None:
        if self.indices.shape != self.weights.shape or self.indices.ndim != 1:
            raise ValueError("indices and weights must be 1-D arrays of the same length")


def _pack(array: np.ndarray, dtype: str) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype=dtype).tobytes()).decode("ascii")


def _unpack(text: str, dtype: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype=dtype).copy()


def _row(model: StoredModel) -> dict[str, object]:
    return {
        "subscriber_id": model.subscriber_id,
        "space": model.space,
        "intercept": float(model.intercept),
        "indices": _pack(model.indices, "<u4"),
        "weights": _pack(model.weights, "<f4"),
        "positives": model.positives,
        "negatives": model.negatives,
        "trained_at": model.trained_at,
    }


def save_models(db: Database, models: Iterable[StoredModel]) -> int:
    """Insert or replace models, all in one transaction; returns how many were written."""
    rows = [_row(m) for m in models]
    if not rows:
        return 0
    insert = postgresql.insert if db.dialect == "postgresql" else sqlite.insert
    try:
        with db.engine.begin() as connection:
            for start in range(0, len(rows), _CHUNK):
                statement = insert(LEARNED)
                excluded = statement.excluded
                statement = statement.on_conflict_do_update(
                    index_elements=["subscriber_id"],
                    set_={
                        name: excluded[name]
                        for name in (
                            "space", "intercept", "indices", "weights", "positives",
                            "negatives", "trained_at",
                        )
                    },
                )  # fmt: skip
                connection.execute(statement, rows[start : start + _CHUNK])
    except SQLAlchemyError as exc:
        raise StorageError(f"could not store {len(rows)} learned models") from exc
    return len(rows)


_MODELS = select(LEARNED).where(LEARNED.c.subscriber_id.in_(bindparam("ids", expanding=True)))
_MODELS_IN_SPACE = _MODELS.where(LEARNED.c.space == bindparam("space"))
"""Built once: ``/digest`` reads a model on every call."""


def load_models(
    db: Database, subscriber_ids: Iterable[int], *, space: str | None = None
) -> dict[int, StoredModel]:
    """The stored models of the given subscribers (only those in ``space`` when given)."""
    ids = list(dict.fromkeys(subscriber_ids))
    result: dict[int, StoredModel] = {}
    statement = _MODELS if space is None else _MODELS_IN_SPACE
    with db.transaction() as connection:
        for start in range(0, len(ids), _ID_CHUNK):
            chunk = {"ids": ids[start : start + _ID_CHUNK], "space": space}
            for row in connection.execute(statement, chunk).mappings():
                result[row["subscriber_id"]] = StoredModel(
                    subscriber_id=row["subscriber_id"],
                    space=row["space"],
                    intercept=row["intercept"],
                    indices=_unpack(row["indices"], "<u4"),
                    weights=_unpack(row["weights"], "<f4"),
                    positives=row["positives"],
                    negatives=row["negatives"],
                    trained_at=row["trained_at"],
                )
    return result


def delete_models(db: Database, subscriber_ids: Sequence[int]) -> int:
    """Drop the models of these subscribers (e.g. they no longer have enough ratings)."""
    removed = 0
    with db.session() as session:
        for start in range(0, len(subscriber_ids), _ID_CHUNK):
            chunk = list(subscriber_ids[start : start + _ID_CHUNK])
            outcome = session.execute(delete(LEARNED).where(LEARNED.c.subscriber_id.in_(chunk)))
            removed += int(getattr(outcome, "rowcount", 0) or 0)
    return removed


def modelled_subscribers(db: Database) -> set[int]:
    """Ids of every subscriber that has a stored model."""
    with db.session() as session:
        return set(session.execute(select(LEARNED.c.subscriber_id)).scalars())


def count_models(db: Database) -> int:
    """How many learned models are stored."""
    with db.session() as session:
        return int(session.execute(select(func.count()).select_from(LEARNED)).scalar_one())
