"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

_BIND_CACHE_SIZE = 4096


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes, also on SQLite, which stores them naive."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Store UTC; naive input is taken to be UTC already."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value if dialect.name != "postgresql" else value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        """The standard conversion (``process_bind_param``, then the dialect's), memoised.

        A bulk upsert binds the same few timestamps (today's ingest time, a page's handful of
        submission dates) thousands of times, and converting one costs about a microsecond.
        Equal datetimes are the same instant and convert alike, so a cached result is exact.
        """
        convert = super().bind_processor(dialect)
        if convert is None:
            return None
        converted: dict[Any, Any] = {}

        def process(value: Any) -> Any:
            if value is None:
                return None
            try:
                return converted[value]
            except KeyError:
                pass
            if len(converted) >= _BIND_CACHE_SIZE:
                converted.clear()
            result = converted[value] = convert(value)
            return result

        return process

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        """Always hand back an aware UTC datetime."""
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)
