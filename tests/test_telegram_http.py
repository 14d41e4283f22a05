"""The aiohttp request behind the Telegram adapter: bodies, errors, timeouts, pool, proxy."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, InputFile
from telegram.error import BadRequest, NetworkError, TimedOut
from telegram.request import RequestData
from telegram.request._requestparameter import RequestParameter

from bot.chat.telegram_http import AiohttpRequest
from tests.fakes import LoopbackServer
from tests.fakes.telegram_api import FakeTelegram


@pytest.fixture(autouse=True)
def ptb_timedelta(monkeypatch: pytest.MonkeyPatch) -> None:
    """PTB 22 warns when RetryAfter.retry_after is read as an int; opt in to timedelta."""
    monkeypatch.setenv("PTB_TIMEDELTA", "1")


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        yield fake


@pytest.fixture
async def bot(telegram: FakeTelegram) -> AsyncIterator[Bot]:
    async with Bot(telegram.token, base_url=telegram.base_url, request=AiohttpRequest(4)) as client:
        yield client


async def test_calls_go_as_json_with_nested_objects(telegram: FakeTelegram, bot: Bot) -> None:
    chat = telegram.private_chat(telegram.new_user("Ada"))
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("More 👍", callback_data="more:1")]])
    sent = await bot.send_message(chat.id, "<b>Neue</b> Papers 📄", parse_mode="HTML",
                                  reply_markup=keyboard)  # fmt: skip

    call = telegram.calls_to("sendMessage")[-1]
    assert (call.http_method, call.content_type) == ("POST", "json")
    assert call.params["chat_id"] == chat.id
    assert call.params["text"] == "<b>Neue</b> Papers 📄"
    assert call.params["reply_markup"] == {
        "inline_keyboard": [[{"text": "More 👍", "callback_data": "more:1"}]]
    }
    assert sent.text == "Neue Papers 📄" and sent.chat.id == chat.id


async def test_api_errors_keep_their_meaning(telegram: FakeTelegram, bot: Bot) -> None:
    with pytest.raises(BadRequest, match=r"(?i)chat not found"):
        await bot.send_message(424242, "hello")
    chat = telegram.private_chat(telegram.new_user())
    telegram.fail_next("sendMessage", 502)
    with pytest.raises(NetworkError, match="Bad Gateway"):
        await bot.send_message(chat.id, "one")
    await bot.send_message(chat.id, "two goes through")


async def test_an_unreachable_server_is_a_network_error() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    request = AiohttpRequest(1, connect_timeout=2.0)
    async with request:
        with pytest.raises(NetworkError, match="aiohttp"):
            await request.post(f"http://127.0.0.1:{port}/botTOKEN/getMe")


class SilentServer:
    """Accepts connections and reads, but never answers."""

    def __init__(self) -> None:
        self.accepted = 0
        self.connected = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> str:
        async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.accepted += 1
            self.connected.set()
            self._writers.append(writer)
            while await reader.read(1024):
                pass

        self._server = await asyncio.start_server(swallow, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/botTOKEN"

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        await self._server.wait_closed()


async def test_a_silent_server_times_out() -> None:
    async with SilentServer() as base, AiohttpRequest(1, read_timeout=0.2) as request:
        with pytest.raises(TimedOut):
            await request.post(f"{base}/getMe")


async def test_a_full_pool_waits_pool_timeout_then_times_out() -> None:
    silent = SilentServer()
    async with silent as base, AiohttpRequest(1, pool_timeout=0.2) as request:
        first = asyncio.create_task(request.post(f"{base}/getUpdates", read_timeout=5.0))
        await asyncio.wait_for(silent.connected.wait(), 5.0)  # the only connection is taken
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TimedOut):
            await request.post(f"{base}/getMe", connect_timeout=0.1)
        assert 0.2 <= loop.time() - started < 2.0
        assert silent.accepted == 1  # the second request never opened a connection
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first


class EchoServer:
    """Answers every Bot API call with what it received: headers, form fields and files."""

    def __init__(self) -> None:
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self.answer)
        self.server = LoopbackServer(app)
        self.seen: list[dict[str, Any]] = []

    async def answer(self, request: web.Request) -> web.Response:
        received: dict[str, Any] = {
            "content_type": request.content_type,
            "user_agent": request.headers.get("User-Agent", ""),
            "path": request.path,
        }
        if request.content_type == "multipart/form-data":
            form = await request.post()
            received["fields"] = {
                name: (value.filename, value.file.read().decode())
                if isinstance(value, web.FileField)
                else str(value)
                for name, value in form.items()
            }
        elif request.can_read_body:
            received["json"] = await request.json()
        self.seen.append(received)
        return web.json_response({"ok": True, "result": True})

    async def __aenter__(self) -> str:
        await self.server.start()
        return f"{self.server.root}/botTOKEN"

    async def __aexit__(self, *exc: object) -> None:
        await self.server.stop()


async def test_uploads_go_as_multipart_with_the_other_parameters() -> None:
    echo = EchoServer()
    data = RequestData(
        [
            RequestParameter.from_input("chat_id", 42),
            RequestParameter.from_input("caption", "All of it"),
            RequestParameter.from_input(
                "document", InputFile(b'{"saved": []}', filename="export.json")
            ),
        ]
    )
    async with echo as base, AiohttpRequest(1) as request:
        assert await request.post(f"{base}/sendDocument", data) is True
    (seen,) = echo.seen
    assert seen["content_type"] == "multipart/form-data"
    assert seen["user_agent"] == AiohttpRequest.USER_AGENT
    assert seen["fields"]["chat_id"] == "42"
    assert seen["fields"]["caption"] == "All of it"
    assert seen["fields"]["document"] == ("export.json", '{"saved": []}')


async def test_a_proxy_from_the_environment_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    echo = EchoServer()
    async with echo as base:
        proxy = base.removesuffix("/botTOKEN")
        monkeypatch.setenv("HTTP_PROXY", proxy)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        async with AiohttpRequest(1) as request:
            # The host does not exist: only the proxy can answer.
            assert await request.post("http://api.telegram.invalid/botTOKEN/getMe") is True
        monkeypatch.setenv("NO_PROXY", "api.telegram.invalid")
        async with AiohttpRequest(1, connect_timeout=2.0) as request:
            with pytest.raises(NetworkError):
                await request.post("http://api.telegram.invalid/botTOKEN/getMe")
    assert [seen["path"] for seen in echo.seen] == ["/botTOKEN/getMe"]


async def test_a_request_must_be_initialized_first() -> None:
    request = AiohttpRequest(1)
    with pytest.raises(RuntimeError, match="not initialized"):
        await request.do_request("http://127.0.0.1:1/botTOKEN/getMe", "POST")
    with pytest.raises(ValueError, match="at least 1"):
        AiohttpRequest(0)
