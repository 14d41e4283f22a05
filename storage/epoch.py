"""Moments as integer microseconds since the Unix epoch, computed alike in Python and in SQL.

The engagement rollup stores times this way: integers compare exactly (no float rounding at
the boundaries the trend formula cares about) and cross the database driver as plain numbers,
far cheaper than datetimes. ``storage.types.UTCDateTime`` columns are converted by the
database itself: PostgreSQL's ``extract(epoch …)`` is exact, and on SQLite, which keeps
``YYYY-MM-DD HH:MM:SS.ffffff`` text, the seconds and the microseconds are read separately
(``strftime('%s')`` alone would round a fractional second).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import BigInteger, ColumnElement, Integer, cast, func

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
SECOND_US = 1_000_000
HOUR_US = 3600 * SECOND_US


def to_us(moment: datetime) -> int:
    """Microseconds since the epoch; a naive datetime is taken to be UTC, as storage does."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return (aware - EPOCH) // MICROSECOND


def from_us(micros: int) -> datetime:
    """The aware UTC datetime of ``micros``."""
    return EPOCH + timedelta(microseconds=micros)


def hour_of(micros: int) -> int:
    """The hour bucket (hours since the epoch) a moment falls in."""
    return micros // HOUR_US


def sql_us(column: ColumnElement[datetime], dialect: str) -> ColumnElement[int]:
    """``column`` (a ``UTCDateTime``) as microseconds since the epoch, computed in SQL."""
    if dialect == "postgresql":
        return cast(func.extract("epoch", column) * SECOND_US, BigInteger)
    seconds = cast(func.strftime("%s", func.substr(column, 1, 19)), Integer)
    fraction = cast(func.substr(func.substr(column, 21).concat("000000"), 1, 6), Integer)
    return seconds * SECOND_US + fraction


def sql_bulk_us(column: ColumnElement[datetime], dialect: str) -> ColumnElement[Any]:
    """``column`` in the form ``bulk_us`` turns into microseconds, for reads through the raw
    driver (``storage.dbapi``): PostgreSQL computes them; SQLite hands back its text as is,
    which numpy parses in C several times faster than SQLite's own ``strftime``."""
    return column if dialect == "sqlite" else sql_us(column, dialect)


def bulk_us(values: Sequence[Any], dialect: str) -> np.ndarray:
    """Microseconds since the epoch (float64, NaN for NULL) of values of ``sql_bulk_us``."""
    if dialect == "sqlite":
        parsed = np.array(values, dtype="datetime64[us]")
        micros = parsed.astype(np.int64).astype(np.float64)
        micros[np.isnat(parsed)] = np.nan
        return micros
    return np.array([np.nan if value is None else value for value in values], dtype=np.float64)
