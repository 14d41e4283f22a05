"""Logs: context in both formats, secrets never written."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

from bot import logs
from bot.config import Settings
from tests import log_audit


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


def test_secrets_of_settings_read_after_logging_was_configured_are_masked(
    captured: io.StringIO,
) -> None:
    logs.configure("INFO", "text")
    _route(captured)
    token = "987654:AAF-a-later-configured-token"
    Settings(telegram_token=token)  # type: ignore[arg-type]
    logging.getLogger("library").info("GET https://api.telegram.org/bot%s/getMe", token)
    assert token not in captured.getvalue()
    assert f"bot{logs.MASK}/getMe" in captured.getvalue()


# The audit of the whole test run (tests/log_audit.py) must itself find what it looks for.
# These secrets are never registered, so the session's own audit does not see them.
UNREGISTERED = "never-registered-secret-0123456789"


def test_the_raw_record_check_flags_our_code_handing_a_secret_to_a_logger() -> None:
    check = log_audit.RawRecordCheck([UNREGISTERED])
    ours, library = logging.getLogger("bot.some_module"), logging.getLogger("httpx")
    for logger in (ours, library):
        logger.addHandler(check)
    try:
        ours.info("fine", extra={"subscriber": 7})
        library.info("GET https://x/bot%s/getMe", UNREGISTERED)  # masked on output instead
        ours.warning("poll failed", extra={"headers": {"authorization": UNREGISTERED}})
    finally:
        for logger in (ours, library):
            logger.removeHandler(check)
    [leak] = check.leaks
    assert leak.where.startswith("record from bot.some_module")
    assert UNREGISTERED not in leak.describe()  # the report itself shows only a prefix


def test_the_auditor_searches_its_log_and_the_service_logs(tmp_path: Path) -> None:
    auditor = log_audit.Auditor(tmp_path, frozenset({UNREGISTERED}))
    auditor.start()
    service_log = tmp_path / "service.log"
    service_log.write_text(f'{{"message": "started"}}\n{{"message": "url /bot{UNREGISTERED}/x"}}\n')
    auditor.include(service_log)
    auditor.attach()
    try:
        logging.getLogger("library").info("clean line")
    finally:
        leaks = auditor.finish()
    assert [leak.where for leak in leaks] == [f"{service_log}:2"]
    assert "clean line" in (tmp_path / "test-run.log").read_text()
