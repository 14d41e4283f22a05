"""Golden-file and fuzzing helpers shared by the feed parser tests.

A recorded payload in ``tests/data/<source>/NAME.json`` sits beside ``NAME.expected.json``,
the records it must parse to. ``TP_REGEN_GOLDEN=1 pytest …`` rewrites the expected files
(read at import: the autouse settings fixture clears ``TP_*`` variables before each test).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, is_dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

REGENERATE = os.environ.get("TP_REGEN_GOLDEN") == "1"


def jsonable(value: object) -> Any:
    """Records (dataclasses, datetimes) as plain JSON values."""

    def encode(item: object) -> object:
        if is_dataclass(item) and not isinstance(item, type):
            return asdict(item)
        if isinstance(item, datetime):
            return item.isoformat()
        raise TypeError(f"cannot encode {type(item).__name__}")

    return json.loads(json.dumps(value, default=encode))


def assert_golden(data_dir: Path, name: str, parsed: object) -> None:
    """``parsed`` equals ``data_dir/NAME.expected.json`` (or rewrites it when regenerating)."""
    expected_path = data_dir / f"{name}.expected.json"
    actual = jsonable(parsed)
    if REGENERATE:
        expected_path.write_text(json.dumps(actual, indent=2, ensure_ascii=False) + "\n")
    assert actual == json.loads(expected_path.read_text())


def json_like(keys: list[str], strings: list[str]) -> st.SearchStrategy[Any]:
    """Any JSON value whose objects use the keys a parser looks at."""
    leaves = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(10**20), max_value=10**20),
        st.floats(),
        st.text(max_size=12),
        st.sampled_from(strings),
    )
    return st.recursive(
        leaves,
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(keys), inner, max_size=6)
        ),
        max_leaves=16,
    )


def json_objects(keys: list[str], strings: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects where each key a parser reads may or may not be present, with any value."""
    return st.fixed_dictionaries({}, optional={key: json_like(keys, strings) for key in keys})
