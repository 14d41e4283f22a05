"""Greps everything the test run logs for the secrets the run configured.

``tests/conftest.py`` installs an ``Auditor`` for the whole session:

- every record first passes ``RawRecordCheck``, which looks for secrets in what *our* code
  (``bot``, ``feeds``, ``storage``) put into the record before any masking: the message, the
  ``extra=`` context and the exception text. Our code must never hand a secret to a logger.
- then the production handlers (``bot.logs.masked_handler``, text and JSON) write every record,
  ours and the libraries' (httpx logs Bot API URLs, which carry the token), to one file;
  service processes that tests start write their own log files and register them with
  ``include``. At the end of the session all of these files are searched for the secrets.

The secrets are everything a ``Settings`` registered during the run (``bot.logs.known_secrets``)
plus the fake servers' credentials. Values shorter than ``bot.logs.MIN_SECRET_LENGTH`` are not
treated as secrets (tests use placeholders like ``xoxb-1``; masking those would garble lines).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from bot.logs import MIN_SECRET_LENGTH, context_of, known_secrets, masked_handler

OUR_LOGGERS = ("bot", "feeds", "storage")


@dataclass(frozen=True)
class Leak:
    """Where a secret showed up: a file and line, or a logger's raw record."""

    where: str
    secret: str

    def describe(self) -> str:
        """The place and a recognisable but harmless prefix of the secret."""
        return f"{self.where}: contains a secret starting {self.secret[:4]!r}"


def _ours(name: str) -> bool:
    return any(name == root or name.startswith(root + ".") for root in OUR_LOGGERS)


def _record_text(record: logging.LogRecord) -> str:
    parts = [record.getMessage()]
    parts += [repr(value) for value in context_of(record).values()]
    if record.exc_info:
        parts.append(logging.Formatter().formatException(record.exc_info))
    if record.exc_text:
        parts.append(record.exc_text)
    if record.stack_info:
        parts.append(record.stack_info)
    return "\n".join(parts)


def find_leaks(text: str, secrets: Iterable[str], where: str) -> list[Leak]:
    """Every secret (long enough to count) that occurs in ``text``."""
    return [
        Leak(where, secret)
        for secret in secrets
        if len(secret) >= MIN_SECRET_LENGTH and secret in text
    ]


class RawRecordCheck(logging.Handler):
    """Notes every record of our own loggers that carries a secret before masking."""

    def __init__(self, extra_secrets: Iterable[str]) -> None:
        super().__init__(logging.DEBUG)
        self.extra_secrets = frozenset(extra_secrets)
        self.leaks: list[Leak] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Check one record (never raises: a logging handler must not break the caller)."""
        if not _ours(record.name):
            return
        try:
            text = _record_text(record)
        except Exception:  # a record that cannot be formatted is logging's problem, not ours
            return
        where = f"record from {record.name} ({record.pathname}:{record.lineno})"
        self.leaks += find_leaks(text, known_secrets() | self.extra_secrets, where)


@dataclass
class Auditor:
    """The session's log capture and the files to search at the end."""

    directory: Path
    extra_secrets: frozenset[str]
    files: list[Path] = field(default_factory=list)
    handlers: list[logging.Handler] = field(default_factory=list)
    raw: RawRecordCheck | None = None

    def start(self) -> None:
        """Open the session log and build the handlers (``attach`` puts them on the root)."""
        self.raw = RawRecordCheck(self.extra_secrets)
        log_file = self.directory / "test-run.log"
        self.files.append(log_file)
        self._stream = log_file.open("a", encoding="utf-8")
        self.handlers = [self.raw, masked_handler(self._stream, "text"),
                         masked_handler(self._stream, "json")]  # fmt: skip

    def attach(self) -> None:
        """(Re)install the handlers first on the root logger, at DEBUG.

        Called before every test: a test that configures logging itself (as the service does)
        replaces the root handlers, and the next test must be audited again.
        """
        root = logging.getLogger()
        others = [h for h in root.handlers if h not in self.handlers]
        root.handlers[:] = [*self.handlers, *others]  # raw check first: before any masking
        root.setLevel(logging.DEBUG)

    def include(self, path: Path) -> None:
        """Search this log file (a service process's) at the end too."""
        self.files.append(path)

    def finish(self) -> list[Leak]:
        """Detach, close, and return every leak found in records and files."""
        root = logging.getLogger()
        for handler in self.handlers:
            root.removeHandler(handler)
        self._stream.close()
        leaks = list(self.raw.leaks) if self.raw else []
        secrets = known_secrets() | self.extra_secrets
        for path in self.files:
            if not path.exists():
                continue
            for number, line in enumerate(path.read_text("utf-8", "replace").splitlines(), 1):
                leaks += find_leaks(line, secrets, f"{path}:{number}")
        return leaks

    def log_line_count(self) -> int:
        """Lines in the session log (to show the audit looked at something)."""
        self._stream.flush()
        with self.files[0].open(encoding="utf-8", errors="replace") as lines:
            return sum(1 for _ in lines)


_current: Auditor | None = None


def install(auditor: Auditor) -> None:
    """Make ``auditor`` the session's (``include`` reaches it from any test)."""
    global _current
    _current = auditor


def include(path: Path) -> None:
    """Have a service process's log file searched at the end of the session."""
    if _current is not None:
        _current.include(path)
