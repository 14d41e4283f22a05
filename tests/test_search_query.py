"""The search query language: parsed by us, whatever the input, never passed raw to an engine."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storage.search_query import (
    MAX_TERMS,
    Phrase,
    Query,
    Sort,
    Word,
    category_token,
    clean,
    parse,
    parse_date,
)

NOW = datetime(2026, 11, 16, 15, 30, tzinfo=UTC)


def day(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_plain_words_must_all_match_and_are_folded() -> None:
    query = parse("Diffusion  TRANSFORMERS Schölkopf", now=NOW)
    assert query.groups == ((Word("diffusion"),), (Word("transformers"),), (Word("scholkopf"),))
    assert query.has_text and not query.has_filters and query.notes == ()


def test_phrases_prefixes_and_hyphenated_words() -> None:
    query = parse('"large language models" diffus* state-of-the-art GPT-4', now=NOW)
    assert query.groups == (
        (Phrase(("large", "language", "models")),),
        (Word("diffus", prefix=True),),
        (Phrase(("state", "of", "the", "art")),),
        (Phrase(("gpt", "4")),),
    )


def test_a_prefix_needs_three_letters() -> None:
    query = parse("ab* graph", now=NOW)
    assert query.groups == ((Word("ab"),), (Word("graph"),))
    assert any("prefix" in note for note in query.notes)


def test_exclusions_with_minus_bang_and_not() -> None:
    query = parse('graph -neural !"message passing" NOT spectral', now=NOW)
    assert query.groups == ((Word("graph"),),)
    assert query.excluded == (
        Word("neural"),
        Phrase(("message", "passing")),
        Word("spectral"),
    )


def test_upper_case_or_makes_alternatives_and_lower_case_or_is_a_word() -> None:
    query = parse("graph OR hypergraph learning or AND", now=NOW)
    assert query.groups == (
        (Word("graph"), Word("hypergraph")),
        (Word("learning"),),
        (Word("or"),),
    )
    assert parse("OR graph OR", now=NOW).groups == ((Word("graph"),),)


def test_engine_operators_are_just_words() -> None:
    query = parse('NEAR(a b) title:x ^boost col:"y z" {a b}:c', now=NOW)
    texts = {atom.render() for group in query.groups for atom in group}
    assert texts == {"near", "a", "b", '"title x"', "boost", "col", '"y z"', "c"}


def test_author_filters_any_spelling() -> None:
    query = parse('author:Hinton au:"Geoffrey Hinton" by:lecun -author:smith', now=NOW)
    assert query.authors == (("hinton",), ("geoffrey", "hinton"), ("lecun",))
    assert query.excluded_authors == (("smith",),)
    assert not query.has_text and query.has_filters


def test_category_filters_are_validated() -> None:
    query = parse("cat:cs.LG in:stat cat:cs.LG,cs.CV -cat:math.AG cat:not_a/cat", now=NOW)
    assert query.categories == ("cs.LG", "stat", "cs.CV")
    assert query.excluded_categories == ("math.AG",)
    assert any("not an arXiv category" in note for note in query.notes)
    assert category_token("cs.LG") == "catcslg"
    assert category_token("cond-mat.stat-mech") == "catcondmatstatmech"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-01-31", "2024-01-31"),
        ("2024-02", "2024-02-01"),
        ("2023", "2023-01-01"),
        ("7d", "2026-11-09"),
        ("2w", "2026-11-02"),
        ("1m", "2026-10-17"),
        ("1y", "2025-11-16"),
        ("today", "2026-11-16"),
        ("yesterday", "2026-11-15"),
    ],
)
def test_dates_absolute_and_relative(value: str, expected: str) -> None:
    assert parse_date(value, NOW) == day(expected)


@pytest.mark.parametrize("value", ["2024-13-01", "2024-02-30", "soon", "1850", "99999d", ""])
def test_unreadable_dates(value: str) -> None:
    assert parse_date(value, NOW) is None


def test_since_and_before_filters() -> None:
    query = parse("graph since:2024-01-01 before:2024-07 after:2024-03-01", now=NOW)
    assert query.since == day("2024-03-01")  # the later of two lower bounds
    assert query.before == day("2024-07-01")
    inverted = parse("graph since:2025 before:2024", now=NOW)
    assert inverted.since is None and inverted.before is None
    assert any("not before" in note for note in inverted.notes)
    bad = parse("graph since:whenever", now=NOW)
    assert bad.since is None and any("since:2024-01-01" in note for note in bad.notes)
    assert parse("graph -since:2024", now=NOW).before == day("2024-01-01")


def test_ids_bare_versioned_in_urls_and_as_a_filter() -> None:
    query = parse(
        "2401.12345v2 https://arxiv.org/abs/2312.00001 arXiv:hep-th/9901001 id:2402.00002",
        now=NOW,
    )
    assert query.ids == ("2401.12345", "2312.00001", "hep-th/9901001", "2402.00002")
    assert not query.has_text
    assert parse("id:nonsense", now=NOW).ids == ()
    # A number that is not an arXiv id stays a word.
    assert parse("1234.5 gpt", now=NOW).ids == ()


def test_sort_options() -> None:
    assert parse("graph sort:new", now=NOW).sort is Sort.NEW
    assert parse("graph sort:Trending", now=NOW).sort is Sort.TRENDING
    unknown = parse("graph sort:sideways", now=NOW)
    assert unknown.sort is Sort.RELEVANCE and any("sort:new" in n for n in unknown.notes)


def test_empty_values_and_unbalanced_quotes_are_explained() -> None:
    query = parse('author: cat: "unbalanced phrase', now=NOW)
    assert query.groups == ((Phrase(("unbalanced", "phrase")),),)
    assert any("author:" in note for note in query.notes)
    assert any("quote" in note for note in query.notes)


def test_limits_on_length_and_terms() -> None:
    long = parse("word " * 5000, now=NOW)
    assert any("characters" in note for note in long.notes)
    assert sum(len(" ".join(group[0].render() for group in long.groups)) for _ in [0]) > 0
    assert len(long.groups) == 1  # the same word repeated is one term
    many = parse(" ".join(f"w{i}" for i in range(100)), now=NOW)
    assert len(many.groups) == MAX_TERMS
    assert any("first 24 terms" in note for note in many.notes)


def test_control_characters_surrogates_and_emoji_are_dropped() -> None:
    assert clean("a\x00b\u200bc\ud800d\ue000e\x1ff") == "a b c d e f"
    assert parse("🎉🎉 \x00", now=NOW).is_empty
    assert parse("مرحبا عالم", now=NOW).groups == ((Word("مرحبا"),), (Word("عالم"),))


def test_without_filters_and_render() -> None:
    query = parse(
        '"neural nets" diffus* graph OR tree -spectral author:"yann lecun" cat:cs.LG '
        "since:2024-01-01 before:2025-01-01 id:2401.00001 sort:new",
        now=NOW,
    )
    assert query.filter_text() == (
        'author:"yann lecun" cat:cs.LG id:2401.00001 since:2024-01-01 before:2025-01-01'
    )
    assert parse(query.render(), now=NOW) == query
    broader = query.without_filters()
    assert not broader.has_filters and broader.groups == query.groups
    assert query.replace_word("graph", "graphs").groups[2] == (Word("graphs"), Word("tree"))


_QUERYISH = st.lists(
    st.one_of(
        st.text(max_size=12),
        st.sampled_from(
            [
                '"',
                "-",
                "*",
                "OR",
                "NOT",
                "AND",
                "NEAR",
                "author:",
                "cat:",
                "since:",
                "before:",
                "id:",
                "sort:",
                "(",
                ")",
                ":",
                "^",
                "cs.LG",
                "7d",
                "2401.12345",
                "\x00",
                "🎉",
                "שלום",
                "'",
                ";",
                "--",
                "\\",
                "diffus*",
                '"a b"',
            ]
        ),
    ),
    max_size=30,
).map(" ".join)


@given(st.one_of(st.text(max_size=300), _QUERYISH))
@settings(max_examples=400, deadline=None)
def test_any_input_parses_and_renders_back(text: str) -> None:
    query = parse(text, now=NOW)
    assert isinstance(query, Query)
    assert parse(query.render(), now=NOW) == query
    for group in query.groups:
        for atom in group:
            words = atom.words if isinstance(atom, Phrase) else (atom.text,)
            assert all(word and all(ch.isalnum() for ch in word) for word in words)
