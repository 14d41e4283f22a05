"""Reply → Slack Block Kit: valid for Slack's checks, within every limit, every text escaped."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.chat.slack_render import (
    BUTTON_LIMIT,
    FALLBACK_LIMIT,
    HEADER_LIMIT,
    MAX_BLOCKS,
    MAX_VIEW_BLOCKS,
    TEXT_LIMIT,
    Rendered,
    clip,
    decode_value,
    encode_value,
    escape,
    home_view,
    link,
    paper_mrkdwn,
    relabel,
    render,
    slack_commands,
    slack_length,
    split_mrkdwn,
    unescape,
)
from bot.commands import digest_reply, feedback_buttons
from bot.digest import DigestItem
from bot.messages import Action, Button, PaperBlock, Reply, TextBlock
from tests.fakes.slack_api import block_errors

NASTY = st.sampled_from(
    [
        "<",
        ">",
        "&",
        "&amp;",
        "&lt;",
        "<!channel>",
        "<@U123|boss>",
        "<https://evil.example|click>",
        "|",
        "*bold*",
        "_it_",
        "~strike~",
        "`code`",
        "```",
        "$\\alpha_{i} < \\beta^*$",
        ":smile:",
        "😀",
        "👩‍🔬",
        "مرحبا",
        "\u200f",
        "\n",
        "\\",
        " ",
    ]
)
TEXT = st.lists(st.text(max_size=40) | NASTY, max_size=30).map("".join)
LONG_TEXT = st.lists(st.text(max_size=300) | NASTY, max_size=80).map("".join)
_LINK = re.compile(r"<(https?://[^|<>\s]+)\|([^<>]*)>")
_ENTITY = re.compile(r"&(?!amp;|lt;|gt;)")


def item(
    title: str = "Diffusion models for protein design",
    authors: tuple[str, ...] = ("Ada Lovelace", "Alan Turing"),
    *,
    arxiv_id: str = "2611.00001",
    why: str = "matches “diffusion”",
    trend: str = "",
    url: str | None = None,
    category: str = "cs.LG",
) -> DigestItem:
    return DigestItem(
        arxiv_id=arxiv_id,
        title=title,
        authors=authors,
        primary_category=category,
        url=url if url is not None else f"https://arxiv.org/abs/{arxiv_id}",
        why=why,
        trend_line=trend,
    )


def mrkdwn_texts(blocks: list[dict[str, Any]]) -> list[str]:
    """Every mrkdwn string in the blocks (section texts, context elements)."""
    found = []
    for block in blocks:
        text = block.get("text")
        if isinstance(text, dict) and text.get("type") == "mrkdwn":
            found.append(text["text"])
        for element in block.get("elements", []):
            if isinstance(element, dict) and element.get("type") == "mrkdwn":
                found.append(element["text"])
    return found


def assert_escaped(text: str) -> None:
    """Outside our own ``<url|label>`` links no ``<``/``>`` and no bare ``&`` survive."""
    rest = _LINK.sub("", text)
    assert "<" not in rest, text
    assert ">" not in rest, text
    assert not _ENTITY.search(text), text
    for match in _LINK.finditer(text):
        assert "<" not in match.group(2)
        assert ">" not in match.group(2)


def assert_valid(messages: list[Rendered], *, limit: int = MAX_BLOCKS) -> None:
    assert messages
    for message in messages:
        assert block_errors(message.blocks, limit) == []
        assert len(message.blocks) <= limit
        assert message.text.strip()
        assert slack_length(message.text) <= FALLBACK_LIMIT
        assert_escaped(message.text)
        for text in mrkdwn_texts(message.blocks):
            assert 0 < slack_length(text) <= TEXT_LIMIT
            assert_escaped(text)
        for block in message.blocks:
            if block["type"] == "header":
                assert slack_length(block["text"]["text"]) <= HEADER_LIMIT
            for element in block.get("elements", []):
                if element.get("type") == "button":
                    assert slack_length(element["text"]["text"]) <= BUTTON_LIMIT
                    assert element["action_id"].startswith("tp:")
        ids = [
            element["action_id"]
            for block in message.blocks
            for element in block.get("elements", [])
            if element.get("type") == "button"
        ]
        assert len(ids) == len(set(ids))


# --------------------------------------------------------------------------- text


def test_escape_turns_the_three_specials_into_entities() -> None:
    assert escape("a < b && c > d") == "a &lt; b &amp;&amp; c &gt; d"
    assert unescape(escape("<@U1> & <!here>")) == "<@U1> & <!here>"
    assert escape("&lt;") == "&amp;lt;"


def test_clip_counts_the_escaped_text_and_marks_the_cut() -> None:
    assert clip("a&b", 10) == "a&amp;b"
    cut = clip("&" * 100, 20)
    assert cut.endswith("…")
    assert slack_length(cut) <= 20
    assert "&am…" not in cut  # never cut inside an entity


def test_link_accepts_only_plain_http_urls() -> None:
    assert link("https://arxiv.org/abs/2611.00001") == "https://arxiv.org/abs/2611.00001"
    assert link("https://x.org/?a=1&b=2") == "https://x.org/?a=1&amp;b=2"
    assert link("javascript:alert(1)") is None
    assert link("https://x.org/a|b") is None
    assert link("https://x.org/a b") is None
    assert link("") is None


def test_commands_are_rewritten_to_the_slash_command() -> None:
    text = "Send /start first, then /interests add x or /help. See https://arxiv.org/abs/1/help"
    assert slack_commands(text) == (
        "Send /papers subscribe first, then /papers interests add x or /papers help. "
        "See https://arxiv.org/abs/1/help"
    )
    assert slack_commands("/tz Berlin and /unknown", "/tp") == "/tp tz Berlin and /unknown"


def test_long_text_splits_at_spaces_within_the_limit() -> None:
    text = ("word " * 1500).strip()
    pieces = split_mrkdwn(text)
    assert len(pieces) == 3
    assert all(slack_length(piece) <= TEXT_LIMIT for piece in pieces)
    assert " ".join(pieces).split() == text.split()


def test_bold_text_is_bold_line_by_line() -> None:
    assert split_mrkdwn("one\ntwo", bold=True) == ["*one*\n*two*"]
    assert split_mrkdwn("2 * 3", bold=True) == ["2 * 3"]  # a * inside: left plain


# --------------------------------------------------------------------------- paper cards


def test_paper_card_escapes_everything_from_the_paper() -> None:
    block = PaperBlock(
        item(
            title="Bounds for <b>x</b> & y > z <!channel>",
            authors=("A <admin>", "B & C"),
            why="matches “a<b”",
            trend="🔥 HN 12 pts <3",
        ),
        buttons=feedback_buttons("2611.00001"),
        snippet=(("we show <x> & ", False), ("diffusion", True), (" works", False)),
        number=3,
    )
    text = paper_mrkdwn(block)
    assert text.startswith(
        "*3.* <https://arxiv.org/abs/2611.00001|Bounds for &lt;b&gt;x&lt;/b&gt; &amp; y &gt; z "
        "&lt;!channel&gt;>"
    )
    assert "A &lt;admin&gt;, B &amp; C · cs.LG" in text
    assert "_matches “a&lt;b”_" in text
    assert "🔥 HN 12 pts &lt;3" in text
    assert "we show &lt;x&gt; &amp; *diffusion* works" in text
    assert_escaped(text)


def test_emphasis_is_dropped_when_the_text_has_its_marker() -> None:
    text = paper_mrkdwn(PaperBlock(item(why="matches snake_case"), number=None))
    assert "\nmatches snake_case" in text
    assert "_matches" not in text


def test_a_card_without_a_usable_link_shows_a_bold_title() -> None:
    text = paper_mrkdwn(PaperBlock(item(url="not a url"), number=1))
    assert text.splitlines()[0] == "*1.* *Diffusion models for protein design*"


# --------------------------------------------------------------------------- messages


def test_digest_renders_header_cards_buttons_and_fallback() -> None:
    items = [item(arxiv_id=f"2611.0000{n}", title=f"Paper {n}") for n in range(1, 4)]
    [message] = render(digest_reply(items, heading="Your papers for 2026-11-16"))
    assert_valid([message])
    kinds = [block["type"] for block in message.blocks]
    assert kinds == ["header", "section", "actions"] * 1 + ["section", "actions"] * 2 + ["section"]
    assert message.blocks[0]["text"]["text"] == "Your papers for 2026-11-16 · 3 new"
    buttons = message.blocks[2]["elements"]
    assert [b["text"]["text"] for b in buttons] == ["👍", "👎", "🔖"]
    assert [b["value"] for b in buttons] == ["l:2611.00001", "d:2611.00001", "s:2611.00001"]
    assert message.text.startswith("Your papers for 2026-11-16 · 3 new\n1. Paper 1 — Ada")


def test_a_thirty_paper_digest_splits_between_cards() -> None:
    items = [item(arxiv_id=f"2611.{n:05d}", title=f"Paper {n}") for n in range(30)]
    messages = render(digest_reply(items, heading="Your papers"))
    assert len(messages) == 2
    assert_valid(messages)
    for message in messages:
        for index, block in enumerate(message.blocks):
            if block["type"] == "actions":
                assert message.blocks[index - 1]["type"] == "section"  # never orphaned
    cards = sum(1 for m in messages for b in m.blocks if b["type"] == "actions")
    assert cards == 30
    assert messages[1].text.startswith("25. Paper 24")  # header + 24 cards = 49 blocks


def test_trailing_buttons_go_under_the_last_message() -> None:
    reply = Reply(
        blocks=(TextBlock("Unsubscribe?"),),
        buttons=(
            Button("Yes, delete everything", Action.CONFIRM_STOP, "7"),
            Button("Cancel", Action.CANCEL, "7"),
        ),
    )
    [message] = render(reply)
    assert_valid([message])
    actions = message.blocks[-1]
    assert [e["value"] for e in actions["elements"]] == ["x:7", "c:7"]
    assert actions["elements"][0]["style"] == "danger"


def test_link_buttons_carry_the_url_and_no_value() -> None:
    reply = Reply(
        blocks=(TextBlock("See"),), buttons=(Button("Open", Action.PAGE, url="https://x.org"),)
    )
    element = render(reply)[0].blocks[-1]["elements"][0]
    assert element["url"] == "https://x.org"
    assert "value" not in element
    assert decode_value(element.get("value")) == (None, "")


def test_an_empty_reply_renders_nothing() -> None:
    assert render(Reply()) == []


def test_values_round_trip_and_oversized_targets_are_dropped() -> None:
    button = Button("Next ▶", Action.PAGE, "2:abc")
    assert decode_value(encode_value(button)) == (Action.PAGE, "2:abc")
    assert encode_value(Button("x", Action.LIKE, "9" * 3000)) is None
    assert decode_value("zz:1") == (None, "1")


def test_relabel_changes_only_the_matching_button() -> None:
    items = [item(arxiv_id="2611.00001"), item(arxiv_id="2611.00002")]
    [message] = render(digest_reply(items, heading="Your papers"))
    updated = relabel(message.blocks, feedback_buttons("2611.00002", rating=1))
    labels = [
        (e["value"], e["text"]["text"])
        for b in updated
        if b["type"] == "actions"
        for e in b["elements"]
    ]
    assert ("l:2611.00002", "👍✓") in labels
    assert ("l:2611.00001", "👍") in labels
    assert message.blocks != updated
    assert relabel(updated, feedback_buttons("2611.00002", rating=1)) == updated
    with pytest.raises(ValueError, match="no button"):
        relabel(message.blocks, feedback_buttons("2611.09999"))


def test_home_view_stays_within_a_hundred_blocks() -> None:
    saved = digest_reply(
        [item(arxiv_id=f"2611.{n:05d}", title=f"Saved {n}") for n in range(60)], heading="Saved"
    )
    view = home_view([Reply(blocks=(TextBlock("Settings", bold=True),)), saved])
    assert view["type"] == "home"
    assert len(view["blocks"]) <= MAX_VIEW_BLOCKS
    assert block_errors(view["blocks"], MAX_VIEW_BLOCKS, "/view/blocks") == []
    assert view["blocks"][-1]["type"] == "context"
    assert "/papers saved" in view["blocks"][-1]["elements"][0]["text"]
    assert {"type": "divider"} in view["blocks"]


# --------------------------------------------------------------------------- property


@settings(max_examples=150, deadline=None)
@given(
    title=LONG_TEXT,
    authors=st.lists(TEXT, max_size=12),
    why=LONG_TEXT,
    trend=TEXT,
    category=TEXT,
    url=TEXT | st.just("https://arxiv.org/abs/2611.00001"),
    snippet=st.lists(st.tuples(LONG_TEXT, st.booleans()), max_size=6),
    count=st.integers(min_value=1, max_value=30),
    note=LONG_TEXT,
)
def test_any_paper_text_renders_valid_block_kit(
    title: str,
    authors: list[str],
    why: str,
    trend: str,
    category: str,
    url: str,
    snippet: list[tuple[str, bool]],
    count: int,
    note: str,
) -> None:
    cards = tuple(
        PaperBlock(
            item(
                title=title,
                authors=tuple(authors),
                arxiv_id=f"2611.{n:05d}",
                why=why,
                trend=trend,
                url=url,
                category=category,
            ),
            buttons=feedback_buttons(f"2611.{n:05d}"),
            snippet=tuple(snippet),
            number=n + 1,
        )
        for n in range(count)
    )
    reply = Reply(
        blocks=(TextBlock(title, bold=True), *cards, TextBlock(note), TextBlock(why, bold=True)),
        buttons=(Button(title or "Next", Action.PAGE, "2:abcdef"),),
    )
    messages = render(reply)
    assert_valid(messages)
    values = [
        e["value"]
        for m in messages
        for b in m.blocks
        if b["type"] == "actions"
        for e in b["elements"]
        if "value" in e
    ]
    assert values.count("p:2:abcdef") == 1
    assert sum(1 for v in values if v.startswith("l:")) == count
    view = home_view([reply])
    assert len(view["blocks"]) <= MAX_VIEW_BLOCKS
    assert block_errors(view["blocks"], MAX_VIEW_BLOCKS, "/view/blocks") == []
