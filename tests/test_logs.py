"""Logs: context in both formats, secrets never written."""

from __future__ import annotations

import io
import json
import logging

import pytest

from bot import logs
from bot.config import Settings


@pytest.fixture
def captured() -> io.StringIO:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    yield stream
    root.handlers[:], root.level = saved


def _route(stream: io.StringIO) -> None:
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)


def test_text_format_shows_context(captured: io.StringIO) -> None:
    logs.configure("INFO", "text")
    _route(captured)
    logging.getLogger("t").info("delivered", extra={"subscriber": 7, "platform": "telegram"})
    assert "delivered subscriber=7 platform=telegram" in captured.getvalue()


def test_json_format_is_one_object_per_line(captured: io.StringIO) -> None:
    logs.configure("INFO", "json")
    _route(captured)
    logging.getLogger("t").warning("poll failed: %s", "timeout", extra={"source": "reddit"})
    line = json.loads(captured.getvalue().strip())
    assert line["message"] == "poll failed: timeout" and line["source"] == "reddit"
    assert line["level"] == "WARNING"


def test_configured_secrets_are_masked_everywhere(
    captured: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = "123456:AAE-very-secret-bot-token"
    monkeypatch.setenv("TP_TELEGRAM_TOKEN", token)
    monkeypatch.setenv("TP_SLACK_SIGNING_SECRET", "slack-signing-secret-value")
    settings = Settings()
    assert "very-secret" not in repr(settings)
    logs.configure("DEBUG", "json", settings.secret_values())
    _route(captured)
    log = logging.getLogger("library")
    log.info("POST https://api.telegram.org/bot%s/getMe", token)
    log.info("context", extra={"url": f"https://x/bot{token}/send"})
    try:
        raise RuntimeError(f"failed with slack-signing-secret-value and {token}")
    except RuntimeError:
        log.exception("boom")
    output = captured.getvalue()
    assert token not in output and "slack-signing-secret-value" not in output
    assert output.count(logs.MASK) >= 4
