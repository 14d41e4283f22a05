"""Property tests: every way people write an arXiv id comes back as the versionless id."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from feeds.ids import find_id, find_ids, normalize_id, split_version

# Old-style archives; only math and cs ever carried a two-letter subject class in the id.
_OLD_ARCHIVES = (
    "astro-ph",
    "cond-mat",
    "gr-qc",
    "hep-ex",
    "hep-lat",
    "hep-ph",
    "hep-th",
    "math-ph",
    "nlin",
    "nucl-th",
    "physics",
    "quant-ph",
    "q-bio",
    "math",
    "cs",
)
_SUBJECT_CLASSES = ("AG", "CO", "GT", "PR", "AI", "LG", "CL", "DS")


@st.composite
def new_style_ids(draw: st.DrawFn) -> str:
    """``YYMM.NNNN`` before 2015-01, ``YYMM.NNNNN`` from then on (first id: 0704)."""
    year = draw(st.integers(min_value=7, max_value=99))
    month = draw(st.integers(min_value=4 if year == 7 else 1, max_value=12))
    yymm = f"{year:02d}{month:02d}"
    width = 4 if yymm < "1501" else 5
    number = draw(st.integers(min_value=1, max_value=10**width - 1))
    return f"{yymm}.{number:0{width}d}"


@st.composite
def old_style_ids(draw: st.DrawFn) -> str:
    """``archive[.SC]/YYMMNNN`` from 1991-08 to 2007-03."""
    archive = draw(st.sampled_from(_OLD_ARCHIVES))
    if archive in {"math", "cs"} and draw(st.booleans()):
        archive = f"{archive}.{draw(st.sampled_from(_SUBJECT_CLASSES))}"
    year = draw(st.sampled_from([91, 92, 93, 94, 95, 96, 97, 98, 99, 0, 1, 2, 3, 4, 5, 6, 7]))
    month = draw(st.integers(min_value=1, max_value=3 if year == 7 else 12))
    number = draw(st.integers(min_value=1, max_value=999))
    return f"{archive}/{year:02d}{month:02d}{number:03d}"


versions = st.one_of(st.just(""), st.integers(min_value=1, max_value=40).map(lambda n: f"v{n}"))

_URL_FORMS = (
    "https://arxiv.org/abs/{id}",
    "http://arxiv.org/abs/{id}",
    "https://www.arxiv.org/abs/{id}",
    "http://export.arxiv.org/abs/{id}",
    "https://arxiv.org/pdf/{id}",
    "https://arxiv.org/pdf/{id}.pdf",
    "https://arxiv.org/html/{id}",
    "https://www.alphaxiv.org/abs/{id}",
    "https://doi.org/10.48550/arXiv.{id}",
    "arXiv:{id}",
    "arxiv: {id}",
)
_NEW_STYLE_ONLY_FORMS = ("https://huggingface.co/papers/{id}",)

# Filler that cannot itself spell an id: no digits, so the only id is the one we embed.
digit_free_text = st.text(
    alphabet=st.characters(blacklist_categories=("Nd", "Cs"), blacklist_characters="\x00"),
    max_size=40,
)
# What people put right around a link: brackets, quotes, sentence punctuation, whitespace.
openers = st.sampled_from(["", " ", "\n", "(", "[", "<", '"', "'", "see ", ": "])
closers = st.sampled_from(["", " ", "\n", ")", "]", ">", '"', "'", ".", ",", ";", "!", "?", "…"])


@st.composite
def mentions(draw: st.DrawFn) -> tuple[str, str]:
    """A sentence that mentions one paper in some form, and the id it should yield."""
    arxiv_id = draw(st.one_of(new_style_ids(), old_style_ids()))
    forms = _URL_FORMS + (_NEW_STYLE_ONLY_FORMS if "/" not in arxiv_id else ())
    form = draw(st.sampled_from(forms))
    written = form.format(id=arxiv_id + draw(versions))
    before, after = draw(digit_free_text), draw(digit_free_text)
    text = f"{before} {draw(openers)}{written}{draw(closers)} {after}"
    return text, arxiv_id


@given(mentions())
@example(("read https://arxiv.org/pdf/2401.12345v3.pdf now", "2401.12345"))
@example(("(arXiv:hep-th/9901001v2).", "hep-th/9901001"))
@example(("<https://huggingface.co/papers/2509.04664>", "2509.04664"))
def test_every_written_form_round_trips_to_the_versionless_id(mention: tuple[str, str]) -> None:
    text, arxiv_id = mention
    assert find_ids(text) == [arxiv_id]
    assert find_id(text) == arxiv_id


@given(mentions(), st.text(max_size=40), st.text(max_size=40))
def test_arbitrary_surrounding_text_never_hides_the_id(
    mention: tuple[str, str], before: str, after: str
) -> None:
    text, arxiv_id = mention
    assert arxiv_id in find_ids(f"{before} {text} {after}")


@given(
    st.lists(st.tuples(new_style_ids(), versions), min_size=1, max_size=5, unique_by=lambda t: t[0])
)
def test_several_ids_come_back_once_each_in_order(papers: list[tuple[str, str]]) -> None:
    text = " and ".join(
        f"https://arxiv.org/abs/{arxiv_id}{version}" for arxiv_id, version in papers
    )
    repeated = f"{text} (again: {text})"
    assert find_ids(repeated) == [arxiv_id for arxiv_id, _ in papers]


@given(st.one_of(new_style_ids(), old_style_ids()), st.integers(min_value=1, max_value=99))
def test_split_version_and_normalize_agree(arxiv_id: str, version: int) -> None:
    assert split_version(f"{arxiv_id}v{version}") == (arxiv_id, version)
    assert split_version(f"arXiv:{arxiv_id}") == (arxiv_id, None)
    assert normalize_id(f"{arxiv_id}v{version}") == arxiv_id


def test_old_style_archive_and_subject_class_are_canonicalised() -> None:
    assert find_ids("see MATH.ag/0601001v1 and Hep-Th/9901001") == [
        "math.AG/0601001",
        "hep-th/9901001",
    ]


@pytest.mark.parametrize(
    "text",
    [
        "upgrade to 1.2.3 or 10.4.21 today",
        "python 3.11.2 and numpy 2.1",
        "released 2024.01.15, see v2.10.4",
        "dates: 2024-01-15, 15.01.2024, 01/15/2024, 2025.12",
        "call +1 (555) 123-4567 or 555.123.4567",
        "ip 192.168.100.1 port 8080",
        "almost an id: 2401.123 and arxiv.org/abs/2401.123",
        "https://arxiv.org/abs/2401.123",
        "month 13 does not exist: 2413.12345",
        "before arXiv began: 0612.1234 and 0612.12345",
        "not an archive: foo-bar/9901001",
        "",
    ],
)
def test_lookalikes_find_nothing(text: str) -> None:
    assert find_ids(text) == []


@pytest.mark.parametrize("raw", ["", "2401.123", "hep-th/990100", "arXiv:", "2401.12345v"])
def test_split_version_rejects_non_ids(raw: str) -> None:
    with pytest.raises(ValueError, match="not an arXiv identifier"):
        split_version(raw)
