"""Shared fixtures: no real network, databases on SQLite (always) and PostgreSQL (when set)."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from bot.logs import known_secrets, register_secrets
from storage.db import Database, normalize_url
from storage.migrate import upgrade
from tests import log_audit
from tests.fakes.slack_api import DEFAULT_BOT_TOKEN, DEFAULT_CLIENT_SECRET
from tests.fakes.telegram_api import DEFAULT_TOKEN

_LOOPBACK_PREFIXES = ("127.", "::1", "localhost")
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo


def _is_loopback(address: object) -> bool:
    if isinstance(address, (str, bytes)):
        return True  # Unix domain sockets (e.g. PostgreSQL's socket) stay on this machine.
    return (
        isinstance(address, tuple)
        and bool(address)
        and str(address[0]).startswith(_LOOPBACK_PREFIXES)
    )


class NetworkAccessError(RuntimeError):
    """Raised when a test tries to reach a non-loopback address."""


def _guarded_connect(self: socket.socket, address: object) -> None:
    if not _is_loopback(address):
        raise NetworkAccessError(f"test tried to reach the network: {address!r}")
    return _real_connect(self, address)  # type: ignore[arg-type]


def _guarded_connect_ex(self: socket.socket, address: object) -> int:
    if not _is_loopback(address):
        raise NetworkAccessError(f"test tried to reach the network: {address!r}")
    return _real_connect_ex(self, address)  # type: ignore[arg-type]


def _guarded_getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
    name = host.decode() if isinstance(host, bytes) else str(host)
    if name and not name.startswith(_LOOPBACK_PREFIXES) and name not in {"None", ""}:
        raise NetworkAccessError(f"test tried to resolve a network host: {name!r}")
    return _real_getaddrinfo(host, *args, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection or DNS lookup beyond loopback fails the test."""
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", _guarded_connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", _guarded_getaddrinfo)


@pytest.fixture(autouse=True)
def ptb_timedelta(monkeypatch: pytest.MonkeyPatch) -> None:
    """python-telegram-bot 22 warns on every RetryAfter unless durations are timedeltas."""
    monkeypatch.setenv("PTB_TIMEDELTA", "1")


@pytest.fixture(autouse=True)
def isolated_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Tests never read the developer's .env or TP_* variables, nor write to their data dir."""
    for name in list(os.environ):
        if name.startswith("TP_") and name != "TP_TEST_POSTGRES_URL":
            monkeypatch.delenv(name)
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.chdir(home)


# --- secrets in logs ----------------------------------------------------------------------


_AUDIT_SUMMARY: list[str] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line saying what the log audit searched and found."""
    for line in _AUDIT_SUMMARY:
        terminalreporter.write_line(line)


@pytest.fixture(scope="session", autouse=True)
def secret_log_audit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[log_audit.Auditor]:
    """Everything the run logs is written as in production and searched for secrets at the end."""
    auditor = log_audit.Auditor(
        tmp_path_factory.mktemp("logs"),
        frozenset({DEFAULT_TOKEN, DEFAULT_BOT_TOKEN, DEFAULT_CLIENT_SECRET}),
    )
    # The service registers its configured token for masking when it reads its settings; tests
    # that hand the fakes' credentials straight to a client get the same.
    register_secrets(auditor.extra_secrets)
    auditor.start()
    log_audit.install(auditor)
    yield auditor
    lines = auditor.log_line_count()
    leaks = auditor.finish()
    _AUDIT_SUMMARY.append(
        f"log audit: {lines} lines logged in-process and {len(auditor.files) - 1} service "
        f"log files searched for {len(known_secrets()) + len(auditor.extra_secrets)} "
        f"configured secrets: {len(leaks)} found"
    )
    if leaks:
        shown = "\n".join(leak.describe() for leak in leaks[:20])
        pytest.fail(f"secrets appeared in the logs:\n{shown}", pytrace=False)


@pytest.fixture(autouse=True)
def audited_logging(secret_log_audit: log_audit.Auditor) -> None:
    """Put the audit handlers back in front, should the previous test have replaced them."""
    secret_log_audit.attach()


# --- databases ----------------------------------------------------------------------------

POSTGRES_URL_VAR = "TP_TEST_POSTGRES_URL"


def postgres_url() -> str | None:
    """The PostgreSQL server for tests, from ``TP_TEST_POSTGRES_URL`` (None: skip those tests)."""
    return os.environ.get(POSTGRES_URL_VAR) or None


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    """A migrated SQLite database in a temporary file (WAL needs a real file)."""
    db = Database(f"sqlite:///{tmp_path / 'test.db'}")
    upgrade(db)
    yield db
    db.dispose()


@pytest.fixture
def pg_db() -> Iterator[Database]:
    """A migrated PostgreSQL database in a private schema that is dropped afterwards."""
    url = postgres_url()
    if url is None:
        pytest.skip(
            f"PostgreSQL tests need {POSTGRES_URL_VAR} (e.g. postgresql://postgres@127.0.0.1:5432/test)"
        )
    schema = f"tp_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(normalize_url(url))
    try:
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    except OperationalError as exc:
        admin.dispose()
        pytest.fail(f"PostgreSQL at {url} is unreachable: {exc.orig}")
    db = Database(_with_search_path(url, schema))
    upgrade(db)
    try:
        yield db
    finally:
        db.dispose()
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _with_search_path(url: str, schema: str) -> str:
    separator = "&" if "?" in url else "?"
    return f"{normalize_url(url)}{separator}options=-csearch_path%3D{schema}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest) -> Database:
    """The same test on SQLite and on PostgreSQL."""
    name = "sqlite_db" if request.param == "sqlite" else "pg_db"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]
