"""``trending-papers chat``: talk to the bot in a terminal, through the same command router.

The terminal is one more chat platform: what you type becomes a ``Command`` for
``CommandRouter.handle``, exactly as a Telegram or Slack message would, and the ``Reply`` is
printed with rich. Buttons are numbered; type ``!3`` to press the third one.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import replace
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.text import Text

from bot.commands import CommandRouter, is_button_update
from bot.config import Settings
from bot.messages import Button, Command, PaperBlock, Reply, TextBlock
from storage.db import Database, redact_url
from storage.errors import StorageError
from storage.models import ChatKind, Platform

CONSOLE_CHAT = "console"
_COMMAND = re.compile(r"^/?(?P<name>[A-Za-z0-9_]+)(?:\s+(?P<args>.*))?$", re.DOTALL)
_PRESS = re.compile(r"^!(\d+)$")


def to_command(line: str, *, chat_id: str = CONSOLE_CHAT) -> Command:
    """The command a typed line means (``/search x`` and ``search x`` alike)."""
    text = line.strip()
    match = _COMMAND.match(text) if text.startswith("/") else None
    name, args = (match.group("name"), match.group("args") or "") if match else ("", text)
    return Command(
        platform=Platform.CONSOLE,
        chat_id=chat_id,
        user_id=chat_id,
        name=name,
        args=args.strip(),
        chat_kind=ChatKind.USER,
        user_is_admin=True,
        user_display_name="console",
    )


def print_reply(console: Console, reply: Reply, buttons: list[Button]) -> None:
    """Print a reply; its buttons are appended to ``buttons`` and shown with their numbers."""
    if reply.notice:
        console.print(f"[dim]» {escape(reply.notice)}[/]")
    if is_button_update(reply):
        labels = ", ".join(escape(b.label) for b in reply.buttons)
        console.print(f"[dim]  now: {labels}[/]")
        return
    for block in reply.blocks:
        if isinstance(block, TextBlock):
            console.print(Text(block.text, style="bold" if block.bold else ""))
            continue
        _print_paper(console, block, buttons)
    row = []
    for button in reply.buttons:
        buttons.append(button)
        row.append(f"[cyan][{len(buttons)}][/] {escape(button.label)}")
    if row:
        console.print("  ".join(row))
    console.print()


def _print_paper(console: Console, block: PaperBlock, buttons: list[Button]) -> None:
    item = block.item
    title = Text(f"{block.number:>2}. " if block.number is not None else "", style="bold")
    title.append(item.title, style=f"bold link {item.url}")
    console.print(title)
    byline = " · ".join(p for p in (item.short_authors, item.primary_category) if p)
    if byline:
        console.print(f"    {escape(byline)}")
    if item.why:
        console.print(f"    [green]{escape(item.why)}[/]")
    if item.trend_line:
        console.print(f"    {escape(item.trend_line)}")
    if block.snippet:
        snippet = Text("    ")
        for text, highlighted in block.snippet:
            snippet.append(text, style="bold yellow" if highlighted else "")
        console.print(snippet)
    row = []
    for button in block.buttons:
        buttons.append(button)
        row.append(f"[cyan][{len(buttons)}][/] {escape(button.label)}")
    console.print(f"    [blue]{escape(item.url)}[/]   " + "  ".join(row))


async def repl(
    router: CommandRouter,
    console: Console,
    read: Callable[[str], str] = input,
) -> int:
    """Read lines until ``quit`` or end of input; returns how many commands were answered."""
    buttons: list[Button] = []
    answered = 0
    console.print(
        "[dim]Type commands as in Telegram (/start, /interests add …, /digest, /help); "
        "!N presses button N; quit to leave.[/]"
    )
    while True:
        try:
            line = await asyncio.to_thread(read, "you> ")
        except EOFError:
            break
        if line.strip().casefold() in ("quit", "exit", "/quit", "/exit"):
            break
        if not line.strip():
            continue
        press = _PRESS.match(line.strip())
        if press:
            number = int(press.group(1))
            if not 1 <= number <= len(buttons):
                console.print(f"[yellow]No button {number}.[/]")
                continue
            button = buttons[number - 1]
            command = replace(
                to_command(""), name="button", action=button.action, target=button.target
            )
        else:
            command = to_command(line)
        reply = await router.handle(command)
        if not is_button_update(reply) and (reply.blocks or reply.buttons):
            buttons.clear()
        print_reply(console, reply, buttons)
        answered += 1
    return answered


def register(app: typer.Typer) -> None:
    """Add ``chat`` to the ``trending-papers`` command line."""

    @app.command()
    def chat(
        database: Annotated[
            str | None, typer.Option(help="Database URL (default: TP_DATABASE_URL)")
        ] = None,
    ) -> None:
        """Talk to the bot in this terminal: the same commands as in Telegram or Slack."""
        from storage.migrate import upgrade

        settings = Settings()
        console = Console()
        url = database or settings.database_url
        db = Database(url)
        try:
            upgrade(db)
            asyncio.run(repl(CommandRouter(db, settings), console))
        except StorageError as exc:
            Console(stderr=True).print(f"[red]error:[/] {exc} (database: {redact_url(url)})")
            raise typer.Exit(code=1) from exc
        finally:
            db.dispose()
