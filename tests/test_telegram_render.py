"""Reply → Telegram HTML: always well-formed for Telegram's subset, always within 4,096."""

from __future__ import annotations

import html

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.chat.telegram_render import (
    MESSAGE_LIMIT,
    Key,
    clip,
    decode_callback,
    encode_callback,
    paper_html,
    relabel,
    render,
    split_text,
    tg_length,
)
from bot.commands import digest_reply, feedback_buttons
from bot.digest import DigestItem
from bot.messages import Action, Button, PaperBlock, Reply, TextBlock
from tests.fakes.telegram_api import parse_html

NASTY = st.sampled_from(
    [
        "<b>",
        "</i>",
        "&amp;",
        "&",
        "<",
        ">",
        '"',
        "'",
        "$\\alpha_{i} < \\beta^*$",
        "**bold** __x__",
        "😀",
        "مرحبا",
        "\u200f",
        "\n",
        "<a href='x'>",
        "&#0;",
        "\\",
    ]
)
TEXT = st.lists(st.text(max_size=40) | NASTY, max_size=30).map("".join)
LONG_TEXT = st.lists(st.text(max_size=200) | NASTY, max_size=60).map("".join)


def item(title: str, authors: list[str], why: str = "", trend: str = "") -> DigestItem:
    return DigestItem(
        arxiv_id="2611.00001",
        title=title,
        authors=tuple(authors),
        primary_category="cs.LG",
        url="https://arxiv.org/abs/2611.00001",
        why=why,
        trend_line=trend,
    )


def check(messages: list[str]) -> None:
    for text in messages:
        assert tg_length(text) <= MESSAGE_LIMIT
        parsed = parse_html(text)  # raises on anything Telegram would refuse
        assert parsed.plain.strip()


@settings(max_examples=150, deadline=None)
@given(
    titles=st.lists(LONG_TEXT, min_size=1, max_size=30),
    authors=st.lists(TEXT, max_size=8),
    why=LONG_TEXT,
    trend=TEXT,
)
def test_any_digest_renders_to_valid_chunks(
    titles: list[str], authors: list[str], why: str, trend: str
) -> None:
    items = [item(title, authors, why, trend) for title in titles]
    messages = render(digest_reply(items, heading="Your papers for 2026-11-16"))
    check([m.text for m in messages])
    # Every paper keeps its own row of buttons, whichever message it lands in.
    assert sum(len(m.keyboard) for m in messages) == len(items)


@settings(max_examples=150, deadline=None)
@given(
    blocks=st.lists(
        st.tuples(LONG_TEXT, st.booleans())
        | st.tuples(TEXT, TEXT, st.lists(st.tuples(TEXT, st.booleans()))),
        min_size=1,
        max_size=12,
    )
)
def test_any_reply_renders_to_valid_chunks(blocks: list[tuple[object, ...]]) -> None:
    rendered: list[TextBlock | PaperBlock] = []
    for number, block in enumerate(blocks, start=1):
        if len(block) == 2:
            text, bold = block
            rendered.append(TextBlock(str(text), bold=bool(bold)))
        else:
            title, abstract, snippet = block
            rendered.append(
                PaperBlock(
                    item(str(title), [str(abstract)]),
                    snippet=tuple(snippet),  # type: ignore[arg-type]
                    number=number,
                )
            )
    heading = TextBlock("Results", bold=True)
    check([m.text for m in render(Reply(blocks=(heading, *rendered)))])


@given(text=LONG_TEXT, bold=st.booleans())
def test_split_text_keeps_every_character(text: str, bold: bool) -> None:
    pieces = split_text(text, bold=bold, limit=300)
    assert all(tg_length(piece) <= 300 for piece in pieces)
    joined = "".join(parse_html(piece).plain for piece in pieces)
    assert "".join(joined.split()) == "".join(text.split())


def test_a_long_digest_splits_between_items_never_inside_one() -> None:
    items = [item(f"Paper {n} " + "word & <tag> " * 40, ["A. Author"] * 5) for n in range(30)]
    messages = render(digest_reply(items, heading="Your papers"))
    assert len(messages) > 1
    check([m.text for m in messages])
    for message in messages:
        # Whole cards only: every linked title in a message has its button row with it.
        assert message.text.count("<a href=") == len(message.keyboard)


def test_paper_card_escapes_and_links() -> None:
    card = paper_html(
        PaperBlock(
            item("Bounds for $x<y$ & <b>z</b>", ["A", "B", "C", "D"], why="matches “x”"),
            snippet=(("we show ", False), ("x<y", True)),
            number=3,
        )
    )
    assert card.startswith('<b>3.</b> <a href="https://arxiv.org/abs/2611.00001">')
    assert "Bounds for $x&lt;y$ &amp; &lt;b&gt;z&lt;/b&gt;" in card
    assert "A, B, C et al. · cs.LG" in card
    assert "<i>matches “x”</i>" in card and "we show <b>x&lt;y</b>" in card
    parsed = parse_html(card)
    assert parsed.plain.startswith("3. Bounds for $x<y$ & <b>z</b>")


def test_bad_urls_are_not_linked() -> None:
    bad = DigestItem("x", "T", (), "", 'javascript:alert("x")', "")
    assert "<a" not in paper_html(PaperBlock(bad))
    assert paper_html(PaperBlock(DigestItem("", " ", (), "", "", ""))).startswith("<b>arXiv paper")


def test_clip_never_cuts_an_entity() -> None:
    clipped = clip("&" * 100, 50)
    assert tg_length(clipped) <= 50 and clipped.endswith("…")
    assert html.unescape(clipped) == "&" * 9 + "…"


def test_callback_data_round_trips_and_respects_64_bytes() -> None:
    button = Button("👍", Action.LIKE, "hep-th/9901001")
    assert encode_callback(button) == "l:hep-th/9901001"
    assert decode_callback("l:hep-th/9901001") == (Action.LIKE, "hep-th/9901001")
    assert decode_callback("zz:1") == (None, "1")
    assert decode_callback(None) == (None, "")
    assert encode_callback(Button("x", Action.PAGE, "é" * 40)) is None


def test_relabel_keeps_numbers_and_reports_no_change() -> None:
    keyboard = (
        (Key("1 👍", "l:a"), Key("1 👎", "d:a"), Key("1 🔖", "s:a")),
        (Key("2 👍", "l:b"), Key("2 👎", "d:b"), Key("2 🔖", "s:b")),
    )
    updated = relabel(keyboard, feedback_buttons("b", rating=1))
    assert updated is not None
    assert [k.text for k in updated[1]] == ["2 👍✓", "2 👎", "2 🔖"]
    assert updated[0] == keyboard[0]
    assert relabel(keyboard, feedback_buttons("a")) is None
