"""Logging: human-readable by default, one JSON object per line with ``TP_LOG_FORMAT=json``.

Context passed with ``extra={"subscriber": 7, "source": "reddit"}`` shows up in both formats.
Every configured secret is masked in every record before it is written, whatever logged it
(a library that prints a request URL with the bot token in it, say).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TextIO

_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}
MASK = "***"
MIN_SECRET_LENGTH = 6
"""Shorter values are not masked: replacing every "abc" in every line would garble the logs."""

_known_secrets: set[str] = set()


def register_secrets(values: Iterable[str]) -> None:
    """Add secrets to the process-wide set every ``SecretMasker`` masks.

    ``bot.config.Settings`` registers its secrets when it is created, so a secret is masked
    even when the settings holding it were built after logging was configured.
    """
    _known_secrets.update(v for v in values if v and len(v) >= MIN_SECRET_LENGTH)


def known_secrets() -> frozenset[str]:
    """Every secret registered so far in this process."""
    return frozenset(_known_secrets)


def context_of(record: logging.LogRecord) -> dict[str, object]:
    """The ``extra=`` fields of a record."""
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, with any ``extra=`` fields included."""

    def format(self, record: logging.LogRecord) -> str:
        """Serialise ``record`` as JSON."""
        data: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        data.update(context_of(record))
        if record.exc_info or record.exc_text:
            # exc_text is what the secret masker cleaned; format afresh only without it.
            data["exc"] = record.exc_text or self.formatException(record.exc_info)  # type: ignore[arg-type]
        return json.dumps(data, default=str)


class TextFormatter(logging.Formatter):
    """``time level logger: message key=value…``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        """The classic line with the record's context appended."""
        line = super().format(record)
        context = context_of(record)
        if context:
            line += " " + " ".join(f"{k}={v}" for k, v in context.items())
        return line


class SecretMasker(logging.Filter):
    """Replaces every known secret in a record's message, arguments and context."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        register_secrets(secrets)
        self._seen = -1
        self._ordered: list[str] = []

    @property
    def secrets(self) -> list[str]:
        """The registered secrets, longest first (a secret containing another is masked whole)."""
        if self._seen != len(_known_secrets):
            self._ordered = sorted(_known_secrets, key=len, reverse=True)
            self._seen = len(self._ordered)
        return self._ordered

    def _mask(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        """Mask in place; never drops a record."""
        if not self.secrets:
            return True
        record.msg = self._mask(record.getMessage())
        record.args = None
        for key, value in context_of(record).items():
            if isinstance(value, str):
                setattr(record, key, self._mask(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = self._mask(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = self._mask(record.exc_text)
        return True


def masked_handler(stream: TextIO, fmt: str = "text") -> logging.Handler:
    """A handler writing ``fmt`` (text or json) lines to ``stream`` with every secret masked."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(SecretMasker())
    return handler


def configure(level: str = "INFO", fmt: str = "text", secrets: Iterable[str] = ()) -> None:
    """Configure the root logger once for the CLI and the service."""
    register_secrets(secrets)
    handler = masked_handler(sys.stderr, fmt)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every request URL at INFO, and Telegram's URLs carry the bot token; the
    # masker would catch it, but these lines are noise anyway.
    for noisy in ("httpx", "httpcore", "alembic", "apscheduler.executors.default"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
