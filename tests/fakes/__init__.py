"""In-process fake chat-platform servers that the real client libraries talk to in tests.

`tests.fakes.telegram_api.FakeTelegram` speaks the Telegram Bot API as python-telegram-bot uses it,
`tests.fakes.slack_api.FakeSlack` speaks the Slack Web API as slack_sdk uses it. Both bind a random
port on 127.0.0.1, record every call in `calls`, and let a test `await fake.wait_for(...)` a call
instead of sleeping. This module holds the pieces both fakes share.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

__all__ = ["CallLog", "LoopbackServer", "RecordedCall", "read_raw_params"]


@dataclass(frozen=True)
class RecordedCall:
    """One API call the fake answered, with its decoded parameters and the answer it gave."""

    method: str
    params: dict[str, Any]
    timestamp: float
    status: int
    response: Any
    http_method: str
    content_type: str

    @property
    def ok(self) -> bool:
        """Whether the fake answered with a success body."""
        return isinstance(self.response, dict) and self.response.get("ok") is True


class CallLog:
    """An append-only list of calls that coroutines can wait on."""

    def __init__(self) -> None:
        self.calls: list[RecordedCall] = []
        self._changed = asyncio.Condition()

    async def record(self, call: RecordedCall) -> None:
        """Append a call and wake everyone waiting for one."""
        async with self._changed:
            self.calls.append(call)
            self._changed.notify_all()

    def find(
        self, predicate: Callable[[RecordedCall], bool], since: int = 0
    ) -> RecordedCall | None:
        """The first call at index `since` or later that matches, if any."""
        return next((call for call in self.calls[since:] if predicate(call)), None)

    async def wait_for(
        self,
        predicate: Callable[[RecordedCall], bool],
        timeout: float = 5.0,  # noqa: ASYNC109 - a test states its patience in the call
        *,
        since: int = 0,
    ) -> RecordedCall:
        """Return the first matching call at index `since` or later, waiting for it if needed.

        Raises `TimeoutError` naming the calls seen so far when none arrives within `timeout`
        real seconds.
        """
        found: list[RecordedCall] = []

        def matched() -> bool:
            call = self.find(predicate, since)
            if call is not None:
                found.append(call)
            return call is not None

        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(matched)
        except TimeoutError:
            seen = ", ".join(call.method for call in self.calls[since:][-20:]) or "none"
            raise TimeoutError(
                f"no matching call within {timeout} s; calls since #{since}: {seen}"
            ) from None
        return found[0]


class LoopbackServer:
    """Runs an aiohttp application on 127.0.0.1 with a port the OS picks."""

    def __init__(self, app: web.Application) -> None:
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        self.port = 0

    async def start(self) -> None:
        """Bind the socket and start serving."""
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host_port = self._runner.addresses[0]
        self.port = int(host_port[1])

    async def stop(self) -> None:
        """Close the listening socket and every open connection."""
        await self._runner.cleanup()

    @property
    def root(self) -> str:
        """`http://127.0.0.1:PORT` of the running server."""
        return f"http://127.0.0.1:{self.port}"


def wall_clock() -> float:
    """Seconds since the epoch; the default timestamp source of recorded calls."""
    return time.time()


async def read_raw_params(request: web.Request) -> tuple[dict[str, Any], str]:
    """Merge query-string and body parameters of a request, as the real APIs accept both.

    Form and multipart values stay strings (uploaded files become a small description), a JSON
    object body is taken as it is. Returns the parameters and a short name of the body encoding:
    `json`, `form`, `multipart` or `none`.
    """
    params: dict[str, Any] = dict(request.query)
    content_type = request.content_type
    if not request.can_read_body:
        return params, "none"
    if content_type == "application/json":
        body = await request.json()
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(text="the JSON body must be an object")
        params.update(body)
        return params, "json"
    if content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()
        for name, value in form.items():
            if isinstance(value, web.FileField):
                params[name] = {"filename": value.filename, "size": len(value.file.read())}
            else:
                params[name] = str(value)
        return params, "form" if content_type.startswith("application/") else "multipart"
    raw = await request.read()
    return params, "none" if not raw else content_type
