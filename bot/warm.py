"""Work that may run on the event loop only while nothing has to be loaded or built for it.

A ``/digest`` on SQLite costs a few milliseconds once the fresh papers, their ranking index
and the trend scores are in memory: cheaper on the event loop than in a worker thread. Loading
them (after new papers or new engagement arrived, or after a restart) takes from tens of
milliseconds to seconds, which must not stall every other chat. Code that is about to load
calls :func:`need_load`; inside :func:`warm_only` that raises :class:`NotWarm` instead, and the
caller runs the whole job again in a worker thread, where the load may take its time.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_WARM_ONLY: ContextVar[bool] = ContextVar("warm_only", default=False)


class NotWarm(Exception):
    """Raised inside :func:`warm_only` before a load or build starts (nothing done yet)."""


@contextmanager
def warm_only() -> Iterator[None]:
    """Run the enclosed code on what is already loaded; a load raises :class:`NotWarm`."""
    token = _WARM_ONLY.set(True)
    try:
        yield
    finally:
        _WARM_ONLY.reset(token)


def need_load(what: str) -> None:
    """Announce a load or build of ``what``: raises :class:`NotWarm` inside :func:`warm_only`."""
    if _WARM_ONLY.get():
        raise NotWarm(what)
