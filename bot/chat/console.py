"""The console chat: renders digests in a terminal with rich (demo and local trials)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape
from rich.text import Text

from bot.admin import ANNOUNCEMENT_KIND
from bot.digest import DigestItem, items_from_payload
from storage import outbox
from storage.db import Database


def render_digest(console: Console, heading: str, items: Sequence[DigestItem]) -> None:
    """Print a digest: numbered papers with authors, category, why, trend line and link."""
    console.print(Text(f"{heading} · {len(items)} new", style="bold"))
    console.print()
    for number, item in enumerate(items, start=1):
        title = Text(f"{number:>2}. ", style="bold")
        title.append(item.title, style=f"bold link {item.url}")
        console.print(title)
        console.print(
            f"    {escape(item.short_authors)} · [cyan]{escape(item.primary_category)}[/]"
        )
        console.print(f"    [green]why:[/] {escape(item.why)}")
        if item.trend_line:
            console.print(f"    {escape(item.trend_line)}")
        console.print(f"    [blue]{escape(item.url)}[/]")
        console.print()


def deliver_pending(db: Database, subscriber_id: int, console: Console) -> int:
    """Print every pending outbox message (digests, announcements) of a console subscriber."""
    sent = 0
    for message in outbox.pending(db, subscriber_id=subscriber_id):
        data = message.payload
        if data.get("kind") == ANNOUNCEMENT_KIND:
            console.print(Text("📣 Announcement", style="bold"))
            console.print(escape(str(data.get("text", ""))))
            console.print()
        else:
            render_digest(console, str(data.get("heading", "Digest")), items_from_payload(data))
        assert message.id is not None
        outbox.mark_sent(db, message.id, platform_message_id=f"console:{message.id}")
        sent += 1
    return sent
