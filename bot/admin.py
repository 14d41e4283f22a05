"""Bot admins: who they are (``TP_ADMIN_IDS``), ``/stats`` and ``/announce``.

An admin is named per platform as ``platform:user``: ``telegram:123456789`` (the numeric user
id, which @userinfobot tells), ``slack:U0123ABCD`` (a member id, in any workspace) or
``slack:T0123ABCD:U0123ABCD`` (one workspace's member only), ``console:<name>`` for the local
console chat. Chat admins (group owners) are a different thing: they change their chat's
settings; bot admins see the whole service and write to every subscriber.

Announcements go through the outbox like digests, so the delivery worker's rate limits,
retries and crash safety apply to them too. Each chat gets an announcement at most once
(its outbox key is derived from the text and the UTC date), and chats that turned
announcements off (``/settings announcements off``) are skipped.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from storage import cursors, stats
from storage.db import Database
from storage.models import OUTBOX, SUBSCRIBERS, OutboxStatus, Platform, SourceCursor

ANNOUNCEMENT_KIND = "announcement"
"""``payload["kind"]`` of an announcement in the outbox (digests have no kind)."""
MAX_ANNOUNCEMENT_LENGTH = 3500
"""Leaves room for the heading and the opt-out line within Telegram's 4,096 characters."""
STALE_SOURCE = timedelta(hours=26)
"""A source without a successful poll for this long shows as stale (arXiv polls daily)."""


class AdminIds:
    """The configured bot admins; ``allows(platform, user_id)`` answers "may this user…"."""

    def __init__(self, entries: Iterable[str] = ()) -> None:
        self._exact: set[tuple[Platform, str]] = set()
        self._any_workspace: set[str] = set()
        for entry in entries:
            platform, user = parse_admin_id(entry)
            if platform == Platform.SLACK and ":" not in user:
                self._any_workspace.add(user)
            else:
                self._exact.add((platform, user))

    def __bool__(self) -> bool:
        return bool(self._exact or self._any_workspace)

    def allows(self, platform: Platform, user_id: str) -> bool:
        """True when ``user_id`` (as the chat adapter reports it) is a bot admin."""
        if (platform, user_id) in self._exact:
            return True
        # Slack adapters report ``team:user``; a bare ``slack:U…`` entry matches any team.
        return platform == Platform.SLACK and user_id.rpartition(":")[2] in self._any_workspace


def parse_admin_id(entry: str) -> tuple[Platform, str]:
    """``telegram:123`` → (TELEGRAM, "123"); ValueError saying what is wrong otherwise."""
    name, colon, user = entry.strip().partition(":")
    try:
        platform = Platform(name.strip().casefold())
    except ValueError:
        platform = None
    user = user.strip()
    if not colon or platform is None or not user:
        known = ", ".join(p.value for p in Platform)
        raise ValueError(
            f"admin id {entry!r} should look like telegram:123456789 or slack:U0123ABCD "
            f"(platforms: {known})"
        )
    if platform == Platform.TELEGRAM and not user.lstrip("-").isdigit():
        raise ValueError(
            f"admin id {entry!r}: a Telegram user id is a number, e.g. telegram:123456789"
        )
    return platform, user


# --------------------------------------------------------------------------- /announce


@dataclass(frozen=True)
class AnnounceResult:
    """What ``announce`` did: messages queued, chats skipped, and chats that already had it."""

    queued: int
    opted_out: int
    already_sent: int
    unreachable: int = 0
    """Inactive chats (blocked the bot, were removed): nothing is sent there."""


def announcement_payload(text: str, author: str | None = None) -> dict[str, str]:
    """The outbox payload of an announcement (rendered by ``bot.commands.reply_for_payload``)."""
    data = {"kind": ANNOUNCEMENT_KIND, "text": text}
    if author:
        data["author"] = author
    return data


def announcement_key(text: str, now: datetime, subscriber_id: int) -> str:
    """Outbox key: the same text on the same UTC day reaches a chat once."""
    digest = hashlib.blake2b(f"{now.date().isoformat()}\n{text}".encode(), digest_size=10)
    return f"announce:{digest.hexdigest()}:{subscriber_id}"


def announce(
    db: Database, text: str, now: datetime, *, author: str | None = None
) -> AnnounceResult:
    """Queue ``text`` for every active chat that has not turned announcements off."""
    with db.session() as session:
        rows = session.execute(
            select(SUBSCRIBERS.c.id, SUBSCRIBERS.c.active, SUBSCRIBERS.c.announcements)
        ).all()
        recipients = [row.id for row in rows if row.active and row.announcements]
        unreachable = sum(1 for row in rows if not row.active)
        opted_out = len(rows) - len(recipients) - unreachable
        if not recipients:
            return AnnounceResult(0, opted_out, 0, unreachable)
        payload = announcement_payload(text, author)
        insert = postgresql.insert if db.dialect == "postgresql" else sqlite.insert
        statement = (
            insert(OUTBOX)
            .on_conflict_do_nothing(index_elements=["idempotency_key"])
            .returning(OUTBOX.c.id)
        )
        values = [
            {
                "subscriber_id": subscriber_id,
                "idempotency_key": announcement_key(text, now, subscriber_id),
                "payload": payload,
                "status": OutboxStatus.PENDING.value,
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
            }
            for subscriber_id in recipients
        ]
        queued = 0
        for chunk in _chunks(values, 500):
            queued += len(session.execute(statement, chunk).all())
    return AnnounceResult(queued, opted_out, len(recipients) - queued, unreachable)


Row = dict[str, object]


def _chunks(values: Sequence[Row], size: int) -> Iterable[Sequence[Row]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


# --------------------------------------------------------------------------- /stats


def stats_lines(db: Database, now: datetime) -> list[str]:
    """The ``/stats`` text: subscribers, messages sent today (UTC), backlog, source health."""
    today = datetime.combine(now.date(), time(), tzinfo=now.tzinfo)
    subscribers = stats.subscriber_counts(db)
    messages = stats.message_counts(db, today)
    lines = ["Subscribers:"]
    if not subscribers:
        lines.append("  none yet")
    for platform, counts in sorted(subscribers.items()):
        line = (
            f"  {platform.value}: {counts.active} active, {counts.paused} paused, "
            f"{counts.inactive} unreachable"
        )
        if counts.announcements_off:
            line += f" ({counts.announcements_off} without announcements)"
        lines.append(line)
    per_platform = ", ".join(
        f"{platform.value} {number}" for platform, number in sorted(messages.by_platform.items())
    )
    lines.append(
        f"Digests sent today (UTC): {messages.digests_sent}"
        + (f" ({per_platform})" if per_platform else "")
    )
    if messages.other_sent:
        lines.append(f"Other messages sent today: {messages.other_sent}")
    lines.append(f"Outbox: {messages.pending} waiting, {messages.failed} failed")
    lines.append("Sources:")
    sources = cursors.all_cursors(db)
    if not sources:
        lines.append("  none polled yet")
    for cursor in sorted(sources, key=lambda c: c.source):
        lines.append(f"  {cursor.source}: {_source_health(cursor, now)}")
    return lines


def _source_health(cursor: SourceCursor, now: datetime) -> str:
    if cursor.last_success_at is None:
        state = "never succeeded"
    else:
        age = now - cursor.last_success_at
        state = f"ok {_ago(age)} ago"
        if age > STALE_SOURCE:
            state = f"stale, last ok {_ago(age)} ago"
    if cursor.consecutive_failures:
        error = (cursor.last_error or "").splitlines()[0][:80] if cursor.last_error else "error"
        state += f"; {cursor.consecutive_failures} failures in a row ({error})"
    return state


def _ago(age: timedelta) -> str:
    seconds = max(0, int(age.total_seconds()))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"
