"""python-telegram-bot's HTTP layer on aiohttp: every Bot API call of the Telegram adapter.

PTB sends each call through a ``BaseRequest``; its default, ``HTTPXRequest``, costs about
2 ms of CPU per ``sendMessage`` with a few dozen requests in flight (httpcore re-checks every
pooled connection on each request), which was the largest single cost of a chat command in
``bench/telegram_commands.py``. The same call through aiohttp costs about 0.4 ms, and aiohttp
is a dependency already (Slack). Behaviour follows ``HTTPXRequest``:

- parameters go as one JSON body (multipart when a file is uploaded): the Bot API takes
  ``application/json``, and ``json.dumps`` runs in C where form-encoding a long HTML message
  costs a Python call per character;
- ``connection_pool_size`` connections at most; a request that finds none free waits up to
  ``pool_timeout`` (plus ``connect_timeout`` to open one), then fails with ``TimedOut``;
- ``read_timeout`` bounds each wait for the server's bytes; aiohttp has no separate write
  timeout, so an upload is bounded as a whole by ``media_write_timeout + read_timeout``;
- timeouts raise ``telegram.error.TimedOut``, other transport failures ``NetworkError``;
- certificates are checked against certifi's bundle, as httpx does, and a proxy comes from
  the usual environment variables (``HTTPS_PROXY``, ``ALL_PROXY``, ``NO_PROXY``), read once
  per host, as httpx reads them once per client.
"""

from __future__ import annotations

import json
import ssl
import urllib.request
from urllib.parse import urlsplit

import aiohttp
from telegram._utils.defaultvalue import DefaultValue
from telegram._utils.types import ODVInput
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData


def _ssl_context() -> ssl.SSLContext:
    """Verify like httpx: certifi's CA bundle when installed, the system's otherwise."""
    try:
        import certifi
    except ImportError:  # pragma: no cover - certifi comes with httpx
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=certifi.where())


def _env_proxy(url: str) -> str | None:
    """The proxy the environment names for ``url`` (``<scheme>_proxy``, then ``all_proxy``)."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if proxy and urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return proxy


def _sum(first: float | None, second: float | None) -> float | None:
    """Two timeouts one after the other; None (no limit) when either is unlimited."""
    return None if first is None or second is None else first + second


class AiohttpRequest(BaseRequest):
    """A ``telegram.request.BaseRequest`` on one ``aiohttp.ClientSession`` (see module doc)."""

    __slots__ = (
        "_connect_timeout",
        "_media_write_timeout",
        "_pool_size",
        "_pool_timeout",
        "_proxies",
        "_read_timeout",
        "_session",
        "_write_timeout",
    )

    def __init__(
        self,
        connection_pool_size: int = 256,
        *,
        read_timeout: float | None = 5.0,
        write_timeout: float | None = 5.0,
        connect_timeout: float | None = 5.0,
        pool_timeout: float | None = 1.0,
        media_write_timeout: float | None = 20.0,
    ) -> None:
        if connection_pool_size < 1:
            raise ValueError("connection_pool_size must be at least 1")
        self._pool_size = connection_pool_size
        self._read_timeout = read_timeout
        self._write_timeout = write_timeout
        self._connect_timeout = connect_timeout
        self._pool_timeout = pool_timeout
        self._media_write_timeout = media_write_timeout
        self._session: aiohttp.ClientSession | None = None
        self._proxies: dict[tuple[str, str], str | None] = {}

    @property
    def read_timeout(self) -> float | None:
        """The default read timeout in seconds (PTB adds it to the long-polling timeout)."""
        return self._read_timeout

    async def initialize(self) -> None:
        """Open the session (again, after a shutdown)."""
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._pool_size, limit_per_host=0, ssl=_ssl_context()
            )
            # No trust_env: aiohttp would scan the environment on every request.
            self._session = aiohttp.ClientSession(
                connector=connector, headers={"User-Agent": self.USER_AGENT}
            )

    async def shutdown(self) -> None:
        """Close the session and its connections."""
        if self._session is not None and not self._session.closed:
            await self._session.close()

    def _proxy(self, url: str) -> str | None:
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc)
        if key not in self._proxies:
            self._proxies[key] = _env_proxy(url)
        return self._proxies[key]

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        write_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        connect_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        pool_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        """Send one request; (HTTP status, body). See ``BaseRequest.do_request``."""
        session = self._session
        if session is None or session.closed:
            raise RuntimeError("This AiohttpRequest is not initialized!")
        files = request_data is not None and request_data.contains_files
        read = self._read_timeout if isinstance(read_timeout, DefaultValue) else read_timeout
        connect = (
            self._connect_timeout if isinstance(connect_timeout, DefaultValue) else connect_timeout
        )
        pool = self._pool_timeout if isinstance(pool_timeout, DefaultValue) else pool_timeout
        if isinstance(write_timeout, DefaultValue):
            write = self._media_write_timeout if files else self._write_timeout
        else:
            write = write_timeout
        timeout = aiohttp.ClientTimeout(
            total=_sum(write, read) if files else None,
            connect=_sum(pool, connect),
            sock_connect=connect,
            sock_read=read,
        )
        data: aiohttp.FormData | bytes | None = None
        headers = None
        if request_data is not None and files:
            data = _multipart(request_data)
        elif request_data is not None:
            data = json.dumps(request_data.parameters, ensure_ascii=False).encode()
            headers = _JSON
        try:
            async with session.request(
                method, url, data=data, headers=headers, timeout=timeout, proxy=self._proxy(url)
            ) as response:
                return response.status, await response.read()
        except TimeoutError as exc:  # aiohttp's timeouts are TimeoutErrors too
            raise TimedOut(
                "Timed out: no connection became free, or Telegram did not answer in time"
            ) from exc
        except aiohttp.ClientError as exc:
            raise NetworkError(f"aiohttp.{type(exc).__name__}: {exc}") from exc


_JSON = {"Content-Type": "application/json"}


def _multipart(request_data: RequestData) -> aiohttp.FormData:
    """The parameters and files of an upload as ``multipart/form-data``."""
    form = aiohttp.FormData()
    for name, value in request_data.json_parameters.items():
        form.add_field(name, value)
    for name, (filename, content, mime_type) in request_data.multipart_data.items():
        form.add_field(name, content, filename=filename, content_type=mime_type)
    return form
